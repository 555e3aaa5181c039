"""Experiment specs: a typed, TOML-written description of a sweep that expands into runs.

An experiment is data parameters × a grid over some of them × methods × seeds, for one task (``method``:
fit and score a method; ``surgery.*``: a controlled experiment of ``dictlab.surgery``)::

    name = "vary-latents"
    task = "method"
    methods = ["fista_oracle", "sae_topk"]
    seeds = [0, 1, 2]

    [data]
    k = 10
    n_samples = 5000

    [grid]
    num_latents = [50, 100, 500, 1000]

    [method_params.sae_topk]
    lr = 0.001

    [quick]            # what --quick replaces: a reduced grid for a fast look
    seeds = [0]
    grid = { num_latents = [50, 100, 500, 1000] }

The grid key ``cs_constant`` sets ``input_dim = min(p, max(k+1, ceil(c·k·ln(p/k))))`` per point (the
phase-transition grid of the study). Every field can be overridden from the command line with a dotted path
(``--set data.n_samples=1000``, ``--set method_params.sae_topk.lr=1e-3``). Anything wrong — an unknown field,
an unknown method, k ≥ num_latents at some grid point, a negative λ — fails in ``expand`` before any run,
with the field, the value and what is allowed.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from dictlab.config import Config
from dictlab.data import CompositionalConfig
from dictlab.experiments.tasks import RunSpec
from dictlab.config import describe_validation_error

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESET_PACKAGE = "dictlab.experiments.presets"
CS_CONSTANT = "cs_constant"


class ExperimentSpec(Config):
    """A sweep: ``task`` on the product of ``grid`` (over data fields) × ``methods`` × ``seeds``."""

    name: str = Field(..., min_length=1, description="Experiment name; runs are stored under it.")
    description: str = Field("", description="What the experiment asks, one or two sentences.")
    task: str = Field("method", description="Task of every run: 'method' or a 'surgery.*' name.")
    method_field: Literal["method", "sae"] = Field(
        "method", description="Task parameter that receives each name of `methods` ('sae' for SAE surgeries)."
    )
    methods: list[str] = Field(..., min_length=1, description="Methods (names in `dictlab methods`).")
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="Seeds; each is the data seed and the fit seed.")
    recipe: Literal["dictlab", "study"] = Field("dictlab", description="Hyperparameter defaults of every method.")
    study_metrics: bool = Field(False, description="Also store the study's own MCC definitions (task 'method').")
    data: dict[str, Any] = Field(default_factory=dict, description="CompositionalConfig fields shared by all points.")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="Data fields to sweep, each a list of values.")
    method_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-method hyperparameter overrides, e.g. {sae_topk = {lr = 1e-3}}."
    )
    task_params: dict[str, Any] = Field(default_factory=dict, description="Extra parameters of the task (surgeries).")
    quick: dict[str, Any] = Field(default_factory=dict, description="Fields that --quick replaces (a reduced sweep).")

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ValueError(f"seeds must be distinct non-negative integers, got {seeds}")
        return seeds

    @field_validator("grid")
    @classmethod
    def _known_grid_fields(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        allowed = set(CompositionalConfig.model_fields) | {CS_CONSTANT}
        for key, values in grid.items():
            if key not in allowed:
                raise ValueError(f"unknown grid field {key!r}; allowed: {', '.join(sorted(allowed))}")
            if not values:
                raise ValueError(f"grid.{key} is empty; give at least one value")
        return grid

    def with_quick(self) -> ExperimentSpec:
        """The reduced sweep: ``quick`` fields replace the full ones."""
        if not self.quick:
            return self
        return validate_spec({**self.model_dump(exclude={"quick"}), **self.quick}, source=f"{self.name} [quick]")

    def points(self) -> list[dict[str, Any]]:
        """Data configurations of the grid (full CompositionalConfig dumps), in grid order."""
        keys = list(self.grid)
        out = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            point = {**self.data, **dict(zip(keys, values))}
            where = ", ".join(f"{k}={v}" for k, v in zip(keys, values)) or "the base data"
            if CS_CONSTANT in point:
                point = _with_cs_input_dim(point, point.pop(CS_CONSTANT), where)
            try:
                config = CompositionalConfig(**point)
            except ValidationError as err:
                detail = describe_validation_error(err, allowed=CompositionalConfig.model_fields)
                raise ValueError(f"experiment {self.name}: data at {where}: {detail}") from None
            dumped = config.model_dump()
            if dumped not in out:  # phase-transition grids can map two constants to one input_dim
                out.append(dumped)
        return out

    def run_params(self, method: str) -> dict[str, Any]:
        """Task parameters of one method's runs (always the same keys, so run ids are stable)."""
        params: dict[str, Any] = {
            self.method_field: method,
            "overrides": dict(self.method_params.get(method, {})),
            "recipe": self.recipe,
        }
        if self.task == "method":
            params["study_metrics"] = self.study_metrics
        return {**params, **self.task_params}

    def expand(self) -> list[RunSpec]:
        """Every run of the sweep: grid points × methods × seeds. Raises ValueError on any bad entry."""
        from dictlab.methods import METHODS

        for i, method in enumerate(self.methods):
            if method not in METHODS:
                raise ValueError(
                    f"experiment {self.name}: methods[{i}] = {method!r} is not a method; allowed: {', '.join(METHODS.names())}"
                )
        for method in self.method_params:
            if method not in self.methods:
                raise ValueError(f"experiment {self.name}: method_params.{method} names a method not in methods {self.methods}")
        runs = []
        for point in self.points():
            for method in self.methods:
                for seed in self.seeds:
                    runs.append(RunSpec(experiment=self.name, task=self.task, data=point, seed=seed, params=self.run_params(method)))
        return runs


