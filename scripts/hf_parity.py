#!/usr/bin/env python3
"""Golden files that prove dnalm's tokenizers and Python `tokenizers` give the same ids.

For each tokenizer directory under the golden folder (saved by dnalm: tokenizer.json,
tokenizer_config.json, vocab.txt), Python `tokenizers` loads tokenizer.json and encodes every
line of sequences.txt (raw: lowercase, IUPAC codes and U included; for overlapping k-mers, as
space-separated k-mers, DNABERT's convention). The ids and offsets go to expected.json, which the
Rust test `tests/hf_golden.rs` compares with dnalm's own encoder. `--check` also loads each
directory with `transformers.AutoTokenizer` (no `trust_remote_code`) and checks the same ids.

  hf_parity.py --write DIR   regenerate DIR/*/expected.json
  hf_parity.py --check DIR   recompute and compare with the committed expected.json
"""
import json
import sys
from pathlib import Path

import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402


def python_input(seq, config):
    kind = config.get("dnalm", {}).get("tokenizer", {})
    if kind.get("type") == "kmer" and kind.get("overlapping"):
        k = kind["k"]
        return " ".join(seq[i : i + k] for i in range(len(seq) - k + 1))
    return seq


def encode_all(tok_dir, sequences):
    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    config = json.loads((tok_dir / "tokenizer_config.json").read_text())
    out = {"sequences": sequences, "ids": [], "offsets": []}
    for seq in sequences:
        enc = tok.encode(python_input(seq, config), add_special_tokens=True)
        out["ids"].append(enc.ids)
        out["offsets"].append([list(o) for o in enc.offsets])
    return out


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("--write", "--check"):
        sys.exit(__doc__)
    root = Path(sys.argv[2])
    sequences = [l.strip() for l in (root / "sequences.txt").read_text().splitlines() if l.strip()]
    passed = failed = 0
    for tok_dir in sorted(p for p in root.iterdir() if (p / "tokenizer.json").is_file()):
        result = encode_all(tok_dir, sequences)
        path = tok_dir / "expected.json"
        if sys.argv[1] == "--write":
            path.write_text(json.dumps(result) + "\n")
            print(f"wrote {path}")
            continue
        expected = json.loads(path.read_text())
        config = json.loads((tok_dir / "tokenizer_config.json").read_text())
        auto = AutoTokenizer.from_pretrained(str(tok_dir))
        for i, seq in enumerate(sequences):
            ok = result["ids"][i] == expected["ids"][i] and result["offsets"][i] == expected["offsets"][i]
            passed += ok
            failed += not ok
            if not ok:
                print(f"FAIL {tok_dir.name} sequence {i + 1}: tokenizers {result['ids'][i]} != golden {expected['ids'][i]}")
            got = auto(python_input(seq, config))["input_ids"]
            ok = got == expected["ids"][i]
            passed += ok
            failed += not ok
            if not ok:
                print(f"FAIL {tok_dir.name} sequence {i + 1}: transformers {got} != golden {expected['ids'][i]}")
    if sys.argv[1] == "--check":
        import tokenizers
        import transformers
        print(f"checked with Python tokenizers {tokenizers.__version__} and transformers {transformers.__version__}")
        print(f"hf-parity: {passed} passed, {failed} failed")
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
