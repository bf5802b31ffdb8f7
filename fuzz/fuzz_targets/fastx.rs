//! FASTA/FASTQ reader (plain and gzip, by content): never panics; every record it accepts obeys
//! the alphabet policy.
#![no_main]

use dnalm_seq::{FastxReader, SequenceRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = FastxReader::from_reader(Box::new(std::io::Cursor::new(data.to_vec())), "fuzz.fa") else {
        return;
    };
    let mut record = SequenceRecord::default();
    while let Ok(true) = reader.read_record(&mut record) {
        assert!(record.sequence.iter().all(|b| b"ACGTN".contains(b)));
        let mut end = 0;
        for &(s, e) in record.soft_mask.runs() {
            assert!(end <= s && s < e && e <= record.len());
            end = e;
        }
    }
});
