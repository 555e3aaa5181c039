"""Every method of the study by name: how to build it (unfitted) for a problem, with its hyperparameters.

``build_method("sae_topk", problem, {"lr": 1e-3})`` returns a ``DictionaryModel`` ready to ``fit``.
Hyperparameters start from a recipe — ``"dictlab"`` (fast defaults tuned here) or ``"study"`` (the
settings of arXiv 2603.28744, for like-for-like comparison) — and any field can be overridden by name;
an unknown field or a bad value raises ValueError naming the method, the field and what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ValidationError

from dictlab.config import describe_validation_error
from dictlab.data import DataSizes, GroundTruthDataset, random_unit_dictionary
from dictlab.inference.solvers import FistaSolver, OmpSolver
from dictlab.models import DictionaryModel, SparseCodingModel
from dictlab.registry import Registry

Recipe = Literal["dictlab", "study"]
RECIPES: tuple[str, ...] = ("dictlab", "study")


@dataclass(frozen=True)
class Problem:
    """What a method may know before fitting: sizes (p latents, k active per sample where the data fix it,
    m observed dimensions, the training samples, the target width and the sources' widths where the data have
    them), and the true (p, m) dictionary for oracle methods only."""

    num_latents: int
    k: int | None
    input_dim: int
    ground_truth: torch.Tensor
    n_train: int | None = None
    target_dim: int | None = None
    sources: tuple[int, ...] | None = None

    @classmethod
    def of(cls, data: GroundTruthDataset) -> Problem:
        return cls.with_sizes(data.sizes(), data.dictionary)

    @classmethod
    def stand_in(cls, sizes: DataSizes) -> Problem:
        """The sizes with a random stand-in dictionary: enough to build (not fit) any method."""
        dictionary = random_unit_dictionary(sizes.num_latents, sizes.input_dim, torch.Generator().manual_seed(0))
        return cls.with_sizes(sizes, dictionary)

    @classmethod
    def with_sizes(cls, sizes: DataSizes, dictionary: torch.Tensor) -> Problem:
        return cls(
            sizes.num_latents, sizes.k, sizes.input_dim, dictionary, sizes.n_train, sizes.target_dim, sizes.sources
        )

    def known_target_dim(self, method: str) -> int:
        """r, for a method that predicts targets (a transcoder); ValueError when the data have none."""
        if self.target_dim is None:
            raise ValueError(
                f"method {method} predicts targets and these data have none; use data with targets "
                "(generator lrb with target_dim set)"
            )
        return self.target_dim

    def known_sources(self, method: str) -> tuple[int, ...]:
        """The widths of the observed sources, for a method that decodes each (a crosscoder); ValueError when the
        data are one source."""
        if self.sources is None:
            raise ValueError(
                f"method {method} encodes several sources and these data are one; use data with sources "
                "(generator lrb with num_sources >= 2)"
            )
        return self.sources

    def known_k(self, method: str) -> int:
        """k, for a method whose default needs it; ValueError when the data fix no k."""
        if self.k is None:
            raise ValueError(f"method {method} takes its sparsity from the data's k, and these data have none; set it")
        return self.k


Builder = Callable[[Problem, dict[str, Any], str], DictionaryModel]


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    build: Builder
    supervised: bool = False  # needs the true training codes (FitContext.codes)
    oracle: bool = False  # uses the true dictionary
    needs: tuple[str, ...] = ()  # what the data must have beyond observations: "target", "sources"

    def fits(self, sizes: DataSizes) -> bool:
        """Whether data of ``sizes`` have what this method needs (targets for a transcoder, several sources
        for a crosscoder); ``run all`` and the demo run only the methods that fit the data."""
        has = {"target": sizes.target_dim is not None, "sources": sizes.sources is not None}
        return all(has[need] for need in self.needs)


METHODS: Registry[Method] = Registry("method")


def register_method(
    name: str, description: str, *, supervised: bool = False, oracle: bool = False, needs: tuple[str, ...] = ()
) -> Callable[[Builder], Builder]:
    def decorator(build: Builder) -> Builder:
        METHODS.register(name)(Method(name, description, build, supervised, oracle, needs))
        return build

    return decorator


def build_method(
    name: str, problem: Problem, overrides: dict[str, Any] | None = None, recipe: str = "dictlab"
) -> DictionaryModel:
    """An unfitted model for ``problem``: method ``name`` with its ``recipe`` defaults and ``overrides``."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; allowed: {', '.join(RECIPES)}")
    return METHODS[name].build(problem, dict(overrides or {}), recipe)


