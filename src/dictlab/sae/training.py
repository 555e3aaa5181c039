"""The one SAE trainer: minibatch Adam(W) on the sum of the loss terms with decoder rows kept on the unit sphere.

Each concern is its own small function: seeded batching, the learning-rate schedule, the decoder
renormalisation policy and the history log; ``train_sae`` only strings them together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from dictlab.models.base import FitContext
from dictlab.models.history import TrainingHistory
from dictlab.sae.config import TrainConfig
from dictlab.validation import check_matrix

if TYPE_CHECKING:
    from dictlab.sae.base import ForwardOutput, SparseAutoencoder


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
    ``l0``, the mean non-zeros per sample of the last batch; and with a ground truth the matched dictionary
    quality (``mean_cosine``, ``frac_close``; ``dictlab.metrics.match_dictionaries``).

    Every step must report the same terms. They are summed as one stacked tensor, so logging costs no
    host synchronisation between entries; ``loss`` is the sum of the terms' means.
    """

    def __init__(
        self, sae: SparseAutoencoder, log_every: int | None, total_steps: int, ground_truth: torch.Tensor | None
    ) -> None:
        if ground_truth is not None:
            check_matrix("context.ground_truth", ground_truth, cols=sae.cfg.d_in)
        self.sae, self.log_every, self.total_steps, self.ground_truth = sae, log_every, total_steps, ground_truth
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
        if self.ground_truth is not None:
            from dictlab.metrics import match_dictionaries

            match = match_dictionaries(self.sae.dictionary, self.ground_truth.to(self.sae.dictionary))
            values["mean_cosine"] = float(match.mean_cosine)
            values["frac_close"] = float(match.frac_close)
        self.history.log(step, values)
        self._sums, self._count = None, 0


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
    architecture's); backward; decoder gradient projected orthogonally to each row (if
    ``project_decoder_grad``); optimiser step; lr schedule; decoder rows renormalised as
    ``renormalise_decoder`` says. Shuffling draws from ``generator`` (CPU), by default
    one seeded with ``context.seed``.
    """
    check_matrix("y", y, cols=sae.cfg.d_in)
    total_steps = train_config.total_steps(y.shape[0])
    optimizer = make_optimizer(sae, train_config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, train_config))
    renormalise_now = RENORMALISATION[train_config.renormalise_decoder]
    logger = HistoryLogger(sae, train_config.log_every, total_steps, context.ground_truth)
    progress = tqdm(total=total_steps, disable=not context.progress, desc=f"{sae.architecture} SAE", leave=False)
    sae.train()
    order = generator or context.generator(sae.kind)
    for step, (batch, batch_target, epoch) in enumerate(
        batches(y, train_config.batch_size, total_steps, order, target)
    ):
        lr = optimizer.param_groups[0]["lr"]
        out = sae(batch, batch_target)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if train_config.project_decoder_grad:
            sae.project_decoder_grad_()
        optimizer.step()
        schedule.step()
        if renormalise_now(epoch, train_config):
            sae.normalise_decoder_()
        if logger.observe(step, out, lr):
            latest = logger.history[-1]
            progress.set_postfix(mse=f"{latest['mse_loss']:.3g}", l0=f"{latest['l0']:.1f}", refresh=False)
        progress.update()
    progress.close()
    sae.eval()
    return logger.history
