#!/usr/bin/env bash
# Long-context training throughput (issue 16): dnalm's Hyena model against dnalm's fused
# attention encoder of the same width, depth and feed-forward network, and against a PyTorch
# implementation of the same Hyena model (scripts/bench_hyena.py), at batch 1 and growing
# context. Each measurement runs in its own process, with its peak resident memory (GNU time).
#
#   LENGTHS="1024 8192 32768 131072"  contexts in tokens
#   ENCODER_MAX=8192                  longest context the attention encoder is measured at
#                                     (its step time grows with the square of the context)
#   PLAIN_MAX=32768                   longest context Hyena and PyTorch train at keeping every
#                                     intermediate (131 k tokens needs more than 24 GiB)
#   RECOMPUTE_FROM=32768              from this context on, Hyena is also measured with
#                                     activation checkpointing (BENCH_RECOMPUTE=1; freed memory
#                                     returned, as `dnalm pretrain` does; BENCH_RETAIN=1 keeps it)
#   REPEATS=3                         rounds; the sides alternate inside a round, medians reported
#   BENCH_STEPS=2                     timed steps per run (after one warm-up step)
#   BENCH_CHUNK=1024                  queries per attention chunk of the encoder (memory)
#
# Prints one JSON line per run, then a table of medians.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-torch.sh
threads=${BENCH_THREADS:-$(nproc)}
export BENCH_THREADS=$threads RAYON_NUM_THREADS=$threads BENCH_BATCH=1
export BENCH_STEPS=${BENCH_STEPS:-2} BENCH_CHUNK=${BENCH_CHUNK:-1024}
lengths=${LENGTHS:-"1024 8192 32768 131072"}
encoder_max=${ENCODER_MAX:-8192}
plain_max=${PLAIN_MAX:-32768}
recompute_from=${RECOMPUTE_FROM:-32768}
repeats=${REPEATS:-3}
source scripts/bench_measure.sh
for _ in $(seq "$repeats"); do
  for len in $lengths; do
    export BENCH_SEQ=$len
    if [ "$len" -le "$plain_max" ]; then
      BENCH_ARCH=hyena measure "dnalm hyena" "$bench"
      measure "pytorch hyena" .venv-torch/bin/python scripts/bench_hyena.py
    fi
    if [ "$len" -ge "$recompute_from" ]; then
      BENCH_ARCH=hyena BENCH_RECOMPUTE=1 measure "dnalm hyena, recomputed" "$bench"
    fi
    if [ "$len" -le "$encoder_max" ]; then
      BENCH_ARCH=encoder measure "dnalm encoder" "$bench"
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
    by[(r["seq"], r["side"])].append(r)
seqs = sorted({r["seq"] for r in rows})
print(f"| context (tokens) | dnalm Hyena train tok/s | PyTorch Hyena | ratio | dnalm encoder | Hyena / encoder | Hyena, blocks recomputed | peak RSS Hyena / PyTorch / encoder / recomputed (MiB) |")
print("|---|---|---|---|---|---|---|---|")
med = lambda side, s, k: statistics.median(r[k] for r in by[(s, side)]) if by[(s, side)] else None
for s in seqs:
    sides = ("dnalm hyena", "pytorch hyena", "dnalm encoder", "dnalm hyena, recomputed")
    h, p, e, r = (med(side, s, "train_tokens_per_s") for side in sides)
    mem = [med(side, s, "peak_rss_mib") for side in sides]
    fmt = lambda v: "—" if v is None else f"{v:,.0f}"
    ratio = lambda a, b: "—" if a is None or b is None else f"{a / b:.2f}x"
    print(f"| {s:,} | {fmt(h)} | {fmt(p)} | {ratio(h, p)} | {fmt(e)} | {ratio(h, e)} | {fmt(r)} | {' / '.join(fmt(m) for m in mem)} |")
PY
rm -f "$runs"
