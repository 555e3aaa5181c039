"""What the classical dictionary learners (MOD, K-SVD, online learning) share: the codes step and the model.

Each learner alternates a **codes step** with the dictionary fixed — FISTA on the Lasso
``½‖y − zD‖² + λ‖z‖₁`` (z ≥ 0 with ``nonneg``), or orthogonal matching pursuit with ``n_nonzero`` atoms —
and a **dictionary step** of its own. After fitting, the model is sparse coding on the learned dictionary
with the same codes step (``encode``), so a learner is scored exactly as its dictionary would be used.

Shapes, atoms as rows: observations Y (N, m), codes Z (N, p), dictionary D (p, m), ``Y ≈ Z D``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from dictlab.config import Config
from dictlab.data import random_unit_dictionary
from dictlab.inference.solvers import FistaSolver, OmpSolver, Solver
from dictlab.learners.dictionary_update import (
    POLISH_START,
    atoms_to_replace,
    duplicate_threshold,
    normalize_atoms,
    relative_change,
    replace_atoms,
)
from dictlab.models.base import DictionaryModel, FitContext
from dictlab.models.history import TrainingHistory
from dictlab.models.sparse_coding import SparseCodingModel
from dictlab.validation import check_matrix


class CodesStep(Config):
    """The codes step of a classical learner and the encoder of the fitted model.

    ``coder="fista"``: FISTA with ``lam`` (z ≥ 0 when ``nonneg``), ``fista_iter`` iterations per codes step
    and ``encode_iter`` in ``encode``; ``coder="omp"``: orthogonal matching pursuit with ``n_nonzero`` atoms
    per sample (the data's k when a method builds it).
    """

    width: int = Field(..., ge=1, description="p: number of atoms.")
    coder: Literal["fista", "omp"] = Field("fista", description="Codes step: FISTA (the Lasso) or OMP (k atoms).")
    lam: float = Field(0.1, ge=0, description="λ of the Lasso (coder=fista).")
    nonneg: bool = Field(True, description="Non-negative codes (coder=fista).")
    fista_iter: int = Field(50, ge=1, description="FISTA iterations per codes step (coder=fista).")
    encode_iter: int = Field(100, ge=1, description="FISTA iterations of encode on the learned dictionary.")
    n_nonzero: int | None = Field(
        None, ge=1, description="Atoms per sample (coder=omp); at most width and the input dimension."
    )
    init: Literal["random", "samples"] = Field(
        "random", description="Initial atoms: random unit vectors, or normalised training samples drawn at random."
    )

    @model_validator(mode="after")
    def _check_coder(self) -> CodesStep:
        if self.coder == "omp" and self.n_nonzero is None:
            raise ValueError("n_nonzero is required with coder='omp' (the number of atoms per sample, e.g. k)")
        if self.n_nonzero is not None and self.n_nonzero > self.width:
            raise ValueError(f"n_nonzero={self.n_nonzero} must be at most width={self.width} (the number of atoms)")
        return self

    def solver(self, *, encoding: bool = False) -> Solver:
        """The codes step as a solver (``encoding``: with ``encode_iter`` FISTA iterations)."""
        if self.coder == "omp":
            assert self.n_nonzero is not None  # the validator requires it
            return OmpSolver(n_nonzero=self.n_nonzero)
        return FistaSolver(lam=self.lam, max_iter=self.encode_iter if encoding else self.fista_iter, nonneg=self.nonneg)

    def check_data(self, y: torch.Tensor) -> None:
        """OMP selects at most m atoms per sample in m dimensions: n_nonzero > m is refused, naming it."""
        if self.coder == "omp" and self.n_nonzero is not None and self.n_nonzero > y.shape[1]:
            raise ValueError(
                f"n_nonzero={self.n_nonzero} must be at most the input dimension m={y.shape[1]}: "
                "OMP cannot select more independent atoms than dimensions"
            )


class ClassicalLearner(DictionaryModel):
    """Base of MOD, K-SVD and online learning: a config with a ``CodesStep``, a learned dictionary, and
    ``encode`` = the codes step on it. Subclasses implement ``learn(x, generator, context) -> D (p, m)``.

    After ``fit``: ``history`` holds the learner's logged entries (unit ``history_unit``) and ``dictionary``
    the learned unit-norm atoms.
    """

    config_class: ClassVar[type[CodesStep]]
    history_unit: ClassVar[str] = "round"

    def __init__(self, config: CodesStep) -> None:
        if not isinstance(config, self.config_class):
            raise ValueError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}")
        self.settings = config
        self._coder: SparseCodingModel | None = None
        self.history = TrainingHistory(unit=self.history_unit)

    @property
    def dictionary(self) -> torch.Tensor:
        return self._fitted().dictionary

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """Codes (N, p): the codes step (``encode_iter`` FISTA iterations, or OMP) on the learned dictionary."""
        return self._fitted().encode(y)

    def fit(self, y: torch.Tensor, context: FitContext | None = None) -> ClassicalLearner:
        """Learn the dictionary from observations (N, m); returns self. Computes in y's dtype and device."""
        context = context if context is not None else FitContext()
        check_matrix("y", y)
        self.settings.check_data(y)
        self.history = TrainingHistory(unit=self.history_unit)
        x = y.detach()
        generator = context.generator(self.kind)
        dictionary = self.learn(x, self.initial_dictionary(x, generator), generator, context)
        self._coder = SparseCodingModel(dictionary.contiguous(), self.settings.solver(encoding=True))
        return self

    @abstractmethod
    def learn(
        self, x: torch.Tensor, dictionary: torch.Tensor, generator: torch.Generator, context: FitContext
    ) -> torch.Tensor:
        """The learned (p, m) dictionary from observations x (N, m), starting at ``dictionary`` (p, m)."""

    def fit_key(self) -> str | None:
        return f"{self.kind}:{self.settings.model_dump_json()}"

    def initial_dictionary(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(p, m) unit atoms: random Gaussian directions, or ``p`` distinct training samples normalised (with
        random directions for samples that are zero, or for the atoms beyond N)."""
        width = self.settings.width
        random = random_unit_dictionary(width, x.shape[1], generator, x.dtype).to(x.device)
        if self.settings.init == "random":
            return random
        picks = torch.randperm(x.shape[0], generator=generator)[:width].to(x.device)
        atoms, norms = normalize_atoms(x[picks])
        start = random.clone()
        usable = norms > 0
        start[: picks.numel()][usable] = atoms[usable]
        return start

    def log(
        self,
        step: int,
        x: torch.Tensor,
        codes: torch.Tensor,
        dictionary: torch.Tensor,
        context: FitContext,
        **values: float,
    ) -> None:
        """One history entry: ``values``, the codes' mse_loss and mean l0, atoms no code used (dead), and with a
        ground-truth dictionary in ``context`` the matched dictionary quality."""
        entry: dict[str, float] = {
            **values,
            "mse_loss": float((x - codes @ dictionary).pow(2).mean()),
            "l0": float((codes != 0).sum(dim=1).double().mean()),
            "dead": float((~(codes != 0).any(dim=0)).sum()),
        }
        if context.ground_truth is not None:
            from dictlab.metrics import match_dictionaries  # lazy: metrics are not needed to fit

            entry.update(match_dictionaries(dictionary, context.ground_truth.to(dictionary.device)).as_dict())
        self.history.log(step, entry)

    def _fitted(self) -> SparseCodingModel:
        if self._coder is None:
            raise ValueError(f"{type(self).__name__} has no dictionary yet: call fit first (or load a saved model)")
        return self._coder

    # --- persistence --------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {self.kind: self.settings.model_dump()}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"dictionary": self._fitted().dictionary}

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> ClassicalLearner:
        if "dictionary" not in tensors:
            raise ValueError(f"saved {cls.kind} model has no 'dictionary' tensor")
        settings = cls.config_class(**config.get(cls.kind, {}))
        dictionary = tensors["dictionary"]
        if dictionary.shape[0] != settings.width:
            raise ValueError(
                f"saved dictionary has {dictionary.shape[0]} atoms but the config says width={settings.width}"
            )
        model = cls(settings)
        model._coder = SparseCodingModel(dictionary, settings.solver(encoding=True))
        return model


class RoundsConfig(CodesStep):
    """A learner that alternates whole rounds over the training set (MOD, K-SVD): the cap, the stop, the upkeep."""

    max_rounds: int = Field(100, ge=1, description="Cap on rounds (codes step + dictionary step).")
    tol: float = Field(1e-4, ge=0, description="Stop when a round without replacement changes D by less than this.")
    upkeep_every: int = Field(
        5, ge=0, description="Replace unused and duplicated atoms every this many rounds; 0: never."
    )
    log_every: int = Field(5, ge=1, description="Rounds between history entries (one is always added at the end).")


# One round: (round index, dictionary (p, m), codes (N, p)) -> (fitted dictionary (p, m), its codes (N, p)).
Round = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class RoundsLearner(ClassicalLearner):
    """A ``ClassicalLearner`` made of rounds over the whole training set; ``alternate`` runs them.

    After ``fit``: ``rounds_run``, and one history entry per logged round (step = round; change, replaced,
    mse_loss, l0, dead, and the matched dictionary quality with ``FitContext.ground_truth``).
    """

    settings: RoundsConfig

    def __init__(self, config: RoundsConfig) -> None:
        super().__init__(config)
        self.rounds_run = 0

    def alternate(
        self,
        x: torch.Tensor,
        dictionary: torch.Tensor,
        one_round: Round,
        generator: torch.Generator,
        context: FitContext,
    ) -> torch.Tensor:
        """Run ``one_round`` until the cap or the stop; after each, atom upkeep when due (every ``upkeep_every``
        rounds before ``POLISH_START`` of the cap: unused atoms and the less-used of a pair with |cos| above
        ``duplicate_threshold`` become normalised residuals of the worst-reconstructed samples), then unit
        atoms. Returns the last dictionary (p, m)."""
        cfg = self.settings
        duplicate = duplicate_threshold(cfg.width, x.shape[1])
        d, z = dictionary, x.new_zeros(x.shape[0], cfg.width)
        for r in tqdm(range(cfg.max_rounds), desc=self.kind, unit="round", disable=not context.progress):
            fitted, z = one_round(r, d, z)
            replaced = 0
            if cfg.upkeep_every and (r + 1) % cfg.upkeep_every == 0 and r < POLISH_START * cfg.max_rounds:
                indices = atoms_to_replace(fitted, z, duplicate)
                replaced = int(indices.numel())
                if replaced:
                    fitted, z = replace_atoms(fitted, z, x, indices, generator)
            new = normalize_atoms(fitted)[0]
            change = relative_change(new, d)
            d = new
            done = change < cfg.tol and replaced == 0
            if (r + 1) % cfg.log_every == 0 or done or r == cfg.max_rounds - 1:
                self.log(r + 1, x, z, fitted, context, change=change, replaced=replaced)
            if done:
                break
        self.rounds_run = r + 1
        return d
