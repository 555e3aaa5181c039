"""The evaluation protocol: a fitted model's codes on every split, scored against ground truth.

Protocol (dictlab's default; where the study differs it is noted):

* every method is fitted on the ``train`` split (the study fitted its sparse-coding methods on the
  validation split itself, transductively) and scored on every other split — ``id`` (held-out ID samples)
  and ``ood`` for the compositional generator; each metric is named ``<metric>_<split>``;
* the label probe (logistic regression) and the best single feature are chosen on the train-split codes
  and scored on the evaluation splits (the study scored its ID accuracy in-sample);
* MCC is over the latents active in each split, with a chance floor (the same codes, rows permuted);
  ``study_metrics`` adds the study's own MCC definitions (``mcc_study_id`` / ``mcc_study_ood``).

Scores are registered in ``SCORES`` (a new metric is a pure function in ``dictlab.metrics`` plus one
``@register_score`` here, or in any module of the user's); a score that needs true codes or labels is skipped
on data without them, and one that belongs to an option (``details``, ``study_metrics``) runs only with it.
The learned dictionary is matched to the truth once per model and shared by every score that needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import torch

from dictlab import diagnostics, metrics
from dictlab.data import TRAIN, GroundTruthDataset, Split
from dictlab.models import DictionaryModel
from dictlab.registry import Registry

Option = Literal["details", "study_metrics"]


def encode_splits(model: DictionaryModel, data: GroundTruthDataset) -> dict[str, torch.Tensor]:
    """Codes (N_split, q) of every split of ``data`` (``train`` and the evaluation splits)."""
    with torch.no_grad():
        return {name: model.encode(split.y) for name, split in data.splits.items()}


@dataclass
class Scoring:
    """One model's codes on one dataset, with what several scores share computed once.

    codes : (N_split, q) per split name (``train`` included); seed : seed of the chance floors' permutations.
    """

    model: DictionaryModel
    data: GroundTruthDataset
    codes: dict[str, torch.Tensor]
    seed: int = 0
    generator: torch.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)

    @property
    def true_dictionary(self) -> torch.Tensor:
        """(p, ·) what the model's dictionary should learn: the data's ``dictionary``, or its
        ``target_dictionary`` for a model that decodes targets (a transcoder)."""
        if self.model.predicts_target:
            if self.data.target_dictionary is None:
                raise ValueError(f"the model predicts targets and this {self.data.generator} data has none")
            return self.data.target_dictionary
        return self.data.dictionary

    def reconstructed(self, split: Split) -> torch.Tensor:
        """(N, ·) what the model's ``decode`` should give on ``split``: its targets, or its observations."""
        return split.target if self.model.predicts_target and split.target is not None else split.y

    @cached_property
    def match(self) -> metrics.DictionaryMatch:
        """The learned dictionary Hungarian-matched to the truth by |cosine| (computed once)."""
        return metrics.match_dictionaries(self.model.dictionary.detach().cpu(), self.true_dictionary.cpu())

    def evaluation(self) -> dict[str, tuple[Split, torch.Tensor]]:
        """(split, its codes on the CPU) for every evaluation split."""
        return {name: (split, self.codes[name].detach().cpu()) for name, split in self.data.evaluation_splits().items()}


ScoreFn = Callable[[Scoring], dict[str, float]]
# What a score may need of the data: true codes and labels on every split, or the latents' hierarchy.
Need = Literal["codes", "labels", "hierarchy"]


@dataclass(frozen=True)
class Score:
    """A registered score: ``fn(scoring) -> {metric: value}``; ``needs`` what the data must have (true codes,
    labels, the hierarchy), ``option`` the scoring option it belongs to (None: always computed)."""

    name: str
    fn: ScoreFn
    needs: tuple[Need, ...] = ()
    option: Option | None = None


SCORES: Registry[Score] = Registry("score")  # run in registration order: the order of a record's metrics


def register_score(
    name: str, *, needs: tuple[Need, ...] = (), option: Option | None = None
) -> Callable[[ScoreFn], ScoreFn]:
    def decorator(fn: ScoreFn) -> ScoreFn:
        SCORES.register(name)(Score(name, fn, needs, option))
        return fn

    return decorator


def _has(data: GroundTruthDataset, part: str) -> bool:
    if part == "hierarchy":
        return data.hierarchy is not None
    return all(getattr(split, part) is not None for split in data.splits.values())


