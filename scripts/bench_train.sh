#!/usr/bin/env bash
# Training and inference throughput of the small encoder: dnalm (burn Flex) vs PyTorch +
# transformers, same shapes, fp32, same thread count, measured in one run. Installs PyTorch into
# .venv-torch (scripts/setup-torch.sh) on first use. Shapes: see BENCH_* in
# crates/dnalm-train/benches/train_throughput.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-torch.sh
threads=${BENCH_THREADS:-$(nproc)}
export BENCH_THREADS=$threads RAYON_NUM_THREADS=$threads
cargo bench -q -p dnalm-train --bench train_throughput 2>/dev/null | grep '^{' > /tmp/dnalm-bench.json
.venv-torch/bin/python scripts/bench_train.py > /tmp/torch-bench.json
python3 - /tmp/dnalm-bench.json /tmp/torch-bench.json <<'PY'
import json, sys
ours, peer = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:3])
print(json.dumps(ours)); print(json.dumps(peer))
print(f"| | dnalm | {peer['impl']} | ratio |")
print("|---|---|---|---|")
for key, label in (("train_tokens_per_s", "training tokens/s"), ("infer_tokens_per_s", "inference tokens/s")):
    print(f"| {label} | {ours[key]:.0f} | {peer[key]:.0f} | {ours[key] / peer[key]:.2f}x |")
PY
