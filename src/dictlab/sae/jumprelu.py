"""JumpReLU SAE (Rajamanoharan et al. 2024, "Jumping Ahead"): a learned threshold per latent, trained on L0.

``Z = pre · H(pre − θ)`` with θ = exp(log_threshold) > 0 per latent. The threshold gets gradients through
straight-through estimators with the rectangle kernel R(u) = 1[|u| ≤ ½] of bandwidth ε:

    ∂Z/∂pre = H(pre − θ)                    ∂Z/∂θ = −(θ/ε) R((pre − θ)/ε)
    ∂H(pre − θ)/∂pre = 0 (no STE)           ∂H(pre − θ)/∂θ = −(1/ε) R((pre − θ)/ε)

and, by the chain rule, ∂/∂log θ = θ ∂/∂θ. Loss term ``l0_loss = λ₀ · mean_b Σ_j H(pre_bj − θ_j)`` on the
*pre-activations*, as in the paper. The study evaluated the step on the post-activation codes Z
instead. The penalty's value is the same, but units below θ have Z = 0, so their kernel is evaluated at
−θ/ε rather than (pre − θ)/ε: while θ > ε/2 they never contribute, and only units just above θ
(pre ∈ (θ, θ + ε/2]) push θ up — half the paper's kernel; once θ ≤ ε/2, every inactive unit does.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field

from dictlab.sae.base import SAE_ARCHITECTURES, LossTerms, SparseAutoencoder
from dictlab.sae.config import SAEConfig


class JumpReLUSAEConfig(SAEConfig):
    architecture: Literal["jumprelu"] = Field(
        "jumprelu", description="Sparsity mechanism: learned per-latent thresholds with an L0 penalty."
    )
    l0_coefficient: float = Field(1e-3, ge=0, description="Weight λ₀ of the L0 penalty mean_b Σ_j H(pre_j − θ_j).")
    jumprelu_bandwidth: float = Field(1e-2, gt=0, description="Width ε of the rectangle kernel of the STE.")
    jumprelu_init_threshold: float = Field(0.1, gt=0, description="Initial threshold θ of every latent.")

    @classmethod
    def study(cls, **fields: Any) -> JumpReLUSAEConfig:
        """The study's JumpReLU: L0 weight 1e-4, ε = 1e-3, θ₀ = 1e-3, under ``fields``."""
        return cls(**{"l0_coefficient": 1e-4, "jumprelu_bandwidth": 1e-3, "jumprelu_init_threshold": 1e-3, **fields})


def rectangle(u: torch.Tensor) -> torch.Tensor:
    """R(u) = 1[−½ ≤ u ≤ ½] in u's dtype."""
    return (u.abs() <= 0.5).to(u.dtype)


class JumpReLUFunction(torch.autograd.Function):
    """pre (B, p), threshold (p,) → (codes pre·H(pre − θ), step H(pre − θ)), both (B, p), with the
    straight-through gradients above. One function for both so the kernel is evaluated once."""

    @staticmethod
    def forward(
        ctx: Any, pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        step = (pre > threshold).to(pre.dtype)
        ctx.save_for_backward(pre, threshold, step)
        ctx.bandwidth = bandwidth
        return pre * step, step

    @staticmethod
    def backward(
        ctx: Any, grad_codes: torch.Tensor, grad_step: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        pre, threshold, step = ctx.saved_tensors
        eps = ctx.bandwidth
        kernel = rectangle((pre - threshold) / eps)
        # ∂codes/∂θ = −(θ/ε)R, ∂step/∂θ = −(1/ε)R, summed over the batch.
        grad_threshold = -((threshold * grad_codes + grad_step) * kernel).sum(dim=0) / eps
        return grad_codes * step, grad_threshold, None


@SAE_ARCHITECTURES.register("jumprelu")
class JumpReLUSAE(SparseAutoencoder):
    architecture = "jumprelu"
    config_class = JumpReLUSAEConfig
    description = "SAE with learnable per-latent thresholds and an L0 penalty (Rajamanoharan et al. 2024)"
    saelens_architecture = "jumprelu"
    cfg: JumpReLUSAEConfig
    log_threshold: torch.nn.Parameter  # (d_sae,)

    def add_sparsity_state(self) -> None:
        self.log_threshold = torch.nn.Parameter(torch.zeros(self.cfg.d_sae))

    def reset_sparsity_state(self) -> None:
        with torch.no_grad():
            self.log_threshold.fill_(math.log(self.cfg.jumprelu_init_threshold))

    @property
    def threshold(self) -> torch.Tensor:
        """(d_sae,) θ = exp(log_threshold)."""
        return self.log_threshold.exp()

    def sparse_code(self, x: torch.Tensor) -> tuple[torch.Tensor, LossTerms]:
        pre = self.pre_activation(x)
        codes, step = JumpReLUFunction.apply(pre, self.threshold, self.cfg.jumprelu_bandwidth)
        return codes, {"l0_loss": self.cfg.l0_coefficient * step.sum(dim=1).mean()}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {**super().tensors(), "threshold": self.threshold}

    def set_saved_tensor(self, name: str, value: torch.Tensor) -> None:
        if name != "threshold":
            return super().set_saved_tensor(name, value)
        if bool((value < 0).any()):
            raise ValueError("tensor 'threshold' of a JumpReLU SAE must be >= 0")
        self.log_threshold.copy_(value.log())  # θ = 0 gives −inf: a plain ReLU unit, fine at inference
