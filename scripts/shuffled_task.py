#!/usr/bin/env python3
"""Writes a copy of a dnalm task (CSV splits) whose labels are permuted within each split: the
same sequences and label counts, no relation between them. It is the deliberately irrelevant
task of the multitask recorded result (README, "Multitask fine-tuning"): a plan should keep it
apart from the real tasks.

    python3 scripts/shuffled_task.py data/tasks/pub_coding /tmp/mt/pub_coding_shuffled --seed 0
"""

import argparse
import csv
import json
import pathlib
import random
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=pathlib.Path, help="a dnalm task directory (CSV splits)")
    parser.add_argument("dest", type=pathlib.Path, help="the shuffled task's directory (new)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    spec_path = args.source / "task.json"
    try:
        spec = json.loads(spec_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"error: {spec_path}: {e}", file=sys.stderr)
        return 1
    if args.dest.exists():
        print(f"error: {args.dest} exists (the copy is written to a new directory)", file=sys.stderr)
        return 1
    rng = random.Random(args.seed)
    args.dest.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        path = args.source / f"{split}.csv"
        if not path.exists():
            continue
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        header, body = rows[0], rows[1:]
        if "label" not in header:
            print(f"error: {path}: line 1 has no 'label' column", file=sys.stderr)
            return 1
        col = header.index("label")
        labels = [r[col] for r in body]
        rng.shuffle(labels)
        for r, label in zip(body, labels):
            r[col] = label
        with (args.dest / f"{split}.csv").open("w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows([header] + body)
    spec["name"] = f"{spec['name']}_shuffled"
    spec["description"] = (
        f"{args.source.name} with its labels permuted within each split (seed {args.seed}): "
        "the same sequences and label counts, no signal."
    )
    spec.pop("counts", None)
    (args.dest / "task.json").write_text(json.dumps(spec, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
