"""PCA as a baseline "dictionary": the top principal directions of the in-distribution observations.

With the mean μ (m,) and the thin SVD of the centred data ``Y − μ = U diag(s) Vᵀ``, the dictionary is the
first n rows of Vᵀ (n, m) — orthonormal atoms as rows, scikit-learn's ``components_`` — the offset is μ,
and ``encode(y) = (y − μ) Vₙ``, ``decode(z) = z Vₙᵀ + μ``. Each component's sign is fixed so that its
largest-magnitude entry is positive (scikit-learn's ``svd_flip(u_based_decision=False)``), so the result is
deterministic and equal to ``sklearn.decomposition.PCA`` with the full SVD solver.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from dictlab.config import Config
from dictlab.models.base import MODEL_KINDS, DictionaryModel, FitContext
from dictlab.validation import check_int_range, check_matrix


class PCAConfig(Config):
    """Hyperparameters of the PCA baseline."""

    n_components: int | None = Field(
        None, ge=1, description="Components kept, 1 ≤ n ≤ min(N, m); None: all min(N, m). The study passes k."
    )


@MODEL_KINDS.register("pca")
class PCABaseline(DictionaryModel):
    """PCA fitted on in-distribution observations (the training split in dictlab's protocol).

    Codes are (N, n): with n ≠ p they are not comparable latent-by-latent with the true codes, only as a
    low-dimensional linear summary of the observations.
    """

    kind: ClassVar[str] = "pca"

    def __init__(self, config: PCAConfig | None = None) -> None:
        self.settings = config if config is not None else PCAConfig()
        self.components: torch.Tensor | None = None  # (n, m)
        self.mean: torch.Tensor | None = None  # (m,)
        self.explained_variance: torch.Tensor | None = None  # (n,) s² / (N − 1)

    def fit(self, y: torch.Tensor, context: FitContext | None = None) -> PCABaseline:
        """Principal directions of observations (N, m), N ≥ 2; the SVD runs in float64. Returns self."""
        check_matrix("y", y)
        n_rows, m = y.shape
        if n_rows < 2:
            raise ValueError(f"PCA needs at least 2 observations, got {n_rows}")
        rank_cap = min(n_rows, m)
        n = self.settings.n_components if self.settings.n_components is not None else rank_cap
        check_int_range(f"n_components (with N={n_rows}, m={m})", n, 1, rank_cap)
        x = y.double()
        mean = x.mean(dim=0)
        _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)  # (r,), (r, m)
        vh = vh[:n]
        largest = vh.abs().argmax(dim=1, keepdim=True)  # (n, 1)
        vh = vh * torch.sign(vh.gather(1, largest))
        self.components = vh.to(y.dtype).contiguous()  # LAPACK's Vᵀ is column-major; a loaded copy is not
        self.mean = mean.to(y.dtype)
        self.explained_variance = (s[:n] ** 2 / (n_rows - 1)).to(y.dtype)
        return self

    @property
    def dictionary(self) -> torch.Tensor:
        """(n, m) orthonormal principal directions, atoms as rows."""
        return self._require_fitted()

    @property
    def offset(self) -> torch.Tensor | None:
        return self.mean

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """Codes (N, n) = (y − mean) @ componentsᵀ."""
        components = self._require_fitted()
        check_matrix("y", y, cols=components.shape[1])
        return self.remove_offset(y.to(dtype=components.dtype, device=components.device)) @ components.T

    def _require_fitted(self) -> torch.Tensor:
        if self.components is None:
            raise ValueError("PCA is not fitted: call fit(y) first")
        return self.components

    def config(self) -> dict[str, Any]:
        return {"pca": self.settings.model_dump()}

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"components": self._require_fitted()}
        for name in ("mean", "explained_variance"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> PCABaseline:
        missing = {"components", "mean"} - tensors.keys()
        if missing:
            raise ValueError(f"saved PCA model lacks tensors {sorted(missing)}")
        components, mean = tensors["components"], tensors["mean"]
        check_matrix("components", components)
        if mean.shape != (components.shape[1],):
            raise ValueError(f"saved PCA mean must have shape ({components.shape[1]},), got {tuple(mean.shape)}")
        model = cls(PCAConfig(**config.get("pca", {})))
        model.components, model.mean = components, mean
        model.explained_variance = tensors.get("explained_variance")
        return model
