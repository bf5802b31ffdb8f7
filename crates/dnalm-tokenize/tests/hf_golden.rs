//! dnalm's tokenizers against golden ids produced by Python `tokenizers` (scripts/hf_parity.py).
//!
//! For every tokenizer directory in `tests/golden/`: dnalm loads it, encodes each golden
//! sequence (after its alphabet policy) and must give exactly the ids (and, where the input is
//! the raw sequence, the offsets) that Python `tokenizers` gave for the same `tokenizer.json`.
//! For the built-in tokenizers, the committed `tokenizer.json` must also be what dnalm exports
//! today, so the golden files cannot drift from the code.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use dnalm_tokenize::{AnyTokenizer, Tokenizer, TokenizerKind};

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[derive(serde::Deserialize)]
struct Expected {
    sequences: Vec<String>,
    ids: Vec<Vec<u32>>,
    offsets: Vec<Vec<(usize, usize)>>,
}

#[test]
fn ids_match_python_tokenizers() {
    let mut checked = 0;
    for entry in std::fs::read_dir(golden()).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("expected.json").is_file() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let tok = AnyTokenizer::load(&dir).unwrap();
        let expected: Expected =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let overlapping = matches!(
            tok.kind(),
            TokenizerKind::Kmer {
                overlapping: true,
                ..
            }
        );
        for (i, raw) in expected.sequences.iter().enumerate() {
            let (seq, _) = dnalm_seq::alphabet::normalize(raw.as_bytes()).unwrap();
            let enc = tok.encode(&seq);
            assert_eq!(enc.ids, expected.ids[i], "{name}: sequence {}", i + 1);
            if !overlapping {
                assert_eq!(
                    enc.offsets,
                    expected.offsets[i],
                    "{name}: offsets of sequence {}",
                    i + 1
                );
            }
            checked += 1;
        }
        if tok.kind() != TokenizerKind::Bpe {
            let fresh = AnyTokenizer::new(tok.kind(), tok.template()).unwrap();
            let now: serde_json::Value =
                serde_json::from_str(&fresh.to_hf().unwrap().to_string(false).unwrap()).unwrap();
            let committed: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap())
                    .unwrap();
            assert_eq!(
                now, committed,
                "{name}: tokenizer.json differs from today's export; run scripts/make-golden.sh"
            );
        }
    }
    assert!(checked >= 50, "golden files missing: {checked} checks");
}
