#!/usr/bin/env bash
# The main job on the bundled data, in a few minutes after the build: pretrain a small masked-LM
# encoder on the E. coli genome, evaluate it against the baselines (k-mer spectrum, one-hot CNN)
# and a random-init copy on the bundled task suite (coding vs intergenic, species by GC, and the
# long-range CTCF-orientation task), print the report, then score a variant region with the
# model. Outputs go to ./demo-out (or $DNALM_DEMO_OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p dnalm-cli
D=target/release/dnalm
OUT=${DNALM_DEMO_OUT:-demo-out}
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }

step "dnalm inspect: the bundled genome, its gene annotation and the task suite"
$D inspect data/ecoli_MG1655.fa.gz data/ecoli_MG1655.prodigal.gff3.gz data/tasks/*

step "dnalm pretrain: a 2-layer, d = 128 masked-LM encoder on 256-base windows of the genome (~2 min)"
rm -rf "$OUT/pretrain-mlm"
$D pretrain --config configs/mlm.toml --output "$OUT/pretrain-mlm" \
  --set train.steps=250 --set optim.warmup_steps=20 --set data.context=256 \
  --set model.n_layers=2 --set model.d_model=128 --set model.d_ffn=512 \
  --set train.eval_every=125 --set train.eval_batches=8 --set train.save_every=125 \
  --markov-baseline 6 --baseline-batches 50
CKPT=$(ls -d "$OUT"/pretrain-mlm/checkpoint-* | tail -n 1)

step "dnalm bench: the model vs a random-init copy vs the baselines on data/tasks (~7 min)"
$D bench --suite data/tasks -m "pretrained=$CKPT" -m "random:$CKPT" --seeds 1 -o "$OUT/bench" > /dev/null
cat "$OUT/bench/report.md"

step "dnalm score: pseudo-log-likelihood and in-silico mutagenesis around a CTCF site of the long-range task"
awk -F, 'NR==2{print ">ctcf_orientation_test_1 " $3; print substr($1,1,300)}' \
  data/tasks/ctcf_orientation/test.csv > "$OUT/ctcf_example.fa"
$D score likelihood -m "$CKPT" -i "$OUT/ctcf_example.fa"
$D score ism -m "$CKPT" -i "$OUT/ctcf_example.fa" --region 41-160 --flank 40 -o "$OUT/ism"

printf '\nDone. Report: %s/bench/report.md (plots in %s/bench/plots); ISM heatmap: %s/ism/ism.png\n' "$OUT" "$OUT" "$OUT"
