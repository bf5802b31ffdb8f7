#!/usr/bin/env python3
"""Parity of dnalm's k-mer spectrum baseline with scikit-learn.

For every task of a suite, scikit-learn fits the reference baseline on the same features and
splits — the k = 1..6 spectrum of overlapping k-mers (k-mers holding a non-ACGT base skipped,
frequencies per k), standardised with the training rows' statistics, L2 logistic regression
(lbfgs, run to convergence) with C chosen on the validation split from a wide grid — and scores
the test split. dnalm's headline for the same baseline (`dnalm bench ... --baselines kmer`,
read from its results.json) must be within --tolerance MCC of scikit-learn's on every task.
Multi-label tasks (`"multi_label": true`) fit one logistic regression per label with one shared
C (one-vs-rest), chosen and scored by the macro AUROC over labels, dnalm's headline for them.
Per-base tasks (`"per_base": true`) have no k-mer baseline (it scores whole sequences) and are
skipped, said in the table.

    .venv/bin/python scripts/baseline_parity.py --suite data/tasks --results out/results.json

Exit status 1 (with a table saying which task) when a task is out of tolerance.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import matthews_corrcoef, roc_auc_score
from sklearn.preprocessing import StandardScaler

KS = (1, 2, 3, 4, 5, 6)
CODE = np.full(256, -1, dtype=np.int64)
for i, b in enumerate(b"ACGT"):
    CODE[b] = i
    CODE[ord(chr(b).lower())] = i
# L2 strength on the mean loss (C = 1 / (l2 * rows)), half-decade steps from 100 to 1e-7: as
# wide as dnalm's extended grid and finer, so the reference is at least as well tuned.
L2_GRID = [10.0 ** (-e / 2) for e in range(-4, 15)]


def spectrum(seq: bytes) -> np.ndarray:
    codes = CODE[np.frombuffer(seq, dtype=np.uint8)]
    out = []
    for k in KS:
        counts = np.zeros(4**k)
        n = len(codes) - k + 1
        if n > 0:
            windows = np.lib.stride_tricks.sliding_window_view(codes, k)
            valid = (windows >= 0).all(axis=1)
            index = (windows[valid] * (4 ** np.arange(k - 1, -1, -1))).sum(axis=1)
            np.add.at(counts, index, 1.0)
            if valid.any():
                counts /= valid.sum()
        out.append(counts)
    return np.concatenate(out)


def read_split(task: Path, split: str, labels: int):
    """Features and labels of one split; `labels` > 0: multi-label, a rows x labels 0/1 matrix
    from the `;`-separated indices."""
    path = task / f"{split}.csv"
    if not path.exists():
        return None
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    x = np.stack([spectrum(r["sequence"].encode()) for r in rows])
    if labels:
        y = np.zeros((len(rows), labels), dtype=np.int64)
        for i, r in enumerate(rows):
            for k in filter(None, r["label"].split(";")):
                y[i, int(k)] = 1
    else:
        y = np.array([int(r["label"]) for r in rows])
    return x, y


def multi_label_reference(xtr, ytr, xva, yva, xte, yte):
    """One-vs-rest with one C, chosen by the validation macro AUROC; warm starts down the grid
    (strong to weak), as dnalm walks it, keep the 17-value grid affordable."""
    models = [
        LogisticRegression(max_iter=5000, tol=1e-6, warm_start=True) for _ in range(ytr.shape[1])
    ]
    best = None
    for l2 in L2_GRID[::-1]:
        scores = []
        for k, model in enumerate(models):
            model.set_params(C=1.0 / (l2 * len(ytr)))
            model.fit(xtr, ytr[:, k])
            scores.append(model.predict_proba(xva)[:, 1])
        valid = roc_auc_score(yva, np.stack(scores, axis=1), average="macro")
        if best is None or valid > best[0]:
            test = np.stack([m.predict_proba(xte)[:, 1] for m in models], axis=1)
            best = (valid, l2, roc_auc_score(yte, test, average="macro"))
    _, l2, test_auroc = best
    return test_auroc, l2, l2 in (L2_GRID[0], L2_GRID[-1])


def reference(task: Path):
    spec = json.loads((task / "task.json").read_text())
    labels = len(spec["label_names"]) if spec.get("multi_label") else 0
    splits = [read_split(task, s, labels) for s in ("train", "valid", "test")]
    (xtr, ytr), (xva, yva), (xte, yte) = splits
    scaler = StandardScaler().fit(xtr)
    xtr, xva, xte = scaler.transform(xtr), scaler.transform(xva), scaler.transform(xte)
    if labels:
        return multi_label_reference(xtr, ytr, xva, yva, xte, yte)
    best = None
    for l2 in L2_GRID:
        model = LogisticRegression(C=1.0 / (l2 * len(ytr)), max_iter=5000, tol=1e-6)
        model.fit(xtr, ytr)
        valid_mcc = matthews_corrcoef(yva, model.predict(xva))
        if best is None or valid_mcc > best[0]:
            best = (valid_mcc, l2, model)
    _, l2, model = best
    at_edge = l2 in (L2_GRID[0], L2_GRID[-1])
    return matthews_corrcoef(yte, model.predict(xte)), l2, at_edge


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, required=True, help="directory of task directories")
    parser.add_argument("--results", type=Path, required=True, help="dnalm bench results.json")
    parser.add_argument("--tolerance", type=float, default=0.02)
    args = parser.parse_args()

    results = json.loads(args.results.read_text())
    dnalm = {}
    for task in results["tasks"]:
        for entry in task["entries"]:
            if entry["subject"] == "kmer-spectrum":
                headline = task.get("headline", "mcc")
                dnalm[task["task"]] = (entry["metrics"][headline]["mean"], entry.get("chosen"))

    failures = 0
    print(f"{'task':<24} {'dnalm':>7} {'sklearn':>8} {'diff':>7}  sklearn l2 / dnalm choice")
    tasks = sorted(p for p in args.suite.iterdir() if (p / "task.json").is_file())
    if not tasks:
        print(f"error: {args.suite}: no task directories", file=sys.stderr)
        return 1
    checked = 0
    for task in tasks:
        spec = json.loads((task / "task.json").read_text())
        name = spec["name"]
        if spec.get("per_base"):
            print(f"{name:<24} per-base task: no k-mer baseline (skipped)")
            continue
        checked += 1
        if name not in dnalm:
            print(f"{name:<24} missing from {args.results}")
            failures += 1
            continue
        ours, chosen = dnalm[name]
        theirs, l2, at_edge = reference(task)
        diff = ours - theirs
        ok = abs(diff) <= args.tolerance
        failures += not ok
        edge = " (at the grid's edge)" if at_edge else ""
        print(
            f"{name:<24} {ours:7.3f} {theirs:8.3f} {diff:+7.3f}  l2={l2:.0e}{edge} / {chosen}"
            + ("" if ok else f"  FAIL (> {args.tolerance})")
        )
    if failures:
        print(f"{failures} task(s) out of tolerance", file=sys.stderr)
        return 1
    print(
        f"k-mer baseline parity: {checked} tasks within {args.tolerance} of scikit-learn's "
        "headline (MCC; macro AUROC for multi-label tasks)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
