"""One method on one dataset — build, fit on the train split, encode every split, score — and the task
``method`` that runs it inside a sweep (``dictlab run`` and ``dictlab sweep`` alike)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import Field

from dictlab.config import Config, parse_config
from dictlab.data import GroundTruthDataset, data_config
from dictlab.experiments.evaluate import encode_splits, score_codes
from dictlab.experiments.runs import Record, RunSpec
from dictlab.experiments.tasks import TaskContext, register_task
from dictlab.methods import METHODS, Problem, build_method
from dictlab.models import Anchors, DictionaryModel, FitCache, FitContext


@dataclass
class RunResult:
    """What one (method, seed) fit produced. ``model`` is kept in memory only, never serialised here."""

    method: str
    seed: int
    recipe: str
    overrides: dict[str, Any]
    metrics: dict[str, float]
    timings: dict[str, float]
    model: DictionaryModel | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("model")
        return out


def fit_method(
    name: str,
    data: GroundTruthDataset,
    *,
    seed: int,
    overrides: dict[str, Any] | None = None,
    recipe: str = "dictlab",
    track_dynamics: bool = False,
    progress: bool = False,
    cache: FitCache | None = None,
) -> DictionaryModel:
    """Build method ``name`` and fit it on ``data.train``. ``track_dynamics`` lets the learner log its
    dictionary's match to the truth along training (ground truth is never used to fit). ``cache`` shares
    identical fits between the methods run on this ``data`` and seed (``FitCache``)."""
    model = build_method(name, Problem.of(data), overrides, recipe)
    truth = data.train.codes
    if METHODS[name].supervised and truth is None:
        raise ValueError(
            f"method {name} is supervised and needs true training codes; this {data.generator} data has none"
        )
    target = data.train.target
    if model.predicts_target and target is None:
        raise ValueError(
            f"method {name} predicts targets and this {data.generator} data has none "
            "(generator lrb with target_dim set has them)"
        )
    context = FitContext(
        seed=seed,
        ground_truth=(data.target_dictionary if model.predicts_target else data.dictionary) if track_dynamics else None,
        codes=truth.to_dense() if METHODS[name].supervised and truth is not None else None,
        target=target if model.predicts_target else None,
        anchors=fit_anchors(name, model, data, seed),
        progress=progress,
        cache=cache,
    )
    return context.fit(model, data.train.y)


def fit_anchors(name: str, model: DictionaryModel, data: GroundTruthDataset, seed: int) -> Anchors | None:
    """The anchors of ``model.anchor_request()`` for a fit on ``data``: k true features drawn from the fit's
    own seeded stream ("ground_truth"), or the normalised class means of the training split ("class_means")."""
    request = model.anchor_request()
    if request is None:
        return None
    from dictlab.sae.anchoring import class_mean_anchors, ground_truth_anchors

    k, source = request
    has_encoder = model.encoder_directions is not None
    if source == "ground_truth":
        generator = FitContext(seed=seed).generator("anchors")
        target = data.target_dictionary if model.predicts_target else None
        anchors, _ = ground_truth_anchors(data.dictionary, k, generator, target_dictionary=target, encoder=has_encoder)
        return anchors
    labels = data.train.labels
    if labels is None:
        raise ValueError(f"method {name}: anchor_source=class_means needs labels; this {data.generator} data has none")
    target = data.train.target if model.predicts_target else None
    anchors = class_mean_anchors(data.train.y, labels, target=target, encoder=has_encoder)
    if anchors.k != k:
        raise ValueError(f"method {name}: anchor_features={k} but the training labels have {anchors.k} classes")
    return anchors


def run_method(
    name: str,
    data: GroundTruthDataset,
    *,
    seed: int,
    overrides: dict[str, Any] | None = None,
    recipe: str = "dictlab",
    study_metrics: bool = False,
    progress: bool = False,
    cache: FitCache | None = None,
) -> RunResult:
    """Fit, encode and score one method; timings in seconds for each phase. With a ``cache`` shared by the
    methods run on the same ``data`` and seed, a fit already made (DL-FISTA's, inside ``dl_lista``) is reused
    and its time is counted once, in the method that made it."""
    start = time.perf_counter()
    model = fit_method(name, data, seed=seed, overrides=overrides, recipe=recipe, progress=progress, cache=cache)
    fitted = time.perf_counter()
    codes = encode_splits(model, data)
    encoded = time.perf_counter()
    metrics = score_codes(model, data, codes, seed=seed, study_metrics=study_metrics)
    scored = time.perf_counter()
    timings = {
        "fit_s": fitted - start,
        "encode_s": encoded - fitted,
        "score_s": scored - encoded,
        "total_s": scored - start,
    }
    return RunResult(name, seed, recipe, dict(overrides or {}), metrics, timings, model)


# --- the task -----------------------------------------------------------------------------------------------


class MethodTaskParams(Config):
    """Params of task ``method``."""

    method: str = Field(..., description="Name in dictlab.methods.METHODS.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Hyperparameters over the recipe's defaults.")
    recipe: Literal["dictlab", "study"] = Field("dictlab", description="Defaults: dictlab's tuned or the study's.")
    study_metrics: bool = Field(False, description="Also compute the study's own MCC definitions.")
    label: str | None = Field(
        None, min_length=1, description="The record's label when the run is a named variant of the method."
    )


def method_params(spec: RunSpec) -> MethodTaskParams:
    return parse_config(MethodTaskParams, spec.params, prefix="params.", noun="parameter")


def check_method_run(spec: RunSpec) -> frozenset[str]:
    """Build (not fit) the method for the spec's data sizes, so that an unknown method or a bad hyperparameter
    fails before any run; the keys of the fits it shares (``DictionaryModel.fit_keys``)."""
    params = method_params(spec)
    METHODS[params.method]
    sizes = data_config(spec.data).sizes()
    return frozenset(build_method(params.method, Problem.stand_in(sizes), params.overrides, params.recipe).fit_keys())


@register_task("method", check=check_method_run)
def method_task(data: GroundTruthDataset, spec: RunSpec, context: TaskContext) -> list[Record]:
    """Fit one method on the train split and score it: one Record(label = the variant's name or the method,
    metrics ∪ phase timings)."""
    params = method_params(spec)
    result = run_method(
        params.method,
        data,
        seed=context.seed,
        overrides=params.overrides,
        recipe=params.recipe,
        study_metrics=params.study_metrics,
        progress=context.progress,
        cache=context.cache,
    )
    context.timings.update(result.timings)
    label = params.label or params.method
    if result.model is not None:
        context.save_model(label, result.model)
    return [Record(label, {**result.metrics, **result.timings})]
