"""Matryoshka SAE (Bussmann et al. 2025), BatchTopK variant: every prefix of the latents must reconstruct alone.

The codes are BatchTopK's over all d_sae latents (the k·B largest entries of ReLU(pre) in a batch of B). For
the nested widths w₁ < w₂ < … < w_s = d_sae (``matryoshka_widths``) the prefix reconstructions are

    Ŷ⁽ⁱ⁾ = Z[:, :wᵢ] @ W_dec[:wᵢ] + b_dec                      (B, m), i = 1 … s

and the loss is Σᵢ mean((Ŷ⁽ⁱ⁾ − Y)²): ``mse_loss`` for the full width w_s (Ŷ⁽ˢ⁾ is the reconstruction) and
``inner_mse_loss_<wᵢ>`` for each inner width, SAELens's names. Early latents are thereby pushed to carry the
most frequent, general features and later ones to refine them, which counters feature absorption.

The prefixes cost one decoding: the latents split into blocks [w_{i−1}, wᵢ), each block is decoded once and a
cumulative sum over blocks gives every prefix. On the gathered (sparse) training path of BatchTopK each kept
entry is added into the slot of its block, so the nested losses stay exact there too.

At inference the SAE is a BatchTopK SAE: a JumpReLU with the global threshold θ (``topk_threshold_lr``), and
SAELens saves it as a JumpReLU SAE, as it does a trained Matryoshka BatchTopK SAE.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator

from dictlab.sae.base import SAE_ARCHITECTURES, ForwardOutput, LossTerms
from dictlab.sae.topk import BatchTopKSAE, BatchTopKSAEConfig

# The default widths shrink by this factor from d_sae, down to the smallest one that is at least
# MIN_WIDTH_PER_K · k (a prefix narrower than that could not hold one sample's k latents twice over).
WIDTH_FACTOR = 4
MIN_WIDTH_PER_K = 2


def default_matryoshka_widths(d_sae: int, k: int) -> list[int]:
    """The default nested widths: d_sae, d_sae // 4, d_sae // 16, … while ≥ 2k (always d_sae), increasing.

    d_sae = 1024, k = 16 gives [64, 256, 1024]; d_sae = 100, k = 10 gives [25, 100].
    """
    widths = [d_sae]
    while widths[-1] // WIDTH_FACTOR >= MIN_WIDTH_PER_K * k:
        widths.append(widths[-1] // WIDTH_FACTOR)
    return widths[::-1]


class MatryoshkaBatchTopKSAEConfig(BatchTopKSAEConfig):
    architecture: Literal["matryoshka_batchtopk"] = Field(  # type: ignore[assignment]
        "matryoshka_batchtopk", description="Sparsity mechanism: BatchTopK, trained on nested prefixes."
    )
    matryoshka_widths: list[Annotated[int, Field(ge=1)]] | None = Field(
        None,
        description="Nested prefix widths, strictly increasing, the last = d_sae; None: d_sae, d_sae/4, d_sae/16, … "
        "while ≥ 2k.",
    )

    @model_validator(mode="after")
    def _nested_widths(self) -> MatryoshkaBatchTopKSAEConfig:
        widths = self.matryoshka_widths
        if widths is None:
            return self
        if not widths or widths[-1] != self.d_sae:
            raise ValueError(f"matryoshka_widths {widths} must end with d_sae={self.d_sae}")
        if any(a >= b for a, b in pairwise(widths)):
            raise ValueError(f"matryoshka_widths {widths} must be strictly increasing")
        return self

    @property
    def widths(self) -> list[int]:
        """The nested widths in use: ``matryoshka_widths``, or the default rule (``default_matryoshka_widths``)."""
        if self.matryoshka_widths is not None:
            return list(self.matryoshka_widths)
        return default_matryoshka_widths(self.d_sae, self.k)


@SAE_ARCHITECTURES.register("matryoshka_batchtopk")
class MatryoshkaBatchTopKSAE(BatchTopKSAE):
    architecture = "matryoshka_batchtopk"
    config_class = MatryoshkaBatchTopKSAEConfig  # type: ignore[assignment]  # its architecture is another literal
    description = "BatchTopK SAE whose nested prefixes of latents each reconstruct the input (Bussmann et al. 2025)"
    saelens_architecture = "jumprelu"
    cfg: MatryoshkaBatchTopKSAEConfig
    latent_level: torch.Tensor  # (d_sae,) int64 buffer: the block [w_{i−1}, wᵢ) each latent belongs to, i − 1

    def add_sparsity_state(self) -> None:
        super().add_sparsity_state()
        widths = torch.tensor(self.cfg.widths)
        sizes = widths.diff(prepend=widths.new_zeros(1))
        self.register_buffer("latent_level", torch.repeat_interleave(torch.arange(len(sizes)), sizes), persistent=False)

    def forward(self, y: torch.Tensor, target: torch.Tensor | None = None) -> ForwardOutput:
        if self.training and self.cfg.d_sae >= self.gather_ratio * self.cfg.k * self.cfg.d_in:
            return self.forward_gathered(y)
        codes, code_losses = self.sparse_code(self.encoder_input(y))
        bounds = [0, *self.cfg.widths]
        blocks = [codes[:, a:b] @ self.W_dec[a:b] for a, b in pairwise(bounds)]
        return self.nested_output(y, torch.stack(blocks), codes, code_losses)

    def forward_gathered(self, y: torch.Tensor) -> ForwardOutput:
        """BatchTopK's gathered training pass, each kept entry decoded into its block's slot (same values as
        ``forward``)."""
        x = self.encoder_input(y)
        with torch.no_grad():
            kept = self.select(self.pre_activation(x))
        (n, m), p = y.shape, self.cfg.d_sae
        rows, cols = kept.div(p, rounding_mode="floor"), kept.remainder(p)
        w_enc = self.W_enc.index_select(1, cols)  # (m, nnz)
        values = torch.relu((x.index_select(0, rows) * w_enc.T).sum(dim=1) + self.b_enc.index_select(0, cols))
        atoms = self.W_dec.index_select(0, cols)  # (nnz, m)
        levels = len(self.cfg.widths)
        slots = self.latent_level.index_select(0, cols) * n + rows
        blocks = y.new_zeros(levels * n, m).index_add(0, slots, values[:, None] * atoms).view(levels, n, m)
        codes = y.new_zeros(n * p).scatter_(0, kept, values).view(n, p)
        return self.nested_output(y, blocks, codes)

    def nested_output(
        self, y: torch.Tensor, blocks: torch.Tensor, codes: torch.Tensor, code_losses: LossTerms | None = None
    ) -> ForwardOutput:
        """The output for block reconstructions ``blocks`` (s, B, m), block i = Z[:, w_{i−1}:wᵢ] @ W_dec[w_{i−1}:wᵢ]:
        the prefixes are their cumulative sums plus b_dec; the last is the reconstruction (``mse_loss``), each
        inner one adds ``inner_mse_loss_<wᵢ>``."""
        prefixes = blocks.cumsum(dim=0) + self.b_dec  # (s, B, m)
        inner = (prefixes[:-1] - y).pow(2).mean(dim=(1, 2))  # (s − 1,)
        terms = {f"inner_mse_loss_{w}": inner[i] for i, w in enumerate(self.cfg.widths[:-1])}
        return self.output(y, prefixes[-1], codes, {**terms, **(code_losses or {})})
