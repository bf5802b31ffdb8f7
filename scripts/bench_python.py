#!/usr/bin/env python3
"""Python `tokenizers` on the same workloads as dnalm's foundation benchmark, in the same run.

Reads target/bench/foundation.json (written by `cargo bench --bench foundation`), encodes the same
1 kb windows of the bundled E. coli genome with the tokenizer.json files dnalm saved there, checks
that both produce the same number of tokens, and prints a markdown table of throughputs and ratios.

Python runs at its best: one thread (as dnalm does), `encode_batch` (sequential, no per-call
Python overhead per window), and the tokenizer's normalizer removed (the input is already
normalised; dnalm's fast path skips it too). For overlapping k-mers, `tokenizers` cannot split the
sequence itself: the DNABERT convention is to pass space-separated k-mers; the split is done
before the timer, and its own cost is reported on a separate line.
"""
import gzip
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
from tokenizers import Tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 1000


def best_of(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def read_genome():
    lines = gzip.open(ROOT / "data/ecoli_MG1655.fa.gz", "rt").read().split("\n")
    return "".join(l for l in lines if l and not l.startswith(">")).upper()


def main():
    rust = {r["name"]: r for r in json.load(open(sys.argv[1] if len(sys.argv) > 1 else ROOT / "target/bench/foundation.json"))}
    raw = gzip.open(ROOT / "data/ecoli_MG1655.fa.gz", "rb").read()
    t_parse = best_of(lambda: "".join(l for l in raw.decode().split("\n") if not l.startswith(">")), 5)
    genome = read_genome()
    windows = [genome[i : i + WINDOW] for i in range(0, len(genome), WINDOW)]
    bases = len(genome)
    rows = []
    rows.append(("FASTA parse, plain, in memory", rust["parse_plain"]["mb_per_s"], None,
                 len(raw) / t_parse / 1e6, "pure-Python split+join (no validation)"))
    rows.append(("FASTA parse, gzip, in memory", rust["parse_gzip"]["mb_per_s"], None, None, "decompression included"))
    failures = 0
    for name, label in [("nucleotide", "1-nt"), ("kmer6_overlapping", "6-mer overlapping"),
                        ("kmer6_non_overlapping", "6-mer non-overlapping"), ("bpe4096", "BPE (vocab 4096)")]:
        r = rust[name]
        tok = Tokenizer.from_file(str(Path(r["tokenizer_dir"]) / "tokenizer.json"))
        tok.normalizer = None
        inputs = windows
        note = ""
        if name == "kmer6_overlapping":
            split = lambda: [" ".join(w[i : i + 6] for i in range(len(w) - 5)) for w in windows]
            t_split = best_of(split, 3)
            inputs = split()
            note = f"input pre-split into k-mers; the split alone: {bases / t_split / 1e6:.1f} MB/s"
        repeats = 3 if name == "bpe4096" else 5
        out = []
        t = best_of(lambda: out.append(tok.encode_batch(inputs, add_special_tokens=False)), repeats)
        n_tokens = sum(len(e.ids) for e in out[-1])
        if n_tokens != r["tokens"]:
            failures += 1
            note += f" MISMATCH: python {n_tokens} tokens, dnalm {r['tokens']}"
        rows.append((f"tokenize {label}", r["ids_mb_per_s"], r["offsets_mb_per_s"], bases / t / 1e6, note.strip()))
    print(f"| workload (E. coli MG1655, {bases / 1e6:.2f} Mb, 1 thread) | dnalm MB/s (ids) | dnalm MB/s (ids+offsets) | Python tokenizers MB/s | ratio (ids+offsets / Python) | note |")
    print("|---|---|---|---|---|---|")
    for label, ids, offs, py, note in rows:
        ratio = (offs if offs is not None else ids) / py if py else None
        fmt = lambda x: "-" if x is None else f"{x:,.1f}"
        print(f"| {label} | {fmt(ids)} | {fmt(offs)} | {fmt(py)} | {'-' if ratio is None else f'{ratio:.2f}x'} | {note} |")
    print(f"\nBPE training (vocab 4096, whole genome): {rust['bpe4096_train']['seconds']:.1f} s")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
