#!/usr/bin/env bash
# Relevance against fine-tuning on six models (README "Recorded result: relevance against
# fine-tuning, six models"): three small pretraining runs (masked LM to 1,000 steps, next-token
# and 6-mer span masking to 500), then `dnalm relevance --finetune` on the random init, MLM steps
# 100/500/1000, next-token 500 and span 500. About 50 minutes on two cores.
#   bash scripts/relevance_six_models.sh OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: relevance_six_models.sh OUT_DIR}
cargo build -q --release -p dnalm-cli
bin=target/release/dnalm
shape=(--set model.n_layers=2 --set model.d_model=128 --set model.n_heads=4 --set model.d_ffn=512
       --set data.context=256 --set train.batch_size=16 --set train.eval_every=100
       --set train.save_every=100 --set train.keep_last=20)
"$bin" pretrain -c configs/mlm.toml -o "$out/mlm" "${shape[@]}" --set train.steps=1000
"$bin" pretrain -c configs/next_token.toml -o "$out/next" "${shape[@]}" --set train.steps=500
"$bin" pretrain -c configs/span.toml -o "$out/span" "${shape[@]}" --set train.steps=500
"$bin" relevance \
  -m "random=random:$out/mlm/checkpoint-001000" \
  -m "mlm100=$out/mlm/checkpoint-000100" \
  -m "mlm500=$out/mlm/checkpoint-000500" \
  -m "mlm1000=$out/mlm/checkpoint-001000" \
  -m "next500=$out/next/checkpoint-000500" \
  -m "span6mer500=$out/span/checkpoint-000500" \
  -t data/tasks/pub_coding -t data/tasks/pub_gc_species2 -t data/tasks/ecoli_cds_labels \
  --finetune --max-steps 200 -o "$out/relevance"
