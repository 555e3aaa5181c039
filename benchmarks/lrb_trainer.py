"""Training speed of dictlab's SAE trainer against a plain PyTorch loop of the same shape, measured in one run.

Shape: the Linear Representation Bench of seed 004 (Table 1: n_p = d_in = 768, n_q = d_sae = 16,000, TopK k = 64;
batch 1024 here). Data: ``--n-features`` random unit features (n = 1,000) in R^d_in with Bernoulli(``--density``
= 0.01) codes of Exp(1) magnitude (the bench's shifted exponential with c_min = 0, β = 1), ``--n-samples`` rows;
the speed does not depend on what the data are, only on their shape.

Rows, each timed on the same data with the same batch size:

* **plain topk** (the baseline of the ratios): the loop a user writes — ``nn.Linear`` encoder reading y − b_dec,
  ``topk`` per sample, ReLU, scatter into dense codes, ``nn.Linear`` decoder, MSE, ``torch.optim.Adam`` with its
  defaults, decoder atoms (its weight's columns) rescaled to unit norm after every step; reshuffled every epoch;
* **dictlab topk**: ``dictlab.sae.training.train_sae`` on a ``TopKSAE`` from ``dictlab.sae.make_sae`` with
  ``TrainConfig(lr, batch_size, n_steps)`` and its defaults otherwise (fused Adam, decoder gradient projected,
  rows renormalised every step, warm-up and cosine schedule, a history entry every 100 steps; no ground truth,
  so no dictionary matching is logged). Its forward pass is the dense one or the one on the selected entries
  (``SelectionSAE.gather_ratio``); the row says which, and ``--other-path`` adds a row with the other forced;
* **plain batchtopk** / **dictlab batchtopk**: the same with the k·B largest activations of the batch
  (``BatchTopKSAE``); the ratio of dictlab batchtopk is against plain batchtopk.

Before timing, each plain loop is checked against dictlab on the same parameters (copied from the dictlab SAE's
initialisation): the MSE of one batch must agree to float32 rounding, so both rows compute the same thing.
Timing: ``--warmup`` untimed steps of every row, then ``--rounds`` rounds in which every row runs
``--steps``/rounds steps in turn (interleaved, so load from other processes falls on all rows alike; each
dictlab round is one ``train_sae`` call continuing from the SAE's current weights). samples/s = steps · batch /
seconds, the median over rounds; ratio = row samples/s ÷ baseline samples/s (> 1: faster than the plain loop).

    python benchmarks/lrb_trainer.py [--d-in 768] [--d-sae 16000] [--k 64] [--batch-size 1024] [--steps 150]
        [--rounds 3] [--warmup 3] [--lr 1e-3] [--n-features 1000] [--density 0.01] [--n-samples 32768]
        [--architectures topk,batchtopk] [--other-path] [--threads T] [--device cpu] [--seed 0] [--quick]
        [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dictlab.data import random_unit_dictionary
from dictlab.experiments.runs import package_versions
from dictlab.models import FitContext
from dictlab.sae import TrainConfig, make_sae, sae_config_class
from dictlab.sae.base import SparseAutoencoder
from dictlab.sae.training import train_sae

QUICK = {"d_in": 64, "d_sae": 512, "k": 8, "batch_size": 256, "steps": 30, "rounds": 3, "warmup": 3,
         "n_features": 96, "n_samples": 4096}  # fmt: skip


# --- data --------------------------------------------------------------------------------------------------


def lrb_like_data(
    n_features: int, d_in: int, n_samples: int, density: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y (n_samples, d_in) float32, features (n_features, d_in)): y = x W with unit random features W and codes
    x_d = Bernoulli(density) · Exp(1), independent; built in row blocks so the dense codes never exist at once."""
    features = random_unit_dictionary(n_features, d_in, generator)
    blocks = []
    for start in range(0, n_samples, 4096):
        rows = min(4096, n_samples - start)
        active = torch.rand(rows, n_features, generator=generator) < density
        magnitude = torch.empty(rows, n_features).exponential_(generator=generator)
        blocks.append((active * magnitude) @ features)
    return torch.cat(blocks), features


# --- the plain PyTorch loop ---------------------------------------------------------------------------------


