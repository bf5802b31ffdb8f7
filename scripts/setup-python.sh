#!/usr/bin/env bash
# Creates .venv with the Python packages dnalm's tests and benchmarks compare against
# (Hugging Face `tokenizers`). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  if ! python3 -m venv .venv 2>/dev/null; then
    # Debian without the venv module.
    if command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv .venv
    else
      echo "error: python3 -m venv is not available" >&2
      exit 1
    fi
  fi
fi
# Every pinned requirement that `pip freeze` does not list exactly is (re)installed.
missing=$(grep -v -e '^#' -e '^$' scripts/requirements.txt |
  grep -vxF -f <(.venv/bin/pip freeze 2>/dev/null) || true)
if [ -n "$missing" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements.txt
fi
