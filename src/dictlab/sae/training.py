"""The one SAE trainer: minibatch Adam(W) on the sum of the loss terms with decoder rows kept on the unit sphere.

Each concern is its own small function or class: seeded batching, the learning-rate schedule, the decoder
renormalisation policy, the trainer's own loss terms (AuxK, feature anchoring), dead-latent counting and
resampling (``dictlab.sae.dead_latents``) and the history log; ``train_sae`` only strings them together.
With their options off (the defaults) the trainer computes exactly what it did without them; only the
``dead_latents`` count is added to the history.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from dictlab.models.base import Anchors, FitContext
from dictlab.models.history import TrainingHistory
from dictlab.sae.anchoring import anchor_loss
from dictlab.sae.config import TrainConfig
from dictlab.sae.dead_latents import DeadLatents, Resampler, auxk_loss, default_k_aux
from dictlab.validation import check_matrix

if TYPE_CHECKING:
    from dictlab.sae.base import ForwardOutput, LossTerms, SparseAutoencoder


def batches(
    y: torch.Tensor,
    batch_size: int,
    n_steps: int,
    generator: torch.Generator,
    target: torch.Tensor | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, int | None]]:
    """``n_steps`` minibatches of rows of y (N, m), reshuffled every epoch with ``generator`` (CPU).

    Yields (batch (B, m), its rows of ``target`` (B, r) or None, epoch) where epoch is the index of the epoch
    this batch completes, else None. The last batch of an epoch holds the remaining N mod B rows, as a
    PyTorch DataLoader without drop_last. The shuffle does not depend on whether a target is given.
    """
    step, epoch = 0, 0
    while True:
        order = torch.randperm(y.shape[0], generator=generator).to(y.device)
        chunks = y[order].split(batch_size)
        targets = target[order].split(batch_size) if target is not None else [None] * len(chunks)
        for i, (batch, batch_target) in enumerate(zip(chunks, targets, strict=True)):
            if step == n_steps:
                return
            yield batch, batch_target, (epoch if i == len(chunks) - 1 else None)
            step += 1
        epoch += 1


LR_DECAYS: dict[str, Callable[[float], float]] = {
    "constant": lambda t: 1.0,
    "linear": lambda t: 1.0 - t,
    "cosine": lambda t: 0.5 * (1.0 + math.cos(math.pi * t)),
}


def lr_factor(step: int, total_steps: int, config: TrainConfig) -> float:
    """Multiplier of ``config.lr`` at ``step`` (0-based): linear warm-up, then the named decay over the rest."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    decay_steps = max(total_steps - config.warmup_steps, 1)
    return LR_DECAYS[config.lr_schedule](min((step - config.warmup_steps) / decay_steps, 1.0))


RENORMALISATION: dict[str, Callable[[int | None, TrainConfig], bool]] = {
    "every_step": lambda epoch, config: True,
    # The study renormalised at the end of epochs 0, n, 2n, … (so the last n − 1 epochs drift freely).
    "every_n_epochs": lambda epoch, config: epoch is not None and epoch % config.renormalise_every_epochs == 0,
    "never": lambda epoch, config: False,
}


FUSED_ADAM_DEVICES = ("cpu", "cuda")