class PlainSAE(nn.Module):
    """TopK / BatchTopK SAE as a plain PyTorch user writes it; ``decoder.weight`` (d_in, d_sae): atoms as columns."""

    def __init__(self, d_in: int, d_sae: int, k: int, batch_topk: bool) -> None:
        super().__init__()
        self.encoder, self.decoder = nn.Linear(d_in, d_sae), nn.Linear(d_sae, d_in)
        self.k, self.batch_topk = k, batch_topk

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        pre = self.encoder(y - self.decoder.bias)
        if self.batch_topk:
            flat = F.relu(pre).flatten()
            top = flat.topk(self.k * y.shape[0])
            codes = torch.zeros_like(flat).scatter(0, top.indices, top.values).view_as(pre)
        else:
            top = pre.topk(self.k, dim=1)
            codes = torch.zeros_like(pre).scatter(1, top.indices, F.relu(top.values))
        return F.mse_loss(self.decoder(codes), y)

    @torch.no_grad()
    def copy_from(self, sae: SparseAutoencoder) -> None:
        self.encoder.weight.copy_(sae.W_enc.T)
        self.encoder.bias.copy_(sae.b_enc)
        self.decoder.weight.copy_(sae.W_dec.T)
        self.decoder.bias.copy_(sae.b_dec)


class PlainLoop:
    """Adam with torch's defaults; decoder atoms rescaled to unit norm after every step; reshuffled per epoch."""

    def __init__(self, model: PlainSAE, y: torch.Tensor, batch_size: int, lr: float, seed: int) -> None:
        self.model, self.y, self.batch_size = model, y, batch_size
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.order, self.position = torch.empty(0, dtype=torch.long), 0

    def _next_batch(self) -> torch.Tensor:
        if self.position >= self.order.numel():
            self.order, self.position = torch.randperm(self.y.shape[0], generator=self.generator), 0
        rows = self.order[self.position : self.position + self.batch_size].to(self.y.device)
        self.position += self.batch_size
        return self.y[rows]

    def run(self, steps: int) -> None:
        for _ in range(steps):
            loss = self.model(self._next_batch())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            with torch.no_grad():
                w = self.model.decoder.weight
                w.div_(torch.linalg.vector_norm(w, dim=0, keepdim=True))


# --- timing --------------------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    baseline: str  # the row this one's ratio is against ("" for a baseline)
    note: str = ""
    seconds: list[float] = field(default_factory=list)  # per round
    samples_per_s: float = float("nan")
    seconds_per_step: float = float("nan")
    ratio: float = float("nan")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[int], None], steps: int, device: torch.device) -> float:
    """Seconds of ``run(steps)``, the device's queue drained before and after."""
    _sync(device)
    start = time.perf_counter()
    run(steps)
    _sync(device)
    return time.perf_counter() - start


def uses_gathered_path(sae: SparseAutoencoder) -> bool:
    """Whether a TopK/BatchTopK SAE trains on the selected entries only (``SelectionSAE.forward``'s rule)."""
    cfg = sae.cfg
    return bool(cfg.d_sae >= sae.gather_ratio * cfg.k * cfg.d_in)


def dictlab_runner(
    sae: SparseAutoencoder, y: torch.Tensor, batch_size: int, lr: float, seed: int
) -> Callable[[int], None]:
    """``steps`` → one ``train_sae`` call of that many steps from the SAE's current weights (its own seeded shuffle)."""
    calls = iter(range(1 << 30))

    def run(steps: int) -> None:
        config = TrainConfig(lr=lr, batch_size=batch_size, n_steps=steps)
        train_sae(sae, y, config, FitContext(seed=seed + next(calls)))

    return run