def configure(
    method: str, overrides: dict[str, Any], *parts: tuple[type[BaseModel], dict[str, Any]]
) -> list[BaseModel]:
    """Build one pydantic config per (class, defaults) in ``parts``, routing each override to the class that
    has the field. Consumes ``overrides``; anything left over is an unknown field."""
    configs = []
    remaining = dict(overrides)
    for cls, defaults in parts:
        mine = {key: remaining.pop(key) for key in list(remaining) if key in cls.model_fields}
        try:
            configs.append(cls(**{**defaults, **mine}))
        except ValidationError as err:
            raise ValueError(f"method {method}: {describe_validation_error(err)}") from None
    if remaining:
        allowed = sorted({field for cls, _ in parts for field in cls.model_fields} - _FIXED)
        raise ValueError(
            f"method {method}: unknown parameter(s) {', '.join(sorted(remaining))}; allowed: {', '.join(allowed)}"
        )
    return configs


# Sizes come from the problem and cannot be overridden per method.
_FIXED = {"d_in", "d_sae", "d_out", "source_dims", "architecture", "width", "input_dim"}


def _check_fixed(method: str, overrides: dict[str, Any]) -> None:
    fixed = sorted(_FIXED & set(overrides))
    if fixed:
        raise ValueError(f"method {method}: {', '.join(fixed)} follow(s) from the data and cannot be set per method")


# --- oracles: the true dictionary with an inference procedure -------------------------------------------


@register_method(
    "fista_oracle", "FISTA (λ=0.1, z ≥ 0) on the true dictionary: the ceiling of sparse inference", oracle=True
)
def _fista_oracle(problem: Problem, overrides: dict[str, Any], recipe: str) -> DictionaryModel:
    (solver,) = configure("fista_oracle", overrides, (FistaSolver, {}))
    return SparseCodingModel(problem.ground_truth, solver)  # type: ignore[arg-type]


@register_method("omp_oracle", "orthogonal matching pursuit with k steps on the true dictionary", oracle=True)
def _omp_oracle(problem: Problem, overrides: dict[str, Any], recipe: str) -> DictionaryModel:
    default = {} if "n_nonzero" in overrides else {"n_nonzero": problem.known_k("omp_oracle")}
    (solver,) = configure("omp_oracle", overrides, (OmpSolver, default))
    return SparseCodingModel(problem.ground_truth, solver)  # type: ignore[arg-type]


# --- sparse autoencoders -----------------------------------------------------------------------------------


