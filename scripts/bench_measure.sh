# Sourced by the long-context benches (scripts/bench_long_context.sh, scripts/bench_caduceus.sh):
# builds the throughput bench, sets $bench to its binary and $runs to a fresh results file, and
# defines `measure LABEL COMMAND...`, which runs one measurement in its own process and appends
# its JSON line, with the peak resident memory (GNU time) added, to $runs. A run that fails
# (killed for memory, say) is recorded as such and the others go on. Needs $BENCH_SEQ set.
cargo bench -q -p dnalm-train --bench train_throughput --no-run 2>/dev/null
bench=$(find target/release/deps -maxdepth 1 -type f -executable -name 'train_throughput-*' -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)
runs=$(mktemp)
measure() { # label, command...
  local label=$1; shift
  local mem; mem=$(mktemp)
  local line
  line=$(/usr/bin/time -f '%M' -o "$mem" "$@" 2>/dev/null | grep '^{' | tail -1) || true
  if [ -z "$line" ]; then
    echo "{\"side\": \"$label\", \"seq\": $BENCH_SEQ, \"failed\": \"$(tail -1 "$mem" 2>/dev/null | tr -d '"')\"}" | tee -a "$runs"
    rm -f "$mem"
    return
  fi
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["side"]=sys.argv[2]; r["peak_rss_mib"]=round(int(open(sys.argv[3]).read().split()[-1])/1024); print(json.dumps(r))' "$line" "$label" "$mem" | tee -a "$runs"
  rm -f "$mem"
}
