#!/usr/bin/env bash
# LoRA against full fine-tuning of the same checkpoint (issue 17, item 1):
#   1. speed and memory: `dnalm finetune` on pub_coding (152-token rows, batch 32, random head,
#      BENCH_STEPS steps, no validation), full and `--lora` alternating over BENCH_REPEATS rounds
#      (the VM drifts by +-20%): training tokens/s (median), peak resident memory (GNU time,
#      median), trainable parameters;
#   2. quality: each bundled task in TASKS with every default (LP-FT head, size-scaled rate,
#      early stopping on valid MCC), MAX_STEPS steps, SEEDS seeds: test MCC mean +- sd and wall time.
#
#   bash scripts/bench_lora.sh CHECKPOINT   # e.g. a checkpoint of configs/mlm.toml's model
#
# LORA (default `r=8,alpha=16,targets=q,v`) is what `--lora` gets; QUALITY_ARGS are added to both
# sides' quality runs (e.g. `--head random`); TASKS="" skips the quality part.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: scripts/bench_lora.sh CHECKPOINT}
repeats=${BENCH_REPEATS:-3}
steps=${BENCH_STEPS:-30}
max_steps=${MAX_STEPS:-300}
seeds=${SEEDS:-3}
tasks=${TASKS:-"pub_coding pub_gc_species2"}
lora=${LORA:-r=8,alpha=16,targets=q,v}
read -r -a quality_args <<<"${QUALITY_ARGS:-}"
cargo build -q --release -p dnalm-cli
bin=target/release/dnalm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One fine-tuning run: prints "tokens/s peak-KiB trainable parameters".
speed() {
  rm -rf "$work/ft"
  /usr/bin/time -f "%M" -o "$work/rss" "$bin" finetune -m "$model" -t data/tasks/pub_coding \
    -o "$work/ft" --head random --lr 5e-4 --max-steps "$steps" --epochs 1 --eval-every 100000 \
    "$@" 2>/dev/null >"$work/report.json"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))
print(r["tokens_per_second"][0], open(sys.argv[2]).read().split()[-1], r["trainable_parameters"], r["parameters"])' \
    "$work/report.json" "$work/rss"
}
for round in $(seq "$repeats"); do
  full=$(speed)
  adapted=$(speed --lora "$lora")
  echo "round $round: full $full | lora $adapted" >&2
  echo "$full $adapted" >>"$work/rounds"
done
python3 - "$work/rounds" "$lora" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
med = lambda i: statistics.median(r[i] for r in rows)
print(f"| {len(rows)} alternating rounds, {sys.argv[2]} | trainable parameters (encoder of {med(3):,.0f} + head) | tokens/s (median) | peak memory (median) |")
print("|---|---|---|---|")
print(f"| full fine-tuning | {med(2):,.0f} | {med(0):,.0f} | {med(1) / 1024:,.0f} MiB |")
print(f"| LoRA | {med(6):,.0f} ({100 * med(6) / med(7):.1f}%) | {med(4):,.0f} ({med(4) / med(0):.2f}x) | {med(5) / 1024:,.0f} MiB |")
PY

echo
echo "| task | method | test MCC (mean ± sd, $seeds seeds) | kept steps | seconds |"
echo "|---|---|---|---|---|"
for task in $tasks; do
  for method in full lora; do
    extra=()
    [ "$method" = lora ] && extra=(--lora "$lora")
    rm -rf "$work/q"
    start=$(date +%s)
    "$bin" finetune -m "$model" -t "data/tasks/$task" -o "$work/q" --max-steps "$max_steps" \
      --seeds "$seeds" "${extra[@]}" "${quality_args[@]}" 2>/dev/null >"$work/q.json"
    took=$(($(date +%s) - start))
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); s=r["summary"]["mcc"]
print("| %s | %s (lr %.1e) | %.3f ± %.3f | %s | %s |" % (sys.argv[2], sys.argv[3], r["lr"], s["mean"], s["sd"], r["best_steps"], sys.argv[4]))' \
      "$work/q.json" "$task" "$method" "$took"
  done
done