def register_sae_method(architecture: str) -> None:
    """Register the method ``sae_<architecture>`` for an architecture of ``dictlab.sae.SAE_ARCHITECTURES``
    (its class's description; sizes from the data — the width ``d_sae`` defaults to the data's number of latents
    and may be overridden —, k where the config has it). The shipped architectures are
    registered when this module is imported; one that another package registers later calls this once."""
    from dictlab.sae import SAE_ARCHITECTURES

    name = f"sae_{architecture}"
    description = SAE_ARCHITECTURES[architecture].description

    def build(problem: Problem, overrides: dict[str, Any], recipe: str) -> DictionaryModel:
        from dictlab.sae import TrainConfig, make_sae, sae_config_class

        # the width may differ from the data's number of latents (seed 004 trains n_q = 16,000 on n = 1,000)
        _check_fixed(name, {key: value for key, value in overrides.items() if key != "d_sae"})
        config_class = sae_config_class(architecture)
        shape: dict[str, Any] = {"d_in": problem.input_dim, "d_sae": overrides.get("d_sae", problem.num_latents)}
        fields = config_class.model_fields
        if "k" in fields:
            shape["k"] = overrides["k"] if "k" in overrides else problem.known_k(name)
        if "d_out" in fields:
            shape["d_out"] = problem.known_target_dim(name)
        if "source_dims" in fields:
            shape["source_dims"] = list(problem.known_sources(name))
        sae_defaults, train_defaults = shape, {}
        if recipe == "study":
            try:
                sae_defaults = config_class.study(**shape).model_dump()
            except ValidationError as err:
                raise ValueError(f"method {name}: {describe_validation_error(err)}") from None
            train_defaults = TrainConfig.study().model_dump()
        parts = (config_class, sae_defaults), (TrainConfig, train_defaults)
        sae_config, train_config = configure(name, overrides, *parts)
        return make_sae(sae_config, train_config)  # type: ignore[arg-type]

    fields = SAE_ARCHITECTURES[architecture].config_class.model_fields
    needs = tuple(need for need, field in (("target", "d_out"), ("sources", "source_dims")) if field in fields)
    register_method(name, description, needs=needs)(build)


def _register_saes() -> None:
    """One method ``sae_<architecture>`` per entry of ``SAE_ARCHITECTURES``."""
    from dictlab.sae import SAE_ARCHITECTURES

    for architecture in SAE_ARCHITECTURES:
        register_sae_method(architecture)


_register_saes()


# --- dictionary learning -----------------------------------------------------------------------------------


@register_method(
    "dl_fista",
    "alternating FISTA codes and least-squares (MOD) updates; grows from 60% of the atoms, "
    "with momentum and atom upkeep",
)
def _dl_fista(problem: Problem, overrides: dict[str, Any], recipe: str) -> DictionaryModel:
    from dictlab.learners.dl_fista import DLFista, DLFistaConfig

    _check_fixed("dl_fista", overrides)
    defaults = DLFistaConfig.study().model_dump() if recipe == "study" else {}
    (config,) = configure("dl_fista", overrides, (DLFistaConfig, {**defaults, "width": problem.num_latents}))
    return DLFista(config)  # type: ignore[arg-type]


@register_method("softplus_adam", "codes softplus(u) and dictionary optimised jointly by Adam; new data by FISTA")
def _softplus_adam(problem: Problem, overrides: dict[str, Any], recipe: str) -> DictionaryModel:
    from dictlab.learners.softplus_adam import SoftplusAdam, SoftplusAdamConfig

    _check_fixed("softplus_adam", overrides)
    defaults = SoftplusAdamConfig.study().model_dump() if recipe == "study" else {}
    (config,) = configure("softplus_adam", overrides, (SoftplusAdamConfig, {**defaults, "width": problem.num_latents}))
    return SoftplusAdam(config)  # type: ignore[arg-type]


def _classical(name: str, config_name: str, model_name: str, *, k_needed: bool) -> Builder:
    """Builder of a classical learner (MOD, K-SVD, online learning): width from the data; n_nonzero = the data's
    k when the codes step is OMP (K-SVD's always is) and it is not given. The recipes are one: the study ran
    none of these."""

    def build(problem: Problem, overrides: dict[str, Any], recipe: str) -> DictionaryModel:
        import dictlab.learners as learners

        _check_fixed(name, overrides)
        defaults: dict[str, Any] = {"width": problem.num_latents}
        if "n_nonzero" not in overrides and (k_needed or overrides.get("coder") == "omp"):
            if problem.k is None:
                raise ValueError(
                    f"method {name}: OMP codes need n_nonzero (atoms per sample) and these data fix no k; set n_nonzero"
                )
            defaults["n_nonzero"] = problem.k
        (config,) = configure(name, overrides, (getattr(learners, config_name), defaults))
        model: DictionaryModel = getattr(learners, model_name)(config)
        return model

    return build


