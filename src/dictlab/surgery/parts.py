"""The parts every surgery recombines, and the one way their codes are scored.

A surgery takes a fitted model (usually an SAE: dictionary ``W_dec`` (p, m), offset ``b_dec`` (m,), its
own encoder) and swaps one part: FISTA as the encoder on the frozen decoder, the decoder rescaled, the
encoder's codes as FISTA's starting point or support. Every variant is a ``Variant``: a model (for the
dictionary, the offset and decoding) with its codes for every split of the data, scored by ``score`` —
``dictlab.experiments.score_codes`` with its details (the dictionary match's angle and norm ratio, support
precision and recall). Every surgery names the method it operates on ``method``, like every other task.

Shapes, atoms as rows: observations Y (N, m), codes Z (N, p), dictionary D (p, m), ``Y ≈ Z D + offset``
(the papers' column form ``y = A z + b_d`` has ``A = Dᵀ``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple, TypeVar

import torch
from pydantic import Field, field_validator

from dictlab import metrics
from dictlab.config import Config, parse_config
from dictlab.data import GroundTruthDataset, data_config
from dictlab.experiments.evaluate import encode_splits, score_codes
from dictlab.experiments.method_task import fit_method
from dictlab.experiments.runs import Record, RunSpec
from dictlab.experiments.tasks import TaskContext, register_task
from dictlab.inference import FistaSolver
from dictlab.methods import METHODS, Problem, build_method
from dictlab.models import DictionaryModel, SparseCodingModel


def known_method(name: str) -> str:
    """``name`` if it is a registered method; ValueError listing the allowed names otherwise."""
    METHODS[name]  # ValueError listing the allowed names
    return name


class FitParams(Config):
    """How the model a surgery operates on is fitted: its method's overrides and recipe."""

    overrides: dict[str, Any] = Field(default_factory=dict, description="Hyperparameter overrides of the method.")
    recipe: Literal["dictlab", "study"] = Field(
        "dictlab", description="Defaults of the method: dictlab's or the study's."
    )

    def method_name(self) -> str:
        """Name (in ``dictlab.methods.METHODS``) of the method to fit."""
        raise NotImplementedError

    def validate_for(self, problem: Problem) -> None:
        """Build the method (unfitted) for ``problem`` so that bad overrides fail before any work; ValueError."""
        build_method(self.method_name(), problem, self.overrides, self.recipe)


class SurgeryParams(FitParams):
    """Parameters of a surgery on one fitted model: which method (usually an SAE) and how it is fitted."""

    method: str = Field(
        "sae_topk", description="Method whose fitted model is operated on: a name in dictlab.methods.METHODS."
    )

    _known = field_validator("method")(known_method)

    def method_name(self) -> str:
        return self.method


class FistaParams(SurgeryParams):
    """A surgery that runs FISTA (z ≥ 0) with one λ and iteration count."""

    lam: float = Field(0.1, ge=0, description="λ of FISTA; the study's 0.1.")
    max_iter: int = Field(100, ge=0, description="FISTA iterations (the study's 100).")


P = TypeVar("P", bound=FitParams)
T = TypeVar("T", int, float)
Surgery = Callable[[GroundTruthDataset, P, TaskContext], list[Record]]


def sorted_nonnegative(values: list[T], what: str) -> list[T]:
    """A grid of λs or budgets as given in a spec: non-empty, each ≥ 0; returned sorted without repeats."""
    if not values or min(values) < 0:
        raise ValueError(f"{what} must be >= 0 (at least one value), got {values}")
    return sorted(set(values))


def parse_params(task: str, cls: type[P], params: dict[str, Any]) -> P:
    """``cls`` validated from a spec's params; ValueError naming the task, the field, the value and the rule."""
    return parse_config(cls, params, where=f"task {task}", prefix="params.", noun="parameter")


def register_surgery(name: str, params_class: type[P]) -> Callable[[Surgery[P]], Surgery[P]]:
    """Register ``fn(data, params, context)`` as task ``surgery.<name>`` (taking data, RunSpec, TaskContext),
    with a check that validates a spec's params and builds its method before any run."""
    task = f"surgery.{name}"

    def decorator(fn: Surgery[P]) -> Surgery[P]:
        def run(data: GroundTruthDataset, spec: RunSpec, context: TaskContext) -> list[Record]:
            return fn(data, parse_params(task, params_class, spec.params), context)

        def check(spec: RunSpec) -> frozenset[str]:
            parse_params(task, params_class, spec.params).validate_for(Problem.stand_in(data_config(spec.data).sizes()))
            return frozenset()

        run.__name__ = run.__qualname__ = f"surgery_{name}"
        run.__doc__ = fn.__doc__
        register_task(task, check=check)(run)
        return fn

    return decorator


def fit_model(
    data: GroundTruthDataset,
    params: FitParams,
    context: TaskContext,
    *,
    track_dynamics: bool = False,
) -> DictionaryModel:
    """Fit ``params.method_name()`` on the train split with ``context.seed``; its fit time goes to
    ``context.timings`` and the model to ``context.artifacts_dir`` (safetensors) when artifacts are asked for."""
    name = params.method_name()
    start = time.perf_counter()
    torch.manual_seed(context.seed)  # for library code that draws from the global generator
    model = fit_method(
        name,
        data,
        seed=context.seed,
        overrides=params.overrides,
        recipe=params.recipe,
        track_dynamics=track_dynamics,
        progress=context.progress,
        cache=context.cache,
    )
    context.timings[f"fit_{name}_s"] = time.perf_counter() - start
    context.save_model(name, model)
    return model


