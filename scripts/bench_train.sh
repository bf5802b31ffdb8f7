#!/usr/bin/env bash
# Training and inference throughput of the small encoder: dnalm (burn Flex + the fused encoder
# layer) vs PyTorch + transformers, same shapes, fp32, same thread count, measured in one run.
# Installs PyTorch into .venv-torch (scripts/setup-torch.sh) on first use. Shapes: see BENCH_* in
# crates/dnalm-train/benches/train_throughput.rs.
#
# The two sides run in alternation BENCH_REPEATS times (default 5): on a shared VM the speed of
# both drifts by +-20% from minute to minute, so the script reports each round's ratio and the
# medians rather than one pair of numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-torch.sh
threads=${BENCH_THREADS:-$(nproc)}
repeats=${BENCH_REPEATS:-5}
export BENCH_THREADS=$threads RAYON_NUM_THREADS=$threads
cargo bench -q -p dnalm-train --bench train_throughput --no-run 2>/dev/null
runs=$(mktemp)
for _ in $(seq "$repeats"); do
  cargo bench -q -p dnalm-train --bench train_throughput 2>/dev/null | grep '^{' | tail -1 >> "$runs"
  .venv-torch/bin/python scripts/bench_train.py | tail -1 >> "$runs"
done
python3 - "$runs" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ours, peer = rows[0::2], rows[1::2]
print(json.dumps(ours[-1])); print(json.dumps(peer[-1]))
print(f"| {len(ours)} alternating runs, {ours[0]['threads']} threads | dnalm (median) | {peer[0]['impl']} (median) | ratio of medians | per-run ratios |")
print("|---|---|---|---|---|")
for key, label in (("train_tokens_per_s", "training tokens/s"), ("infer_tokens_per_s", "inference tokens/s")):
    a = statistics.median(r[key] for r in ours)
    b = statistics.median(r[key] for r in peer)
    per = sorted(o[key] / p[key] for o, p in zip(ours, peer))
    print(f"| {label} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x | {per[0]:.2f}-{per[-1]:.2f}x |")
PY
rm -f "$runs"
