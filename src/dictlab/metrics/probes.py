"""Reading the label out of codes: a logistic-regression probe on all units, and the best single unit's AUC.

The study's label is z₀ > 0.5 (STUDY-SPEC §1.2). Both are fitted/selected on one set (the study: ID-val)
and evaluated, unchanged, on others (ID and OOD). These are the only things a metric here trains.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from dictlab.metrics.inputs import ArrayLike, as_binary_labels, as_matrix
from dictlab.validation import check_positive

LabelledSet = tuple[ArrayLike, ArrayLike]
# A column with a smaller (population) std is treated as constant: AUC 0.5, as in the study.
CONSTANT_STD = 1e-10
# Columns ranked per block, bounding the two (block, N) int64 rank tensors to ~128 MB.
_AUC_BLOCK_ENTRIES = 1 << 23


def _labelled(name: str, data: LabelledSet, cols: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    if not isinstance(data, tuple) or len(data) != 2:
        raise ValueError(f"{name} must be a (codes, labels) pair")
    codes = as_matrix(f"{name} codes", data[0], cols=cols)
    return codes, as_binary_labels(f"{name} labels", data[1], codes.shape[0])


def _require_both_classes(name: str, labels: np.ndarray) -> None:
    if labels.min() == labels.max():
        raise ValueError(
            f"{name} labels contain a single class ({int(labels[0])}) in {labels.size} samples; "
            "a probe or an AUC needs both classes — use a larger or stratified set"
        )


def probe_accuracy(
    fit_codes: ArrayLike,
    fit_labels: ArrayLike,
    eval_sets: Mapping[str, LabelledSet],
    *,
    C: float = 1.0,
    standardize: bool = True,
    max_iter: int = 1000,
) -> dict[str, float]:
    """Accuracy of a logistic-regression probe fitted on fit_codes (N, q), on each eval set (codes, labels).

    sklearn ``LogisticRegression`` (lbfgs, L2 weight 1/C, intercept) behind a ``StandardScaler`` fitted on
    the fit set. The study's probe is ``C=math.inf, standardize=False`` (unregularised, raw codes); it is
    fitted and scored in-sample for its ID accuracy — include the fit set in ``eval_sets`` for that.
    """
    fit_x, fit_y = _labelled("fit", (fit_codes, fit_labels))
    _require_both_classes("fit", fit_y)
    check_positive("C", C, allow_inf=True)  # C = inf: no regularisation (the study's probe)
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    sets = {name: _labelled(f"eval set {name!r}", data, cols=fit_x.shape[1]) for name, data in eval_sets.items()}
    classifier = LogisticRegression(C=C, max_iter=max_iter)
    probe: Pipeline | LogisticRegression = make_pipeline(StandardScaler(), classifier) if standardize else classifier
    probe.fit(fit_x.detach().cpu().numpy(), fit_y)
    return {name: float(probe.score(x.detach().cpu().numpy(), y)) for name, (x, y) in sets.items()}


def feature_aucs(codes: ArrayLike, labels: ArrayLike, *, min_std: float = CONSTANT_STD) -> torch.Tensor:
    """(q,) float64 symmetrised ROC-AUC max(AUC, 1 − AUC) of every column of codes (N, q) against labels.

    Mann–Whitney: AUC_j = P(c_j⁺ > c_j⁻) + ½ P(c_j⁺ = c_j⁻) over positive/negative sample pairs, counted
    exactly from sorted negatives (ties get half credit, as average ranks do), all columns at once, on the
    codes' device. Columns with std < ``min_std`` get 0.5.
    """
    x = as_matrix("codes", codes)
    y = as_binary_labels("labels", labels, x.shape[0])
    _require_both_classes("auc", y)
    positive = torch.from_numpy(y.astype(bool)).to(x.device)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    twice_u = torch.empty(x.shape[1], dtype=torch.float64, device=x.device)
    block = max(1, _AUC_BLOCK_ENTRIES // x.shape[0])
    for start in range(0, x.shape[1], block):
        cols = x[:, start : start + block]
        negatives = cols[~positive].T.contiguous().sort(dim=1).values
        positives = cols[positive].T.contiguous()
        below = torch.searchsorted(negatives, positives, side="left")
        below_or_tied = torch.searchsorted(negatives, positives, side="right")
        # 2U = Σ over positives of (2·#negatives below + #negatives tied): exact integers.
        twice_u[start : start + block] = (below + below_or_tied).sum(dim=1).to(torch.float64)
    auc = twice_u / (2.0 * n_pos * n_neg)
    symmetric = torch.maximum(auc, 1.0 - auc)
    constant = x.to(torch.float64).std(dim=0, correction=0) < min_std
    return symmetric.masked_fill_(constant, 0.5)


class BestFeatureAUC(NamedTuple):
    """feature : the code column with the highest symmetrised AUC on the fit set; fit_auc : that AUC;
    aucs : the same column's symmetrised AUC on each eval set (NaN for a single-class eval set)."""

    feature: int
    fit_auc: float
    aucs: dict[str, float]

    def as_dict(self) -> dict[str, float]:
        return {"fit_auc": self.fit_auc, **{f"auc_{name}": value for name, value in self.aucs.items()}}


def best_feature_auc(
    fit_codes: ArrayLike, fit_labels: ArrayLike, eval_sets: Mapping[str, LabelledSet]
) -> BestFeatureAUC:
    """Pick the single code column with the best symmetrised AUC on the fit set (first on ties); report its
    AUC on every eval set — the study's ``auc_iid``/``auc_ood`` with fit = eval = ID-val (STUDY-SPEC §3.3)."""
    fit_x, fit_y = _labelled("fit", (fit_codes, fit_labels))
    _require_both_classes("fit", fit_y)
    sets = {name: _labelled(f"eval set {name!r}", data, cols=fit_x.shape[1]) for name, data in eval_sets.items()}
    fit = feature_aucs(fit_x, fit_y)
    feature = int(torch.argmax(fit))
    aucs = {}
    for name, (x, y) in sets.items():
        single_class = y.min() == y.max()
        aucs[name] = math.nan if single_class else float(feature_aucs(x[:, feature : feature + 1], y)[0])
    return BestFeatureAUC(feature=feature, fit_auc=float(fit[feature]), aucs=aucs)
