#!/usr/bin/env bash
# Peak memory of `dnalm embed` pooling one long record into one vector (issue 14, defect 7):
# pretrains a tiny model for a few steps, cuts the first BASES bases of the bundled E. coli genome
# into one FASTA record, embeds it (mean pooling) and prints /usr/bin/time's peak RSS.
# Usage: bash scripts/embed_memory.sh [BASES] (default 1000000). Uses the debug build, or the
# binary in $DNALM_BIN (an older build, to compare).
set -euo pipefail
cd "$(dirname "$0")/.."
bases=${1:-1000000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo build -q -p dnalm-cli
dnalm=${DNALM_BIN:-target/debug/dnalm}
$dnalm pretrain -c configs/mlm.toml -o "$out/run" --set train.steps=2 --set train.save_every=2 \
  --set train.eval_batches=1 --set train.batch_size=2 --set data.context=128 \
  --set model.n_layers=2 --set model.d_model=48 --set model.n_heads=3 --set model.d_ffn=64 \
  > /dev/null 2>&1
# `head` closes the pipe early; that is not a failure here.
{ echo ">first_${bases}_bases"; (set +o pipefail; zcat data/ecoli_MG1655.fa.gz | grep -v '>' \
  | tr -d '\n' | head -c "$bases"); echo; } > "$out/long.fa"
/usr/bin/time -f "embed of ${bases} bases into one vector: %e s, peak RSS %M KB" \
  $dnalm embed -m "$out/run/checkpoint-000002" -i "$out/long.fa" -o "$out/v.npy" 2>&1 | tail -1
