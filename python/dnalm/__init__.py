"""dnalm from Python: the dnalm Rust crates with numpy in and out.

    import dnalm
    model = dnalm.Model.load("runs/mlm/checkpoint-001000")
    x = model.embed(["ACGTACGT", "TTGACA"])           # (2, width) float32
    task = dnalm.Task.load("gue:GUE/prom/prom_300_all")
    train = task.split("train")                         # ids, sequences, labels
    print(dnalm.logme(model.embed(train["sequences"]), train["labels"]))

Every call computes in Rust with the GIL released; long calls take ``progress=True`` and stop
on Ctrl-C. Errors are ``FileNotFoundError`` (a missing file), ``ValueError`` (bad input) or
``dnalm.Error``, with the CLI's one-line messages.
"""

import json as _json
from collections.abc import Sequence as _Sequence

import numpy as _np

from . import _dnalm
from ._dnalm import Error, FastaReader, Model, Task, Tokenizer, __version__

__all__ = [
    "Error",
    "FastaReader",
    "Model",
    "Task",
    "Tokenizer",
    "finetune",
    "h_score",
    "logme",
    "multitask",
    "probe",
    "read_fasta",
    "__version__",
]


def _features(x, name):
    if not isinstance(x, _np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-d array (rows x dims), got {x.ndim}-d")
    return _np.ascontiguousarray(x, dtype=_np.float32)


def _labels(y, name):
    if not isinstance(y, (_np.ndarray, _Sequence)) or isinstance(y, (str, bytes)):
        raise TypeError(f"{name}: expected a numpy array or a list of labels, got {type(y).__name__}")
    y = _np.asarray(y)
    if y.ndim == 2:
        # Multi-label: rows x labels, true (or 1) where a label applies.
        if y.dtype == bool or _np.issubdtype(y.dtype, _np.integer):
            if not _np.isin(y, (0, 1)).all():
                raise ValueError(f"{name}: a 2-d (multi-label) array holds only 0/1 or booleans")
            return _np.ascontiguousarray(y, dtype=bool)
        raise TypeError(f"{name}: a 2-d (multi-label) array must be boolean or 0/1, not {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array (or 2-d rows x labels), got {y.ndim}-d")
    if _np.issubdtype(y.dtype, _np.integer) or y.dtype == bool:
        return _np.ascontiguousarray(y, dtype=_np.int64)
    if _np.issubdtype(y.dtype, _np.floating):
        return _np.ascontiguousarray(y, dtype=_np.float64)
    raise TypeError(f"{name}: labels must be integers (classes) or floats (values), not {y.dtype}")


def read_fasta(path):
    """Iterates ``(name, sequence)`` over a FASTA/FASTQ file (plain, gzip or bgzip), bases
    normalised by dnalm's alphabet policy."""
    return _dnalm.read_fasta(str(path))


def logme(features, labels, num_classes=None):
    """LogME evidence per sample (You et al. 2021) of ``features`` (rows x dims) for ``labels``
    (integer classes, float values, or a rows x labels boolean array), as ``dnalm relevance``
    computes it."""
    return _dnalm.logme(_features(features, "features"), _labels(labels, "labels"), num_classes)


def h_score(features, labels, num_classes=None):
    """H-score (Bao et al. 2019) of ``features`` for integer class ``labels``."""
    return _dnalm.h_score(_features(features, "features"), _labels(labels, "labels"), num_classes)


def probe(train, valid, test, kind="linear", folds=5, seed=0, num_classes=None):
    """Fits a probe (``linear``, ``knn`` or ``mlp``) on frozen features under dnalm's protocol:
    each split is ``(features, labels)``, labels a 1-d array (classes or values) or a rows x
    labels boolean array (multi-label: per-label and macro AUROC/AUPRC); the hyperparameter is chosen on ``valid``, the headline
    fit uses all training rows and ``folds`` refits give its sd. Returns ``{"chosen": str,
    "metrics": {name: (mean, sd)}}`` on ``test``."""
    splits = []
    for name, split in (("train", train), ("valid", valid), ("test", test)):
        if not isinstance(split, tuple) or len(split) != 2:
            raise TypeError(f"{name}: expected a (features, labels) tuple")
        splits.append((_features(split[0], f"{name}[0]"), _labels(split[1], f"{name}[1]")))
    return _dnalm.probe(*splits, kind=kind, folds=folds, seed=seed, num_classes=num_classes)


def _task(task):
    return task if isinstance(task, Task) else Task.load(str(task))


def finetune(model, task, output, **options):
    """Fine-tunes ``model`` (a directory, or ``random:DIR``) on ``task`` (a :class:`Task`, or
    anything :meth:`Task.load` takes) as ``dnalm finetune`` does and saves the first seed's
    network to ``output``: a fine-tuned checkpoint that :meth:`Model.load` opens, or with
    ``lora="r=8,alpha=16,targets=q,v"`` an adapter directory (adapters and head only, with PEFT's
    files beside). Sequence-level, multi-label and per-base tasks alike.

    ``options`` are the CLI's flags, with its defaults: ``lora``, ``epochs`` (10), ``max_steps``
    (1000), ``lr`` (a number, ``"scaled"`` or ``"auto"``), ``batch_size`` (32), ``patience`` (3),
    ``eval_every``, ``head`` (``"linear-probe"``: LP-FT, or ``"random"``), ``pooling``
    (``"mean"``), ``class_weights`` (``"none"`` or ``"balanced"``), ``train_last``, ``seeds`` (1),
    ``seed`` (0), ``device`` (``"cpu"``). Returns the report ``dnalm finetune`` prints, as a dict
    (test metrics per seed and their summary, the learning rate, trainable parameters)."""
    return _json.loads(_dnalm.finetune(str(model), _task(task), str(output), **options))


def multitask(model, tasks, output=None, *, groups=None, plan_only=False, plan_steps=200,
              sampling="proportional", **options):
    """Fine-tunes ``model`` on several ``tasks`` at once (one head each) as ``dnalm multitask``
    does, each task compared with its single-task model over ``seeds`` (3 by default).
    ``groups``: ``None`` (one group), ``"auto"`` (the plan's groups, from the inter-task gradient
    affinity) or ``"A+B,C"``; ``plan_only=True`` measures the plan and stops. With ``output``,
    each task's kept network is saved to ``output/models/<task>``. ``options`` are
    :func:`finetune`'s, per task. Returns ``{"plan": dict or None, "report": dict or None}`` (the
    CLI's ``plan.json`` and ``report.json``)."""
    return _json.loads(_dnalm.multitask(
        str(model), [_task(t) for t in tasks], None if output is None else str(output),
        groups=groups, plan_only=plan_only, plan_steps=plan_steps, sampling=sampling, **options))
