"""Transcoder (Dunefsky et al. 2024): sparse codes of one representation decoded to another.

The encoder reads the inputs x_p (N, d_in) as they are; the decoder writes the target space x_r (N, d_out):

    pre = x_p @ W_enc + b_enc                          (N, d_sae)   no b_dec to subtract: it lives in x_r's space
    Z   = f(pre)                                       (N, d_sae)   topk (k per sample) or relu (+ L1 penalty)
    x̂_r = Z @ W_dec + b_dec  [+ x_p @ W_skip]          (N, d_out)

``W_dec`` (d_sae, d_out) is the dictionary (atoms as rows, unit norm) and ``b_dec`` (d_out,) its offset, so
``decode(Z)`` is the sparse part of the prediction. With ``skip`` a linear skip connection ``W_skip``
(d_in, d_out), initialised 0 (Paulo et al. 2025's skip transcoder), adds ``x_p @ W_skip``: the part of x_r that
is linear in x_p, which the latents then need not carry; ``predict(x_p)`` gives the full x̂_r. The loss is
``mse_loss`` = mean((x̂_r − x_r)²), plus for relu ``l1_loss`` = λ · mean_b Σ_j z_bj ‖W_dec_j‖ (as ReLUSAE).
A transcoder is fitted with ``FitContext(target=x_r)`` (its ``predicts_target``); ``forward(x_p, x_r)``.

SAELens's ReLU transcoders are "transcoder" and "skip_transcoder" (W_skip stored as (d_out, d_in), which is
how ``tensors()`` gives it); the TopK ones are saved as "topk_transcoder" and "skip_topk_transcoder", names
SAELens does not have, so it refuses them rather than misreading them.

``TopKOrReLUConfig`` and ``TopKOrReLUSAE`` are the choice of sparsity this file shares with the crosscoder.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from dictlab.models.base import FitContext
from dictlab.sae.base import SAE_ARCHITECTURES, ForwardOutput, LossTerms, SparseAutoencoder
from dictlab.sae.config import SAEConfig, check_k_fits


class TopKOrReLUConfig(SAEConfig):
    """The fields of an SAE whose sparsity is a choice: TopK (with ``k``) or ReLU with an L1 penalty."""

    activation: Literal["topk", "relu"] = Field(
        "topk", description="Sparsity: topk (the k largest per sample) or relu (with the L1 penalty)."
    )
    k: int | None = Field(None, ge=1, description="Active latents per sample (activation topk; unused by relu).")
    l1_coefficient: float = Field(3e-3, ge=0, description="Weight λ of the L1 penalty (activation relu).")

    @model_validator(mode="after")
    def _k_for_topk(self) -> TopKOrReLUConfig:
        if self.k is None:
            if self.activation == "topk":
                raise ValueError("k is required with activation='topk'")
        else:
            check_k_fits(self.k, self.d_sae)
        return self


class TopKOrReLUSAE(SparseAutoencoder):
    """An SAE whose codes are TopK's — the k largest pre-activations of each sample, ReLU'd — or ReLU's with
    ``l1_loss = λ · mean_b Σ_j z_bj w_j`` for the per-latent weights w = ``l1_weights()`` (the decoder row norms,
    as ReLUSAE). TopK trains on the gathered entries when that is cheaper (``uses_gather``). Not registered."""

    cfg: TopKOrReLUConfig

    @property
    def k(self) -> int:
        """Active latents per sample (activation topk, where the config requires it)."""
        if self.cfg.k is None:
            raise ValueError(f"a {self.architecture} with activation={self.cfg.activation!r} has no k")
        return self.cfg.k

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        if self.cfg.activation == "relu":
            return torch.relu(pre)
        top = pre.topk(self.k, dim=1)
        return torch.zeros_like(pre).scatter_(1, top.indices, torch.relu(top.values))

    def l1_weights(self) -> torch.Tensor:
        """(d_sae,) the weight of each latent in the L1 penalty: its decoder row's norm (differentiable)."""
        return torch.linalg.vector_norm(self.W_dec, dim=1)

    def loss_terms(self, y: torch.Tensor, reconstruction: torch.Tensor, codes: torch.Tensor) -> LossTerms:
        terms = super().loss_terms(y, reconstruction, codes)
        if self.cfg.activation == "relu":
            terms["l1_loss"] = self.cfg.l1_coefficient * (codes @ self.l1_weights()).mean()
        return terms

    def uses_gather(self) -> bool:
        """Whether this training pass computes only the selected entries: topk, and d_sae ≥ k·(d_in + d_out)/2
        (TopKSAE's measured crossover d_sae ≥ k·d_in for a decoder that writes d_in dimensions)."""
        if not self.training or self.cfg.activation != "topk":
            return False  # ReLU codes are dense: nothing to gather
        return 2 * self.cfg.d_sae >= self.k * (self.cfg.d_in + self.W_dec.shape[1])

    def gathered(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """TopK codes Z (B, d_sae) of encoder inputs x (B, d_in) and Z @ W_dec (B, d_out), computed on the k
        selected entries of each row only (TopKSAE.forward_gathered's products; the dense pass's values)."""
        (n, m), k = x.shape, self.k
        with torch.no_grad():
            top = self.pre_activation(x).topk(k, dim=1).indices
        cols = top.flatten()
        w_enc = self.W_enc.index_select(1, cols).T.reshape(n, k, m)
        values = torch.relu(torch.bmm(w_enc, x.unsqueeze(2)).squeeze(2) + self.b_enc.index_select(0, cols).view(n, k))
        atoms = self.W_dec.index_select(0, cols).view(n, k, -1)
        decoded = torch.bmm(values.unsqueeze(1), atoms).squeeze(1)
        return x.new_zeros(n, self.cfg.d_sae).scatter_(1, top, values), decoded


class TranscoderConfig(TopKOrReLUConfig):
    architecture: Literal["transcoder"] = Field(
        "transcoder", description="Sparse codes of the inputs decoded to a target (a transcoder)."
    )
    d_out: int = Field(..., ge=1, description="r: target dimension (the width of the decoder rows).")
    skip: bool = Field(False, description="Add a linear skip connection x_p @ W_skip (d_in, d_out), initialised 0.")


@SAE_ARCHITECTURES.register("transcoder")
class Transcoder(TopKOrReLUSAE):
    architecture = "transcoder"
    config_class = TranscoderConfig
    description = "transcoder: sparse codes of the inputs decoded to a target (Dunefsky et al. 2024)"
    saelens_architecture = "transcoder"  # of the ReLU one without skip; dictlab.sae.io names the others
    predicts_target = True
    cfg: TranscoderConfig
    W_skip: nn.Parameter  # (d_in, d_out), with skip only

    def add_sparsity_state(self) -> None:
        # The base made the decoder of an autoencoder, (d_sae, d_in) and (d_in,); a transcoder's writes d_out.
        cfg = self.cfg
        self.W_dec = nn.Parameter(torch.empty(cfg.d_sae, cfg.d_out))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_out))
        if cfg.skip:
            self.W_skip = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_out))

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """W_enc as every SAE of this d_in (U(±1/√d_in), the same draw); W_dec rows drawn U(±1) next and scaled to
        unit norm (the spaces differ, so the decoder is not tied to the encoder); biases and W_skip 0."""
        cfg = self.cfg
        weights = torch.rand(cfg.d_sae, cfg.d_in, generator=generator, dtype=torch.float64)
        self.W_enc.copy_(((2 * weights - 1) / math.sqrt(cfg.d_in)).T)
        decoder = 2 * torch.rand(cfg.d_sae, cfg.d_out, generator=generator, dtype=torch.float64) - 1
        self.W_dec.copy_(decoder / torch.linalg.vector_norm(decoder, dim=1, keepdim=True))
        self.b_enc.zero_()
        self.b_dec.zero_()
        if cfg.skip:
            self.W_skip.zero_()

    def encoder_input(self, y: torch.Tensor) -> torch.Tensor:
        """The inputs x_p themselves: b_dec is in the target space, and b_enc already biases the encoder."""
        return y

    def remove_offset(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def forward(self, y: torch.Tensor, target: torch.Tensor | None = None) -> ForwardOutput:
        """Training forward pass: inputs y (B, d_in) predict ``target`` (B, d_out), which the loss compares with."""
        if target is None:
            raise ValueError("a transcoder reconstructs a target: call it as sae(y, target) with target (B, d_out)")
        x = self.encoder_input(y)
        code_losses: LossTerms = {}
        if self.uses_gather():
            codes, decoded = self.gathered(x)
        else:
            codes, code_losses = self.sparse_code(x)
            decoded = codes @ self.W_dec
        return self.output(target, self.add_skip(y, decoded + self.b_dec), codes, code_losses)

    def add_skip(self, y: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """sparse (B, d_out) + y @ W_skip for inputs y (B, d_in) with the skip connection; ``sparse`` without."""
        return torch.addmm(sparse, y, self.W_skip) if self.cfg.skip else sparse

    def predict(self, y: torch.Tensor) -> torch.Tensor:
        """The full prediction x̂_r (N, d_out) for inputs y (N, d_in): ``decode(encode(y))``, plus y @ W_skip with
        the skip connection. Eval mode, no gradient."""
        codes = self.encode(y)
        with torch.no_grad():
            return self.add_skip(y.to(self.W_dec), self.decode(codes))

    def fit(self, y: torch.Tensor, context: FitContext | None = None) -> Transcoder:
        """Train on inputs y (N, d_in) to predict ``context.target`` (N, d_out); see ``SparseAutoencoder.fit``."""
        if self.train_config.init_b_dec_to_mean:
            raise ValueError(
                "init_b_dec_to_mean=True is not supported by a transcoder: its b_dec is in the target space and "
                "SparseAutoencoder.fit sets it to the inputs' mean"
            )
        super().fit(y, context)
        return self

    def tensors(self) -> dict[str, torch.Tensor]:
        """SAELens's tensors; W_skip as SAELens stores it, (d_out, d_in) = W_skip.T."""
        tensors = super().tensors()
        if self.cfg.skip:
            tensors["W_skip"] = self.W_skip.T.contiguous()
        return tensors

    def set_saved_tensor(self, name: str, value: torch.Tensor) -> None:
        if name == "W_skip":
            self.W_skip.copy_(value.T)
        else:
            super().set_saved_tensor(name, value)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, d_out={self.cfg.d_out}, activation={self.cfg.activation!r}"
