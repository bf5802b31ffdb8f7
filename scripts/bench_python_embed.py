#!/usr/bin/env python3
"""`model.embed` from Python against `dnalm embed` and against transformers + PyTorch, same run.

    bash scripts/bench_python_embed.sh CHECKPOINT    (builds the release CLI and extension first)

Embeds the valid and test rows of the bundled pub_coding task (1,442 windows of 150 bp) with a
dnalm checkpoint three ways, alternating over rounds (this VM drifts +-20%), and prints the
medians: the CLI (`dnalm embed`, its own "embedded ... in X s", model loading excluded), the
Python package (`Model.embed`, loading excluded) and transformers + PyTorch (the checkpoint's
`config.json` loads with the stock ESM classes; same tokens, same token budget per batch, mean of
the last hidden state; loading and tokenisation excluded). Both sides use every core.
"""
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "data/tasks/pub_coding"
ROUNDS = 5
BATCH_TOKENS = 16384


def sequences():
    rows = []
    for split in ["valid", "test"]:
        with open(TASK / f"{split}.csv") as f:
            rows += [r["sequence"] for r in csv.DictReader(f)]
    return rows


def torch_side(checkpoint, seqs_file):
    """Runs under .venv-torch: prints the seconds of the forward passes."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    seqs = json.loads(Path(seqs_file).read_text())
    tok = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModel.from_pretrained(checkpoint).eval()
    encoded = tok(seqs, padding=True, return_tensors="pt")
    width = encoded["input_ids"].shape[1]
    rows = max(1, BATCH_TOKENS // width)
    with torch.inference_mode():
        t = time.perf_counter()
        for i in range(0, len(seqs), rows):
            ids = encoded["input_ids"][i : i + rows]
            mask = encoded["attention_mask"][i : i + rows]
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        print(time.perf_counter() - t)


def main():
    if sys.argv[1] == "--torch":
        torch_side(sys.argv[2], sys.argv[3])
        return
    import numpy as np

    import dnalm

    checkpoint = sys.argv[1]
    seqs = sequences()
    model = dnalm.Model.load(checkpoint)
    tmp = Path(tempfile.mkdtemp())
    table = tmp / "seqs.csv"
    with open(table, "w") as f:
        f.write("sequence,label\n" + "".join(f"{s},0\n" for s in seqs))
    (tmp / "seqs.json").write_text(json.dumps(seqs))
    binary = os.environ.get("DNALM_BIN", str(ROOT / "target/release/dnalm"))
    torch_python = str(ROOT / ".venv-torch/bin/python")
    times = {"cli": [], "python": [], "torch": []}
    for r in range(ROUNDS):
        done = subprocess.run(
            [binary, "embed", "-m", checkpoint, "-i", str(table), "-o", str(tmp / "cli.npy"),
             "--batch-tokens", str(BATCH_TOKENS)],
            capture_output=True, text=True, check=True,
        )
        times["cli"].append(float(re.search(r"embedded \d+ sequences in ([0-9.]+) s", done.stderr).group(1)))
        t = time.perf_counter()
        ours = model.embed(seqs, batch_tokens=BATCH_TOKENS)
        times["python"].append(time.perf_counter() - t)
        done = subprocess.run(
            [torch_python, __file__, "--torch", checkpoint, str(tmp / "seqs.json")],
            capture_output=True, text=True, check=True,
        )
        times["torch"].append(float(done.stdout.strip().splitlines()[-1]))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), file=sys.stderr)
    cli = np.load(tmp / "cli.npy")
    assert np.abs(cli - ours).max() <= 1e-6, "Python and CLI embeddings differ"
    tokens = sum(len(s) + 2 for s in seqs)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"| side | median s ({ROUNDS} rounds) | tokens/s | Python package vs it |")
    print("|---|---|---|---|")
    for k, label in [("python", "dnalm Python `Model.embed`"), ("cli", "`dnalm embed` (CLI)"),
                     ("torch", "transformers + PyTorch")]:
        ratio = "—" if k == "python" else f"{med[k] / med['python']:.2f}x"
        print(f"| {label} | {med[k]:.2f} | {tokens / med[k]:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
