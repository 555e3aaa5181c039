"""Typed hyperparameters of an SAE (``SAEConfig``) and of its training (``TrainConfig``).

Field names follow SAELens where it has one (``d_in``, ``d_sae``, ``k``, ``l1_coefficient``,
``l0_coefficient``, ``jumprelu_bandwidth``, ``jumprelu_init_threshold``, ``topk_threshold_lr``).
``SAEConfig()`` and ``TrainConfig()`` defaults are dictlab's fast recipe, tuned on the study's data
(p = 100, k = 10: penalty weights are relative to the MSE, a mean over dimensions, so they depend on the
data's scale); ``SAEConfig.study(...)`` and ``TrainConfig.study()`` are the study's own settings
(arXiv 2603.28744, STUDY-SPEC §2.1), for like-for-like comparisons.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from dictlab.config import Config

# Architectures whose sparsity is set by ``k`` (codes per sample, or per sample on average).
K_ARCHITECTURES = ("topk", "batchtopk", "mp")


class SAEConfig(Config):
    """Shape and sparsity mechanism of one sparse autoencoder."""

    d_in: int = Field(..., ge=1, description="m: observation dimension.")
    d_sae: int = Field(..., ge=1, description="p: number of latents (decoder rows, atoms).")
    architecture: str = Field(
        "relu", description="Sparsity mechanism, a name in dictlab.sae.SAE_ARCHITECTURES (relu, topk, batchtopk, jumprelu, mp)."
    )
    k: int | None = Field(
        None, ge=1, description="Active latents per sample (topk, mp) or per sample on average over a batch (batchtopk)."
    )
    l1_coefficient: float = Field(3e-3, ge=0, description="relu: weight of the L1 penalty mean_b Σ_j z_j·‖W_dec_j‖.")
    l0_coefficient: float = Field(1e-3, ge=0, description="jumprelu: weight of the L0 penalty mean_b Σ_j H(pre_j − θ_j).")
    jumprelu_bandwidth: float = Field(1e-2, gt=0, description="jumprelu: width ε of the rectangle kernel of the STE.")
    jumprelu_init_threshold: float = Field(0.1, gt=0, description="jumprelu: initial threshold θ of every latent.")
    topk_threshold_lr: float = Field(
        0.01, gt=0, le=1, description="batchtopk: EMA rate of the inference threshold (smallest kept activation)."
    )
    mp_absolute: bool = Field(False, description="mp: select atoms by |correlation| (the study) instead of correlation (the paper).")
    mp_allow_reselect: bool = Field(True, description="mp: an atom may be selected again for a sample (the paper; study: no).")

    @classmethod
    def study(cls, **fields: Any) -> SAEConfig:
        """The study's sparsity settings (STUDY-SPEC §2.1) for the given fields (d_in, d_sae, architecture, k):
        L1 and L0 weight 1e-4, JumpReLU ε = 1e-3 and θ₀ = 1e-3, MP by |correlation| without reselection."""
        study = {
            "l1_coefficient": 1e-4,
            "l0_coefficient": 1e-4,
            "jumprelu_bandwidth": 1e-3,
            "jumprelu_init_threshold": 1e-3,
            "mp_absolute": True,
            "mp_allow_reselect": False,
        }
        return cls(**{**study, **fields})

    @model_validator(mode="after")
    def _check(self) -> SAEConfig:
        from dictlab.sae.base import SAE_ARCHITECTURES

        SAE_ARCHITECTURES[self.architecture]  # ValueError listing the allowed names
        if self.architecture in K_ARCHITECTURES:
            if self.k is None:
                raise ValueError(f"architecture {self.architecture!r} needs k (active latents per sample); got k=None")
            if self.k > self.d_sae:
                raise ValueError(f"k={self.k} must be at most d_sae={self.d_sae}")
        return self


LrSchedule = Literal["constant", "linear", "cosine"]
Renormalisation = Literal["every_step", "every_n_epochs", "never"]


class TrainConfig(Config):
    """One recipe for every architecture: Adam(W) on MSE + penalty, decoder rows kept on the unit sphere."""

    lr: float = Field(3e-2, gt=0, description="Peak learning rate.")
    batch_size: int = Field(256, ge=1, description="Samples per step; the last batch of an epoch may be smaller.")
    n_steps: int | None = Field(800, ge=1, description="Optimiser steps; exactly one of n_steps and epochs is set.")
    epochs: int | None = Field(None, ge=1, description="Passes over the data; exactly one of n_steps and epochs is set.")
    lr_schedule: LrSchedule = Field("cosine", description="Decay after warm-up: constant, linear (to 0) or cosine (to 0).")
    warmup_steps: int = Field(50, ge=0, description="Linear warm-up from 0 to lr over this many steps.")
    optimizer: Literal["adam", "adamw"] = Field("adam", description="adam, or adamw (decoupled weight decay).")
    weight_decay: float = Field(0.0, ge=0, description="Weight decay (decoupled for adamw), on every parameter as the study.")
    project_decoder_grad: bool = Field(
        True, description="Remove from each decoder row's gradient its component along the row (keeps rows on the sphere)."
    )
    renormalise_decoder: Renormalisation = Field(
        "every_step", description="When decoder rows are rescaled to unit norm: every_step, every_n_epochs or never."
    )
    renormalise_every_epochs: int = Field(50, ge=1, description="Period for every_n_epochs (after epochs 0, n, 2n, …).")
    init_b_dec_to_mean: bool = Field(False, description="Start b_dec at the data mean (study: False, b_dec starts at 0).")
    log_every: int | None = Field(100, ge=1, description="Record history every this many steps (and at the end); None: never.")

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
