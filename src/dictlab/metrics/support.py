"""Support recovery: do the matched code units fire exactly on the samples where their true latent is active?

An entry is active when |value| > threshold (1e-4). A matching (``assignment[i]`` = code unit of true latent
i, from ``match_dictionaries`` or ``mcc``) restricts both sides to the matched pairs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from dictlab.data import SparseCodes
from dictlab.metrics.inputs import ArrayLike, as_dense_codes, as_matrix
from dictlab.metrics.matching import check_assignment
from dictlab.validation import check_positive

ACTIVE_THRESHOLD = 1e-4


class SupportMetrics(NamedTuple):
    """Per-sample support recovery averaged over samples (STUDY-SPEC §3.5).

    precision : TP / #matched units active (0 if none); recall : TP / #matched true latents active (0 if none);
    f1 : 2PR/(P+R) (0 if P+R = 0); gt_l0 : mean true L0 over matched latents; pred_l0 : mean code L0 over
    matched units; pred_total_l0 : mean code L0 over all units.
    """

    precision: float
    recall: float
    f1: float
    gt_l0: float
    pred_l0: float
    pred_total_l0: float

    def as_dict(self) -> dict[str, float]:
        return self._asdict()


class LatentClassification(NamedTuple):
    """Each matched unit as a detector of its true latent, averaged over matched pairs.

    Named as SAELens's synthetic ``ClassificationMetrics``: precision TP/(TP+FP), recall TP/(TP+FN),
    f1_score, accuracy (TP+TN)/N, each counted over samples per pair (0 where undefined). SAELens pairs
    every SAE latent with its best-cosine feature (many-to-one); here the pairs are the given one-to-one
    matching.
    """

    precision: float
    recall: float
    f1_score: float
    accuracy: float

    def as_dict(self) -> dict[str, float]:
        return self._asdict()


def _matched_supports(
    true_codes: SparseCodes | ArrayLike, codes: ArrayLike, assignment: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boolean supports (N, M) of the M matched true latents and units, and the full code support (N, q)."""
    true = as_dense_codes("true_codes", true_codes)
    pred = as_matrix("codes", codes, rows=true.shape[0]).to(true.device)
    check_positive("threshold", threshold, allow_zero=True)
    assignment = check_assignment(assignment, true.shape[1], pred.shape[1]).to(true.device)
    rows = (assignment >= 0).nonzero().squeeze(1)
    code_support = pred.abs() > threshold
    return true[:, rows].abs() > threshold, code_support[:, assignment[rows]], code_support


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp_min(1), torch.zeros_like(num))


def _f1(precision: torch.Tensor, recall: torch.Tensor) -> torch.Tensor:
    total = precision + recall
    return torch.where(total > 0, 2 * precision * recall / total.clamp_min(1e-300), torch.zeros_like(total))


def support_metrics(
    true_codes: SparseCodes | ArrayLike,
    codes: ArrayLike,
    assignment: torch.Tensor,
    threshold: float = ACTIVE_THRESHOLD,
) -> SupportMetrics:
    """Per-sample precision/recall/F1 of the matched supports, true (N, p) vs codes (N, q); assignment (p,)."""
    gt, pred, all_pred = _matched_supports(true_codes, codes, assignment, threshold)
    f64 = torch.float64
    tp = (gt & pred).sum(dim=1).to(f64)
    pred_pos = pred.sum(dim=1).to(f64)
    true_pos = gt.sum(dim=1).to(f64)
    precision = _ratio(tp, pred_pos)
    recall = _ratio(tp, true_pos)
    return SupportMetrics(
        precision=float(precision.mean()),
        recall=float(recall.mean()),
        f1=float(_f1(precision, recall).mean()),
        gt_l0=float(true_pos.mean()),
        pred_l0=float(pred_pos.mean()),
        pred_total_l0=float(all_pred.sum(dim=1).to(f64).mean()),
    )


def latent_classification(
    true_codes: SparseCodes | ArrayLike,
    codes: ArrayLike,
    assignment: torch.Tensor,
    threshold: float = ACTIVE_THRESHOLD,
) -> LatentClassification:
    """Per-latent precision/recall/F1/accuracy of matched units as detectors of their latent, averaged."""
    gt, pred, _ = _matched_supports(true_codes, codes, assignment, threshold)
    f64 = torch.float64
    tp = (gt & pred).sum(dim=0).to(f64)
    fp = (~gt & pred).sum(dim=0).to(f64)
    fn = (gt & ~pred).sum(dim=0).to(f64)
    tn = (~gt & ~pred).sum(dim=0).to(f64)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    return LatentClassification(
        precision=float(precision.mean()),
        recall=float(recall.mean()),
        f1_score=float(_f1(precision, recall).mean()),
        accuracy=float(((tp + tn) / gt.shape[0]).mean()),
    )
