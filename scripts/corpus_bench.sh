#!/usr/bin/env bash
# The multi-genome corpus at scale (README, "Multi-genome corpora"): generates a >= 2 Gb corpus
# of mutated E. coli copies under target/corpus-bench (not committed; ~2 GB of FASTA, ~0.5 GB
# packed), packs it, and samples pretraining batches from the memory-mapped pack, each phase in
# its own process, printing peak resident memory and throughput. Removes the corpus afterwards
# unless KEEP=1. CORPUS_GB and CORPUS_SECONDS override the size and the sampling time.
set -euo pipefail
cd "$(dirname "$0")/.."
export CORPUS_DIR="$PWD/target/corpus-bench"
cargo bench --locked -q -p dnalm-train --bench corpus --no-run 2>/dev/null
run() { CORPUS_MODE="$1" cargo bench --locked -q -p dnalm-train --bench corpus 2>/dev/null | grep -v '^$'; }
if [ ! -d "$CORPUS_DIR/genomes" ]; then run generate; fi
run pack
run sample
if [ "${KEEP:-0}" != 1 ]; then rm -rf "$CORPUS_DIR"; fi
