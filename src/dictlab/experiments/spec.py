"""Experiment specs: a typed, TOML-written description of a sweep that expands into runs.

An experiment is data (a generator and its fields) × a grid over some fields × methods × seeds, for one task
(``method``: fit and score a method; ``surgery.*``: a controlled experiment of ``dictlab.surgery``)::

    name = "vary-latents"
    task = "method"
    methods = ["fista_oracle", "sae_topk"]
    seeds = [0, 1, 2]

    [data]
    generator = "compositional"      # the default; `dictlab generators` lists them
    k = 10
    n_samples = 5000

    [grid]
    num_latents = [50, 100, 500, 1000]

    [method_params.sae_topk]
    lr = 0.001

    [quick]            # what --quick replaces: a reduced grid for a fast look
    seeds = [0]
    grid = { num_latents = [50, 100, 500, 1000] }

Grid keys are fields of the generator's config (the compositional ``cs_constant`` gives the study's
phase-transition grid, ``input_dim = min(p, max(k+1, ceil(c·k·ln(p/k))))``; grid points that make the same data
are run once). Every field can be overridden from the command line with a dotted path (``--set
data.n_samples=1000``, ``--set method_params.sae_topk.lr=1e-3``). Anything wrong — an unknown field, an unknown
method, k ≥ num_latents at some grid point, a negative λ, ``seeds = [true]`` — fails in ``expand`` before any
run, with the field, the value and what is allowed. Every task takes its method as the parameter ``method``.
"""

from __future__ import annotations

import copy
import itertools
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from dictlab.config import Config, parse_config
from dictlab.data import GENERATORS, data_spec
from dictlab.data.generators import DEFAULT_GENERATOR
from dictlab.experiments.runs import RunSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESET_PACKAGE = "dictlab.experiments.presets"


class MethodVariant(Config):
    """A method run under its own name with its own overrides (``sae_topk_fa``: ``sae_topk`` with feature
    anchoring), so one sweep can hold the same method twice; its records are labelled with the variant's name.
    ``data`` changes the data of its runs only (a crosscoder needs several sources where the SAEs read one)."""

    method: str = Field(..., min_length=1, description="The method it runs (a name in `dictlab methods`).")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Hyperparameters over the method's method_params and recipe defaults."
    )
    data: dict[str, Any] = Field(
        default_factory=dict,
        description="Data fields this variant changes at every grid point (a crosscoder's num_sources = 2).",
    )


