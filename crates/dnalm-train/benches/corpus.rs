//! The multi-genome corpus path at scale: a ≥ 2 Gb corpus generated from the bundled E. coli
//! genome with mutations, packed (`dnalm_seq::corpus::pack`, what `dnalm corpus pack` runs), then
//! sampled through the pretraining batch pipeline of `configs/mlm.toml` (windows drawn across
//! the memory-mapped pack, decoded, reverse-complemented, tokenized, masked, batched). Each
//! phase runs in its own process so that its peak resident memory (VmHWM) is its own. Run it
//! with `scripts/corpus_bench.sh`, which runs the three phases and prints the table.
//!
//! `CORPUS_MODE=generate|pack|sample`, `CORPUS_DIR` (work directory), `CORPUS_GB` (size of the
//! generated corpus, default 2.05), `CORPUS_SECONDS` (sampling time, default 60).
// A benchmark, like a test: a failure panics with its cause.
#![allow(clippy::unwrap_used)]

use std::{
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use dnalm_seq::{
    corpus::{corpus_genomes, pack, PackedCorpus},
    window::{whole_records, RandomWindows},
    FastxReader, SequenceRecord, SequenceStore,
};
use dnalm_train::{
    data::{BatchConfig, BatchPipeline, WindowSource},
    RunConfig,
};
use rand::{Rng, SeedableRng};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Peak and current resident memory of this process, in MiB (VmHWM, VmRSS).
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn main() {
    let mode = std::env::var("CORPUS_MODE").unwrap_or_default();
    let dir =
        PathBuf::from(std::env::var("CORPUS_DIR").unwrap_or_else(|_| "target/corpus-bench".into()));
    match mode.as_str() {
        "generate" => generate(&dir),
        "pack" => pack_phase(&dir),
        "sample" => sample(&dir),
        // `cargo bench` without a mode (e.g. `cargo bench --workspace`): nothing to do.
        _ => eprintln!("corpus bench: set CORPUS_MODE (scripts/corpus_bench.sh runs it)"),
    }
}

/// Mutated copies of E. coli (1% substitutions, 0.1% 1-3 base indels, a random rotation), one
/// FASTA file each, until the corpus holds `CORPUS_GB` gigabases.
fn generate(dir: &Path) {
    let gb: f64 = std::env::var("CORPUS_GB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.05);
    let genomes = dir.join("genomes");
    std::fs::create_dir_all(&genomes).unwrap();
    let mut reader = FastxReader::from_path(root().join("data/ecoli_MG1655.fa.gz")).unwrap();
    let mut record = SequenceRecord::default();
    reader.read_record(&mut record).unwrap();
    let source = record.sequence.clone();
    let t0 = Instant::now();
    let (mut total, mut i) = (0u64, 0u64);
    while (total as f64) < gb * 1e9 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i);
        let rotate = rng.random_range(0..source.len());
        let mut seq = Vec::with_capacity(source.len() + 1000);
        for &b in source[rotate..].iter().chain(&source[..rotate]) {
            let u: f64 = rng.random();
            if u < 0.01 {
                seq.push(b"ACGT"[rng.random_range(0..4)]);
            } else if u < 0.0105 {
                // deletion
            } else if u < 0.011 {
                seq.push(b);
                for _ in 0..rng.random_range(1..4) {
                    seq.push(b"ACGT"[rng.random_range(0..4)]);
                }
            } else {
                seq.push(b);
            }
        }
        let path = genomes.join(format!("ecoli_mut{i:04}.fa"));
        let mut w = BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(w, ">chr\tmutated E. coli copy {i}").unwrap();
        for line in seq.chunks(80) {
            w.write_all(line).unwrap();
            w.write_all(b"\n").unwrap();
        }
        w.flush().unwrap();
        total += seq.len() as u64;
        i += 1;
    }
    println!(
        "generated {i} genomes, {:.3} Gb in {:.0} s",
        total as f64 / 1e9,
        t0.elapsed().as_secs_f64()
    );
}

fn pack_phase(dir: &Path) {
    let genomes = corpus_genomes(&[dir.join("genomes")]).unwrap();
    let out = dir.join("corpus.dnapack");
    let t0 = Instant::now();
    let summary = pack(&genomes, &out, |_, _, _| {}).unwrap();
    let seconds = t0.elapsed().as_secs_f64();
    let (peak, _) = memory();
    let size = std::fs::metadata(&out).map_or(0, |m| m.len());
    println!(
        "pack: {} genomes, {} records, {:.3} Gb -> {:.0} MB in {:.0} s ({:.0} Mb/s); peak RSS {:.0} MiB; {} names renamed",
        summary.genomes,
        summary.records,
        summary.bases as f64 / 1e9,
        size as f64 / 1e6,
        seconds,
        summary.bases as f64 / 1e6 / seconds,
        peak,
        summary.renamed
    );
}

fn sample(dir: &Path) {
    let seconds: f64 = std::env::var("CORPUS_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60.0);
    let pack_path = dir.join("corpus.dnapack");
    let config = RunConfig::load(&root().join("configs/mlm.toml"))
        .unwrap()
        .with_overrides(&[format!("data.fasta={:?}", pack_path.display().to_string())])
        .unwrap();
    let run = config.resolve().unwrap();
    let t_open = Instant::now();
    let corpus = PackedCorpus::open(&pack_path).unwrap();
    let open_s = t_open.elapsed().as_secs_f64();
    let store = Arc::new(SequenceStore::Packed(corpus));
    let lengths = store.lengths();
    let cfg = &run.config;
    let objectives = cfg
        .objectives
        .iter()
        .map(|w| (w.objective.clone(), w.weight))
        .collect();
    let windows = RandomWindows::new(&whole_records(&lengths), cfg.data.context, cfg.seed).unwrap();
    let pipeline = BatchPipeline::new(
        store,
        Arc::new(run.tokenizer.clone()),
        objectives,
        WindowSource::Uniform(windows),
        BatchConfig {
            batch_size: cfg.train.batch_size,
            reverse_complement: cfg.data.reverse_complement,
            seed: cfg.seed,
        },
    )
    .unwrap();
    let t0 = Instant::now();
    let (mut batches, mut windows_done, mut tokens) = (0u64, 0u64, 0u64);
    while t0.elapsed().as_secs_f64() < seconds {
        let b = pipeline.batch(batches);
        windows_done += b.origins.len() as u64;
        tokens += b.padding_mask.iter().filter(|&&r| r).count() as u64;
        batches += 1;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (peak, now) = memory();
    println!(
        "sample: {} records over {:.3} Gb opened in {:.2} s; {windows_done} windows of {} bases in {elapsed:.0} s = {:.0} windows/s, {:.0} tokens/s (rows of a batch in parallel, as in training); peak RSS {peak:.0} MiB, RSS at the end {now:.0} MiB",
        lengths.len(),
        lengths.iter().sum::<usize>() as f64 / 1e9,
        open_s,
        cfg.data.context,
        windows_done as f64 / elapsed,
        tokens as f64 / elapsed,
    );
}
