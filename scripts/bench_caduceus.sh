#!/usr/bin/env bash
# Caduceus training and inference throughput (issue 16): dnalm's Caduceus model against a PyTorch
# implementation of the same model with Mamba's own CPU scan (scripts/bench_caduceus.py), and
# against dnalm's fused attention encoder of the same parameter count, at batch 1 and growing
# context. Each measurement runs in its own process, with its peak resident memory (GNU time).
#
#   LENGTHS="1024 8192 32768"   contexts in tokens
#   ENCODER_MAX=8192            longest context the attention encoder is measured at
#   TORCH_MAX=8192              longest context the PyTorch peer is measured at (its scan is a
#                               Python loop over positions: minutes per step beyond)
#   PLAIN_MAX=32768             longest context Caduceus trains at keeping every intermediate
#                               (131 k tokens would need about 43 GiB)
#   RECOMPUTE_FROM=32768        from this context on, Caduceus is also measured with activation
#                               checkpointing (BENCH_RECOMPUTE=1: blocks recomputed; freed memory
#                               returned to the kernel, as `dnalm pretrain` does; BENCH_RETAIN=1
#                               keeps it, as `--keep-freed-memory` does)
#   REPEATS=1                   rounds; the sides alternate inside a round, medians reported
#   BENCH_STEPS=2               timed steps per run (after one warm-up step)
#   CADUCEUS_LAYERS=6           Caduceus depth at d = 256 (6 layers: 2.9 M parameters, the
#                               4-layer d = 256 encoder has 3.2 M)
#   BENCH_RC=1                  reverse-complement equivariant (Caduceus-PS); 0: Caduceus-Ph
#
# Prints one JSON line per run, then a table of medians.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-torch.sh
threads=${BENCH_THREADS:-$(nproc)}
export BENCH_THREADS=$threads RAYON_NUM_THREADS=$threads BENCH_BATCH=1
export BENCH_STEPS=${BENCH_STEPS:-2} BENCH_CHUNK=${BENCH_CHUNK:-1024} BENCH_RC=${BENCH_RC:-1}
lengths=${LENGTHS:-"1024 8192 32768"}
encoder_max=${ENCODER_MAX:-8192}
torch_max=${TORCH_MAX:-8192}
plain_max=${PLAIN_MAX:-32768}
recompute_from=${RECOMPUTE_FROM:-32768}
repeats=${REPEATS:-1}
layers=${CADUCEUS_LAYERS:-6}
source scripts/bench_measure.sh
for _ in $(seq "$repeats"); do
  for len in $lengths; do
    export BENCH_SEQ=$len
    if [ "$len" -le "$plain_max" ]; then
      BENCH_ARCH=caduceus BENCH_LAYERS=$layers measure "dnalm caduceus" "$bench"
    fi
    if [ "$len" -ge "$recompute_from" ]; then
      BENCH_ARCH=caduceus BENCH_LAYERS=$layers BENCH_RECOMPUTE=1 measure "dnalm caduceus, recomputed" "$bench"
    fi
    if [ "$len" -le "$torch_max" ]; then
      BENCH_LAYERS=$layers measure "pytorch caduceus" .venv-torch/bin/python scripts/bench_caduceus.py
    fi
    if [ "$len" -le "$encoder_max" ]; then
      BENCH_ARCH=encoder BENCH_LAYERS=4 measure "dnalm encoder" "$bench"
    fi
  done
done
python3 - "$runs" <<'PY'
import json, statistics, sys
from collections import defaultdict
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for r in rows:
    if "failed" in r:
        print(f"{r['side']} at {r['seq']:,} tokens failed: {r['failed']}")
rows = [r for r in rows if "failed" not in r]
by = defaultdict(list)
for r in rows:
    by[(r["side"], r["seq"])].append(r)
print(f"{'side':<28} {'seq':>7} {'params':>9} {'train tok/s':>12} {'infer tok/s':>12} {'peak RSS':>9}")
for (side, seq), rs in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    med = lambda k: statistics.median(r[k] for r in rs)
    print(f"{side:<28} {seq:>7} {rs[0]['parameters']:>9} {med('train_tokens_per_s'):>12.1f} {med('infer_tokens_per_s'):>12.1f} {med('peak_rss_mib')/1024:>8.2f}G")
PY
rm -f "$runs"
