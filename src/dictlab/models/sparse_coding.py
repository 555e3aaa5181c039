"""A fixed dictionary with an iterative solver as the encoder: the FISTA oracle, and every surgery."""

from __future__ import annotations

from typing import Any

import torch

from dictlab.inference.solvers import FistaSolver, Solver, solver_from_config
from dictlab.models.base import MODEL_KINDS, DictionaryModel, in_row_chunks
from dictlab.validation import check_matrix

# Rows per solver call: bounds the (rows, p) work buffers at ~64 M entries each.
_MAX_ENTRIES_PER_CHUNK = 1 << 26


@MODEL_KINDS.register("sparse_coding")
class SparseCodingModel(DictionaryModel):
    """Codes ``z = argmin ½‖(y − offset) − zD‖² + penalty`` from ``solver`` on a fixed dictionary.

    Parameters
    ----------
    dictionary : (p, m) atoms as rows (the papers' A is ``dictionary.T``).
    solver : the inference procedure; default FISTA with the study's λ=0.1, 100 iterations, z ≥ 0.
    offset : optional (m,) bias removed before inference and added back on decoding (an SAE's b_dec).
    """

    kind = "sparse_coding"

    def __init__(
        self, dictionary: torch.Tensor, solver: Solver | None = None, offset: torch.Tensor | None = None
    ) -> None:
        check_matrix("dictionary", dictionary)
        if offset is not None and offset.shape != (dictionary.shape[1],):
            raise ValueError(f"offset must have shape ({dictionary.shape[1]},), got {tuple(offset.shape)}")
        # row-major, as a saved-and-loaded copy is, so that both run the same kernels (bit-equal codes)
        self._dictionary = dictionary.contiguous()
        self._offset = offset
        self.solver = solver if solver is not None else FistaSolver()

    @property
    def dictionary(self) -> torch.Tensor:
        return self._dictionary

    @property
    def offset(self) -> torch.Tensor | None:
        return self._offset

    def encode(self, y: torch.Tensor, z0: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (N, p) — (0, p) for an empty batch; ``z0`` (N, p) warm-starts solvers that accept one."""
        check_matrix("y", y, cols=self.dictionary.shape[1])
        x = self.remove_offset(y)

        def solve(rows: slice) -> torch.Tensor:
            return self.solver.solve(x[rows], self.dictionary, None if z0 is None else z0[rows]).codes

        return in_row_chunks(solve, x.shape[0], _MAX_ENTRIES_PER_CHUNK // self.dictionary.shape[0])

    def config(self) -> dict[str, Any]:
        return {"solver": self.solver.to_config()}

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"dictionary": self._dictionary}
        if self._offset is not None:
            out["offset"] = self._offset
        return out

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> SparseCodingModel:
        if "dictionary" not in tensors:
            raise ValueError("saved sparse-coding model has no 'dictionary' tensor")
        return cls(tensors["dictionary"], solver_from_config(config["solver"]), tensors.get("offset"))
