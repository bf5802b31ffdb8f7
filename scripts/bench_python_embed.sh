#!/usr/bin/env bash
# The Python package's embedding throughput against the CLI and against transformers + PyTorch
# (see scripts/bench_python_embed.py). Usage: bash scripts/bench_python_embed.sh CHECKPOINT
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-python.sh
bash scripts/setup-torch.sh
cargo build --release --locked -p dnalm-cli
(cd python && ../.venv/bin/maturin develop --release --locked -q)
.venv/bin/python scripts/bench_python_embed.py "$1"