register_method("mod", "Method of Optimal Directions: FISTA (or OMP, coder=omp) codes, least-squares dictionary")(
    _classical("mod", "MODConfig", "MOD", k_needed=False)
)
register_method("ksvd", "K-SVD: OMP codes with the data's k, exact rank-1 atom updates (Aharon et al. 2006)")(
    _classical("ksvd", "KSVDConfig", "KSVD", k_needed=True)
)
register_method(
    "online_dl", "online dictionary learning: mini-batch Lasso codes, block-coordinate atoms (Mairal et al. 2009)"
)(_classical("online_dl", "OnlineDLConfig", "OnlineDictionaryLearning", k_needed=False))


# --- learned sparse coding ----------------------------------------------------------------------------------


@register_method("lista_oracle", "LISTA (16 unrolled ISTA layers, trained) on the true dictionary", oracle=True)
def _lista_oracle(problem: Problem, overrides: dict[str, Any], recipe: str) -> DictionaryModel:
    from dictlab.learners.lista import Lista, ListaConfig

    defaults = ListaConfig.study().model_dump() if recipe == "study" else {}
    (config,) = configure("lista_oracle", overrides, (ListaConfig, defaults))
    return Lista(config, dictionary=problem.ground_truth)  # type: ignore[arg-type]


@register_method("dl_lista", "LISTA trained on the dictionary DL-FISTA learned (the study's unsupervised LISTA)")
def _dl_lista(problem: Problem, overrides: dict[str, Any], recipe: str) -> DictionaryModel:
    from dictlab.learners.dl_fista import DLFista, DLFistaConfig
    from dictlab.learners.lista import Lista, ListaConfig

    _check_fixed("dl_lista", overrides)
    study = recipe == "study"
    lista, dl = configure(
        "dl_lista",
        overrides,
        (ListaConfig, ListaConfig.study().model_dump() if study else {}),
        (DLFistaConfig, {**(DLFistaConfig.study().model_dump() if study else {}), "width": problem.num_latents}),
    )
    return Lista(lista, dictionary_learner=DLFista(dl))  # type: ignore[arg-type]


# --- baselines -----------------------------------------------------------------------------------------------


@register_method(
    "linear_probe", "ridge regression from y to the true codes (supervised ceiling of linear access)", supervised=True
)
def _linear_probe(problem: Problem, overrides: dict[str, Any], recipe: str) -> DictionaryModel:
    from dictlab.baselines import RidgeProbe, RidgeProbeConfig

    (config,) = configure("linear_probe", overrides, (RidgeProbeConfig, {}))
    return RidgeProbe(config)  # type: ignore[arg-type]


@register_method(
    "random_dictionary", "FISTA (λ=0.1, z ≥ 0) on a random unit dictionary of the data's width: the untrained floor"
)
def _random_dictionary(problem: Problem, overrides: dict[str, Any], recipe: str) -> DictionaryModel:
    from dictlab.baselines import RandomDictionary, RandomDictionaryConfig

    _check_fixed("random_dictionary", overrides)
    (config,) = configure("random_dictionary", overrides, (RandomDictionaryConfig, {"width": problem.num_latents}))
    return RandomDictionary(config)  # type: ignore[arg-type]


@register_method("pca", "PCA with k components fitted on the ID training observations")
def _pca(problem: Problem, overrides: dict[str, Any], recipe: str) -> DictionaryModel:
    from dictlab.baselines import PCABaseline, PCAConfig

    default = {"n_components": problem.known_k("pca")} if "n_components" not in overrides else {}
    (config,) = configure("pca", overrides, (PCAConfig, default))
    components = config.n_components  # type: ignore[attr-defined]
    if problem.n_train is not None and components is not None and components > problem.n_train:
        raise ValueError(
            f"method pca: n_components={components} needs at least {components} training samples, the data's train "
            f"split has {problem.n_train}; raise n_samples"
        )
    return PCABaseline(config)  # type: ignore[arg-type]
