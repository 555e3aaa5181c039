"""The study's supervised linear probe: ridge regression from observations to the true codes.

``W = argmin_W ‖Z − Y W‖²_F + α‖W‖²_F`` for Y (N, m), Z (N, p), W (m, p), no intercept, with α chosen from
a grid by exact leave-one-out cross-validation — scikit-learn's ``RidgeCV(alphas=..., fit_intercept=False)``
(STUDY-SPEC §2.6). With the thin SVD ``Y = U diag(s) Vᵀ`` every α costs two small products:

    W_α = V diag(s / (s² + α)) Uᵀ Z,    h_ii = Σ_j U_ij² s_j² / (s_j² + α),
    LOO residual_i = (z_i − ŷ_i) / (1 − h_ii)       (Allen 1974; Golub, Heath & Wahba 1979)

and the chosen α minimises the mean squared LOO residual over all samples and outputs (one α for all
outputs, first of the grid on ties, as scikit-learn).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, field_validator

from dictlab.config import Config
from dictlab.data.sparse_codes import SparseCodes
from dictlab.models.base import MODEL_KINDS, DictionaryModel, FitContext
from dictlab.validation import check_matrix

STUDY_ALPHAS = (1e-6, 1e-4, 1e-2, 1.0, 10.0)


class RidgeProbeConfig(Config):
    """Hyperparameters of the linear probe; defaults are the study's."""

    alphas: tuple[float, ...] = Field(
        STUDY_ALPHAS,
        min_length=1,
        strict=False,  # a TOML or JSON array arrives as a list
        description="Candidate ridge penalties α > 0, searched in this order.",
    )

    @field_validator("alphas")
    @classmethod
    def _positive(cls, alphas: tuple[float, ...]) -> tuple[float, ...]:
        bad = [a for a in alphas if not a > 0 or a == float("inf")]
        if bad:
            raise ValueError(f"every alpha must be finite and > 0, got {bad}")
        return alphas


def ridge_loo(y: torch.Tensor, codes: torch.Tensor, alphas: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge weights for every α and their mean squared leave-one-out errors, in float64.

    y : (N, m) inputs; codes : (N, p) targets. Returns (weights (len(alphas), m, p), errors (len(alphas),)).

    The residual row z_i − ŷ_i = z⊥_i + (u_i ⊙ c) P with z⊥ = (I − UUᵀ)Z, P = UᵀZ (r, p) and c = α/(s² + α),
    so its squared norm needs only z⊥Pᵀ (N, r) and PPᵀ (r, r), formed once: after the SVD each α costs
    O(N r²), not O(N r p).
    """
    x, t = y.double(), codes.double()
    u, s, vh = torch.linalg.svd(x, full_matrices=False)  # (N, r), (r,), (r, m)
    projected = u.T @ t  # P, (r, p)
    orthogonal = t - u @ projected  # z⊥, (N, p)
    orthogonal_sq = (orthogonal**2).sum(dim=1)  # (N,)
    cross = orthogonal @ projected.T  # z⊥Pᵀ, (N, r)
    gram = projected @ projected.T  # PPᵀ, (r, r)
    s2 = s**2
    weights, errors = [], []
    for alpha in alphas:
        c = alpha / (s2 + alpha)  # 1 − shrinkage, (r,)
        uc = u * c  # (N, r)
        # ‖z_i − ŷ_i‖² = ‖z⊥_i‖² + 2 z⊥_i·((u_i ⊙ c)P) + ‖(u_i ⊙ c)P‖²
        residual_sq = orthogonal_sq + 2 * (cross * uc).sum(dim=1) + ((uc @ gram) * uc).sum(dim=1)
        leverage = (u**2) @ (1 - c)  # h_ii, (N,)
        errors.append((residual_sq / (1 - leverage) ** 2).sum() / t.numel())
        weights.append(vh.T @ ((s / (s2 + alpha))[:, None] * projected))
    return torch.stack(weights), torch.stack(errors)


@MODEL_KINDS.register("linear_probe")
class RidgeProbe(DictionaryModel):
    """Supervised linear baseline: codes ``encode(y) = y W`` with W (m, p) fitted by ridge on the true codes.

    Its ``dictionary`` is *derived*, not learned: the minimum-norm least-squares decoder of its own codes on
    the training data, ``D = argmin ‖Y − (Y W) D‖²_F = W⁺`` (p, m) when Y has full column rank (then
    ``W D = I`` and ``decode(encode(y)) = y`` for every y). The probe's real object is ``coef`` = W.
    """

    kind: ClassVar[str] = "linear_probe"

    def __init__(self, config: RidgeProbeConfig | None = None) -> None:
        self.settings = config if config is not None else RidgeProbeConfig()
        self.coef: torch.Tensor | None = None  # W (m, p)
        self.alpha_: float | None = None
        self.cv_errors: torch.Tensor | None = None  # (len(alphas),) mean squared LOO error per α
        self._dictionary: torch.Tensor | None = None

    def fit(self, y: torch.Tensor, context: FitContext | None = None) -> RidgeProbe:
        """Ridge from observations (N, m) to ``context.codes`` (N, p dense, or SparseCodes); returns self."""
        codes = context.codes if context is not None else None
        if codes is None:
            raise ValueError("the linear probe is supervised: pass the true training codes in FitContext.codes")
        if isinstance(codes, SparseCodes):
            codes = codes.to_dense()
        check_matrix("y", y)
        check_matrix("FitContext.codes", codes, rows=y.shape[0])
        if y.shape[0] < 2:
            raise ValueError(f"leave-one-out needs at least 2 training rows, got {y.shape[0]}")
        weights, errors = ridge_loo(y, codes.to(y.device), self.settings.alphas)
        best = int(torch.argmin(errors))  # the first minimum, as scikit-learn's strict '>' on scores
        w = weights[best]
        self.alpha_ = self.settings.alphas[best]
        self.cv_errors = errors.to(y.dtype)
        self.coef = w.to(y.dtype)
        self._dictionary = torch.linalg.pinv(w).to(y.dtype)
        return self

    @property
    def dictionary(self) -> torch.Tensor:
        """(p, m) derived decoder W⁺ (see the class docstring)."""
        self._require_fitted()
        return self._dictionary  # type: ignore[return-value]

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """Codes (N, p) = y W, in W's dtype."""
        w = self._require_fitted()
        check_matrix("y", y, cols=w.shape[0])
        return y.to(dtype=w.dtype, device=w.device) @ w

    def _require_fitted(self) -> torch.Tensor:
        if self.coef is None:
            raise ValueError("the linear probe is not fitted: call fit(y, FitContext(codes=...)) first")
        return self.coef

    def config(self) -> dict[str, Any]:
        return {"probe": self.settings.model_dump(mode="json"), "alpha": self.alpha_}

    def tensors(self) -> dict[str, torch.Tensor]:
        w = self._require_fitted()
        out = {"coef": w, "dictionary": self.dictionary}
        if self.cv_errors is not None:
            out["cv_errors"] = self.cv_errors
        return out

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> RidgeProbe:
        missing = {"coef", "dictionary"} - tensors.keys()
        if missing:
            raise ValueError(f"saved linear probe lacks tensors {sorted(missing)}")
        w, d = tensors["coef"], tensors["dictionary"]
        check_matrix("coef", w)
        check_matrix("dictionary", d, rows=w.shape[1], cols=w.shape[0])
        model = cls(RidgeProbeConfig(**config.get("probe", {})))
        model.coef, model._dictionary = w, d
        model.alpha_ = config.get("alpha")
        model.cv_errors = tensors.get("cv_errors")
        return model
