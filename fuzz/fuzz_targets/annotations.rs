//! BED and GFF3 readers: never panic; accepted intervals have start <= end and blocks inside them.
#![no_main]

use std::path::Path;

use dnalm_seq::interval::{read_bed_from, read_gff3_from};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let result = if selector % 2 == 0 {
        read_bed_from(body, Path::new("fuzz.bed"))
    } else {
        read_gff3_from(body, Path::new("fuzz.gff3"))
    };
    if let Ok(intervals) = result {
        for iv in intervals {
            assert!(iv.start <= iv.end);
            assert!(iv.blocks.iter().all(|&(s, e)| iv.start <= s && s <= e && e <= iv.end));
        }
    }
});
