#!/usr/bin/env bash
# The largest context that trains on this machine: one small encoder (2 layers, d = 128, 4 heads,
# single-nucleotide tokens, batch 1, MLM) trained for 3 steps at each context length; prints peak
# resident memory (GNU time) and seconds per step. Usage: scripts/long_context.sh [LENGTHS...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p dnalm-cli
lengths=${*:-2048 4096 8192 16384}
printf '| context (bases) | tokens | peak RSS (GiB) | s/step | status |\n|---|---|---|---|---|\n'
for L in $lengths; do
  out=$(mktemp -d)
  if /usr/bin/time -f '%M' -o "$out/rss" target/release/dnalm pretrain -c configs/mlm.toml -o "$out/run" \
      --set data.context="$L" --set data.split_block=200000 --set data.valid_fraction=0.1 \
      --set model.n_layers=2 --set model.d_model=128 --set model.n_heads=4 --set model.d_ffn=512 \
      --set train.batch_size=1 --set train.steps=3 --set train.eval_every=3 --set train.eval_batches=1 \
      --set train.save_every=3 --set optim.warmup_steps=1 >/dev/null 2>"$out/log"; then
    status=ok
  elif grep -q 'signal 9' "$out/rss" 2>/dev/null; then
    status="killed (out of memory)"
  else
    status="failed: $(tail -1 "$out/log")"
  fi
  rss=$(grep -E '^[0-9]+$' "$out/rss" 2>/dev/null | tail -1 | awk '{printf "%.2f", $1/1048576}')
  sps=$(python3 -c "import json,sys; r=[json.loads(l) for l in open('$out/run/metrics.jsonl') if '\"train\"' in l]; print(f'{sum(x[\"elapsed_s\"]-p for x,p in zip(r[1:],[y[\"elapsed_s\"] for y in r[:-1]]))/max(len(r)-1,1):.1f}')" 2>/dev/null || echo "?")
  printf '| %s | %s | %s | %s | %s |\n' "$L" "$((L + 2))" "$rss" "$sps" "$status"
  rm -rf "$out"
done
