#!/usr/bin/env bash
# Every test of dnalm, on a fresh machine too: formatting, lints, Rust unit/integration/doc tests,
# then the Hugging Face parity check (installs Python `tokenizers` into .venv first).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
bash scripts/setup-python.sh
.venv/bin/python scripts/hf_parity.py --check crates/dnalm-tokenize/tests/golden
