#!/usr/bin/env python3
"""Parity of dnalm's one-hot CNN baseline with the same network in PyTorch.

The network and training are dnalm's (crates/dnalm-eval/src/features/baseline.rs, probes/fit.rs):
one-hot A/C/G/T channels (anything else all zeros, batches padded with zeros to their longest
row); three blocks of Conv1d(kernel 9, 'same') → BatchNorm1d → ReLU, the first two followed by
MaxPool1d(4) and dropout 0.2; max pooling into 8 position bins, flattened; dropout 0.5; a
linear output. AdamW (betas
0.9/0.98, eps 1e-8, weight decay 0.01 on matrices and kernels only), linear warmup over 5% of the
steps then cosine decay to 10%, global gradient-norm clipping at 1, batch 64, at most 30 epochs
with early stopping (patience 5) on the validation loss, the best epoch kept. Seeds 0..n-1.

Only the initialisation and the random streams differ, so the mean test MCC over seeds must
agree with dnalm's (`dnalm bench --baselines cnn`, read from its results.json) within
--tolerance. Needs PyTorch (scripts/setup-torch.sh installs it into .venv-torch):

    .venv-torch/bin/python scripts/cnn_parity.py --task data/tasks/ctcf_orientation \\
        --results out/results.json
"""

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

CODE = {b: i for i, b in enumerate(b"ACGT")}


def one_hot(seqs):
    length = max(1, max(len(s) for s in seqs))
    x = np.zeros((len(seqs), 4, length), dtype=np.float32)
    for r, s in enumerate(seqs):
        for i, b in enumerate(s):
            c = CODE.get(b)
            if c is not None:
                x[r, c, i] = 1.0
    return torch.from_numpy(x)


class Block(nn.Module):
    def __init__(self, inputs, channels, pool):
        super().__init__()
        self.conv = nn.Conv1d(inputs, channels, 9, padding="same")
        self.norm = nn.BatchNorm1d(channels)
        self.pool = nn.MaxPool1d(4, 4) if pool else None
        self.drop = nn.Dropout(0.2) if pool else None

    def forward(self, x):
        h = torch.relu(self.norm(self.conv(x)))
        if self.pool is not None:
            if h.shape[2] >= 4:
                h = self.pool(h)
            h = self.drop(h)
        return h


BINS = 8


def binned_max(h, bins):
    rows, channels, length = h.shape
    if length < bins:
        return h.amax(2, keepdim=True).repeat(1, 1, bins).reshape(rows, channels * bins)
    width = -(-length // bins)
    h = nn.functional.pad(h, (0, width * bins - length))
    return h.reshape(rows, channels, bins, width).amax(3).reshape(rows, channels * bins)


class OneHotCnn(nn.Module):
    def __init__(self, channels, outputs):
        super().__init__()
        self.blocks = nn.Sequential(
            Block(4, channels, True), Block(channels, channels, True), Block(channels, channels, False)
        )
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(channels * BINS, outputs)

    def forward(self, x):
        return self.out(self.drop(binned_max(self.blocks(x), BINS)))


def read_split(task, split):
    with (task / f"{split}.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["sequence"].encode() for r in rows], np.array([int(r["label"]) for r in rows])


def mcc(truth, predicted, classes):
    c = np.zeros((classes, classes))
    np.add.at(c, (truth, predicted), 1)
    t, p, n = c.sum(1), c.sum(0), c.sum()
    cov = np.trace(c) * n - t @ p
    denom = math.sqrt((n * n - p @ p) * (n * n - t @ t))
    return cov / denom if denom > 0 else 0.0


def train_one(seed, data, classes, channels, epochs, batch, lr, patience):
    (xtr, ytr), (xva, yva), (xte, yte) = data
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = OneHotCnn(channels, classes)
    decay = [p for p in net.parameters() if p.dim() >= 2]
    other = [p for p in net.parameters() if p.dim() < 2]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.98), eps=1e-8,
    )
    steps_per_epoch = math.ceil(len(ytr) / batch)
    total = steps_per_epoch * epochs
    warmup = max(total // 20, 1)

    def lr_at(step):
        if step < warmup:
            return lr * (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return lr * 0.1 + (lr - lr * 0.1) * 0.5 * (1 + math.cos(math.pi * progress))

    def loss_of(seqs, y):
        return nn.functional.cross_entropy(net(one_hot(seqs)), torch.from_numpy(y))

    best, since, step = None, 0, 0
    for epoch in range(1, epochs + 1):
        net.train()
        order = rng.permutation(len(ytr))
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            for g in optim.param_groups:
                g["lr"] = lr_at(step)
            loss = loss_of([xtr[r] for r in rows], ytr[rows])
            optim.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optim.step()
            step += 1
        net.eval()
        with torch.no_grad():
            total_loss = sum(
                loss_of(xva[i : i + 256], yva[i : i + 256]).item() * len(yva[i : i + 256])
                for i in range(0, len(yva), 256)
            ) / len(yva)
        if best is None or total_loss < best[0]:
            best = (total_loss, epoch, {k: v.clone() for k, v in net.state_dict().items()})
            since = 0
        else:
            since += 1
            if since >= patience:
                break
    net.load_state_dict(best[2])
    net.eval()
    with torch.no_grad():
        predicted = np.concatenate(
            [net(one_hot(xte[i : i + 256])).argmax(1).numpy() for i in range(0, len(yte), 256)]
        )
    return mcc(yte, predicted, classes), best[1], epoch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", type=Path, required=True)
    parser.add_argument("--results", type=Path, help="dnalm bench results.json to compare with")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=0.03)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    spec = json.loads((args.task / "task.json").read_text())
    classes = spec["num_classes"]
    data = [read_split(args.task, s) for s in ("train", "valid", "test")]
    scores = []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        score, best_epoch, ran = train_one(
            seed, data, classes, args.channels, args.epochs, args.batch, args.lr, args.patience
        )
        scores.append(score)
        print(f"seed {seed}: test MCC {score:.3f} (best epoch {best_epoch} of {ran})")
    seconds = time.perf_counter() - t0
    ours = np.mean(scores)
    sd = np.std(scores, ddof=1) if len(scores) > 1 else 0.0
    print(f"PyTorch: MCC {ours:.3f} ± {sd:.3f} over {len(scores)} seeds, {seconds:.0f} s")
    if args.results is None:
        return 0
    results = json.loads(args.results.read_text())
    entry = next(
        (
            e
            for t in results["tasks"]
            if t["task"] == spec["name"]
            for e in t["entries"]
            if e["subject"] == "onehot-cnn"
        ),
        None,
    )
    if entry is None or "mcc" not in entry["metrics"]:
        print(f"error: {args.results}: no one-hot CNN MCC for {spec['name']}", file=sys.stderr)
        return 1
    m = entry["metrics"]["mcc"]
    diff = m["mean"] - ours
    print(
        f"dnalm:   MCC {m['mean']:.3f} ± {m['sd']:.3f} over {m['n']} seeds, {entry['seconds']:.0f} s"
        f" ({entry.get('chosen')})\ndifference {diff:+.3f} (tolerance {args.tolerance})"
    )
    if abs(diff) > args.tolerance:
        print("FAIL: the one-hot CNN differs from PyTorch's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
