"""LISTA: ISTA unrolled into a trainable network (Gregor & LeCun, ICML 2010), with the dictionary fixed.

Each of the ``n_layers`` layers applies, to codes Z (N, p) and observations Y (N, m),

    Z ← prox(Z W_kᵀ + Y S_kᵀ, θ_k),     Z₀ = 0,

with learnable ``W_k (p, p)``, ``S_k (p, m)`` and per-latent thresholds ``θ_k (p,)`` (used through |θ_k|);
prox is the soft threshold, or ``max(v − θ, 0)`` with ``nonneg``. Initialised from ISTA on a dictionary D
(p, m), atoms as rows: ``W_k = I − D Dᵀ / L``, ``S_k = D / L``, ``θ_k = λ / L`` with ``L = ‖D‖₂²`` — the
paper's ``W = I − AᵀA/L``, ``S = Aᵀ/L`` for the column-form ``A = Dᵀ``. Before training the network therefore
returns ISTA's ``n_layers``-th iterate exactly.

Parametrisations (``ListaConfig.weights``):

* ``untied`` — every layer has its own W_k, S_k (the paper's and the study's LISTA; n_layers·(p² + pm)
  parameters: 16 M at p = 1000).
* ``tied`` — one W and one S shared by all layers, per-layer thresholds (p² + pm parameters).
* ``coupled`` — LISTA-CP (Chen et al., NeurIPS 2018): ``W_k = I − S_k D`` is tied to D, so a layer is
  ``Z ← prox(Z + (Y − Z D) S_kᵀ, θ_k)``; n_layers·pm parameters and 4pm flops per row and layer instead of
  2(p² + pm), the only one that stays cheap when p ≫ m.

Training keeps D fixed and runs Adam on mini-batches of one of two unsupervised objectives
(``ListaConfig.objective``): ``lasso``, the mean over rows of ``½‖y − zD‖² + λ‖z‖₁`` — the problem the ISTA
initialisation solves, so training only makes the 16-step approximation better — or ``study``, the study's
``MSE(ZD, Y) + λ·mean|Z|`` (means over all entries), which per sample is ``½‖y − zD‖² + (λm/2p)‖z‖₁``: a
weaker penalty than the λ the thresholds start from, so training also drifts to less sparse codes. The
study's variants: D = the true dictionary ("lista_oracle"), or D learned by DL-FISTA first ("dl_lista", what
``fit`` does when no dictionary is given).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from tqdm.auto import tqdm

from dictlab.config import Config
from dictlab.inference import lipschitz_constant
from dictlab.models.base import MODEL_KINDS, DictionaryModel, FitContext, in_row_chunks
from dictlab.validation import check_matrix

# Rows per encoding chunk: bounds the (rows, p) activations at ~16 M entries.
_MAX_ENTRIES_PER_CHUNK = 1 << 24

WeightSharing = Literal["untied", "tied", "coupled"]
TrainingObjective = Literal["lasso", "study"]


class ListaConfig(Config):
    """Hyperparameters of LISTA. Defaults are fast; ``ListaConfig.study()`` gives the study's settings."""

    n_layers: int = Field(16, ge=1, le=1000, description="Unrolled ISTA iterations (layers).")
    lam: float = Field(0.1, ge=0, description="λ: L1 weight of the training loss; thresholds start at λ/L.")
    lr: float | None = Field(
        None,
        gt=0,
        le=1.0,
        description="Adam learning rate of W_k and S_k; None: ``default_weight_lr(weights, p)``.",
    )
    threshold_lr: float = Field(3e-3, gt=0, le=1.0, description="Adam learning rate of the thresholds θ_k.")
    epochs: int = Field(
        5, ge=0, le=100_000, description="Passes over the training data (0: plain ISTA); 10 gave the same MCC."
    )
    batch_size: int = Field(256, ge=1, description="Rows per Adam step.")
    nonneg: bool = Field(True, description="Non-negative codes: prox max(v − θ, 0) instead of the soft threshold.")
    weights: WeightSharing = Field(
        "coupled",
        description="untied: W_k, S_k per layer (the paper); tied: one W, S for all layers; "
        "coupled: LISTA-CP, W_k = I − S_k D (cheapest when p ≫ m).",
    )
    objective: TrainingObjective = Field(
        "lasso",
        description="lasso: mean over rows of ½‖y − zD‖² + λ‖z‖₁, the problem ISTA solves; "
        "study: MSE(zD, y) + λ·mean|z| (means over all entries), a λm/(2p) Lasso penalty.",
    )
    threshold_init: float | None = Field(
        None, ge=0, description="Initial θ for every latent and layer; None: λ/L, so the untrained network is ISTA."
    )

    @classmethod
    def study(cls, **overrides: Any) -> ListaConfig:
        """The study's LISTA (STUDY-SPEC §2.5): untied, 16 layers, Adam lr 1e-3, 200 epochs, batch 64, λ=0.1,
        signed soft threshold initialised at 0.01."""
        settings: dict[str, Any] = {
            "n_layers": 16,
            "lam": 0.1,
            "lr": 1e-3,
            "threshold_lr": 1e-3,
            "epochs": 200,
            "batch_size": 64,
            "nonneg": False,
            "weights": "untied",
            "objective": "study",
            "threshold_init": 0.01,
        }
        return cls(**{**settings, **overrides})


