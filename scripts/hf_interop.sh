#!/usr/bin/env bash
# The Python side of the Hugging Face interop proof (issue 5), on a machine with PyPI access:
#   1. installs torch + transformers + tokenizers into .venv-torch (scripts/setup-torch.sh);
#   2. remakes the import fixtures with transformers (tiny random DNABERT, Nucleotide Transformer,
#      ESM-2 and Llama checkpoints and the outputs transformers gives) -- with `--remake` only,
#      since they are committed;
#   3. has dnalm write its export fixtures (ESM rotary, ESM learned positions, Llama);
#   4. loads those with transformers' stock classes and checks ids and logits (1e-4), and dnalm's
#      LoRA adapters (export_peft/) with peft.PeftModel.from_pretrained on their bases (the
#      packed DNABERT-2 / NT-v2 layers: merged by PEFT and compared weight by weight);
#   5. runs the Rust golden tests on all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
golden=crates/dnalm-eval/tests/golden/hf
bash scripts/setup-torch.sh
if [ "${1:-}" = "--remake" ]; then
  .venv-torch/bin/python scripts/hf_interop.py make "$golden"
  .venv-torch/bin/python scripts/hf_interop.py make-peft "$golden"
  .venv-torch/bin/python scripts/hf_interop.py make-peft-packed "$golden"
fi
cargo test -q -p dnalm-eval --test hf_interop -- --ignored write_export_fixtures
.venv-torch/bin/python scripts/hf_interop.py check "$golden"
cargo test -q -p dnalm-eval --test hf_interop
