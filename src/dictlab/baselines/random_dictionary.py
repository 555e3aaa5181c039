"""The untrained floor of dictionary learning: FISTA codes on a random unit dictionary of the right width.

Every learner starts from something like it (DL-FISTA and the classical learners from exactly this draw's
distribution), so a score no better than this one's is no evidence that anything was learned. The
dictionary is drawn at ``fit`` from the fit's own random stream (``FitContext.generator("random_dictionary")``),
never from the data's seed itself, which would replay the stream that drew the true dictionary.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from dictlab.config import Config
from dictlab.data import random_unit_dictionary
from dictlab.inference.solvers import FistaSolver
from dictlab.models.base import MODEL_KINDS, DictionaryModel, FitContext
from dictlab.models.sparse_coding import SparseCodingModel
from dictlab.validation import check_matrix


class RandomDictionaryConfig(Config):
    """Width of the random dictionary and the FISTA encoder on it (the oracle's defaults)."""

    width: int = Field(..., ge=1, description="p: number of random atoms.")
    lam: float = Field(0.1, ge=0, description="λ of the FISTA encoder.")
    max_iter: int = Field(100, ge=1, description="FISTA iterations of encode.")
    nonneg: bool = Field(True, description="Non-negative codes.")


@MODEL_KINDS.register("random_dictionary")
class RandomDictionary(DictionaryModel):
    """FISTA on ``width`` random unit atoms drawn at ``fit`` (which reads only the observations' width)."""

    kind: ClassVar[str] = "random_dictionary"

    def __init__(self, config: RandomDictionaryConfig) -> None:
        self.settings = config
        self._coder: SparseCodingModel | None = None

    def _solver(self) -> FistaSolver:
        return FistaSolver(lam=self.settings.lam, max_iter=self.settings.max_iter, nonneg=self.settings.nonneg)

    def fit(self, y: torch.Tensor, context: FitContext | None = None) -> RandomDictionary:
        context = context if context is not None else FitContext()
        check_matrix("y", y)
        atoms = random_unit_dictionary(self.settings.width, y.shape[1], context.generator(self.kind), y.dtype)
        self._coder = SparseCodingModel(atoms.to(y.device), self._solver())
        return self

    def fit_key(self) -> str | None:
        return f"{self.kind}:{self.settings.model_dump_json()}"

    def _fitted(self) -> SparseCodingModel:
        if self._coder is None:
            raise ValueError("RandomDictionary has no dictionary yet: call fit first (or load a saved model)")
        return self._coder

    @property
    def dictionary(self) -> torch.Tensor:
        return self._fitted().dictionary

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        return self._fitted().encode(y)

    def config(self) -> dict[str, Any]:
        return {"random_dictionary": self.settings.model_dump()}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"dictionary": self.dictionary}

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> RandomDictionary:
        if "dictionary" not in tensors:
            raise ValueError("saved random_dictionary model has no 'dictionary' tensor")
        model = cls(RandomDictionaryConfig(**config.get("random_dictionary", {})))
        model._coder = SparseCodingModel(tensors["dictionary"], model._solver())
        return model
