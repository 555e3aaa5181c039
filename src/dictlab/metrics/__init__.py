"""Metrics against ground truth: pure functions of codes, dictionaries and labels (they never train a model;
the probes fit only a logistic regression). Shapes: codes (N, p), dictionaries (p, m) with atoms as rows."""

from dictlab.metrics.coherence import (
    RIPEstimate,
    babel,
    coherence_recovery_bound,
    mutual_coherence,
    rip_constant_estimate,
)
from dictlab.metrics.correlation import (
    MCCResult,
    abs_correlation,
    active_latents,
    mcc,
    mcc_chance,
    split_mcc,
    split_mcc_with_chance,
)
from dictlab.metrics.dictionary import DictionaryMatch, abs_cosine_matrix, match_dictionaries
from dictlab.metrics.feature_recovery import GT_RECOVERY_THRESHOLDS, FeatureRecovery, feature_recovery
from dictlab.metrics.matching import max_weight_assignment
from dictlab.metrics.probes import BestFeatureAUC, best_feature_auc, feature_aucs, probe_accuracy
from dictlab.metrics.reconstruction import l0, mse, r2
from dictlab.metrics.study_mcc import mcc_study_id, mcc_study_ood
from dictlab.metrics.support import LatentClassification, SupportMetrics, latent_classification, support_metrics

__all__ = [
    "GT_RECOVERY_THRESHOLDS",
    "BestFeatureAUC",
    "DictionaryMatch",
    "FeatureRecovery",
    "LatentClassification",
    "MCCResult",
    "RIPEstimate",
    "SupportMetrics",
    "abs_correlation",
    "abs_cosine_matrix",
    "active_latents",
    "babel",
    "best_feature_auc",
    "coherence_recovery_bound",
    "feature_aucs",
    "feature_recovery",
    "l0",
    "latent_classification",
    "match_dictionaries",
    "max_weight_assignment",
    "mcc",
    "mcc_chance",
    "mcc_study_id",
    "mcc_study_ood",
    "mse",
    "mutual_coherence",
    "probe_accuracy",
    "r2",
    "rip_constant_estimate",
    "split_mcc",
    "split_mcc_with_chance",
    "support_metrics",
]