def make_optimizer(sae: SparseAutoencoder, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam (weight decay as an L2 term) or AdamW (decoupled weight decay) over every parameter.

    The fused kernel (one pass per tensor) is 2-3x faster than the default on CPU, where the optimiser
    step is a large share of a small SAE's training step.
    """
    optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    fused = sae.W_dec.device.type in FUSED_ADAM_DEVICES
    return optimizer_class(sae.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=fused)


class HistoryLogger:
    """Every ``log_every`` steps and at the end logs an entry: ``loss`` and each term of ``ForwardOutput.losses``
    under its name (``mse_loss``, ``l1_loss``, …), averaged over the steps since the previous entry; ``lr``;
    ``l0``, the mean non-zeros per sample of the last batch; the values of each of ``extras`` (callables read
    at logging: ``dead_latents``, ``resampled_latents``); and with a ground truth the matched dictionary
    quality (``mean_cosine``, ``frac_close``; ``dictlab.metrics.match_dictionaries``).

    Every step must report the same terms. They are summed as one stacked tensor, so logging costs no
    host synchronisation between entries; ``loss`` is the sum of the terms' means.
    """

    def __init__(
        self,
        sae: SparseAutoencoder,
        log_every: int | None,
        total_steps: int,
        ground_truth: torch.Tensor | None,
        extras: Sequence[Callable[[], dict[str, float]]] = (),
    ) -> None:
        if ground_truth is not None:
            # the truth of what the decoder writes: d_in columns, d_out for a transcoder
            check_matrix("context.ground_truth", ground_truth, cols=sae.W_dec.shape[1])
        self.sae, self.log_every, self.total_steps, self.ground_truth = sae, log_every, total_steps, ground_truth
        self.extras = tuple(extras)
        self.history = TrainingHistory()
        self._names: tuple[str, ...] = ()  # the loss terms, in the order of _sums
        self._sums: torch.Tensor | None = None  # (terms,) summed since the last entry
        self._count = 0

    def observe(self, step: int, out: ForwardOutput, lr: float) -> bool:
        """Accumulate this step's loss terms; returns whether an entry was logged."""
        if self.log_every is None:
            return False
        names = tuple(out.losses)
        values = torch.stack(list(out.losses.values())).detach()
        if self._sums is None:
            self._names, self._sums = names, values
        elif names != self._names:
            raise RuntimeError(
                f"{self.sae.architecture} SAE: every step must report the same loss terms; {self._names}, then {names}"
            )
        else:
            self._sums = self._sums + values
        self._count += 1
        done = step + 1
        if done % self.log_every == 0 or done == self.total_steps:
            self._log(done, lr, out.codes)
            return True
        return False

    def _log(self, step: int, lr: float, codes: torch.Tensor) -> None:
        assert self._sums is not None
        means = (self._sums / self._count).tolist()
        values = {"lr": lr, "loss": math.fsum(means), **dict(zip(self._names, means, strict=True))}
        values["l0"] = float(torch.count_nonzero(codes.detach())) / codes.shape[0]
        for extra in self.extras:
            values.update(extra())
        if self.ground_truth is not None:
            from dictlab.metrics import match_dictionaries

            match = match_dictionaries(self.sae.dictionary, self.ground_truth.to(self.sae.dictionary))
            values["mean_cosine"] = float(match.mean_cosine)
            values["frac_close"] = float(match.frac_close)
        self.history.log(step, values)
        self._sums, self._count = None, 0


TrainingTerm = Callable[[torch.Tensor, "torch.Tensor | None", "ForwardOutput"], "LossTerms"]


class AuxKTerm:
    """``auxiliary_reconstruction_loss`` = ``aux_loss_coefficient`` × ``dead_latents.auxk_loss`` of the batch, for
    the latents dead before this step (as SAELens); 0, with no read from the device, while no latent can be dead
    yet (the first ``dead_feature_window`` steps)."""

    name = "auxiliary_reconstruction_loss"

    def __init__(self, sae: SparseAutoencoder, dead: DeadLatents, config: TrainConfig) -> None:
        if not sae.has_encoder:
            raise ValueError(
                f"aux_loss_coefficient={config.aux_loss_coefficient}: AuxK reads dead latents' pre-activations and "
                f"the {sae.architecture} SAE has no encoder; set it to 0"
            )
        self.sae, self.dead, self.coefficient = sae, dead, config.aux_loss_coefficient
        self.k_aux = config.k_aux if config.k_aux is not None else default_k_aux(sae.cfg.d_in)

    def __call__(self, batch: torch.Tensor, target: torch.Tensor | None, out: ForwardOutput) -> LossTerms:
        if not self.dead.possible:
            return {self.name: out.reconstruction.new_zeros(())}
        residual = (batch if target is None else target) - out.reconstruction
        x = self.sae.encoder_input(batch)
        return {self.name: self.coefficient * auxk_loss(self.sae, x, residual, self.dead.mask, self.k_aux)}


class AnchorTerm:
    """``anchor_loss`` = λ_anchor · ``dictlab.sae.anchoring.anchor_loss(W_enc, W_dec, anchors)`` (seed 004, Eqs.
    24–25). The decoder anchors are unit rows, so renormalising decoder rows and projecting their gradients
    (the trainer's sphere constraint) pull toward the same points; the encoder columns are not normalised."""

    name = "anchor_loss"

    def __init__(self, sae: SparseAutoencoder, anchors: Anchors | None, config: TrainConfig) -> None:
        self.sae, self.coefficient = sae, config.anchor_coefficient
        self.anchors = checked_anchors(sae, anchors, config.anchor_features)

    def __call__(self, batch: torch.Tensor, target: torch.Tensor | None, out: ForwardOutput) -> LossTerms:
        w_enc = self.sae.W_enc if self.sae.has_encoder else None
        return {self.name: self.coefficient * anchor_loss(w_enc, self.sae.W_dec, self.anchors)}


def checked_anchors(sae: SparseAutoencoder, anchors: Anchors | None, k: int) -> Anchors:
    """``anchors`` on the SAE's dtype and device, after checking they fit it (one-line ValueError naming the field)."""
    lead = f"anchor_features={k}"
    if anchors is None:
        raise ValueError(f"{lead}: training needs FitContext(anchors=...) (dictlab.sae.anchoring makes them)")
    if k > sae.cfg.d_sae:
        raise ValueError(f"{lead} must be at most d_sae={sae.cfg.d_sae}")
    if anchors.k != k:
        raise ValueError(f"context.anchors: {lead} needs {k} anchors, got {anchors.k}")
    if anchors.encoder is not None and not sae.has_encoder:
        raise ValueError(f"context.anchors.encoder: the {sae.architecture} SAE has no encoder; pass encoder=None")
    widths = {"encoder": sae.cfg.d_in, "decoder": sae.W_dec.shape[1]}
    for name, width in widths.items():
        rows = getattr(anchors, name)
        if rows is not None and tuple(rows.shape) != (k, width):
            raise ValueError(f"context.anchors.{name} must be ({k}, {width}), got {tuple(rows.shape)}")
    w = sae.W_dec
    return Anchors(
        encoder=None if anchors.encoder is None else anchors.encoder.to(w),
        decoder=None if anchors.decoder is None else anchors.decoder.to(w),
    )


def training_terms(
    sae: SparseAutoencoder, config: TrainConfig, context: FitContext, dead: DeadLatents
) -> list[TrainingTerm]:
    """The trainer's loss terms beyond the SAE's own, as the options ask (none with the defaults)."""
    terms: list[TrainingTerm] = []
    if config.aux_loss_coefficient > 0:
        terms.append(AuxKTerm(sae, dead, config))
    if config.anchor_features > 0:
        terms.append(AnchorTerm(sae, context.anchors, config))
    return terms


def with_terms(
    out: ForwardOutput, terms: Sequence[TrainingTerm], batch: torch.Tensor, target: torch.Tensor | None
) -> ForwardOutput:
    """``out`` with the trainer's terms added to its losses, after the SAE's own."""
    if not terms:
        return out
    losses = dict(out.losses)
    for term in terms:
        losses.update(term(batch, target, out))
    return out._replace(losses=losses)


def make_resampler(
    sae: SparseAutoencoder,
    y: torch.Tensor,
    target: torch.Tensor | None,
    config: TrainConfig,
    context: FitContext,
    dead: DeadLatents,
    total_steps: int,
) -> Resampler | None:
    """The resampling schedule of ``config`` (None when ``resample_every`` is None): at multiples of
    ``resample_every`` up to ``resample_stop`` × the steps, drawing from the fit's own stream "<kind>.resample"."""
    if config.resample_every is None:
        return None
    return Resampler(
        sae,
        y,
        target,
        dead,
        context.generator(f"{sae.kind}.resample"),
        every=config.resample_every,
        last_step=math.floor(config.resample_stop * total_steps),
        pool=config.resample_pool,
        reinit_scale=config.feature_reinit_scale,
    )


def train_sae(
    sae: SparseAutoencoder,
    y: torch.Tensor,
    train_config: TrainConfig,
    context: FitContext,
    *,
    generator: torch.Generator | None = None,
    target: torch.Tensor | None = None,
) -> TrainingHistory:
    """Train ``sae`` in place on observations y (N, d_in) from its current parameters; returns the history.

    ``target`` (N, r): what the SAE reconstructs from y when it predicts a target (a transcoder); None: y.

    Every step: loss = Σ of the SAE's loss terms (``mse_loss``, a mean over batch and dims, plus the
    architecture's) and the trainer's (``auxiliary_reconstruction_loss`` when ``aux_loss_coefficient`` > 0,
    ``anchor_loss`` with ``context.anchors`` when ``anchor_features`` > 0); backward; decoder gradient projected
    orthogonally to each row (if ``project_decoder_grad``); optimiser step; lr schedule; decoder rows
    renormalised as ``renormalise_decoder`` says; the batch's firing latents counted; at a resampling step the
    dead latents resampled. Shuffling draws from ``generator`` (CPU), by default one seeded with
    ``context.seed``.
    """
    check_matrix("y", y, cols=sae.cfg.d_in)
    total_steps = train_config.total_steps(y.shape[0])
    optimizer = make_optimizer(sae, train_config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, train_config))
    renormalise_now = RENORMALISATION[train_config.renormalise_decoder]
    dead = DeadLatents(sae.cfg.d_sae, train_config.dead_feature_window, device=y.device)
    terms = training_terms(sae, train_config, context, dead)
    resampler = make_resampler(sae, y, target, train_config, context, dead, total_steps)
    extras = [dead.log_values] + ([resampler.log_values] if resampler is not None else [])
    logger = HistoryLogger(sae, train_config.log_every, total_steps, context.ground_truth, extras)
    progress = tqdm(total=total_steps, disable=not context.progress, desc=f"{sae.architecture} SAE", leave=False)
    sae.train()
    order = generator or context.generator(sae.kind)
    for step, (batch, batch_target, epoch) in enumerate(
        batches(y, train_config.batch_size, total_steps, order, target)
    ):
        lr = optimizer.param_groups[0]["lr"]
        out = with_terms(sae(batch, batch_target), terms, batch, batch_target)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if train_config.project_decoder_grad:
            sae.project_decoder_grad_()
        optimizer.step()
        schedule.step()
        if renormalise_now(epoch, train_config):
            sae.normalise_decoder_()
        dead.observe(out.codes)
        if resampler is not None:
            resampler.step(step + 1, optimizer)
        if logger.observe(step, out, lr):
            latest = logger.history[-1]
            progress.set_postfix(mse=f"{latest['mse_loss']:.3g}", l0=f"{latest['l0']:.1f}", refresh=False)
        progress.update()
    progress.close()
    sae.eval()
    return logger.history
