#!/usr/bin/env bash
# Creates .venv-torch with PyTorch (the peer that scripts/bench_train.py measures dnalm against).
# Kept apart from .venv because PyTorch is a multi-GB install the tests do not need.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-torch/bin/python ]; then
  python3 -m venv .venv-torch
fi
if ! .venv-torch/bin/pip freeze 2>/dev/null | grep -qxF -f <(grep -v '^#' scripts/requirements-torch.txt); then
  .venv-torch/bin/pip install -q --disable-pip-version-check -r scripts/requirements-torch.txt
fi
