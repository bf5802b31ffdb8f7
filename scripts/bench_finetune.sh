#!/usr/bin/env bash
# Fine-tuning throughput against pretraining throughput for the same model and sequence length:
# training tokens/s (forward + backward + update) of `dnalm finetune` on pub_coding (150-base
# rows, 152 tokens with [CLS]/[SEP], batch 32) vs `dnalm pretrain` with configs/mlm.toml's model
# on 150-base windows, batch 32. Both run the release binary on the same machine, alternating
# BENCH_REPEATS times (default 3; the VM drifts by +-20%), and the medians are compared.
#
#   bash scripts/bench_finetune.sh CHECKPOINT   # a checkpoint of configs/mlm.toml's model
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: scripts/bench_finetune.sh CHECKPOINT}
repeats=${BENCH_REPEATS:-3}
steps=${BENCH_STEPS:-30}
cargo build -q --release -p dnalm-cli
bin=target/release/dnalm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for round in $(seq "$repeats"); do
  rm -rf "$work/pre" "$work/ft"
  "$bin" pretrain -c configs/mlm.toml -o "$work/pre" --set data.context=150 \
    --set train.batch_size=32 --set train.steps="$steps" --set train.eval_every=100000 \
    --set train.save_every=100000 >/dev/null 2>&1
  # Median over the steps after the first 5 (allocator and caches warm).
  pre=$(python3 -c 'import json,statistics,sys
rows=[json.loads(l) for l in open(sys.argv[1]) if "\"train\"" in l]
print(statistics.median(r["tokens_per_s"] for r in rows[5:]))' "$work/pre/metrics.jsonl")
  ft=$("$bin" finetune -m "$model" -t data/tasks/pub_coding -o "$work/ft" --head random \
    --lr 5e-4 --max-steps "$steps" --epochs 1 --eval-every 100000 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_second"][0])')
  echo "round $round: pretrain $pre tokens/s, finetune $ft tokens/s" >&2
  echo "$pre $ft" >> "$work/rounds"
done
python3 - "$work/rounds" <<'PY'
import statistics, sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
pre = statistics.median(r[0] for r in rows)
ft = statistics.median(r[1] for r in rows)
per = sorted(f / p for p, f in rows)
print(f"| {len(rows)} alternating rounds | pretrain tokens/s (median) | finetune tokens/s (median) | ratio | per-round ratios |")
print("|---|---|---|---|---|")
print(f"| 4 layers, d = 256, 152 tokens x 32 rows | {pre:,.0f} | {ft:,.0f} | {ft / pre:.2f}x | {per[0]:.2f}-{per[-1]:.2f}x |")
PY
