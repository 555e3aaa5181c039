"""Acausal crosscoder (Lindsey et al. 2024): one set of latents read from and written to several sources.

The observations concatenate s sources, y = [y¹ … yˢ] (N, d_in = Σ d_s) (``source_dims``). The crosscoder
is an autoencoder of y — ``pre = (y − b_dec) @ W_enc + b_enc``, ``Ŷ = Z @ W_dec + b_dec`` — whose decoder
row j is read as s blocks, W_dec_j = [W_dec_j⁽¹⁾ … W_dec_j⁽ˢ⁾], latent j's atom in each source
(``source_dictionary(s)``). Each block, not each row, is kept at unit norm: the trainer's normalisation and
gradient projection act per block, so a latent's weight in a source says nothing about its scale.

Sparsity is TopK (``k``) or ReLU with Lindsey et al.'s penalty, the L1 of the codes weighted by the sum of the
latent's per-source decoder norms:

    l1_loss = λ · mean_b Σ_j z_bj Σ_s ‖W_dec_j⁽ˢ⁾‖

which with one source is ReLUSAE's penalty, as the TopK crosscoder of one source is a TopK SAE. SAELens has
no crosscoder: the folder is saved as "crosscoder" (ReLU) or "topk_crosscoder", which SAELens refuses.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from dictlab.sae.base import SAE_ARCHITECTURES, ForwardOutput
from dictlab.sae.transcoder import TopKOrReLUConfig, TopKOrReLUSAE
from dictlab.validation import check_int_range


class CrosscoderConfig(TopKOrReLUConfig):
    architecture: Literal["crosscoder"] = Field(
        "crosscoder", description="Sparse codes shared by several concatenated sources (a crosscoder)."
    )
    source_dims: list[Annotated[int, Field(ge=1)]] = Field(
        ..., min_length=1, description="Widths of the concatenated sources, each ≥ 1, summing to d_in."
    )

    @model_validator(mode="after")
    def _sources_fill_the_input(self) -> CrosscoderConfig:
        if sum(self.source_dims) != self.d_in:
            raise ValueError(f"source_dims {self.source_dims} must sum to d_in={self.d_in}")
        return self


@SAE_ARCHITECTURES.register("crosscoder")
class Crosscoder(TopKOrReLUSAE):
    architecture = "crosscoder"
    config_class = CrosscoderConfig
    description = "acausal crosscoder: latents shared across concatenated sources, unit atoms per source (Lindsey 2024)"
    saelens_architecture = "crosscoder"  # of the ReLU one; dictlab.sae.io names the TopK one
    cfg: CrosscoderConfig
    # (d_in, s) buffer, 1 where input dimension i belongs to source s: per-block sums and broadcasts are then small
    # matrix products, which are 2-10x faster on CPU than index_add / column gathers (and exact for the broadcast).
    source_indicator: torch.Tensor

    def add_sparsity_state(self) -> None:
        dims = torch.tensor(self.cfg.source_dims)
        source = torch.repeat_interleave(torch.arange(len(dims)), dims)
        self.register_buffer("source_indicator", nn.functional.one_hot(source).to(self.W_dec.dtype), persistent=False)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """The SAE's init (W_dec = W_encᵀ), each decoder block then scaled to unit norm."""
        super().reset_parameters(generator)
        self.normalise_decoder_()

    def block_sums(self, values: torch.Tensor) -> torch.Tensor:
        """(d_sae, s) the sums of values (d_sae, d_in) over each source's columns."""
        return values @ self.source_indicator

    def per_column(self, blocks: torch.Tensor) -> torch.Tensor:
        """(d_sae, d_in) each entry of blocks (d_sae, s) repeated over its source's columns."""
        return blocks @ self.source_indicator.T

    def block_norms(self) -> torch.Tensor:
        """(d_sae, s) ‖W_dec_j⁽ˢ⁾‖ for every latent j and source s (differentiable)."""
        return self.block_sums(self.W_dec * self.W_dec).sqrt()

    def l1_weights(self) -> torch.Tensor:
        """(d_sae,) Σ_s ‖W_dec_j⁽ˢ⁾‖: Lindsey et al.'s weight of latent j in the L1 penalty."""
        return self.block_norms().sum(dim=1)

    def source_dictionary(self, source: int) -> torch.Tensor:
        """(d_sae, d_s) the atoms of every latent in source ``source`` (0-based; unit rows), detached."""
        check_int_range("source", source, 0, len(self.cfg.source_dims) - 1)
        start = sum(self.cfg.source_dims[:source])
        return self.dictionary[:, start : start + self.cfg.source_dims[source]]

    def forward(self, y: torch.Tensor, target: torch.Tensor | None = None) -> ForwardOutput:
        if self.uses_gather():
            codes, decoded = self.gathered(self.encoder_input(y))
            return self.output(y, decoded + self.b_dec, codes)
        return super().forward(y)

    # --- keeping each decoder block on its unit sphere -----------------------------------------------
    @torch.no_grad()
    def project_decoder_grad_(self) -> None:
        """Remove from each block of each row's gradient its component along the block:
        g_j⁽ˢ⁾ ← g_j⁽ˢ⁾ − (g_j⁽ˢ⁾·w_j⁽ˢ⁾ / ‖w_j⁽ˢ⁾‖²) w_j⁽ˢ⁾."""
        grad = self.W_dec.grad
        if grad is None:
            return
        w = self.W_dec
        along = self.block_sums(grad * w) / self.block_sums(w * w)  # (d_sae, s)
        grad.sub_(self.per_column(along) * w)

    @torch.no_grad()
    def normalise_decoder_(self) -> None:
        """Rescale every block of every decoder row to unit norm."""
        self.W_dec.div_(self.per_column(self.block_norms()))
