//! Indexed FASTA access on plain and bgzip files, against direct slicing.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::Write;

use dnalm_seq::{GenomicRegion, IndexedFasta, SeqError};
use noodles::bgzf;

fn genome() -> Vec<(String, Vec<u8>)> {
    let mut x = 7u64;
    (0..3)
        .map(|r| {
            let len = [1000, 61, 2500][r];
            let seq = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    b"ACGTacgtN"[((x >> 33) % 9) as usize]
                })
                .collect();
            (format!("chr{r}"), seq)
        })
        .collect()
}

fn fasta_text(width: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, seq) in genome() {
        writeln!(out, ">{name} description").unwrap();
        for line in seq.chunks(width) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    out
}

/// Writes `text` as bgzip, in small pieces so that the file has many BGZF blocks.
fn write_bgzip(path: &std::path::Path, text: &[u8]) {
    let mut writer = bgzf::io::Writer::new(std::fs::File::create(path).unwrap());
    for chunk in text.chunks(300) {
        writer.write_all(chunk).unwrap();
        writer.flush().unwrap();
    }
    writer.finish().unwrap();
}

fn check_regions(path: &std::path::Path) {
    let mut fasta = IndexedFasta::open(path).unwrap();
    let names: Vec<_> = fasta
        .sequences()
        .into_iter()
        .map(|s| (s.name, s.length))
        .collect();
    assert_eq!(
        names,
        vec![
            ("chr0".into(), 1000),
            ("chr1".into(), 61),
            ("chr2".into(), 2500)
        ]
    );
    for (name, seq) in genome() {
        for (start, end) in [
            (0usize, 1usize),
            (0, seq.len()),
            (59, 61),
            (17, 60),
            (seq.len() - 1, seq.len()),
        ] {
            if end > seq.len() {
                continue;
            }
            let region = GenomicRegion {
                name: name.clone(),
                start: start as u64,
                end: Some(end as u64),
            };
            let rec = fasta.fetch(&region).unwrap();
            let want = seq[start..end].to_ascii_uppercase();
            assert_eq!(rec.sequence, want, "{region}");
            let masked = seq[start..end]
                .iter()
                .filter(|b| b.is_ascii_lowercase())
                .count() as u64;
            assert_eq!(rec.soft_mask.masked_bases(), masked, "{region}");
        }
    }
}

#[test]
fn plain_fasta_builds_and_uses_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.fa");
    std::fs::write(&path, fasta_text(60)).unwrap();
    check_regions(&path);
    assert!(dir.path().join("g.fa.fai").is_file());
    check_regions(&path); // second open reads the index
}

#[test]
fn bgzip_fasta_builds_fai_and_gzi() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.fa.gz");
    write_bgzip(&path, &fasta_text(70));
    check_regions(&path);
    assert!(dir.path().join("g.fa.gz.gzi").is_file());
    // The same BGZF file streams through the sequential reader as well.
    let records = dnalm_seq::fastx::read_all(&path).unwrap();
    let want = genome();
    assert_eq!(records.len(), want.len());
    for (r, (name, seq)) in records.iter().zip(&want) {
        assert_eq!(&r.name, name);
        assert_eq!(r.sequence, seq.to_ascii_uppercase());
    }
}

#[test]
fn stale_index_and_plain_gzip_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.fa");
    std::fs::write(&path, fasta_text(60)).unwrap();
    IndexedFasta::open(&path).unwrap();
    // The FASTA is rewritten with another line width: the old index no longer fits.
    std::fs::write(&path, fasta_text(50)).unwrap();
    let err = IndexedFasta::open(&path).err().unwrap();
    assert!(matches!(err, SeqError::IndexMismatch { .. }), "{err}");

    let gz = dir.path().join("p.fa.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&fasta_text(60)).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let err = IndexedFasta::open(&gz).err().unwrap().to_string();
    assert!(err.contains("not bgzip"), "{err}");
}