class ExperimentSpec(Config):
    """A sweep: ``task`` on the product of ``grid`` (over data fields) × ``methods`` × ``seeds``."""

    name: str = Field(..., min_length=1, description="Experiment name; runs are stored under it.")
    description: str = Field("", description="What the experiment asks, one or two sentences.")
    task: str = Field("method", description="Task of every run: 'method' or a 'surgery.*' name.")
    methods: list[str] = Field(..., min_length=1, description="Methods (names in `dictlab methods`).")
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="Seeds; each is the data seed and the fit seed.")
    recipe: Literal["dictlab", "study"] = Field("dictlab", description="Hyperparameter defaults of every method.")
    study_metrics: bool = Field(False, description="Also store the study's own MCC definitions (task 'method').")
    data: dict[str, Any] = Field(
        default_factory=dict, description="The generator (default compositional) and its fields shared by all points."
    )
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="Data fields to sweep, each a list of values.")
    method_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-method hyperparameter overrides, e.g. {sae_topk = {lr = 1e-3}}."
    )
    variants: dict[str, MethodVariant] = Field(
        default_factory=dict,
        description='Named variants of methods that `methods` may list, e.g. {sae_topk_fa = {method = "sae_topk", '
        "overrides = {anchor_features = 100}}}; method_params of the variant's method apply to it first.",
    )
    task_params: dict[str, Any] = Field(default_factory=dict, description="Extra parameters of the task (surgeries).")
    quick: dict[str, Any] = Field(default_factory=dict, description="Fields that --quick replaces (a reduced sweep).")

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ValueError(f"seeds must be distinct non-negative integers, got {seeds}")
        return seeds

    @model_validator(mode="before")
    @classmethod
    def _no_method_field(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "method_field" in raw:
            raise ValueError("method_field is no longer needed (every task takes its method as `method`): remove it")
        return raw

    @model_validator(mode="after")
    def _known_grid_fields(self) -> ExperimentSpec:
        generator = self.data.get("generator", DEFAULT_GENERATOR)
        if not isinstance(generator, str):
            raise ValueError(f"data.generator must be a generator's name, got {generator!r}")
        allowed = set(GENERATORS[generator].config_class.model_fields)
        for key, values in self.grid.items():
            if key not in allowed:
                raise ValueError(
                    f"unknown grid field {key!r}; allowed: {', '.join(sorted(allowed))} "
                    f"(the fields of generator {generator})"
                )
            if not values:
                raise ValueError(f"grid.{key} is empty; give at least one value")
        return self

    def with_quick(self) -> ExperimentSpec:
        """The reduced sweep: ``quick`` fields replace the full ones."""
        if not self.quick:
            return self
        return validate_spec({**self.model_dump(exclude={"quick"}), **self.quick}, source=f"{self.name} [quick]")

    def points(self) -> list[dict[str, Any]]:
        """Canonical data tables of the grid (``dictlab.data.data_spec``), in grid order; points that make the
        same data (two ``cs_constant`` values giving one ``input_dim``) appear once."""
        keys = list(self.grid)
        out: list[dict[str, Any]] = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            point = {**self.data, **dict(zip(keys, values, strict=True))}
            where = ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True)) or "the base data"
            table = data_spec(point, where=f"experiment {self.name}: data at {where}")
            if table not in out:
                out.append(table)
        return out

    def run_params(self, name: str) -> dict[str, Any]:
        """Task parameters of the runs of ``name`` (a method, or a variant: its method, overrides and ``label``).
        Always the same keys for a name, so run ids are stable; a plain method's have no ``label``."""
        variant = self.variants.get(name)
        method = variant.method if variant is not None else name
        overrides = dict(self.method_params.get(method, {}))
        if variant is not None:
            overrides.update(variant.overrides)
        params: dict[str, Any] = {"method": method, "overrides": overrides, "recipe": self.recipe}
        if self.task == "method":
            params["study_metrics"] = self.study_metrics
        if variant is not None:
            params["label"] = name
        return {**params, **self.task_params}

    def method_of(self, name: str) -> str:
        """The method that an entry of ``methods`` runs (itself, or its variant's method)."""
        variant = self.variants.get(name)
        return variant.method if variant is not None else name

    def expand(self) -> list[RunSpec]:
        """Every run of the sweep: grid points × methods × seeds. Raises ValueError on any bad entry."""
        from dictlab.methods import METHODS

        for name, variant in self.variants.items():
            if name in METHODS and variant.method != name:  # a method's own name may only vary that method
                raise ValueError(
                    f"experiment {self.name}: variants.{name} is already a method's name and runs "
                    f"{variant.method!r}; rename it"
                )
            if variant.method not in METHODS:
                raise ValueError(
                    f"experiment {self.name}: variants.{name}.method = {variant.method!r} is not a method; "
                    f"allowed: {', '.join(METHODS.names())}"
                )
        for i, method in enumerate(self.methods):
            if method not in METHODS and method not in self.variants:
                raise ValueError(
                    f"experiment {self.name}: methods[{i}] = {method!r} is not a method or a variant; "
                    f"allowed: {', '.join([*METHODS.names(), *self.variants])}"
                )
        used = {self.method_of(name) for name in self.methods}
        for method in self.method_params:
            if method not in used:
                raise ValueError(
                    f"experiment {self.name}: method_params.{method} names a method not in methods {self.methods}"
                )
        runs = []
        for point in self.points():
            for method in self.methods:
                data = self.variant_data(method, point)
                for seed in self.seeds:
                    spec = {"experiment": self.name, "task": self.task, "data": data, "seed": seed}
                    runs.append(parse_config(RunSpec, {**spec, "params": self.run_params(method)}, where=self.name))
        return runs

    def variant_data(self, name: str, point: dict[str, Any]) -> dict[str, Any]:
        """The canonical data of ``name``'s runs at grid point ``point``: the point with the variant's ``data``."""
        variant = self.variants.get(name)
        if variant is None or not variant.data:
            return point
        changed = ", ".join(f"{k}={v}" for k, v in variant.data.items())
        return data_spec({**point, **variant.data}, where=f"experiment {self.name}: variants.{name}.data ({changed})")


def validate_spec(raw: dict[str, Any], *, source: str = "spec") -> ExperimentSpec:
    return parse_config(ExperimentSpec, raw, where=source)


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
    return sorted(
        p.name.removesuffix(".toml") for p in resources.files(PRESET_PACKAGE).iterdir() if p.name.endswith(".toml")
    )


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
            raise ValueError(
                f"--set: cannot read {item!r}; allowed form: FIELD.SUBFIELD=VALUE, e.g. data.n_samples=1000"
            )
        if keys[0] not in ExperimentSpec.model_fields:
            raise ValueError(
                f"--set {item}: unknown field {keys[0]!r}; allowed: {', '.join(ExperimentSpec.model_fields)}"
            )
        target = raw
        for key in keys[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise ValueError(f"--set {item}: {key!r} is not a table")
        try:
            target[keys[-1]] = parse_value(text)
        except ValueError as err:
            raise ValueError(f"--set {item}: {err}") from None
    return validate_spec(raw, source="spec after --set")


def parse_value(text: str) -> Any:
    """A command-line value: JSON where it parses (numbers, lists, quoted strings), true/false/none in any case,
    else the text itself. NaN and infinities are refused (ValueError): no setting takes them."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{text!r}: NaN and infinities are not allowed; give a finite number")

    try:
        return json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError:
        lowered = text.strip().lower()
        if lowered in ("inf", "+inf", "-inf", "nan", "infinity", "-infinity"):
            refuse(text)
        return {"true": True, "false": False, "none": None}.get(lowered, text)
