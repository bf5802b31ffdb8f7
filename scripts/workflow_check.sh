#!/usr/bin/env bash
# The sharded-labelling workflow (workflows/label_genome.smk) run locally with Snakemake (from
# .venv, scripts/setup-python.sh) in 2 shards on the bundled lambda genome, checked byte for byte
# against one unsharded `dnalm label` run. The classifier is a seconds-long tiny model
# fine-tuned on the bundled GC task: the check is about sharding, not accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
# The binary the test command built (scripts/test.sh sets DNALM_BIN), or a fresh build.
if [ -n "${DNALM_BIN:-}" ]; then
  DNALM="$DNALM_BIN"
else
  cargo build --locked -q -p dnalm-cli
  DNALM="$PWD/target/debug/dnalm"
fi
WORK="$PWD/target/workflow-check"
rm -rf "$WORK"
mkdir -p "$WORK"
# Each step's output goes to a log, shown when the step fails.
quiet() {
  "$@" >"$WORK/step.log" 2>&1 || { cat "$WORK/step.log" >&2; exit 1; }
}
quiet "$DNALM" pretrain -c configs/mlm.toml -o "$WORK/pretrained" \
  --set data.fasta=\"data/lambda_phage.fa\" --set data.context=64 --set data.split_block=2000 \
  --set model.n_layers=1 --set model.d_model=16 --set model.n_heads=2 --set model.d_ffn=32 \
  --set train.batch_size=4 --set train.steps=2 --set train.eval_batches=1 \
  --set train.eval_every=2 --set train.save_every=2
quiet "$DNALM" finetune -m "$WORK/pretrained/checkpoint-000002" -t data/tasks/pub_gc_species2 \
  -o "$WORK/ft" --max-steps 20 --lr 3e-3
OPTIONS="--stride 150 --min-score 0 --element 0 --element 1 --batch 32"
# shellcheck disable=SC2086
quiet "$DNALM" label -m "$WORK/ft" "$PWD/data/lambda_phage.fa" $OPTIONS -o "$WORK/whole/labels"
.venv/bin/snakemake -s workflows/label_genome.smk --cores 2 --quiet all \
  --directory "$WORK" \
  --config model="$WORK/ft" genome="$PWD/data/lambda_phage.fa" outdir="$WORK/sharded" \
  shards=2 threads=1 dnalm="$DNALM" extra="$OPTIONS"
for f in predicted.bed pairs.csv task.json; do
  if ! cmp "$WORK/whole/labels/$f" "$WORK/sharded/labels/$f"; then
    echo "workflow check: $f of the 2-shard workflow differs from the unsharded run" >&2
    exit 1
  fi
done
echo "workflow check: 2 shards merged = unsharded run, byte for byte" \
  "($(wc -l < "$WORK/whole/labels/predicted.bed") elements, $(($(wc -l < "$WORK/whole/labels/pairs.csv") - 1)) pairs)"
