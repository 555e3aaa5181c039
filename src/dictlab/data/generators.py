"""The generator registry: every data generator by name, with its typed config.

A generator is one module that defines a ``GeneratorConfig`` subclass and a function
``make(config, seed, dtype) -> GroundTruthDataset``, and registers the pair::

    @register_generator("compositional", CompositionalConfig, "y = A z with an ID/OOD split of combinations")
    def make_compositional_dataset(config, seed, dtype): ...

Specs, runs, the CLI and the report name the generator in the data table (``{"generator": "compositional",
"num_latents": 1000}``) and never import a generator's types: ``data_config`` validates such a table against
the named generator's config, ``make_dataset`` builds its data. Generators of other installed packages
register through the entry-point group ``dictlab.generators``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from dictlab.config import parse_config
from dictlab.data.dataset import GeneratorConfig, GroundTruthDataset
from dictlab.registry import Registry

DEFAULT_GENERATOR = "compositional"
G = TypeVar("G", bound=GeneratorConfig)
Make = Callable[[Any, int, torch.dtype], GroundTruthDataset]


@dataclass(frozen=True)
class Generator:
    name: str
    config_class: type[GeneratorConfig]
    make: Make
    description: str


GENERATORS: Registry[Generator] = Registry("generator", plugins="dictlab.generators")


def register_generator(name: str, config_class: type[G], description: str) -> Callable[[Make], Make]:
    """Register ``make(config, seed, dtype)`` as generator ``name`` with settings ``config_class``."""

    def decorator(make: Make) -> Make:
        config_class.generator = name
        GENERATORS.register(name)(Generator(name, config_class, make, description))
        return make

    return decorator


def data_config(data: Mapping[str, Any] | GeneratorConfig, *, where: str | None = None) -> GeneratorConfig:
    """The generator config a data table describes: ``{"generator": name, **fields}`` (no ``generator``: the
    compositional one). ValueError in one line naming ``where`` (default ``data (<generator>)``) and the field."""
    if isinstance(data, GeneratorConfig):
        return data
    if not isinstance(data, Mapping):
        raise ValueError(f"data must be a table of generator fields, got {type(data).__name__} {data!r}")
    fields = dict(data)
    name = fields.pop("generator", DEFAULT_GENERATOR)
    generator = GENERATORS[name]
    return parse_config(generator.config_class, fields, where=where or f"data ({name})", prefix="data.")


def data_spec(data: Mapping[str, Any] | GeneratorConfig, *, where: str | None = None) -> dict[str, Any]:
    """The canonical data table: the generator's name and every field explicit (a run's data identity)."""
    return data_config(data, where=where).to_spec()


def make_dataset(
    data: Mapping[str, Any] | GeneratorConfig,
    *,
    seed: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> GroundTruthDataset:
    """Generate the dataset a data table (or config) describes, every draw from ``seed`` (on the CPU, so the
    data do not depend on ``device``); moved to ``device`` at the end."""
    check_seed(seed)
    config = data_config(data)
    return GENERATORS[config.generator].make(config, seed, dtype).to(device)


def make_from_fields(
    config_class: type[G],
    config: G | None,
    fields: Mapping[str, object],
    *,
    seed: int,
    dtype: torch.dtype,
    device: torch.device | str,
    where: str,
) -> GroundTruthDataset:
    """What a generator's ``make_<name>(config=None, *, seed, dtype, device, **fields)`` shorthand does: ``config``
    (its defaults when None) updated by ``fields`` and validated (errors name ``where``), then ``make_dataset``."""
    check_seed(seed)
    base = config.model_dump() if config is not None else {}
    settings = parse_config(config_class, {**base, **fields}, where=where) if fields or config is None else config
    return make_dataset(settings, seed=seed, dtype=dtype, device=device)


def check_seed(seed: object) -> int:
    """``seed`` if it is an integer ≥ 0 (not a bool); ValueError naming it otherwise."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return seed