def score_codes(
    model: DictionaryModel,
    data: GroundTruthDataset,
    codes: dict[str, torch.Tensor],
    *,
    seed: int = 0,
    study_metrics: bool = False,
    details: bool = False,
) -> dict[str, float]:
    """Every registered score of one fitted model whose needs the data meet: MCC (+ chance), probe accuracy,
    best-feature AUC, dictionary match, support recovery, reconstruction R², L0 — per evaluation split.

    codes : (N_split, q) for ``train`` and every evaluation split (``encode_splits``).
    details : also the dictionary match's angle and norm ratio and support precision/recall (surgeries).
    study_metrics : also the study's own MCC definitions.
    """
    options = {"details": details, "study_metrics": study_metrics}
    scoring = Scoring(model, data, codes, seed)
    out: dict[str, float] = {}
    for _, score in SCORES.in_order():
        if score.option is not None and not options[score.option]:
            continue
        if all(_has(data, part) for part in score.needs):
            out.update(score.fn(scoring))
    return out


# --- the scores --------------------------------------------------------------------------------------------


@register_score("dictionary")
def _dictionary(s: Scoring) -> dict[str, float]:
    return {"dict_mean_cosine": s.match.mean_cosine, "dict_frac_close": s.match.frac_close}


@register_score("dictionary_details", option="details")
def _dictionary_details(s: Scoring) -> dict[str, float]:
    """STUDY-SPEC §3.4: mean angle (radians) and norm ratio of the matched atoms, besides cosine and frac_close."""
    return {f"dict_{name}": value for name, value in s.match.as_dict().items()}


@register_score("mcc", needs=("codes",))
def _mcc(s: Scoring) -> dict[str, float]:
    out = {}
    for name, (split, codes) in s.evaluation().items():
        result, chance = metrics.split_mcc_with_chance(split.codes, codes, s.generator)  # type: ignore[arg-type]
        out[f"mcc_{name}"], out[f"mcc_chance_{name}"] = result.mcc, chance
    return out


@register_score("study_mcc", needs=("codes",), option="study_metrics")
def _study_mcc(s: Scoring) -> dict[str, float]:
    """The study's own definitions, which exist for its two splits only."""
    definitions = {"id": metrics.mcc_study_id, "ood": metrics.mcc_study_ood}
    return {
        f"mcc_study_{name}": definitions[name](split.codes, codes)  # type: ignore[arg-type]
        for name, (split, codes) in s.evaluation().items()
        if name in definitions
    }


@register_score("support", needs=("codes",))
def _support(s: Scoring) -> dict[str, float]:
    return {
        f"support_f1_{name}": metrics.support_metrics(split.codes, codes, s.match.assignment).f1  # type: ignore[arg-type]
        for name, (split, codes) in s.evaluation().items()
    }


@register_score("support_details", needs=("codes",), option="details")
def _support_details(s: Scoring) -> dict[str, float]:
    """STUDY-SPEC §3.5: support precision and recall under the decoder-to-truth matching."""
    out = {}
    for name, (split, codes) in s.evaluation().items():
        support = metrics.support_metrics(split.codes, codes, s.match.assignment)  # type: ignore[arg-type]
        out[f"support_precision_{name}"], out[f"support_recall_{name}"] = support.precision, support.recall
    return out


@register_score("reconstruction")
def _reconstruction(s: Scoring) -> dict[str, float]:
    out = {}
    for name, split in s.data.evaluation_splits().items():
        out[f"r2_{name}"] = metrics.r2(s.reconstructed(split), s.model.decode(s.codes[name]).detach())
        out[f"l0_{name}"] = metrics.l0(s.codes[name].detach().cpu())
    return out


def _probe_sets(s: Scoring) -> tuple[torch.Tensor, torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]] | None:
    """Train codes and labels and the evaluation sets; None when the train labels hold a single class (the
    probe and the best feature are then undefined and left out)."""
    labels = s.data.train.labels.cpu()  # type: ignore[union-attr]
    if bool(labels.all()) or not bool(labels.any()):
        return None
    sets = {name: (codes, split.labels.cpu()) for name, (split, codes) in s.evaluation().items()}  # type: ignore[union-attr]
    return s.codes[TRAIN].detach().cpu(), labels, sets


@register_score("probe", needs=("labels",))
def _probe(s: Scoring) -> dict[str, float]:
    sets = _probe_sets(s)
    if sets is None:
        return {}
    return {f"acc_{name}": value for name, value in metrics.probe_accuracy(*sets).items()}


@register_score("best_feature", needs=("labels",))
def _best_feature(s: Scoring) -> dict[str, float]:
    sets = _probe_sets(s)
    if sets is None:
        return {}
    return {f"auc_{name}": value for name, value in metrics.best_feature_auc(*sets).aucs.items()}


