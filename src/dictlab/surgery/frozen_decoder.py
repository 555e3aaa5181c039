"""Frozen decoder: is the SAE's encoder (amortisation) or its dictionary the bottleneck? (STUDY-SPEC §4.3.1–2)

The fitted SAE's decoder ``W_dec`` (p, m) is kept and its encoder replaced by FISTA (z ≥ 0) on inputs
``y − b_dec``. Arms (labels for method ``sae_X``):

* ``sae_X`` — the SAE's own encoder;
* ``fista+sae_X`` — FISTA from zero on ``W_dec``;
* ``renormed+sae_X`` — FISTA on ``W_dec`` with unit-norm rows;
* ``oracle_norms+sae_X`` — FISTA on ``W_dec`` with each Hungarian-matched row rescaled to the norm of its
  true atom, unmatched rows zeroed. The study found (and here it holds by construction) that with unit-norm
  true atoms and decoder rows kept near unit norm this coincides with ``renormed``: norms are not the issue;
* ``refined+sae_X`` — FISTA warm-started from the SAE's codes (the amortisation gap, closed by inference);
* ``fista_oracle`` — FISTA on the true dictionary, the ceiling.

Each arm's record holds ``score``'s metrics: MCC / accuracy / AUC / support for id and ood, and the arm's
dictionary matched to the truth (mean cosine, angle, norm ratio, frac_close).
"""

from __future__ import annotations

from collections.abc import Iterator

from dictlab.data import GroundTruthDataset
from dictlab.experiments.evaluate import encode_splits
from dictlab.experiments.runs import Record
from dictlab.experiments.tasks import TaskContext
from dictlab.models import DictionaryModel
from dictlab.surgery.parts import (
    FistaParams,
    Variant,
    encode_from,
    fista_solver,
    fit_model,
    oracle_variant,
    register_surgery,
    renormalised,
    score_variants,
    with_dictionary,
    with_oracle_norms,
)


class FrozenDecoderParams(FistaParams):
    """See the module docstring."""


def frozen_decoder_variants(
    data: GroundTruthDataset, model: DictionaryModel, params: FrozenDecoderParams
) -> Iterator[Variant]:
    """The arms of the module docstring for a fitted ``model``, one at a time; codes for train, id and ood."""
    name, solver = params.method, fista_solver(params.lam, params.max_iter)
    own = encode_splits(model, data)
    frozen = with_dictionary(model, solver)
    renormed = with_dictionary(model, solver, renormalised(model.dictionary))
    oracle_norms = with_dictionary(model, solver, with_oracle_norms(model.dictionary, data.dictionary))
    yield Variant(name, model, own)
    yield Variant(f"fista+{name}", frozen, encode_splits(frozen, data))
    yield Variant(f"renormed+{name}", renormed, encode_splits(renormed, data))
    yield Variant(f"oracle_norms+{name}", oracle_norms, encode_splits(oracle_norms, data))
    yield Variant(f"refined+{name}", frozen, encode_from(frozen, data, own))
    yield oracle_variant(data, params.lam, params.max_iter)


def frozen_decoder_records(
    data: GroundTruthDataset, model: DictionaryModel, params: FrozenDecoderParams, *, seed: int
) -> list[Record]:
    """One scored record per arm (see the module docstring)."""
    return score_variants(frozen_decoder_variants(data, model, params), data, seed=seed)


@register_surgery("frozen_decoder", FrozenDecoderParams)
def frozen_decoder(data: GroundTruthDataset, params: FrozenDecoderParams, context: TaskContext) -> list[Record]:
    """Fit ``params.method`` on the train split, then score its encoder against FISTA on its frozen decoder."""
    return frozen_decoder_records(data, fit_model(data, params, context), params, seed=context.seed)