def _with_cs_input_dim(point: dict[str, Any], c: float, where: str) -> dict[str, Any]:
    p, k = point.get("num_latents", 100), point.get("k", 10)
    if not isinstance(c, (int, float)) or c <= 0:
        raise ValueError(f"grid.{CS_CONSTANT} at {where}: must be a positive number, got {c!r}")
    if k >= p:
        raise ValueError(f"data at {where}: k={k} must be smaller than num_latents={p}")
    return {**point, "input_dim": min(p, max(k + 1, math.ceil(c * k * math.log(p / k))))}


def validate_spec(raw: dict[str, Any], *, source: str = "spec") -> ExperimentSpec:
    try:
        return ExperimentSpec(**raw)
    except ValidationError as err:
        raise ValueError(f"{source}: {describe_validation_error(err, allowed=ExperimentSpec.model_fields)}") from None


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read a TOML spec file."""
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise ValueError(f"spec file {file} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{file} is not valid TOML: {err}") from None
    return validate_spec(raw, source=str(file))


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files(PRESET_PACKAGE).iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> ExperimentSpec:
    """A spec shipped with dictlab (``dictlab presets`` lists them)."""
    names = preset_names()
    if name not in names:
        raise ValueError(f"unknown preset {name!r}; allowed: {', '.join(names)}")
    text = resources.files(PRESET_PACKAGE).joinpath(f"{name}.toml").read_text()
    return validate_spec(tomllib.loads(text), source=f"preset {name}")


def apply_overrides(spec: ExperimentSpec, assignments: list[str]) -> ExperimentSpec:
    """``["data.n_samples=1000", "seeds=[0]"]`` → a new spec; values are JSON, else strings."""
    raw = copy.deepcopy(spec.model_dump())
    for item in assignments:
        path, sep, text = item.partition("=")
        keys = [k for k in path.split(".") if k]
        if not sep or not keys:
            raise ValueError(f"--set: cannot read {item!r}; allowed form: FIELD.SUBFIELD=VALUE, e.g. data.n_samples=1000")
        if keys[0] not in ExperimentSpec.model_fields:
            raise ValueError(f"--set {item}: unknown field {keys[0]!r}; allowed: {', '.join(ExperimentSpec.model_fields)}")
        target = raw
        for key in keys[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise ValueError(f"--set {item}: {key!r} is not a table")
        target[keys[-1]] = parse_value(text)
    return validate_spec(raw, source="spec after --set")


def parse_value(text: str) -> Any:
    """A command-line value: JSON where it parses (numbers, lists, quoted strings), true/false/none in any case,
    else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        lowered = text.strip().lower()
        return {"true": True, "false": False, "none": None}.get(lowered, text)