def default_weight_lr(weights: WeightSharing, num_latents: int) -> float:
    """Adam learning rate of W_k, S_k when none is set: ``min(1e-2, 100/p²)`` coupled, ``0.03/p`` tied/untied.

    Fitted to the best of small grids on the compositional data (k = 10) at p = 100 and p = 1000 (coupled:
    1e-2 and 1e-4; tied/untied: 3e-4 and 3e-5 to 1e-4). The steps must shrink with p: each weight's effect is
    summed over p latents, and a fixed 1e-2 makes the coupled network diverge at p = 1000.
    """
    p = float(num_latents)
    return min(1e-2, 100.0 / p**2) if weights == "coupled" else min(1e-2, 0.03 / p)


def _prox(v: torch.Tensor, threshold: torch.Tensor, nonneg: bool) -> torch.Tensor:
    """prox of Σ_j θ_j|z_j| (plus z ≥ 0 when ``nonneg``) for v (N, p), θ (p,) ≥ 0; differentiable in θ."""
    if nonneg:
        return torch.relu(v - threshold)
    return torch.sign(v) * torch.relu(v.abs() - threshold)


@MODEL_KINDS.register("lista")
class Lista(torch.nn.Module, DictionaryModel):
    """LISTA codes on a fixed dictionary; see the module docstring for the layers and the loss.

    Parameters
    ----------
    config : hyperparameters; default ``ListaConfig()``.
    dictionary : (p, m) atoms as rows (the papers' A is ``dictionary.T``). None: ``fit`` learns one with
        DL-FISTA (``dictionary_learner``, default ``DLFista`` with its default config) before training.
    dictionary_learner : an unfitted model whose ``fit(y, context).dictionary`` provides D when none is given.

    The network computes in the dictionary's dtype and on its device; ``fit`` moves it to the data's device.
    """

    kind: ClassVar[str] = "lista"

    def __init__(
        self,
        config: ListaConfig | None = None,
        dictionary: torch.Tensor | None = None,
        dictionary_learner: DictionaryModel | None = None,
    ) -> None:
        super().__init__()
        self.settings = config if config is not None else ListaConfig()
        self.dictionary_learner = dictionary_learner
        self.W: torch.nn.Parameter | None = None  # (p, p) tied, (n_layers, p, p) untied, None coupled
        self.S: torch.nn.Parameter | None = None  # (p, m) tied, (n_layers, p, m) untied / coupled
        self.theta: torch.nn.Parameter | None = None  # (n_layers, p)
        self.register_buffer("_dictionary", None)
        if dictionary is not None:
            check_matrix("dictionary", dictionary)
            self._dictionary = dictionary.detach().clone(memory_format=torch.contiguous_format)
            self.reset_to_ista()

    # --- the network --------------------------------------------------------------------------------
    def reset_to_ista(self) -> None:
        """Set every layer to an ISTA step on the dictionary: W_k = I − DDᵀ/L, S_k = D/L, θ_k = λ/L."""
        d = self._require_dictionary()
        cfg = self.settings
        p = d.shape[0]
        step = 1.0 / lipschitz_constant(d)
        threshold = cfg.threshold_init if cfg.threshold_init is not None else cfg.lam * step
        with torch.no_grad():
            s = d * step  # (p, m)
            w = torch.eye(p, dtype=d.dtype, device=d.device) - (d @ d.T) * step  # (p, p)
            layers = cfg.n_layers
            if cfg.weights == "tied":
                self.W, self.S = torch.nn.Parameter(w), torch.nn.Parameter(s)
            elif cfg.weights == "untied":
                self.W = torch.nn.Parameter(w.expand(layers, p, p).clone())
                self.S = torch.nn.Parameter(s.expand(layers, *s.shape).clone())
            else:
                self.W = None
                self.S = torch.nn.Parameter(s.expand(layers, *s.shape).clone())
            self.theta = torch.nn.Parameter(torch.full((layers, p), threshold, dtype=d.dtype, device=d.device))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Codes (N, p) for observations (N, m) already in the network's dtype and device."""
        if self.S is None or self.theta is None:
            raise ValueError("LISTA has no weights yet: pass a dictionary to Lista(...) or call fit first")
        cfg = self.settings
        d = self._dictionary
        thresholds = self.theta.abs()
        shared_input = y @ self.S.T if cfg.weights == "tied" else None  # (N, p), the same in every layer
        z: torch.Tensor | None = None
        for k in range(cfg.n_layers):
            if cfg.weights == "coupled":
                s = self.S[k]
                v = y @ s.T if z is None else z + (y - z @ d) @ s.T
            else:
                if self.W is None:  # set for tied and untied weights by reset_to_ista
                    raise ValueError("LISTA has no weights yet: pass a dictionary to Lista(...) or call fit first")
                w = self.W if cfg.weights == "tied" else self.W[k]
                y_in = shared_input if shared_input is not None else y @ self.S[k].T
                v = y_in if z is None else z @ w.T + y_in
            z = _prox(v, thresholds[k], cfg.nonneg)
        if z is None:  # ListaConfig.n_layers >= 1
            raise ValueError(f"LISTA needs at least one layer, got n_layers={cfg.n_layers}")
        return z

    # --- DictionaryModel ------------------------------------------------------------------------------
    @property
    def dictionary(self) -> torch.Tensor:
        return self._require_dictionary()

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """Codes (N, p) = one forward pass, in the network's dtype; no gradients are recorded."""
        d = self._require_dictionary()
        check_matrix("y", y, cols=d.shape[1])
        x = y.to(dtype=d.dtype, device=d.device)
        with torch.no_grad():
            return in_row_chunks(lambda rows: self(x[rows]), x.shape[0], _MAX_ENTRIES_PER_CHUNK // d.shape[0])

    def fit(self, y: torch.Tensor, context: FitContext | None = None) -> Lista:
        """Train the layers on observations (N, m) from the ISTA initialisation, D fixed; returns self.

        Without a dictionary, first learns one on the same ``y`` with ``dictionary_learner`` (DL-FISTA).
        Mini-batches are drawn by a permutation per epoch from a generator seeded with ``context.seed``.
        """
        context = context if context is not None else FitContext()
        check_matrix("y", y)
        if y.shape[0] == 0:
            raise ValueError("y has no rows; LISTA needs at least one training observation")
        if self._dictionary is None:
            self._dictionary = self._learn_dictionary(y, context).detach().clone()
        if self._dictionary.shape[1] != y.shape[1]:
            m = self._dictionary.shape[1]
            raise ValueError(f"y must have {m} columns (the dictionary's m), got shape {tuple(y.shape)}")
        self._dictionary = self._dictionary.to(y.device)
        self.reset_to_ista()
        x = y.detach().to(dtype=self._dictionary.dtype, device=y.device)
        self._train(x, context)
        return self

    def _train(self, x: torch.Tensor, context: FitContext) -> None:
        cfg = self.settings
        if cfg.epochs == 0:
            return
        d = self._dictionary
        weights = [w for w in (self.W, self.S) if w is not None]
        weight_lr = cfg.lr if cfg.lr is not None else default_weight_lr(cfg.weights, d.shape[0])
        groups = [{"params": weights, "lr": weight_lr}, {"params": [self.theta], "lr": cfg.threshold_lr}]
        optimizer = torch.optim.Adam(groups)
        generator = context.generator(self.kind)
        n = x.shape[0]
        for _ in tqdm(range(cfg.epochs), desc="LISTA", unit="epoch", disable=not context.progress):
            order = torch.randperm(n, generator=generator).to(x.device)
            for start in range(0, n, cfg.batch_size):
                batch = x[order[start : start + cfg.batch_size]]
                loss = self.loss(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

    def loss(self, y: torch.Tensor) -> torch.Tensor:
        """The training objective (``ListaConfig.objective``) of the codes for a batch y (N, m); a scalar."""
        z = self(y)
        residual = z @ self._dictionary - y
        if self.settings.objective == "study":
            return residual.pow(2).mean() + self.settings.lam * z.abs().mean()
        return (0.5 * residual.pow(2).sum() + self.settings.lam * z.abs().sum()) / y.shape[0]

    def _learn_dictionary(self, y: torch.Tensor, context: FitContext) -> torch.Tensor:
        learner = self.dictionary_learner
        if learner is None:
            raise ValueError(
                "LISTA needs a dictionary: pass dictionary= (e.g. the true one) or dictionary_learner= "
                "(e.g. DLFista(DLFistaConfig(width=p))) to Lista(...)"
            )
        return context.fit(learner, y).dictionary

    def fit_keys(self) -> set[str]:
        """The dictionary learner's fit, which ``fit`` requests through the context's ``FitCache``."""
        if self._dictionary is not None or self.dictionary_learner is None:
            return set()
        return self.dictionary_learner.fit_keys()

    def _require_dictionary(self) -> torch.Tensor:
        if self._dictionary is None:
            raise ValueError("LISTA has no dictionary yet: pass dictionary= to Lista(...) or call fit first")
        return self._dictionary

    # --- persistence ------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"lista": self.settings.model_dump()}

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"dictionary": self._require_dictionary()}
        for name in ("W", "S", "theta"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.detach()
        return out

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Lista:
        if "dictionary" not in tensors:
            raise ValueError("saved LISTA model has no 'dictionary' tensor")
        model = cls(ListaConfig(**config.get("lista", {})), dictionary=tensors["dictionary"])
        with torch.no_grad():
            for name in ("W", "S", "theta"):
                current = getattr(model, name)
                if current is None:
                    continue
                if name not in tensors or tensors[name].shape != current.shape:
                    got = tuple(tensors[name].shape) if name in tensors else "nothing"
                    raise ValueError(f"saved LISTA tensor {name!r} must have shape {tuple(current.shape)}, got {got}")
                current.copy_(tensors[name])
        return model
