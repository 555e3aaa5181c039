"""Dead latents: counting them, the AuxK loss that trains them (Gao et al. 2024) and resampling them (Bricken
et al. 2023). The trainer (``dictlab.sae.training``) strings these together; each is usable on its own.

A latent *fires* on a sample when its code is non-zero. ``DeadLatents`` counts, per latent, the optimiser steps
since it last fired in a training batch (SAELens's ``n_forward_passes_since_fired``); it is *dead* once that
count reaches ``dead_feature_window`` steps (SAELens marks it one step later, at count > window).

AuxK (Gao et al. 2024, §A.2; SAELens's ``calculate_topk_aux_loss``): with e = t − ŷ the detached residual of
a batch (t the reconstruction target) and x = ``encoder_input(y)``, per sample the ``k_aux`` largest
pre-activations among the dead latents, z_j = (x W_enc + b_enc)_j, give ê = Σ_j z_j W_dec_j (no b_dec), and

    auxiliary_reconstruction_loss = aux_loss_coefficient · min(n_dead / k_aux, 1) · mean_{b,d} (ê − e)²

SAELens takes mean_b Σ_d, as its MSE; dictlab's ``mse_loss`` is a mean over dimensions too, so the ratio of the
two terms — what ``aux_loss_coefficient`` weighs — is SAELens's (default 1.0 there). Gao's α = 1/32 weighs a
loss normalised by ‖e‖², so it does not transfer. As SAELens, z is not ReLU'd (OpenAI's code ReLUs it, which
gives a latent whose pre-activations are all negative no gradient); unlike SAELens, x is a constant of the
term, so it trains only the dead latents' parameters and never b_dec.

Resampling (Bricken et al. 2023, "Towards Monosemanticity", neuron resampling): every dead latent gets the
direction of a training sample drawn with probability ∝ (its squared reconstruction error)², the poorly
reconstructed samples: decoder row = t − b_dec (what the decoder writes) scaled as the architecture keeps its
rows (``SparseAutoencoder.unit_decoder_rows``), encoder column = the unit vector of ``encoder_input(y)`` ×
``feature_reinit_scale`` × the mean norm of the live encoder columns, encoder bias 0, and the Adam moments of
exactly those entries zeroed. Live latents are never touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch

from dictlab.models.base import in_row_chunks
from dictlab.sae.anchoring import unit_rows

if TYPE_CHECKING:
    from dictlab.sae.base import SparseAutoencoder


class DeadLatents:
    """Per latent, the optimiser steps since it last fired; dead = that count ≥ ``window``.

    ``observe`` costs one column maximum of |codes| and an in-place update per step, on the codes' device, with no
    host synchronisation; only ``count`` (at logging), ``indices`` (at resampling) and AuxK read values back.
    """

    def __init__(self, d_sae: int, window: int, device: torch.device | str = "cpu") -> None:
        self.window = window
        self.steps_since_fired = torch.zeros(d_sae, dtype=torch.int64, device=device)
        self.steps_observed = 0

    def observe(self, codes: torch.Tensor) -> None:
        """Count one step whose batch gave ``codes`` (B, d_sae)."""
        fired = codes.detach().abs().amax(dim=0) > 0  # = (codes != 0).any(0), 5x faster on CPU
        self.steps_since_fired.add_(1).masked_fill_(fired, 0)
        self.steps_observed += 1

    @property
    def possible(self) -> bool:
        """Whether any latent can be dead yet (at least ``window`` steps observed); known without reading the device."""
        return self.steps_observed >= self.window

    @property
    def mask(self) -> torch.Tensor:
        """(d_sae,) bool: the dead latents."""
        return self.steps_since_fired >= self.window

    def count(self) -> int:
        return int(self.mask.sum())

    def indices(self) -> torch.Tensor:
        """(n_dead,) int64, the dead latents in increasing order."""
        return self.mask.nonzero().squeeze(1)

    def revive(self, latents: torch.Tensor) -> None:
        """Count ``latents`` (n,) int64 as just fired (after resampling them)."""
        self.steps_since_fired.index_fill_(0, latents, 0)

    def log_values(self) -> dict[str, float]:
        return {"dead_latents": float(self.count())}


def default_k_aux(d_in: int) -> int:
    """Gao et al.'s heuristic (their App. B.1, SAELens's rule): k_aux = d_in // 2 (at least 1)."""
    return max(1, d_in // 2)


def auxk_loss(
    sae: SparseAutoencoder, x: torch.Tensor, residual: torch.Tensor, dead: torch.Tensor, k_aux: int
) -> torch.Tensor:
    """min(n_dead / k_aux, 1) · mean_{b,d} (ê − e)², the AuxK term before its coefficient (module docstring).

    x : (B, d_in) the encoder input ``sae.encoder_input(y)`` (treated as a constant); residual : (B, r) e = t − ŷ
    (treated as a constant); dead : (d_sae,) bool. Only the dead latents' encoder columns and decoder rows are
    gathered: their pre-activations (B, n_dead) are computed with gradient, the top min(k_aux, n_dead) of each
    sample kept (selection without gradient) and decoded, so the gradient reaches only the selected latents'
    W_enc columns, b_enc entries and W_dec rows, and the cost is O(B · n_dead · (d_in + r)), never a pass over
    all d_sae latents. Selecting on all pre-activations and recomputing only the B · k_aux selected entries
    (TopK's gathered path) measured 1.4–18× slower on CPU (d_in = 64, d_sae = 1024, B = 256, 90 % to 2 % dead;
    its index_add backward dominates). Reads the number of dead latents back from the device once (as SAELens).
    """
    latents = dead.nonzero().squeeze(1)
    n_dead = latents.numel()
    if n_dead == 0:
        return residual.new_zeros(())
    x, residual = x.detach(), residual.detach()
    pre = torch.addmm(sae.b_enc.index_select(0, latents), x, sae.W_enc.index_select(1, latents))  # (B, n_dead)
    top = pre.detach().topk(min(k_aux, n_dead), dim=1, sorted=False).indices
    codes = torch.zeros_like(pre).scatter(1, top, pre.gather(1, top))
    estimate = codes @ sae.decoder_weight().index_select(0, latents)  # (B, r)
    return min(n_dead / k_aux, 1.0) * (estimate - residual).pow(2).mean()


class Resampled(NamedTuple):
    """What one resampling did: the latents (n,) int64 it reset and the pool rows (n,) int64 they took."""

    latents: torch.Tensor
    rows: torch.Tensor


@torch.no_grad()
def sample_losses(
    sae: SparseAutoencoder, y: torch.Tensor, target: torch.Tensor | None, rows_per_chunk: int = 1024
) -> torch.Tensor:
    """(N,) per-sample squared reconstruction error ‖ŷ_n − t_n‖² in eval mode (t = target, or y), chunked."""
    was_training = sae.training
    sae.eval()
    try:

        def chunk(rows: slice) -> torch.Tensor:
            t = y[rows] if target is None else target[rows]
            return (sae(y[rows], None if target is None else t).reconstruction - t).pow(2).sum(dim=1)

        return in_row_chunks(chunk, y.shape[0], rows_per_chunk)
    finally:
        sae.train(was_training)


@torch.no_grad()
def resample_dead_latents(
    sae: SparseAutoencoder,
    optimizer: torch.optim.Optimizer,
    latents: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | None,
    generator: torch.Generator,
    reinit_scale: float = 0.2,
) -> Resampled:
    """Bricken et al.'s resampling of ``latents`` (n,) int64 from a pool of samples y (P, d_in) (their targets
    (P, r) for a model that predicts them); draws with ``generator`` (CPU). Returns the latents and the pool
    rows they were given; every other latent's parameters and Adam moments are left bit-identical.

    Pool rows are drawn with replacement with probability ∝ ℓ_n², ℓ_n = ‖ŷ_n − t_n‖² (uniformly when every
    ℓ_n = 0). The encoder scale is ``reinit_scale`` × the mean norm of the other latents' encoder columns (of
    all columns when every latent is resampled). Architecture state beyond W_enc, b_enc and W_dec (JumpReLU's
    thresholds) is kept.
    """
    weights = sample_losses(sae, y, target).double().pow(2).cpu()
    if not bool(torch.isfinite(weights).all()) or float(weights.sum()) <= 0:
        weights = torch.ones_like(weights)
    rows = torch.multinomial(weights, latents.numel(), replacement=True, generator=generator).to(y.device)
    written = (y if target is None else target).index_select(0, rows) - sae.b_dec
    sae.W_dec.index_copy_(0, latents, sae.unit_decoder_rows(written).to(sae.W_dec))
    moved = [(sae.W_dec, 0)]
    if sae.has_encoder:
        others = torch.ones(sae.cfg.d_sae, dtype=torch.bool, device=latents.device).index_fill_(0, latents, False)
        norms = torch.linalg.vector_norm(sae.W_enc, dim=0)
        scale = reinit_scale * (norms[others].mean() if bool(others.any()) else norms.mean())
        read = unit_rows(sae.encoder_input(y.index_select(0, rows)))  # (n, d_in)
        sae.W_enc.index_copy_(1, latents, (read * scale).T.to(sae.W_enc))
        sae.b_enc.index_fill_(0, latents, 0.0)
        moved += [(sae.W_enc, 1), (sae.b_enc, 0)]
    for param, dim in moved:
        reset_adam_moments(optimizer, param, latents, dim)
    return Resampled(latents, rows)


def reset_adam_moments(optimizer: torch.optim.Optimizer, param: torch.Tensor, index: torch.Tensor, dim: int) -> None:
    """Zero the Adam moments (exp_avg, exp_avg_sq, max_exp_avg_sq) of ``param``'s slices ``index`` along ``dim``."""
    state = optimizer.state.get(param, {})
    for name in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        moment = state.get(name)
        if isinstance(moment, torch.Tensor) and moment.shape == param.shape:
            moment.index_fill_(dim, index, 0.0)


class Resampler:
    """When and from what the trainer resamples: at steps ``every``, 2·``every``, … while the step is at most
    ``stop`` × the training steps (Bricken et al. resampled early and let the last part of training converge), the
    dead latents of ``dead`` are resampled from ``pool`` training samples drawn afresh each time with
    ``generator`` (CPU; a stream of its own, so the batch order does not change). Logs ``resampled_latents``:
    the latents resampled since the previous entry.
    """

    def __init__(
        self,
        sae: SparseAutoencoder,
        y: torch.Tensor,
        target: torch.Tensor | None,
        dead: DeadLatents,
        generator: torch.Generator,
        *,
        every: int,
        last_step: int,
        pool: int,
        reinit_scale: float,
    ) -> None:
        self.sae, self.y, self.target, self.dead, self.generator = sae, y, target, dead, generator
        self.every, self.last_step, self.pool, self.reinit_scale = every, last_step, pool, reinit_scale
        self.since_log = 0

    def due(self, done: int) -> bool:
        """Whether to resample after ``done`` optimiser steps."""
        return done % self.every == 0 and done <= self.last_step

    def step(self, done: int, optimizer: torch.optim.Optimizer) -> Resampled | None:
        """Resample the dead latents if ``due(done)`` and there are any (one host read of the dead mask)."""
        if not (self.due(done) and self.dead.possible):
            return None
        latents = self.dead.indices()
        if latents.numel() == 0:
            return None
        rows = torch.randperm(self.y.shape[0], generator=self.generator)[: self.pool].to(self.y.device)
        target = None if self.target is None else self.target.index_select(0, rows)
        result = resample_dead_latents(
            self.sae, optimizer, latents, self.y.index_select(0, rows), target, self.generator, self.reinit_scale
        )
        self.dead.revive(latents)
        self.since_log += latents.numel()
        return Resampled(latents, rows.index_select(0, result.rows))

    def log_values(self) -> dict[str, float]:
        count, self.since_log = self.since_log, 0
        return {"resampled_latents": float(count)}