/// Issue 14, defect 9: a FASTA that ends with blank lines (the bundled lambda genome does)
/// indexes and fetches, plain and bgzip, with every offset unchanged; a blank line inside a
/// record is still refused, as samtools refuses it.
#[test]
fn trailing_blank_lines_are_allowed_and_inner_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    for trailing in ["\n", "\n\n\n", "\r\n"] {
        let path = dir.path().join("g.fa");
        let _ = std::fs::remove_file(dir.path().join("g.fa.fai"));
        let mut text = fasta_text(70);
        text.extend_from_slice(trailing.as_bytes());
        std::fs::write(&path, &text).unwrap();
        check_regions(&path);
        let gz = dir.path().join("g.fa.gz");
        let _ = std::fs::remove_file(dir.path().join("g.fa.gz.fai"));
        let _ = std::fs::remove_file(dir.path().join("g.fa.gz.gzi"));
        write_bgzip(&gz, &text);
        check_regions(&gz);
    }
    let bundled =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/lambda_phage.fa");
    let copy = dir.path().join("lambda.fa");
    std::fs::copy(bundled, &copy).unwrap();
    let mut fasta = IndexedFasta::open(&copy).unwrap();
    let lambda = &fasta.sequences()[0];
    assert_eq!(lambda.length, 48_502);
    let region: GenomicRegion = format!("{}:48441-48502", lambda.name).parse().unwrap();
    assert_eq!(fasta.fetch(&region).unwrap().sequence.len(), 62);

    let inner = dir.path().join("inner.fa");
    let mut text = fasta_text(70);
    let at = text.iter().position(|&b| b == b'\n').unwrap() + 71;
    text.insert(at, b'\n');
    std::fs::write(&inner, &text).unwrap();
    assert!(IndexedFasta::open(&inner).is_err());
}

/// Issue 14, defect 2: a corrupt `.gzi` (two entries' compressed offsets swapped, an offset
/// moved off a block start or past the file) is refused in one line instead of giving bases
/// from another position.
#[test]
fn a_corrupt_gzi_is_refused_not_read_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.fa.gz");
    write_bgzip(&path, &fasta_text(70));
    check_regions(&path);
    let gzi = dir.path().join("g.fa.gz.gzi");
    let good = std::fs::read(&gzi).unwrap();
    // Layout: u64 count, then (compressed, uncompressed) u64 pairs.
    fn compressed_at(i: usize) -> std::ops::Range<usize> {
        8 + 16 * i..16 + 16 * i
    }
    fn swap_two(b: &mut [u8]) {
        let (x, y) = (compressed_at(1), compressed_at(2));
        let first = b[x.clone()].to_vec();
        let second = b[y.clone()].to_vec();
        b[x].copy_from_slice(&second);
        b[y].copy_from_slice(&first);
    }
    fn off_block(b: &mut [u8]) {
        let x = compressed_at(0);
        let v = u64::from_le_bytes(b[x.clone()].try_into().unwrap()) + 1;
        b[x].copy_from_slice(&v.to_le_bytes());
    }
    fn past_end(b: &mut [u8]) {
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        b[compressed_at(n - 1)].copy_from_slice(&u64::MAX.to_le_bytes());
    }
    type Corruption = fn(&mut [u8]);
    let cases: [(&str, Corruption); 3] = [
        ("does not follow", swap_two),
        ("not the start of a BGZF block", off_block),
        ("beyond the file", past_end),
    ];
    for (needle, corrupt) in cases {
        let mut bytes = good.clone();
        corrupt(&mut bytes);
        std::fs::write(&gzi, &bytes).unwrap();
        let err = IndexedFasta::open(&path).err().unwrap().to_string();
        assert!(
            err.contains(needle) && err.contains(".gzi"),
            "{needle}: {err}"
        );
    }
    std::fs::remove_file(&gzi).unwrap();
    check_regions(&path);
}
