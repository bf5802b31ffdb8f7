//! dnalm's DNA merge encoder gives exactly the ids and offsets of Hugging Face `tokenizers` on
//! the real BPE vocabularies (DNABERT-2's, and the E. coli one bundled in `data/`) over real
//! genome windows, with N runs and lengths of every size (issue 15: BPE speed, ids identical).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use dnalm_tokenize::{AnyTokenizer, Tokenizer};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The bundled phage genome, normalised, in one piece.
fn lambda() -> Vec<u8> {
    let records = dnalm_seq::fastx::read_all(root().join("data/lambda_phage.fa")).unwrap();
    records.into_iter().next().unwrap().sequence
}

fn check(dir: &Path) {
    let AnyTokenizer::Bpe(tok) = AnyTokenizer::load(dir).unwrap() else {
        panic!("{}: not BPE", dir.display());
    };
    assert!(tok.has_fast_encoder(), "{}", dir.display());
    let mut reference = tok.hf().clone();
    reference.with_normalizer(None::<tokenizers::NormalizerWrapper>);
    reference.with_post_processor(None::<tokenizers::PostProcessorWrapper>);
    let genome = lambda();
    let mut x = 5u64;
    let mut next = |n: usize| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as usize % n
    };
    let mut windows = 0;
    for len in [1usize, 2, 3, 5, 17, 100, 1000, 5000] {
        for _ in 0..40 {
            let start = next(genome.len() - len);
            let mut seq = genome[start..start + len].to_vec();
            // Some windows get N runs (unknown to DNABERT-2's vocabulary).
            if next(3) == 0 {
                let at = next(len);
                for b in seq.iter_mut().skip(at).take(1 + next(4)) {
                    *b = b'N';
                }
            }
            let (mut ids, mut offsets) = (Vec::new(), Vec::new());
            tok.tokenize_into(&seq, &mut ids, Some(&mut offsets));
            let text = String::from_utf8(seq).unwrap();
            let want = reference.encode(text.as_str(), false).unwrap();
            assert_eq!(ids, want.get_ids(), "{}: {text}", dir.display());
            assert_eq!(offsets, want.get_offsets(), "{}: {text}", dir.display());
            windows += 1;
        }
    }
    // The whole genome in one piece too.
    let mut ids = Vec::new();
    tok.tokenize_into(&genome, &mut ids, None);
    let text = String::from_utf8(genome).unwrap();
    assert_eq!(
        ids,
        reference.encode(text.as_str(), false).unwrap().get_ids()
    );
    assert_eq!(windows, 320);
}

#[test]
fn dnabert2_tokenizer_ids_equal_tokenizers() {
    check(&root().join("crates/dnalm-eval/tests/golden/dnabert2/checkpoint"));
}

#[test]
fn bundled_ecoli_bpe_ids_equal_tokenizers() {
    check(&root().join("data/tokenizers/ecoli_bpe4096"));
}
