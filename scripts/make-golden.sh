#!/usr/bin/env bash
# Regenerates the tokenizer golden files: dnalm saves each tokenizer, Python `tokenizers`
# encodes the golden sequences with it. Run after changing a tokenizer's vocabulary or format.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-python.sh
G=crates/dnalm-tokenize/tests/golden
cargo build -q -p dnalm-cli
D=target/debug/dnalm
$D tokenizer export nucleotide --template causal -o $G/nucleotide
$D tokenizer export kmer:3 -o $G/kmer3_overlapping
$D tokenizer export kmer:6 -o $G/kmer6_overlapping
$D tokenizer export kmer:6:non-overlapping -o $G/kmer6_non_overlapping
$D tokenizer train-bpe data/lambda_phage.fa --vocab-size 512 -o $G/bpe512_lambda
.venv/bin/python scripts/hf_parity.py --write $G
