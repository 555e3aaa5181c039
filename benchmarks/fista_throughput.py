"""FISTA's inner loop against the machine's matrix-multiply rate, measured in the same run.

Baseline: the two dense products one FISTA iteration needs — (N, p)·(p, m) and (N, m)·(m, p) — timed
alone with torch.matmul. FISTA's useful work per iteration is those 4·N·p·m flops; the ratio
(FISTA GFLOP/s) / (matmul GFLOP/s) is the fraction of the machine's rate its loop reaches (the rest goes to
the proximal step and momentum, which are memory-bound). Also compares the Gram-matrix form the study's
code used (p×p Gram precomputed, 2·N·p² flops per iteration).

    python benchmarks/fista_throughput.py [--num-latents 1000] [--n 2500] [--iters 100] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from dictlab.data import input_dim_from_cs_bound, random_unit_dictionary
from dictlab.inference import fista, lipschitz_constant


def _best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def _gram_fista(y: torch.Tensor, d: torch.Tensor, lam: float, iters: int, lipschitz: float) -> torch.Tensor:
    """The study's form: gradient x·G − y·Dᵀ with G = D·Dᵀ precomputed (p, p)."""
    gram, corr, step = d @ d.T, y @ d.T, 1.0 / lipschitz
    z = torch.zeros_like(corr)
    x, t = z.clone(), 1.0
    for _ in range(iters):
        z_new = torch.relu(x - step * (x @ gram - corr) - lam * step)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        x = z_new + ((t - 1) / t_next) * (z_new - z)
        z, t = z_new, t_next
    return z


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-latents", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--n", type=int, default=2500, help="samples in the batch")
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    p, m, n = args.num_latents, input_dim_from_cs_bound(args.num_latents, args.k), args.n
    gen = torch.Generator().manual_seed(0)
    d = random_unit_dictionary(p, m, gen).to(args.device)
    codes = torch.rand(n, p, generator=gen) * (torch.rand(n, p, generator=gen) < args.k / p)
    y = (codes.to(args.device) @ d).contiguous()
    lip = lipschitz_constant(d)
    x_np, x_nm = torch.rand(n, p, device=args.device), torch.rand(n, m, device=args.device)

    def matmuls() -> None:
        for _ in range(args.iters):
            x_np @ d
            x_nm @ d.T

    flops = 4.0 * n * p * m * args.iters
    t_mm = _best_time(matmuls, args.repeats)
    t_fista = _best_time(lambda: fista(y, d, 0.1, max_iter=args.iters, nonneg=True, lipschitz=lip), args.repeats)
    t_gram = _best_time(lambda: _gram_fista(y, d, 0.1, args.iters, lip), args.repeats)
    print(f"N={n} p={p} m={m} iterations={args.iters} device={args.device} threads={torch.get_num_threads()}")
    print(f"baseline matmul pair : {t_mm:7.3f} s  {flops / t_mm / 1e9:7.1f} GFLOP/s")
    print(f"dictlab fista        : {t_fista:7.3f} s  {flops / t_fista / 1e9:7.1f} GFLOP/s  "
          f"= {t_mm / t_fista:.2f} of the matmul rate")
    print(f"study-style Gram form: {t_gram:7.3f} s  ({t_gram / t_fista:.2f}x dictlab's time)")


if __name__ == "__main__":
    main()
