#!/usr/bin/env bash
# Foundation benchmark: dnalm (Rust) and Python `tokenizers` on the same input, in the same run.
# Prints a markdown table (also written to target/bench/foundation.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-python.sh
export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
cargo bench -p dnalm-tokenize --bench foundation
.venv/bin/python scripts/bench_python.py target/bench/foundation.json | tee target/bench/foundation.md
