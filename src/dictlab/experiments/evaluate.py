"""The evaluation protocol: every method's codes on the ID (validation) and OOD splits, scored against
ground truth with the same metrics.

Protocol (dictlab's default; where the study differs it is noted):

* every method is fitted on the **train** split (the study fitted its sparse-coding methods on the
  validation split itself, transductively);
* the label probe (logistic regression) and the best single feature are chosen on the train-split codes
  and scored on validation ("id") and OOD codes (the study scored its ID accuracy in-sample);
* MCC is over the latents active in each split, with a chance floor (the same codes, rows permuted);
  ``study_metrics=True`` adds the study's own MCC definitions (``mcc_study_id`` / ``mcc_study_ood``).
"""

from __future__ import annotations

import torch

from dictlab import metrics
from dictlab.data import CompositionalDataset, Split
from dictlab.models import DictionaryModel

SPLITS = ("id", "ood")


def encode_splits(model: DictionaryModel, data: CompositionalDataset) -> dict[str, torch.Tensor]:
    """Codes of the train, validation (``id``) and OOD splits: (N_split, q) each."""
    with torch.no_grad():
        return {"train": model.encode(data.train.y), "id": model.encode(data.val.y), "ood": model.encode(data.ood.y)}


def score_codes(
    model: DictionaryModel,
    data: CompositionalDataset,
    codes: dict[str, torch.Tensor],
    *,
    seed: int = 0,
    study_metrics: bool = False,
) -> dict[str, float]:
    """All metrics of one fitted model: MCC (+ chance), probe accuracy, best-feature AUC, dictionary
    match, support recovery, reconstruction R², L0 — each for ``id`` and ``ood`` where it applies."""
    splits: dict[str, Split] = {"id": data.val, "ood": data.ood}
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, float] = {}
    match = metrics.match_dictionaries(model.dictionary.detach().cpu(), data.dictionary.cpu())
    out["dict_mean_cosine"] = match.mean_cosine
    out["dict_frac_close"] = match.frac_close
    for name, split in splits.items():
        split_codes = codes[name].detach().cpu()
        result, chance = metrics.split_mcc_with_chance(split.codes, split_codes, generator)
        out[f"mcc_{name}"], out[f"mcc_chance_{name}"] = result.mcc, chance
        support = metrics.support_metrics(split.codes, split_codes, match.assignment)
        out[f"support_f1_{name}"] = support.f1
        out[f"r2_{name}"] = metrics.r2(split.y, model.decode(codes[name]).detach())
        out[f"l0_{name}"] = metrics.l0(split_codes)
    if study_metrics:
        out["mcc_study_id"] = metrics.mcc_study_id(data.val.codes, codes["id"].detach().cpu())
        out["mcc_study_ood"] = metrics.mcc_study_ood(data.ood.codes, codes["ood"].detach().cpu())

    fit_codes, fit_labels = codes["train"].detach().cpu(), data.train.labels.cpu()
    eval_sets = {name: (codes[name].detach().cpu(), split.labels.cpu()) for name, split in splits.items()}
    for name, accuracy in metrics.probe_accuracy(fit_codes, fit_labels, eval_sets).items():
        out[f"acc_{name}"] = accuracy
    best = metrics.best_feature_auc(fit_codes, fit_labels, eval_sets)
    for name, auc in best.aucs.items():
        out[f"auc_{name}"] = auc
    return out
