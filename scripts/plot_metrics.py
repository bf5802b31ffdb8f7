"""Plots a dnalm run's metrics.jsonl: training loss per step, validation loss and masked-token
accuracy, and (when markov_baseline.json is there) the best order-k Markov accuracy on the same
validation positions. Usage: .venv-torch/bin/python scripts/plot_metrics.py RUN_DIR OUT.png
(matplotlib is installed into .venv-torch by scripts/setup-torch.sh)."""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(run: Path, out: Path):
    train, valid = [], []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        (train if r["kind"] == "train" else valid).append(r)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot([r["step"] for r in train], [r["loss"] for r in train], lw=0.8, label="train (masked tokens)")
    ax1.plot([r["step"] for r in valid], [r["loss"] for r in valid], "o-", label="validation")
    ax1.axhline(1.3863, color="grey", ls=":", label="ln 4 (uniform over bases)")
    ax1.set_xlabel("step")
    ax1.set_ylabel("cross-entropy (nats)")
    ax1.set_title("loss")
    ax1.legend()
    ax2.plot([r["step"] for r in valid], [r["accuracy"] for r in valid], "o-", label="model, validation")
    baseline = run / "markov_baseline.json"
    if baseline.exists():
        scores = json.loads(baseline.read_text())
        best = max(scores, key=lambda s: s["accuracy"])
        ax2.axhline(best["accuracy"], color="C3", ls="--",
                    label=f"best Markov (order {best['order']}), same positions")
    ax2.set_xlabel("step")
    ax2.set_ylabel("masked-token accuracy")
    ax2.set_title("accuracy")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
