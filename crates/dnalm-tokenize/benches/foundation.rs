//! Foundation throughput benchmark on the bundled E. coli genome (4.64 Mb).
//!
//! Measures FASTA parsing and tokenization, each the best of several repeats on one thread, and
//! writes `target/bench/foundation.json` for `scripts/bench.sh`, which runs Python `tokenizers`
//! on the same input in the same run and prints the ratios.
//!
//! Workloads (all on one core):
//! - `parse_plain`: FASTA bytes already in memory (decompressed) -> normalised records;
//! - `parse_gzip`: the same from the gzip file in memory (decompression included);
//! - `nucleotide`, `kmer6_overlapping`, `kmer6_non_overlapping`, `bpe4096`: the genome cut into
//!   1 kb windows (4,640 windows, the size of model inputs), each tokenised; `ids` = ids only,
//!   `offsets` = ids and offsets (what Python `tokenizers` always computes).

use std::{
    fs,
    hint::black_box,
    io::{Cursor, Read},
    path::{Path, PathBuf},
    time::Instant,
};

use dnalm_seq::{FastxReader, SequenceRecord};
use dnalm_tokenize::{
    AnyTokenizer, BpeTokenizer, BpeTrainOptions, Template, Tokenizer, TokenizerKind,
};

/// The allocator of the `dnalm` binary, so that the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REPEATS: usize = 7;
const WINDOW: usize = 1000;

fn best_of<F: FnMut()>(mut f: F) -> f64 {
    (0..REPEATS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let gz_path = root.join("data/ecoli_MG1655.fa.gz");
    let gz = fs::read(&gz_path).expect("bundled genome");
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .read_to_end(&mut plain)
        .expect("gzip");

    // One record buffer for every run, as `read_record` reuses it across the records of a file.
    let mut rec = SequenceRecord::default();
    let mut parse = |bytes: Vec<u8>| {
        let mut r =
            FastxReader::from_reader(Box::new(Cursor::new(bytes)), "bench.fa").expect("reader");
        let mut n = 0;
        while r.read_record(&mut rec).expect("record") {
            n += rec.len();
        }
        n
    };
    let t_plain = best_of(|| {
        black_box(parse(plain.clone()));
    });
    // (the clone is measured separately and subtracted: it is not parsing)
    let t_clone = best_of(|| {
        black_box(plain.clone());
    });
    let t_gz = best_of(|| {
        black_box(parse(gz.clone()));
    });
    let genome = FastxReader::from_path(&gz_path)
        .expect("genome")
        .records()
        .next()
        .expect("one record")
        .expect("valid")
        .sequence;
    let windows: Vec<&[u8]> = genome.chunks(WINDOW).collect();
    let bases = genome.len() as f64;
    let mb = |secs: f64, bytes: f64| bytes / secs / 1e6;

    let mut results = vec![
        serde_json::json!({"name": "parse_plain", "bytes": plain.len(), "seconds": t_plain - t_clone,
                           "mb_per_s": mb(t_plain - t_clone, plain.len() as f64)}),
        serde_json::json!({"name": "parse_gzip", "bytes": plain.len(), "seconds": t_gz,
                           "mb_per_s": mb(t_gz, plain.len() as f64)}),
    ];

    let bench_dir = root.join("target/bench");
    fs::create_dir_all(&bench_dir).expect("target/bench");
    let started = Instant::now();
    let bpe = BpeTokenizer::train(
        [genome.clone()],
        &BpeTrainOptions {
            vocab_size: 4096,
            ..Default::default()
        },
        Template::Bert,
    )
    .expect("BPE training");
    let bpe_train_seconds = started.elapsed().as_secs_f64();
    let tokenizers: Vec<(&str, AnyTokenizer)> = vec![
        (
            "nucleotide",
            AnyTokenizer::new(TokenizerKind::Nucleotide, Template::Bert).expect("nt"),
        ),
        (
            "kmer6_overlapping",
            AnyTokenizer::new(
                TokenizerKind::Kmer {
                    k: 6,
                    overlapping: true,
                },
                Template::Bert,
            )
            .expect("k6"),
        ),
        (
            "kmer6_non_overlapping",
            AnyTokenizer::new(
                TokenizerKind::Kmer {
                    k: 6,
                    overlapping: false,
                },
                Template::Bert,
            )
            .expect("k6n"),
        ),
        ("bpe4096", AnyTokenizer::Bpe(Box::new(bpe))),
    ];
    for (name, tok) in &tokenizers {
        let dir: PathBuf = bench_dir.join(format!("tokenizer_{name}"));
        tok.save(&dir).expect("save tokenizer");
        let mut ids = Vec::with_capacity(2 * WINDOW);
        let mut offsets = Vec::with_capacity(2 * WINDOW);
        let mut n_tokens = 0usize;
        let t_ids = best_of(|| {
            n_tokens = 0;
            for w in &windows {
                ids.clear();
                tok.tokenize_into(w, &mut ids, None);
                n_tokens += ids.len();
            }
            black_box(&ids);
        });
        let t_offsets = best_of(|| {
            for w in &windows {
                ids.clear();
                offsets.clear();
                tok.tokenize_into(w, &mut ids, Some(&mut offsets));
            }
            black_box(&offsets);
        });
        let t_whole = best_of(|| {
            ids.clear();
            tok.tokenize_into(
                &genome[..genome.len().min(if *name == "bpe4096" {
                    100_000
                } else {
                    usize::MAX
                })],
                &mut ids,
                None,
            );
            black_box(&ids);
        });
        let whole_bases = if *name == "bpe4096" { 100_000.0 } else { bases };
        results.push(serde_json::json!({
            "name": name, "tokens": n_tokens, "windows": windows.len(), "window": WINDOW,
            "ids_mb_per_s": mb(t_ids, bases), "offsets_mb_per_s": mb(t_offsets, bases),
            "whole_record_mb_per_s": mb(t_whole, whole_bases),
            "tokenizer_dir": dir,
        }));
    }
    results.push(
        serde_json::json!({"name": "bpe4096_train", "seconds": bpe_train_seconds, "bases": bases}),
    );

    println!(
        "dnalm foundation benchmark (best of {REPEATS}, one thread, E. coli MG1655 {:.2} Mb)",
        bases / 1e6
    );
    for r in &results {
        println!("{r}");
    }
    let out = bench_dir.join("foundation.json");
    fs::write(&out, serde_json::to_string_pretty(&results).expect("json")).expect("write results");
    println!("wrote {}", out.display());
}