@register_score("stationarity")
def _stationarity(s: Scoring) -> dict[str, float]:
    """Seed 003's stationarity condition on the data the model was fitted to (train), over live atoms: the
    median and 95th percentile of ‖(I − d_j d_jᵀ) Rᵀz_j‖ / ‖Rᵀz_j‖ (0: the atom points along the code-weighted
    sum of its residuals, the condition with an L1 term), and the median of ‖Rᵀz_j‖ / Σ_n |z_nj|‖r_n‖ (0: no
    pull at all, the condition without one, e.g. TopK codes, whose angle is ~90° by construction)."""
    model = s.model
    offset = None if model.offset is None else model.offset.detach().cpu()
    codes = s.codes[TRAIN].detach().cpu()
    observed = s.reconstructed(s.data.train).cpu()
    result = diagnostics.stationarity(observed, codes, model.dictionary.detach().cpu(), offset=offset)
    coherence = diagnostics.quantile_summary(result.pull_coherence[~result.dead])
    return {
        "stationarity_median": result.quantiles["median"],
        "stationarity_q95": result.quantiles["q95"],
        "pull_coherence_median": coherence["median"],
    }


@register_score("absorption", needs=("codes", "hierarchy"))
def _absorption(s: Scoring) -> dict[str, float]:
    """Feature absorption per split (``diagnostics.absorption``: a parent's latent silent while an active latent
    carries the parent's direction, over the samples where a child is active), and the true features that two
    or more learned atoms match (|cos| ≥ 0.7: splitting)."""
    learned, true = s.model.dictionary.detach().cpu(), s.data.dictionary.cpu()
    parent = s.data.hierarchy.parent.cpu()  # type: ignore[union-attr]
    out = {
        f"absorption_{name}": diagnostics.absorption(learned, true, parent, codes, split.codes).overall  # type: ignore[arg-type]
        for name, (split, codes) in s.evaluation().items()
    }
    out["split_features"] = float(diagnostics.splitting(learned, true).split.numel())
    return out


# --- feature recovery (seed 004 §5.1: GT Recovery and Maximum Inner Product) --------------------------------

GT_RECOVERY_LABELS = {"90": 0.9, "95": 0.95}  # metric suffix → threshold τ


def _feature_recovery(learned: torch.Tensor, true: torch.Tensor, suffix: str = "") -> dict[str, float]:
    """``mip`` and ``gt_recovery_<τ>`` of learned directions against true features, names ending in ``suffix``."""
    result = metrics.feature_recovery(learned.detach().cpu(), true.cpu(), thresholds=GT_RECOVERY_LABELS.values())
    out = {f"mip{suffix}": result.mip}
    out.update({f"gt_recovery{suffix}_{label}": result.gt_recovery[tau] for label, tau in GT_RECOVERY_LABELS.items()})
    return out


@register_score("feature_recovery")
def _feature_recovery_decoder(s: Scoring) -> dict[str, float]:
    """For every true feature its best |cos| with any decoder row: MIP is their mean, GT Recovery the share above
    0.9 and 0.95 (no one-to-one matching, unlike ``dict_mean_cosine``); a transcoder's against the target
    dictionary."""
    return _feature_recovery(s.model.dictionary, s.true_dictionary)


@register_score("feature_recovery_encoder")
def _feature_recovery_encoder(s: Scoring) -> dict[str, float]:
    """The same for the directions the encoder reads (the seed's W_learned = W_Eᵀ) against the data's
    dictionary, for models that have an encoder: ``mip_encoder``, ``gt_recovery_encoder_90`` / ``_95``."""
    directions = s.model.encoder_directions
    return {} if directions is None else _feature_recovery(directions, s.data.dictionary, "_encoder")


@register_score("feature_recovery_sources")
def _feature_recovery_sources(s: Scoring) -> dict[str, float]:
    """On data whose observations concatenate sources (crosscoders): the decoder's feature recovery within each
    source's block of columns, ``mip_source<i>`` and ``gt_recovery_90_source<i>`` for i = 1 … s. Left out for a
    model that decodes targets, whose columns are not the observations' blocks."""
    if s.data.sources is None or s.model.predicts_target:
        return {}
    learned, true = s.model.dictionary.detach().cpu(), s.data.dictionary.cpu()
    out: dict[str, float] = {}
    for i, (learned_block, true_block) in enumerate(
        zip(learned.split(s.data.sources, dim=1), true.split(s.data.sources, dim=1), strict=True), start=1
    ):
        result = metrics.feature_recovery(learned_block, true_block, thresholds=(GT_RECOVERY_LABELS["90"],))
        out[f"mip_source{i}"] = result.mip
        out[f"gt_recovery_90_source{i}"] = result.gt_recovery[GT_RECOVERY_LABELS["90"]]
    return out
