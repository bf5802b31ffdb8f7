"""Type stubs of the dnalm extension module (re-exported by ``dnalm``)."""

from collections.abc import Iterator, Sequence
from os import PathLike
from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

__version__: str

class Error(Exception):
    """An error of dnalm that is neither a missing file nor bad input."""

class Tokenizer:
    @staticmethod
    def load(spec: str, template: str = "bert") -> "Tokenizer":
        """A built-in (``nucleotide``, ``kmer:6``, ``kmer:6:non-overlapping``) or a tokenizer
        directory; ``template``: ``bert``, ``causal`` or ``none`` (built-ins only)."""
    @property
    def vocab_size(self) -> int: ...
    def encode(
        self,
        sequences: Sequence[str],
        add_special_tokens: bool = True,
        max_length: Optional[int] = None,
    ) -> list[dict[str, np.ndarray]]:
        """Per sequence: ``ids`` (uint32), ``offsets`` (tokens x 2 base spans),
        ``special_tokens_mask`` and ``attention_mask`` (uint8)."""

class Model:
    @staticmethod
    def load(path: str, device: str = "cpu") -> "Model":
        """A dnalm checkpoint or imported Hugging Face directory (``random:DIR``: random
        weights of the same shape), on ``device`` (``cpu``; ``vulkan[:N]`` in a build with
        the ``vulkan`` feature)."""
    @property
    def n_layers(self) -> int: ...
    @property
    def width(self) -> int: ...
    @property
    def tokenizer(self) -> Tokenizer: ...
    def embed(
        self,
        sequences: Sequence[str],
        layers: Sequence[int] = (-1,),
        pool: str = "mean",
        per: str = "sequence",
        rc: bool = False,
        batch_tokens: int = 16384,
        progress: bool = False,
    ) -> Union[npt.NDArray[np.float32], list[npt.NDArray[np.float32]]]:
        """``per="sequence"``: sequences x width; ``"token"``/``"base"``: one array per
        sequence."""
    def logits(
        self, sequences: Sequence[str], progress: bool = False
    ) -> list[npt.NDArray[np.float32]]:
        """LM logits per sequence: tokens (special tokens included) x vocabulary."""
    def score_likelihood(
        self, sequences: Sequence[str], batch_tokens: int = 16384, progress: bool = False
    ) -> npt.NDArray[np.float64]:
        """Log-likelihood of each sequence in nats (pseudo-likelihood for encoders)."""

    def score_variants(
        self,
        vcf: Union[str, PathLike],
        reference: Union[str, PathLike],
        flank: int = 128,
        batch_tokens: int = 16384,
    ) -> list[dict]:
        """One dict per ALT: chrom, pos (1-based), id, ref, alt, llr (nats, ALT vs REF; None
        for a symbolic allele), method."""

class Task:
    @staticmethod
    def load(spec: str, genome: Optional[Union[str, PathLike]] = None) -> "Task":
        """A dnalm task directory or ``FORMAT:DIR`` (``gue``, ``nt``, ``genomic-benchmarks``,
        ``bend``; ``genome`` for BEND)."""
    @property
    def name(self) -> str: ...
    @property
    def num_classes(self) -> Optional[int]: ...
    @property
    def label_names(self) -> Optional[list[str]]: ...
    @property
    def notes(self) -> list[str]: ...
    def split(self, name: str) -> dict[str, Union[list[str], np.ndarray]]:
        """``{"ids": [...], "sequences": [...], "labels": array}`` of ``train``, ``valid`` or
        ``test``."""

class FastaReader(Iterator[tuple[str, str]]):
    def __next__(self) -> tuple[str, str]: ...

def read_fasta(path: Union[str, PathLike]) -> FastaReader: ...
def logme(
    features: npt.NDArray[np.float32], labels: np.ndarray, num_classes: Optional[int] = None
) -> float: ...
def h_score(
    features: npt.NDArray[np.float32], labels: np.ndarray, num_classes: Optional[int] = None
) -> float: ...
def probe(
    train: tuple[np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    kind: str = "linear",
    folds: int = 5,
    seed: int = 0,
    num_classes: Optional[int] = None,
) -> dict: ...

def finetune(model: str, task: Task, output: str, **options: Any) -> str: ...
def multitask(
    model: str,
    tasks: list[Task],
    output: Optional[str] = None,
    groups: Optional[str] = None,
    plan_only: bool = False,
    plan_steps: int = 200,
    sampling: str = "proportional",
    **options: Any,
) -> str: ...
