#!/usr/bin/env python3
"""Writes the small suite fixtures under crates/dnalm-seq/tests/suites/, one per format dnalm reads.

Each fixture lays out a few rows exactly as its suite is distributed, so the loaders are tested
against the real layouts without shipping the suites:

- gue/                GUE (DNABERT-2): <group>/<task>/{train,dev,test}.csv, columns sequence,label
- nt/                 NT downstream tasks: <task>/{train,test}.parquet (sequence,name,label,task,
                      as InstaDeep's Hugging Face datasets now hold them) and the original
                      <task>/{train,test}.fna (>name|label headers)
- genomic_benchmarks/ <dataset>/{train,test}/<class>/<n>.txt, one sequence per file
- bend/               <task>/<task>.bed (chromosome start end strand split label, tab-separated)
                      over the bundled data/lambda_phage.fa; plus the three BEND task kinds dnalm
                      refuses (multi-label, per-base, variant effects), a row or two each

The sequences are rows of the bundled data/tasks/pub_coding task (E. coli coding vs intergenic
windows, see data/README.md) with their labels; the BEND rows are lambda windows labelled 1 when
their GC content is above the genome's. Run from the repository root with pyarrow installed:

    python3 scripts/make_suite_fixtures.py
"""

import csv
import gzip
import os
import random
import shutil

import pyarrow as pa
import pyarrow.parquet as pq

OUT = "crates/dnalm-seq/tests/suites"
SOURCE = "data/tasks/pub_coding"


def rows(split, n, rng):
    with open(os.path.join(SOURCE, f"{split}.csv")) as f:
        data = [(r["sequence"], int(r["label"])) for r in csv.DictReader(f)]
    by_label = {0: [r for r in data if r[1] == 0], 1: [r for r in data if r[1] == 1]}
    picked = rng.sample(by_label[0], n // 2) + rng.sample(by_label[1], n - n // 2)
    rng.shuffle(picked)
    return picked


def write_csv(path, header, records):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(records)


def main():
    rng = random.Random(0)
    shutil.rmtree(OUT, ignore_errors=True)
    train, valid, test = rows("train", 48, rng), rows("valid", 16, rng), rows("test", 16, rng)

    # GUE: nested group/task, dev is the validation split.
    for group, task in [("prom", "prom_300_all"), ("tf", "0")]:
        d = os.path.join(OUT, "gue", "GUE", group, task)
        for name, split in [("train", train), ("dev", valid), ("test", test)]:
            write_csv(os.path.join(d, f"{name}.csv"), ["sequence", "label"], split)

    # NT: the revised layout as Parquet, the original as FASTA (>name|label).
    for task, fmt in [("promoter_all", "parquet"), ("enhancers", "fna")]:
        d = os.path.join(OUT, "nt", task)
        os.makedirs(d, exist_ok=True)
        for name, split in [("train", train + valid), ("test", test)]:
            names = [f"{task}_{name}_{i}" for i in range(len(split))]
            if fmt == "parquet":
                table = pa.table(
                    {
                        "sequence": [s for s, _ in split],
                        "name": names,
                        "label": pa.array([l for _, l in split], pa.int64()),
                        "task": [task] * len(split),
                    }
                )
                pq.write_table(table, os.path.join(d, f"{name}.parquet"), compression="snappy")
            else:
                with open(os.path.join(d, f"{name}.fna"), "w") as f:
                    for n, (s, l) in zip(names, split):
                        f.write(f">{n}|{l}\n{s}\n")

    # Genomic Benchmarks: one file per sequence under its class folder.
    classes = ["negative", "positive"]
    for name, split in [("train", train + valid), ("test", test)]:
        for i, (s, l) in enumerate(split):
            d = os.path.join(OUT, "genomic_benchmarks", "demo_coding", name, classes[l])
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, f"{i}.txt"), "w") as f:
                f.write(s)

    # BEND over the lambda genome: 200 bp windows, label 1 when GC is above the genome's.
    with open("data/lambda_phage.fa") as f:
        lines = f.read().splitlines()
    chrom = lines[0][1:].split()[0]
    genome = "".join(lines[1:]).upper()
    gc_all = (genome.count("G") + genome.count("C")) / len(genome)
    windows = {0: [], 1: []}
    for start in range(0, len(genome) - 200, 200):
        w = genome[start : start + 200]
        windows[int((w.count("G") + w.count("C")) / len(w) > gc_all)].append((start, start + 200))
    rows_out = []
    for label in (0, 1):
        picked = rng.sample(windows[label], 40)
        for i, (s, e) in enumerate(picked):
            split = "train" if i < 28 else "valid" if i < 34 else "test"
            rows_out.append((s, e, split, label))
    rng.shuffle(rows_out)
    d = os.path.join(OUT, "bend")
    os.makedirs(os.path.join(d, "gc_windows"), exist_ok=True)
    with open(os.path.join(d, "gc_windows", "gc_windows.bed"), "w") as f:
        f.write("chromosome\tstart\tend\tstrand\tsplit\tlabel\n")
        for i, (s, e, split, l) in enumerate(rows_out):
            strand = "-" if i % 3 == 0 else "+"
            f.write(f"{chrom}\t{s}\t{e}\t{strand}\t{split}\t{l}\n")
    refused = os.path.join(OUT, "bend_refused")
    for task, header, row in [
        ("histone_modification", "chromosome\tstart\tend\tstrand\tsplit\tlabel", f"{chrom}\t0\t200\t+\ttrain\t3,7"),
        ("gene_finding", "chromosome\tstart\tend\tstrand\tsplit", f"{chrom}\t0\t200\t+\ttrain"),
        ("variant_effects", "chromosome\tstart\tend\tref\talt\tlabel", f"{chrom}\t100\t101\tA\tG\t1"),
    ]:
        os.makedirs(os.path.join(refused, task), exist_ok=True)
        with open(os.path.join(refused, task, f"{task}.bed"), "w") as f:
            f.write(f"{header}\n{row}\n")


if __name__ == "__main__":
    main()
