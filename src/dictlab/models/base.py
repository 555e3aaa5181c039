"""The central type: a model is a dictionary (p, m) plus an inference procedure that produces codes.

Every method — FISTA with the true dictionary, DL-FISTA, Softplus-Adam, LISTA, each SAE — is a
``DictionaryModel``. Shapes, batch first and atoms as rows: observations Y (N, m), codes Z (N, p),
dictionary D (p, m), ``Y ≈ Z @ D + offset``. Because the two parts are separate, the study's
surgeries are recombinations: ``SparseCodingModel(sae.dictionary, FistaSolver(), offset=sae.b_dec)``
is "FISTA on the SAE decoder".

A ``DictionaryModel`` is not a scikit-learn estimator: it takes and returns torch tensors, its ``fit(y, context)``
takes dictlab's ``FitContext`` second, and it has no ``get_params``. ``transform``/``inverse_transform`` and
``components_`` only alias ``encode``/``decode`` and ``dictionary``. For ``clone``, ``Pipeline``, ``GridSearchCV``
and numpy input use the estimators of ``dictlab.estimators``, which wrap these models (``model_``).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from dictlab.models.history import TrainingHistory
from dictlab.registry import Registry
from dictlab.validation import check_matrix

# Model classes by the ``kind`` their saved config names; the packages that define kinds (SAEs, learners,
# baselines) are the entry-point group ``dictlab.models``, imported on the first lookup of a missing kind.
MODEL_KINDS: Registry[type[DictionaryModel]] = Registry("model kind", plugins="dictlab.models")


@dataclass(frozen=True)
class Anchors:
    """Known feature directions that feature anchoring (seed 004, Eqs. 24–25) pins the first k latents to.

    encoder : (k, m) directions for the first k encoder rows (``W_E[1:k, :]``; dictlab's ``W_enc[:, :k].T``),
        or None to leave the encoder free (an MP-SAE has none).
    decoder : (k, r) directions for the first k decoder rows (``W_D[:, 1:k]``; dictlab's ``W_dec[:k]``), r the
        width the model decodes to, or None.
    """

    encoder: torch.Tensor | None
    decoder: torch.Tensor | None

    def __post_init__(self) -> None:
        parts = [t for t in (self.encoder, self.decoder) if t is not None]
        if not parts:
            raise ValueError("anchors need encoder or decoder directions (or both)")
        for name, t in (("encoder", self.encoder), ("decoder", self.decoder)):
            if t is not None and t.ndim != 2:
                raise ValueError(f"anchors.{name} must be (k, width), got shape {tuple(t.shape)}")
        if len({t.shape[0] for t in parts}) != 1:
            rows = [t.shape[0] for t in parts]
            raise ValueError(f"anchors.encoder and anchors.decoder must have the same k rows, got {rows}")

    @property
    def k(self) -> int:
        return next(t for t in (self.encoder, self.decoder) if t is not None).shape[0]


class FitContext:
    """What a learner may use besides the training observations.

    seed : every random choice of the fit draws from generators seeded with it.
    ground_truth : (p, m) true dictionary, only to log dictionary quality along training — never to fit.
    codes : (N, p) true training codes, only for supervised baselines (the linear probe).
    target : (N, r) training targets, for models that predict a target from the observations (transcoders).
    anchors : known directions for feature anchoring (``Anchors``), for models trained with it.
    progress : show a progress bar.
    cache : fits shared with other methods run on the same training data (see ``FitCache``); None: none.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        ground_truth: torch.Tensor | None = None,
        codes: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
        anchors: Anchors | None = None,
        progress: bool = False,
        cache: FitCache | None = None,
    ) -> None:
        self.seed = seed
        self.ground_truth = ground_truth
        self.codes = codes
        self.target = target
        self.anchors = anchors
        self.progress = progress
        self.cache = cache

    def fit(self, model: DictionaryModel, y: torch.Tensor) -> DictionaryModel:
        """``model.fit(y, self)``, or the identical fit another method already made (``cache``)."""
        if self.cache is None:
            return model.fit(y, self)
        return self.cache.fit(model, y, self)

    def generator(self, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
        """A generator for one named random stream of the fit (e.g. the method's kind).

        Its seed is derived from (seed, stream) by hashing, never ``seed`` itself: the data generator draws
        the true dictionary first from ``Generator().manual_seed(seed)``, and a learner starting from that
        same stream would begin measurably aligned with the ground truth.
        """
        return derived_generator(self.seed, stream, device)


def in_row_chunks(fn: Callable[[slice], torch.Tensor], n_rows: int, rows_per_chunk: int) -> torch.Tensor:
    """``fn`` applied to consecutive row slices of at most ``rows_per_chunk`` rows of an (n_rows, ·) batch, the
    results concatenated; one call on ``slice(0, 0)`` for an empty batch, so it has the usual (0, q) shape."""
    step = max(1, rows_per_chunk)
    chunks = [fn(slice(i, i + step)) for i in range(0, n_rows, step)] or [fn(slice(0, 0))]
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks)


def derived_generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for ``stream`` whose draws are unrelated to ``torch.Generator().manual_seed(seed)``."""
    digest = hashlib.sha256(f"{stream}:{seed}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


class FitCache:
    """Fitted models shared by the methods of one (dataset, seed), so that a fit is never made twice.

    ``dl_lista`` trains LISTA on the dictionary DL-FISTA learns; run next to ``dl_fista`` on the same data
    and seed, that DL-FISTA fit is the very one ``dl_fista`` made (same config, same seed-derived random
    streams, same observations), so it is reused instead of recomputed. A model takes part only if its
    ``fit_key()`` is not None; a hit requires the same key, seed, ``ground_truth`` logging and the very same
    observations tensor (``is``, not equality: the cache lives for one dataset and never compares data).
    """

    def __init__(self) -> None:
        self._fits: dict[tuple[str, int, bool], tuple[torch.Tensor, DictionaryModel]] = {}

    def fit(self, model: DictionaryModel, y: torch.Tensor, context: FitContext) -> DictionaryModel:
        """The fitted model for ``model.fit(y, context)``: the cached one when an identical fit was made."""
        key = model.fit_key()
        if key is None:
            return model.fit(y, context)
        slot = (key, context.seed, context.ground_truth is not None)
        hit = self._fits.get(slot)
        if hit is not None and hit[0] is y:
            return hit[1]
        fitted = model.fit(y, context)
        self._fits[slot] = (y, fitted)
        return fitted

    def __len__(self) -> int:
        return len(self._fits)


class DictionaryModel(ABC):
    """A dictionary plus an inference procedure. Subclasses register under a ``kind`` for loading.

    ``history`` is what the fit logged (``TrainingHistory``); models that are not trained keep it empty.
    """

    kind: ClassVar[str]
    history: TrainingHistory = TrainingHistory(unit="none", records=[])  # learners assign their own in fit
    # True for a model whose decode gives a target other than the observations (a transcoder: fit with
    # ``FitContext.target``; its dictionary (p, r) is scored against the data's ``target_dictionary``).
    predicts_target: ClassVar[bool] = False

    @property
    def encoder_directions(self) -> torch.Tensor | None:
        """(p, m) the direction each latent reads from the observations (an SAE's ``W_enc.T``); None for models
        whose codes come from the dictionary itself (sparse coding, MP)."""
        return None

    def anchor_request(self) -> tuple[int, str] | None:
        """(k, source) when this model's fit uses feature anchoring: k anchors from ``source``
        ("ground_truth": k true features; "class_means": Eq. 23 on labelled data); None: no anchoring."""
        return None

    @property
    @abstractmethod
    def dictionary(self) -> torch.Tensor:
        """(p, m) dictionary, atoms as rows."""

    @property
    def offset(self) -> torch.Tensor | None:
        """(m,) bias added to reconstructions and removed before inference (an SAE's ``b_dec``); None: 0."""
        return None

    @abstractmethod
    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """Codes (N, p) for observations (N, m)."""

    def remove_offset(self, y: torch.Tensor) -> torch.Tensor:
        """Observations (N, m) as inference sees them: ``y − offset`` (``y`` itself without an offset)."""
        offset = self.offset
        return y if offset is None else y - offset.to(dtype=y.dtype, device=y.device)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstructions (N, m) = codes @ D (+ offset)."""
        d = self.dictionary
        check_matrix("codes", codes, cols=d.shape[0])
        out = codes.to(d.dtype) @ d
        return out + self.offset if self.offset is not None else out

    def fit(self, y: torch.Tensor, context: FitContext | None = None) -> DictionaryModel:
        """Learn from observations (N, m); returns self. Models with a given dictionary need no fit."""
        return self

    def fit_key(self) -> str | None:
        """A string that determines this unfitted model's fit given (observations, seed), for ``FitCache``;
        None (the default): never shared. Only a model whose fit is a pure function of its config, the data
        and the seed may return one."""
        return None

    def fit_keys(self) -> set[str]:
        """Keys of every fit this model's ``fit`` makes through a ``FitCache`` (its own and its parts'), so
        that methods sharing a fit can be scheduled together."""
        key = self.fit_key()
        return {key} if key is not None else set()

    # --- persistence: JSON config + named tensors (safetensors); see dictlab.models.io --------------
    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable hyperparameters, enough with ``tensors()`` to rebuild the model."""

    @abstractmethod
    def tensors(self) -> dict[str, torch.Tensor]:
        """Named tensors that hold the learned state."""

    @classmethod
    @abstractmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> DictionaryModel:
        """Inverse of ``config()`` + ``tensors()``."""

    def save(self, path: str) -> None:
        from dictlab.models.io import save_model

        save_model(self, path)

    # --- scikit-learn names ------------------------------------------------------------------------
    def transform(self, y: torch.Tensor) -> torch.Tensor:
        return self.encode(y)

    def inverse_transform(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decode(codes)

    @property
    def components_(self) -> torch.Tensor:
        return self.dictionary
