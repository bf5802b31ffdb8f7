#!/usr/bin/env bash
# The main job on the bundled demo data: builds dnalm, then inspects, tokenizes and samples the
# bundled E. coli genome and tasks, and pretrains a small masked-LM encoder on it. Outputs go to ./demo-out (or $DNALM_DEMO_OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p dnalm-cli
D=target/release/dnalm
OUT=${DNALM_DEMO_OUT:-demo-out}
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }

step "dnalm inspect: genome, annotation and the two bundled tasks"
$D inspect data/ecoli_MG1655.fa.gz data/ecoli_MG1655.prodigal.gff3.gz data/tasks/pub_coding data/tasks/pub_gc_species2

step "dnalm tokenize: overlapping 6-mers (DNABERT) over 1 kb windows; token ids to $OUT/ecoli.kmer6.jsonl"
$D tokenize data/ecoli_MG1655.fa.gz --tokenizer kmer:6 --window 1000 --out "$OUT/ecoli.kmer6.jsonl"

step "dnalm tokenize: non-overlapping 6-mers (Nucleotide Transformer)"
$D tokenize data/ecoli_MG1655.fa.gz --tokenizer kmer:6:non-overlapping --window 1000

step "dnalm tokenizer train-bpe: a DNABERT-2-style BPE vocabulary learnt from the genome"
$D tokenizer train-bpe data/ecoli_MG1655.fa.gz --vocab-size 4096 --out "$OUT/bpe4096"
$D tokenize data/tasks/pub_coding --tokenizer "$OUT/bpe4096"

step "dnalm sample: rarity-balanced 512 bp windows (CDS vs intergenic) from the train split"
$D sample data/ecoli_MG1655.fa.gz --annotations data/ecoli_MG1655.prodigal.gff3.gz \
  --length 512 --count 10000 --split block:100000 --out "$OUT/balanced_windows.bed"
step "dnalm pretrain: a small masked-LM encoder on the genome (configs/mlm.toml, shrunk to ~2 minutes)"
rm -rf "$OUT/pretrain-mlm"
$D pretrain --config configs/mlm.toml --output "$OUT/pretrain-mlm" \
  --set train.steps=40 --set optim.warmup_steps=5 --set data.context=256 \
  --set model.n_layers=2 --set model.d_model=128 --set model.d_ffn=512 \
  --set train.eval_every=20 --set train.eval_batches=4 --set train.save_every=20 \
  --markov-baseline 6 --baseline-batches 50
printf '\nDone. Outputs in %s/\n' "$OUT"