def check_same_loss(sae: SparseAutoencoder, plain: PlainSAE, batch: torch.Tensor) -> float:
    """Relative difference of the MSE of one batch between dictlab's training forward pass and the plain one, both
    from the same parameters."""
    plain.copy_from(sae)
    sae.train()
    with torch.no_grad():
        ours = float(sae(batch).losses["mse_loss"])
        theirs = float(plain(batch))
    return abs(ours - theirs) / max(abs(theirs), 1e-30)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--d-in", type=int, default=768)
    parser.add_argument("--d-sae", type=int, default=16000)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=150, help="timed steps per row, over all rounds (default 150)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of every row first (default 3)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of every row (default 1e-3)")
    parser.add_argument("--n-features", type=int, default=1000)
    parser.add_argument("--density", type=float, default=0.01, help="P(feature active), 1 − S (default 0.01)")
    parser.add_argument("--n-samples", type=int, default=32768)
    parser.add_argument("--architectures", default="topk,batchtopk")
    parser.add_argument(
        "--other-path",
        action="store_true",
        help="also time dictlab with the other forward path (dense / selected entries) forced",
    )
    parser.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads (default: the usable cores)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a tiny shape, a few seconds: " + str(QUICK))
    parser.add_argument("--out", default=None, help="write every number as JSON to this file")
    args = parser.parse_args()
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    architectures = [a.strip() for a in args.architectures.split(",") if a.strip()]
    if args.rounds < 1 or args.steps < args.rounds:
        parser.error(f"--steps ({args.steps}) must be at least --rounds ({args.rounds}) ≥ 1")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    per_round = args.steps // args.rounds

    versions = package_versions(("dictlab", "torch", "numpy"))
    load = os.getloadavg()
    print(
        f"d_in={args.d_in} d_sae={args.d_sae} k={args.k} batch={args.batch_size} steps={per_round * args.rounds} "
        f"({args.rounds} rounds) warmup={args.warmup} lr={args.lr:g} device={device} "
        f"torch threads={torch.get_num_threads()} (usable cores {len(os.sched_getaffinity(0))}); "
        f"load average {load[0]:.2f}"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))

    generator = torch.Generator().manual_seed(args.seed)
    y, _ = lrb_like_data(args.n_features, args.d_in, args.n_samples, args.density, generator)
    y = y.to(device)
    print(
        f"data: {args.n_samples} samples of {args.n_features} unit features, density {args.density:g} "
        f"(mean {args.density * args.n_features:.1f} active per sample)"
    )

    rows: list[Row] = []
    runners: list[Callable[[int], None]] = []
    checks: dict[str, float] = {}
    for arch in architectures:
        config = sae_config_class(arch)(d_in=args.d_in, d_sae=args.d_sae, architecture=arch, k=args.k)
        sae = make_sae(config).to(device)
        plain = PlainSAE(args.d_in, args.d_sae, args.k, batch_topk=arch == "batchtopk").to(device)
        checks[arch] = check_same_loss(sae, plain, y[: args.batch_size])
        plain_name = f"plain {arch}"
        rows.append(Row(plain_name, "", "torch.optim.Adam defaults"))
        runners.append(PlainLoop(plain, y, args.batch_size, args.lr, args.seed).run)
        path = "selected entries" if uses_gathered_path(sae) else "dense"
        rows.append(Row(f"dictlab {arch}", plain_name, f"train_sae, {path} forward"))
        runners.append(dictlab_runner(sae, y, args.batch_size, args.lr, args.seed))
        if args.other_path:
            forced = make_sae(config).to(device)
            forced.gather_ratio = float("inf") if uses_gathered_path(sae) else 0.0
            other = "selected entries" if uses_gathered_path(forced) else "dense"
            rows.append(Row(f"dictlab {arch} ({other})", plain_name, f"train_sae, {other} forward forced"))
            runners.append(dictlab_runner(forced, y, args.batch_size, args.lr, args.seed))
    print(
        "same computation: relative MSE difference on one batch, dictlab vs plain, same parameters: "
        + ", ".join(f"{arch} {value:.1e}" for arch, value in checks.items())
    )

    for run in runners:
        timed(run, args.warmup, device)
    for _ in range(args.rounds):
        for row, run in zip(rows, runners, strict=True):
            row.seconds.append(timed(run, per_round, device))
    by_name = {row.name: row for row in rows}
    for row in rows:
        median = statistics.median(row.seconds)
        row.seconds_per_step = median / per_round
        row.samples_per_s = per_round * args.batch_size / median
    for row in rows:
        base = by_name[row.baseline] if row.baseline else row
        row.ratio = row.samples_per_s / base.samples_per_s

    print(f"{'row':<38}{'samples/s':>11}{'s/step':>9}{'× plain':>9}   per-round s   note")
    for row in rows:
        rounds = " ".join(f"{s:.1f}" for s in row.seconds)
        print(
            f"{row.name:<38}{row.samples_per_s:11.0f}{row.seconds_per_step:9.3f}{row.ratio:9.2f}   {rounds:<13} "
            f"{row.note}"
        )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if args.out:
        result: dict[str, Any] = {
            "args": vars(args),
            "threads": torch.get_num_threads(),
            "versions": versions,
            "same_loss_check": checks,
            "rows": [asdict(row) for row in rows],
        }
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
