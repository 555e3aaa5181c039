"""The sparse autoencoder: one base class, one small subclass (and config) per sparsity mechanism.

Parameters are named and shaped as in SAELens, atoms as rows:
``W_enc (d_in, d_sae)``, ``b_enc (d_sae,)``, ``W_dec (d_sae, d_in)``, ``b_dec (d_in,)``. For
observations Y (N, m = d_in)

    pre = (Y − b_dec) @ W_enc + b_enc      (N, p = d_sae)
    Z   = f(pre)                           (N, p)   the architecture's sparsity mechanism
    Ŷ   = Z @ W_dec + b_dec                (N, m)

In the papers' column form ``x̂ = W_d c + b_d`` the decoder is ``W_d = W_dec.T``. As a
``DictionaryModel`` the dictionary is ``W_dec`` (p, m) and the offset ``b_dec``, so every surgery of
the study applies to an SAE unchanged.

Adding an architecture is one file: a ``SAEConfig`` subclass whose ``architecture`` is a literal, and a
``SparseAutoencoder`` subclass naming it as ``config_class``, registered in ``SAE_ARCHITECTURES`` under
that name (plus its import in ``dictlab.sae``). ``make_sae(config)`` builds the class the config names;
the methods ``sae_<architecture>`` of ``dictlab.methods`` follow from the registry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from dictlab.config import parse_config
from dictlab.models.base import MODEL_KINDS, DictionaryModel, FitContext
from dictlab.models.history import TrainingHistory
from dictlab.registry import Registry
from dictlab.sae.config import SAEConfig, TrainConfig
from dictlab.sae.training import train_sae
from dictlab.validation import check_matrix

SAE_ARCHITECTURES: Registry[type[SparseAutoencoder]] = Registry("SAE architecture")

LossTerms = dict[str, torch.Tensor]  # name (SAELens's: mse_loss, l1_loss, l0_loss, …) -> scalar


class ForwardOutput(NamedTuple):
    """One training forward pass, every loss term separate under its name; ``loss`` is their sum."""

    reconstruction: torch.Tensor  # (B, m)
    codes: torch.Tensor  # (B, p)
    losses: LossTerms  # always "mse_loss" (mean over batch and dimensions), then the architecture's terms

    @property
    def loss(self) -> torch.Tensor:
        """Σ of the terms of ``losses`` (scalar, differentiable)."""
        terms = iter(self.losses.values())
        total = next(terms)
        for term in terms:
            total = total + term
        return total


def sae_config_class(architecture: str) -> type[SAEConfig]:
    """The config class of ``architecture``; ValueError listing the registered names for an unknown one."""
    return SAE_ARCHITECTURES[architecture].config_class


def make_sae(config: SAEConfig, train_config: TrainConfig | None = None) -> SparseAutoencoder:
    """The SAE of ``config.architecture`` with parameters initialised from seed 0 (``fit`` re-initialises)."""
    return SAE_ARCHITECTURES[config.architecture](config, train_config)


def parse_sae_config(values: Any, *, where: str = "", prefix: str = "") -> SAEConfig:
    """The config of the architecture that ``values`` (a mapping of fields) names; one-line ValueError otherwise.

    ``where`` and ``prefix`` are those of ``dictlab.config.parse_config`` (what is read, and the fields' path).
    """
    if not isinstance(values, Mapping):
        return parse_config(SAEConfig, values, where=where, prefix=prefix)  # raises: not a table of fields
    lead = f"{where}: " if where else ""
    if "architecture" not in values:
        raise ValueError(f"{lead}{prefix}architecture is missing; allowed: {', '.join(SAE_ARCHITECTURES.names())}")
    try:
        cls = sae_config_class(values["architecture"])
    except ValueError as err:
        raise ValueError(f"{lead}{prefix}architecture: {err}") from None
    return parse_config(cls, values, where=where, prefix=prefix)


# The one flat SAEConfig that every architecture shared before configs were per architecture (cfg.json
# format 1, and dictlab-format folders saved then). Such a config is read by keeping the fields its
# architecture's config class has.
FLAT_CONFIG_FIELDS = frozenset(
    {
        "d_in", "d_sae", "architecture", "k", "l1_coefficient", "l0_coefficient", "jumprelu_bandwidth",
        "jumprelu_init_threshold", "topk_threshold_lr", "mp_absolute", "mp_allow_reselect",
    }
)  # fmt: skip


def upgrade_flat_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """A flat (format-1) SAE config reduced to the fields of its architecture's config class."""
    fields = sae_config_class(values["architecture"]).model_fields
    return {name: value for name, value in values.items() if name in fields}


def read_saved_configs(
    saved: Mapping[str, Any], *, flat: bool, where: str = "", prefix: str = ""
) -> tuple[SAEConfig, TrainConfig | None]:
    """The SAE and training configs of a saved ``{"sae": …, "train": …}`` table (``SparseAutoencoder.config()``).

    flat : the SAE config may be the flat one of format 1, read with its architecture's fields kept.
    where, prefix : as in ``dictlab.config.parse_config`` (the file read, the table's path in it).
    """
    values = saved["sae"]
    if flat and isinstance(values, Mapping) and "architecture" in values:
        try:
            values = upgrade_flat_config(values)
        except ValueError as err:
            lead = f"{where}: " if where else ""
            raise ValueError(f"{lead}{prefix}sae.architecture: {err}") from None
    sae_config = parse_sae_config(values, where=where, prefix=f"{prefix}sae.")
    train = saved.get("train")
    train_config = None if train is None else parse_config(TrainConfig, train, where=where, prefix=f"{prefix}train.")
    return sae_config, train_config


@MODEL_KINDS.register("sae")
class SparseAutoencoder(nn.Module, DictionaryModel):
    """Base SAE: linear encoder, architecture-specific sparsity ``f``, linear decoder with unit-norm rows.

    Subclasses set ``architecture``, ``config_class``, ``description`` and ``saelens_architecture`` and
    implement ``activation(pre)``, or replace the whole ``sparse_code`` (JumpReLU, whose codes and L0 share
    one straight-through function; the MP-SAE, which has no encoder). Loss terms beyond the MSE come from
    ``loss_terms`` (ReLU's L1) or from ``sparse_code`` (JumpReLU's L0).
    """

    kind = "sae"
    architecture: ClassVar[str]
    config_class: ClassVar[type[SAEConfig]]
    description: ClassVar[str]  # one line, shown by ``dictlab methods`` for the method sae_<architecture>
    saelens_architecture: ClassVar[str]  # the name SAELens's cfg.json uses for this model at inference
    has_encoder: ClassVar[bool] = True

    def __init__(self, config: SAEConfig, train_config: TrainConfig | None = None) -> None:
        if config.architecture != self.architecture:
            raise ValueError(
                f"{type(self).__name__} implements architecture {self.architecture!r}, the config asks for "
                f"{config.architecture!r}; build SAEs with dictlab.sae.make_sae(config)"
            )
        if not isinstance(config, self.config_class):
            raise ValueError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got a {type(config).__name__}; "
                f"dictlab.sae.sae_config_class({self.architecture!r}) is its class"
            )
        super().__init__()
        self.cfg = config
        self.train_config = train_config if train_config is not None else TrainConfig()
        self.history = TrainingHistory()
        d_in, d_sae = config.d_in, config.d_sae
        if self.has_encoder:
            self.W_enc = nn.Parameter(torch.empty(d_in, d_sae))
            self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.add_sparsity_state()
        self.reset_parameters(torch.Generator().manual_seed(0))

    # --- initialisation -----------------------------------------------------------------------------
    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """The study's init: W_enc ~ U(±1/√d_in) (Kaiming-uniform, a=√5), W_dec = W_encᵀ with unit rows, biases 0.

        ``generator`` is a CPU generator; draws are moved to the parameters' device so a seed gives the
        same initial SAE on every device.
        """
        bound = 1.0 / math.sqrt(self.cfg.d_in)
        weights = torch.rand(self.cfg.d_sae, self.cfg.d_in, generator=generator, dtype=torch.float64)
        weights = ((2 * weights - 1) * bound).to(self.W_dec)  # (d_sae, d_in)
        if self.has_encoder:
            self.W_enc.copy_(weights.T)
            self.b_enc.zero_()
        self.W_dec.copy_(weights / torch.linalg.vector_norm(weights, dim=1, keepdim=True))
        self.b_dec.zero_()
        self.reset_sparsity_state()

    def add_sparsity_state(self) -> None:
        """Create architecture-specific parameters or buffers (thresholds); none for most architectures."""

    def reset_sparsity_state(self) -> None:
        """Set architecture-specific state to its initial value."""

    # --- the forward pass ---------------------------------------------------------------------------
    def decoder_weight(self) -> torch.Tensor:
        """(d_sae, d_in) decoder used in the forward pass (differentiable)."""
        return self.W_dec

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        """Codes (B, p) from pre-activations (B, p); behaviour may differ between train and eval mode."""
        raise NotImplementedError

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """(B, p) = x @ W_enc + b_enc for bias-centred inputs x = y − b_dec (B, m)."""
        return torch.addmm(self.b_enc, x, self.W_enc)

    def sparse_code(self, x: torch.Tensor) -> tuple[torch.Tensor, LossTerms]:
        """Codes (B, p) for bias-centred inputs x = y − b_dec (B, m), and the loss terms computed with them
        (none here; JumpReLU's ``l0_loss``)."""
        return self.activation(self.pre_activation(x)), {}

    def loss_terms(self, y: torch.Tensor, reconstruction: torch.Tensor, codes: torch.Tensor) -> LossTerms:
        """Named loss terms (scalars) of a training batch y (B, m), its reconstruction (B, m) and codes (B, p).

        Here ``mse_loss`` = mean over batch and dimensions of (ŷ − y)², as the study. A subclass adds a term in
        one line: ``return {**super().loss_terms(y, reconstruction, codes), "aux_loss": …}``.
        """
        return {"mse_loss": (reconstruction - y).pow(2).mean()}

    def output(
        self, y: torch.Tensor, reconstruction: torch.Tensor, codes: torch.Tensor, code_losses: LossTerms | None = None
    ) -> ForwardOutput:
        """The ``ForwardOutput`` of a batch: ``loss_terms``, then the terms ``sparse_code`` returned."""
        losses = {**self.loss_terms(y, reconstruction, codes), **(code_losses or {})}
        return ForwardOutput(reconstruction, codes, losses)

    def forward(self, y: torch.Tensor, target: torch.Tensor | None = None) -> ForwardOutput:
        """Training forward pass on a batch y (B, m); ``target`` (B, r) is what a model with
        ``predicts_target`` reconstructs (None: y itself, an autoencoder)."""
        codes, code_losses = self.sparse_code(self.encoder_input(y))
        return self.output(y, codes @ self.decoder_weight() + self.b_dec, codes, code_losses)

    def encoder_input(self, y: torch.Tensor) -> torch.Tensor:
        """What the encoder reads from observations y (B, d_in): y − b_dec (an autoencoder centres its input by
        the decoder bias; a model whose decoder writes elsewhere, a transcoder, overrides this)."""
        return y - self.b_dec

    # --- keeping decoder rows on the unit sphere ---------------------------------------------------
    @torch.no_grad()
    def project_decoder_grad_(self) -> None:
        """Remove from each row's gradient its component along the row: g_j ← g_j − (g_j·w_j / ‖w_j‖²) w_j."""
        grad = self.W_dec.grad
        if grad is None:
            return
        w = self.W_dec
        grad.sub_((grad * w).sum(dim=1, keepdim=True) / (w * w).sum(dim=1, keepdim=True) * w)

    @torch.no_grad()
    def normalise_decoder_(self) -> None:
        """Rescale every decoder row to unit norm."""
        self.W_dec.div_(torch.linalg.vector_norm(self.W_dec, dim=1, keepdim=True))

    def unit_decoder_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """New decoder rows (n, width) scaled as ``normalise_decoder_`` keeps them: here each to unit norm (what
        resampling writes into chosen rows without touching the others)."""
        return rows / torch.linalg.vector_norm(rows, dim=1, keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny)

    # --- DictionaryModel ----------------------------------------------------------------------------
    @property
    def dictionary(self) -> torch.Tensor:
        """(d_sae, d_in) the decoder, atoms as rows, detached."""
        return self.decoder_weight().detach()

    @property
    def offset(self) -> torch.Tensor:
        """(d_in,) the decoder bias b_dec, detached."""
        return self.b_dec.detach()

    @property
    def encoder_directions(self) -> torch.Tensor | None:
        """(d_sae, d_in) = W_enc.T, detached: the direction each latent reads (None without an encoder)."""
        return self.W_enc.detach().T if self.has_encoder else None

    def anchor_request(self) -> tuple[int, str] | None:
        """(``anchor_features``, ``anchor_source``) of the training config when it anchors latents, else None."""
        k = self.train_config.anchor_features
        return (k, self.train_config.anchor_source) if k > 0 else None

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """Inference codes (N, d_sae) for observations (N, d_in): eval mode, no gradient."""
        check_matrix("y", y, cols=self.cfg.d_in)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                codes, _ = self.sparse_code(self.encoder_input(y.to(self.W_dec)))
        finally:
            self.train(was_training)
        return codes

    def fit(self, y: torch.Tensor, context: FitContext | None = None) -> SparseAutoencoder:
        """Initialise from ``context.seed`` and train on observations (N, d_in) with ``self.train_config``.

        The model moves to ``y``'s device and dtype. ``context.ground_truth`` (p, m), when given, is used
        only to log dictionary quality into ``self.history``.
        """
        context = context if context is not None else FitContext()
        check_matrix("y", y, cols=self.cfg.d_in)
        self.to(device=y.device, dtype=y.dtype)
        generator = context.generator(self.kind)  # one stream: the initial weights, then the shuffling
        self.reset_parameters(generator)
        if self.train_config.init_b_dec_to_mean:
            with torch.no_grad():
                self.b_dec.copy_(y.mean(dim=0))
        target = context.target
        if self.predicts_target:
            if target is None:
                raise ValueError(f"a {self.architecture} SAE predicts targets: fit it with FitContext(target=...)")
            check_matrix("context.target", target, rows=y.shape[0], cols=self.decoder_weight().shape[1])
            target = target.to(y)
        else:
            target = None
        self.history = train_sae(self, y, self.train_config, context, generator=generator, target=target)
        return self

    # --- persistence (SAELens cfg.json + sae_weights.safetensors, see dictlab.sae.io) --------------
    def save(self, path: str | Path) -> None:
        from dictlab.sae.io import save_sae

        save_sae(self, path)

    def config(self) -> dict[str, Any]:
        return {"sae": self.cfg.model_dump(), "train": self.train_config.model_dump()}

    def tensors(self) -> dict[str, torch.Tensor]:
        """The inference state under SAELens's names."""
        out = {"W_enc": self.W_enc, "b_enc": self.b_enc} if self.has_encoder else {}
        return {**out, "W_dec": self.W_dec, "b_dec": self.b_dec}

    @torch.no_grad()
    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Copy saved tensors in; shapes and names must be exactly those of ``tensors()`` (ValueError otherwise)."""
        expected = {name: tuple(t.shape) for name, t in self.tensors().items()}
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        if missing or extra:
            raise ValueError(
                f"{self.architecture} SAE needs tensors {sorted(expected)}; missing {missing}, unexpected {extra}"
            )
        for name, shape in expected.items():
            value = tensors[name]
            if tuple(value.shape) != shape:
                raise ValueError(f"tensor {name!r} must have shape {shape}, got {tuple(value.shape)}")
            if not value.is_floating_point() or not torch.isfinite(value).all():
                raise ValueError(f"tensor {name!r} must be finite floating point (dtype {value.dtype})")
        dtype, device = tensors["W_dec"].dtype, tensors["W_dec"].device
        self.to(device=device, dtype=dtype)
        for name in expected:
            self.set_saved_tensor(name, tensors[name].to(dtype))

    def set_saved_tensor(self, name: str, value: torch.Tensor) -> None:
        getattr(self, name).copy_(value)

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> SparseAutoencoder:
        """Inverse of ``config()`` + ``tensors()``; a flat config saved before configs were per architecture
        (exactly the fields ``FLAT_CONFIG_FIELDS``) is read by ``upgrade_flat_config``."""
        if not isinstance(config, dict) or "sae" not in config:
            raise ValueError(f"an SAE config needs an 'sae' entry (SAEConfig fields); got {config!r}")
        values = config["sae"]
        flat = isinstance(values, Mapping) and set(values) == FLAT_CONFIG_FIELDS
        return cls.from_configs(*read_saved_configs(config, flat=flat), tensors)

    @staticmethod
    def from_configs(
        sae_config: SAEConfig, train_config: TrainConfig | None, tensors: dict[str, torch.Tensor]
    ) -> SparseAutoencoder:
        """The SAE of ``sae_config`` holding the saved ``tensors``, in eval mode."""
        sae = make_sae(sae_config, train_config)
        sae.load_tensors(tensors)
        return sae.eval()

    def extra_repr(self) -> str:
        return f"architecture={self.architecture!r}, d_in={self.cfg.d_in}, d_sae={self.cfg.d_sae}"