# --- recombinations --------------------------------------------------------------------------------------


def fista_solver(lam: float, max_iter: int, tol: float | None = None) -> FistaSolver:
    """The study's inference: FISTA with z ≥ 0."""
    return FistaSolver(lam=lam, max_iter=max_iter, tol=tol, nonneg=True)


def with_dictionary(
    model: DictionaryModel, solver: FistaSolver, dictionary: torch.Tensor | None = None
) -> SparseCodingModel:
    """``solver`` as the encoder of ``model``'s decoder (p, m) — or of ``dictionary`` (p, m) — with its offset:
    the frozen decoder."""
    atoms = model.dictionary.detach() if dictionary is None else dictionary
    offset = model.offset.detach() if model.offset is not None else None
    return SparseCodingModel(atoms, solver, offset)


def renormalised(dictionary: torch.Tensor) -> torch.Tensor:
    """(p, m) with every row scaled to unit norm (zero rows stay zero)."""
    return dictionary / torch.linalg.vector_norm(dictionary, dim=1, keepdim=True).clamp_min(1e-12)


def with_oracle_norms(dictionary: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Learned directions with true norms: each learned row (q, m) matched to a true atom (p, m) by the
    Hungarian |cosine| matching (``metrics.match_dictionaries``) is rescaled to that atom's norm; rows
    matched to no true atom are zeroed (STUDY-SPEC §4.3.2)."""
    match = metrics.match_dictionaries(dictionary, truth)
    matched_true = (match.assignment >= 0).nonzero().squeeze(1).to(dictionary.device)
    matched_learned = match.assignment.to(dictionary.device)[matched_true]
    scale = torch.zeros(dictionary.shape[0], dtype=dictionary.dtype, device=dictionary.device)
    true_norms = torch.linalg.vector_norm(truth.to(dictionary), dim=1)
    learned_norms = torch.linalg.vector_norm(dictionary, dim=1).clamp_min(1e-12)
    scale[matched_learned] = true_norms[matched_true] / learned_norms[matched_learned]
    return dictionary * scale.unsqueeze(1)


def encode_from(
    model: SparseCodingModel, data: GroundTruthDataset, start: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Codes of every split with the solver warm-started from ``start[split]`` (N, p)."""
    with torch.no_grad():
        return {name: model.encode(split.y, z0=start[name]) for name, split in data.splits.items()}


def lasso_objective(model: DictionaryModel, y: torch.Tensor, codes: torch.Tensor, lam: float) -> torch.Tensor:
    """(N,) float64 per-sample ½‖(y − offset) − zD‖² + λ‖z‖₁, observations (N, m), codes (N, p)."""
    residual = model.decode(codes).to(torch.float64) - y.to(torch.float64)
    return 0.5 * residual.square().sum(dim=1) + lam * codes.to(torch.float64).abs().sum(dim=1)


# --- scoring ---------------------------------------------------------------------------------------------


class Variant(NamedTuple):
    """One arm of a surgery: a label, the model that decodes its codes, codes (N, p) per split (train, id,
    ood), the x of a curve, and metrics of its own (objective, rounds run) added to its record."""

    label: str
    model: DictionaryModel
    codes: dict[str, torch.Tensor]
    step: float | None = None
    extra: dict[str, float] | None = None


def score(
    model: DictionaryModel, data: GroundTruthDataset, codes: dict[str, torch.Tensor], *, seed: int
) -> dict[str, float]:
    """Metrics of codes (N, p) per split decoded by ``model``: ``score_codes`` with its details — MCC, accuracy,
    AUC, support F1, R², L0 per evaluation split; the model's dictionary Hungarian-matched to the truth
    (STUDY-SPEC §3.4: ``dict_mean_cosine``, ``dict_mean_angle`` in radians, ``dict_mean_norm_ratio``,
    ``dict_frac_close`` = share of |cos| > 0.9); support precision/recall per split under that matching (§3.5)."""
    return score_codes(model, data, codes, seed=seed, details=True)


def score_variant(variant: Variant, data: GroundTruthDataset, *, seed: int) -> Record:
    """The variant's Record: ``score``'s metrics and its own ``extra``."""
    metrics = score(variant.model, data, variant.codes, seed=seed)
    return Record(variant.label, {**metrics, **(variant.extra or {})}, variant.step)


def score_variants(variants: Iterable[Variant], data: GroundTruthDataset, *, seed: int) -> list[Record]:
    """One Record per variant. Pass a generator to hold one variant's codes in memory at a time."""
    return [score_variant(v, data, seed=seed) for v in variants]


def oracle_variant(data: GroundTruthDataset, lam: float, max_iter: int, *, step: float | None = None) -> Variant:
    """FISTA on the true dictionary: the reference every surgery is compared with (label ``fista_oracle``)."""
    oracle = SparseCodingModel(data.dictionary, fista_solver(lam, max_iter))
    return Variant("fista_oracle", oracle, encode_splits(oracle, data), step)
