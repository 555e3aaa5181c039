"""The central type: a model is a dictionary (p, m) plus an inference procedure that produces codes.

Every method — FISTA with the true dictionary, DL-FISTA, Softplus-Adam, LISTA, each SAE — is a
``DictionaryModel``. Shapes, batch first and atoms as rows: observations Y (N, m), codes Z (N, p),
dictionary D (p, m), ``Y ≈ Z @ D + offset``. Because the two parts are separate, the study's
surgeries are recombinations: ``SparseCodingModel(sae.dictionary, FistaSolver(), offset=sae.b_dec)``
is "FISTA on the SAE decoder".

The estimator contract follows scikit-learn: ``fit`` returns self, ``transform``/``inverse_transform``
alias ``encode``/``decode``, ``components_`` is the dictionary.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from dictlab.registry import Registry
from dictlab.validation import check_matrix

MODEL_KINDS: Registry[type[DictionaryModel]] = Registry("model kind")


class FitContext:
    """What a learner may use besides the training observations.

    seed : every random choice of the fit draws from generators seeded with it.
    ground_truth : (p, m) true dictionary, only to log dictionary quality along training — never to fit.
    codes : (N, p) true training codes, only for supervised baselines (the linear probe).
    progress : show a progress bar.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        ground_truth: torch.Tensor | None = None,
        codes: torch.Tensor | None = None,
        progress: bool = False,
    ) -> None:
        self.seed = seed
        self.ground_truth = ground_truth
        self.codes = codes
        self.progress = progress

    def generator(self, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
        """A generator for one named random stream of the fit (e.g. the method's kind).

        Its seed is derived from (seed, stream) by hashing, never ``seed`` itself: the data generator draws
        the true dictionary first from ``Generator().manual_seed(seed)``, and a learner starting from that
        same stream would begin measurably aligned with the ground truth.
        """
        return derived_generator(self.seed, stream, device)


def derived_generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for ``stream`` whose draws are unrelated to ``torch.Generator().manual_seed(seed)``."""
    digest = hashlib.sha256(f"{stream}:{seed}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


class DictionaryModel(ABC):
    """A dictionary plus an inference procedure. Subclasses register under a ``kind`` for loading."""

    kind: ClassVar[str]

    @property
    @abstractmethod
    def dictionary(self) -> torch.Tensor:
        """(p, m) dictionary, atoms as rows."""

    @property
    def offset(self) -> torch.Tensor | None:
        """(m,) bias added to reconstructions and removed before inference (an SAE's ``b_dec``); None: 0."""
        return None

    @abstractmethod
    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """Codes (N, p) for observations (N, m)."""

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstructions (N, m) = codes @ D (+ offset)."""
        d = self.dictionary
        check_matrix("codes", codes, cols=d.shape[0])
        out = codes.to(d.dtype) @ d
        return out + self.offset if self.offset is not None else out

    def fit(self, y: torch.Tensor, context: FitContext | None = None) -> DictionaryModel:
        """Learn from observations (N, m); returns self. Models with a given dictionary need no fit."""
        return self

    # --- persistence: JSON config + named tensors (safetensors); see dictlab.models.io --------------
    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable hyperparameters, enough with ``tensors()`` to rebuild the model."""

    @abstractmethod
    def tensors(self) -> dict[str, torch.Tensor]:
        """Named tensors that hold the learned state."""

    @classmethod
    @abstractmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> DictionaryModel:
        """Inverse of ``config()`` + ``tensors()``."""

    def save(self, path: str) -> None:
        from dictlab.models.io import save_model

        save_model(self, path)

    # --- scikit-learn names ------------------------------------------------------------------------
    def transform(self, y: torch.Tensor) -> torch.Tensor:
        return self.encode(y)

    def inverse_transform(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decode(codes)

    @property
    def components_(self) -> torch.Tensor:
        return self.dictionary
