"""Typed hyperparameters of an SAE (``SAEConfig`` and one subclass per architecture) and of its training
(``TrainConfig``, shared by every architecture).

Field names follow SAELens where it has one (``d_in``, ``d_sae``, ``k``, ``l1_coefficient``,
``l0_coefficient``, ``jumprelu_bandwidth``, ``jumprelu_init_threshold``, ``topk_threshold_lr``). Each
architecture's file defines its config (``ReLUSAEConfig`` in relu.py, …), whose ``architecture`` field is a
literal naming it, so a saved config says which class reads it back. Defaults are dictlab's fast recipe,
tuned on the study's data (p = 100, k = 10: penalty weights are relative to the MSE, a mean over
dimensions, so they depend on the data's scale); ``<Config>.study(...)`` and ``TrainConfig.study()`` are
the study's own settings (arXiv 2603.28744, STUDY-SPEC §2.1), for like-for-like comparisons.
"""

from __future__ import annotations

import math
from typing import Any, Literal, TypeVar

from pydantic import Field, model_validator

from dictlab.config import Config

S = TypeVar("S", bound="SAEConfig")


class SAEConfig(Config):
    """What every sparse autoencoder has: its shape and the name of its sparsity mechanism.

    Subclasses (one per architecture) add the mechanism's fields and narrow ``architecture`` to a literal.
    """

    d_in: int = Field(..., ge=1, description="m: observation dimension.")
    d_sae: int = Field(..., ge=1, description="p: number of latents (decoder rows, atoms).")
    architecture: str = Field(..., description="Sparsity mechanism, a name in dictlab.sae.SAE_ARCHITECTURES.")

    @classmethod
    def study(cls: type[S], **fields: Any) -> S:
        """The study's settings (STUDY-SPEC §2.1) for the given fields; subclasses put their own under them."""
        return cls(**fields)


def check_k_fits(k: int, d_sae: int) -> None:
    """For configs with a field ``k``: at most d_sae latents can be active (ValueError otherwise)."""
    if k > d_sae:
        raise ValueError(f"k={k} must be at most d_sae={d_sae}")


LrSchedule = Literal["constant", "linear", "cosine"]
Renormalisation = Literal["every_step", "every_n_epochs", "never"]
AnchorSource = Literal["ground_truth", "class_means"]


class TrainConfig(Config):
    """One recipe for every architecture: Adam(W) on the sum of the loss terms, decoder rows kept on the unit sphere."""

    lr: float = Field(3e-2, gt=0, description="Peak learning rate.")
    batch_size: int = Field(256, ge=1, description="Samples per step; the last batch of an epoch may be smaller.")
    n_steps: int | None = Field(800, ge=1, description="Optimiser steps; exactly one of n_steps and epochs is set.")
    epochs: int | None = Field(
        None, ge=1, description="Passes over the data; exactly one of n_steps and epochs is set."
    )
    lr_schedule: LrSchedule = Field(
        "cosine", description="Decay after warm-up: constant, linear (to 0) or cosine (to 0)."
    )
    warmup_steps: int = Field(50, ge=0, description="Linear warm-up from 0 to lr over this many steps.")
    optimizer: Literal["adam", "adamw"] = Field("adam", description="adam, or adamw (decoupled weight decay).")
    weight_decay: float = Field(
        0.0, ge=0, description="Weight decay (decoupled for adamw), on every parameter as the study."
    )
    project_decoder_grad: bool = Field(
        True,
        description="Remove from each decoder row's gradient its component along the row (keeps rows on the sphere).",
    )
    renormalise_decoder: Renormalisation = Field(
        "every_step", description="When decoder rows are rescaled to unit norm: every_step, every_n_epochs or never."
    )
    renormalise_every_epochs: int = Field(50, ge=1, description="Period for every_n_epochs (after epochs 0, n, 2n, …).")
    init_b_dec_to_mean: bool = Field(
        False, description="Start b_dec at the data mean (study: False, b_dec starts at 0)."
    )
    log_every: int | None = Field(
        100, ge=1, description="Record history every this many steps (and at the end); None: never."
    )
    # Dead latents (SAELens's names): counted in optimiser steps, logged as dead_latents in every entry.
    dead_feature_window: int = Field(
        100, ge=1, description="A latent is dead once it has not fired (non-zero code) for this many steps."
    )
    # AuxK (Gao et al. 2024, §A.2), scaled as SAELens's TopK auxiliary loss; off at coefficient 0.
    aux_loss_coefficient: float = Field(
        0.0,
        ge=0,
        description="Weight of the AuxK term auxiliary_reconstruction_loss (SAELens: 1.0); 0: off.",
    )
    k_aux: int | None = Field(
        None, ge=1, description="Dead latents AuxK reconstructs the residual from; None: d_in // 2 (Gao, SAELens)."
    )
    # Resampling of dead latents (Bricken et al. 2023).
    resample_every: int | None = Field(
        None, ge=1, description="Resample the dead latents every this many steps; None: never."
    )
    resample_stop: float = Field(
        0.5, gt=0, le=1, description="No resampling after this fraction of the optimiser steps."
    )
    resample_pool: int = Field(
        4096, ge=1, description="Training samples scored at each resampling (all of them when fewer)."
    )
    feature_reinit_scale: float = Field(
        0.2, gt=0, description="A resampled encoder column's norm, relative to the mean norm of the live ones."
    )
    # Feature anchoring (seed 004, Eqs. 24-25).
    anchor_features: int = Field(
        0, ge=0, description="k: the first k latents are anchored to FitContext.anchors; 0: no anchoring."
    )
    anchor_source: AnchorSource = Field(
        "ground_truth", description="Where the anchors come from: ground_truth (k true features) or class_means."
    )
    anchor_coefficient: float = Field(
        0.1, ge=0, description="λ_anchor, the weight of anchor_loss (seed 004's ablations: 0.1; CLIP: 1.0)."
    )

    @model_validator(mode="after")
    def _one_length(self) -> TrainConfig:
        if (self.n_steps is None) == (self.epochs is None):
            raise ValueError(f"set exactly one of n_steps and epochs; got n_steps={self.n_steps}, epochs={self.epochs}")
        return self

    def total_steps(self, n_samples: int) -> int:
        """Optimiser steps for a training set of ``n_samples`` rows."""
        if self.n_steps is not None:
            return self.n_steps
        return self.epochs * self.steps_per_epoch(n_samples)  # type: ignore[operator]

    def steps_per_epoch(self, n_samples: int) -> int:
        return math.ceil(n_samples / self.batch_size)

    @classmethod
    def study(cls) -> TrainConfig:
        """The study's recipe (STUDY-SPEC §2.1): AdamW lr 5e-4, weight decay 0.01 on all parameters, batch 64,
        500 epochs, constant lr, decoder gradients projected, rows renormalised after epochs 0, 50, …, 450."""
        return cls(
            lr=5e-4,
            batch_size=64,
            n_steps=None,
            epochs=500,
            lr_schedule="constant",
            warmup_steps=0,
            optimizer="adamw",
            weight_decay=0.01,
            project_decoder_grad=True,
            renormalise_decoder="every_n_epochs",
            renormalise_every_epochs=50,
            init_b_dec_to_mean=False,
        )
