#!/usr/bin/env bash
# Every test of dnalm, on a fresh machine too: formatting, lints, Rust unit/integration/doc tests,
# the Python package (built into .venv with maturin, tested with pytest against the CLI),
# the Snakemake workflow that shards genome labelling (2 shards merged = the unsharded run),
# then the Python parity checks (installing `tokenizers` and scikit-learn into .venv first):
# Hugging Face tokenizers, and the k-mer spectrum baseline against scikit-learn on every bundled
# task (within 0.02 MCC).
set -euo pipefail
cd "$(dirname "$0")/.."
# Where the time goes (CI's budget is 30 minutes): one stderr line after each stage.
stage() { echo "[test.sh] $1 done at $SECONDS s" >&2; }
# A CI run builds from scratch once: incremental compilation's bookkeeping only costs time there.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
cargo fmt --all -- --check
# Lints with the GPU feature on, so CI builds (type-checks) the Vulkan path too: it needs no GPU,
# and burn's CUDA path cannot build here (README, "GPU").
cargo clippy --workspace --all-targets --locked --features dnalm-cli/vulkan -- -D warnings
stage lints
cargo test --workspace --locked
stage "Rust tests"
# The CLI binary those tests ran (built for dnalm-cli's integration tests): the steps below use
# it as it is, since `cargo build -p dnalm-cli` resolves features differently and would rebuild
# burn and every dnalm crate (about 150 s on two cores).
export DNALM_BIN="$PWD/target/debug/dnalm"
bash scripts/setup-python.sh
stage "Python setup"
# The `dnalm` Python package, installed from this checkout into .venv with pip (maturin's build
# backend; a dev-profile build, so it reuses most of what `cargo test` just built), then its
# tests, which compare it with the CLI.
PATH="$PWD/.venv/bin:$PATH" MATURIN_PEP517_ARGS="--profile dev --locked" \
  .venv/bin/pip install -q --disable-pip-version-check --no-build-isolation --force-reinstall \
  --no-deps ./python
stage "Python package build"
.venv/bin/python -m pytest -q python/tests
.venv/bin/python scripts/hf_parity.py --check crates/dnalm-tokenize/tests/golden
stage "pytest and tokenizer parity"
# The sharded labelling workflow (Snakemake, 2 shards, bundled lambda genome) = one whole run.
bash scripts/workflow_check.sh
stage "workflow check"
# One fit per task is enough for parity (the headline is the full-data fit; refits only give its sd).
"$DNALM_BIN" bench --suite data/tasks --baselines kmer --folds 1 \
  --output target/baseline-parity >/dev/null
.venv/bin/python scripts/baseline_parity.py --suite data/tasks \
  --results target/baseline-parity/results.json
stage "baseline parity"
