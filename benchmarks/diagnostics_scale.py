"""The diagnostics at SAE scale: p = 16,000 atoms, m = 768, N = 100,000 samples, ~32 active latents per sample.

Target: every diagnostic together under a minute on 2 cores. The codes are generated chunk by chunk and kept
sparse (``SparseCodes``, N·k entries); the observations are y = Z D + noise. The dictionary has 10 planted
antipodal pairs (atom p−1−i = −atom i) and 3 planted dense latents (0, 1, 2, each active on 60 % of the samples),
which the run checks it finds. Timed: the stationarity residual (cost N·k·m), the KKT violation (its
(chunk, p) gradient blocks cost N·p·m — the only dense part; with ``--estimate-lam`` also the λ estimate,
another N·k·m pass), antipodal pairs (p²m/2), dense latents (N·k). Printed: seconds per diagnostic, the total
against the target, the KKT's rate against the machine's matrix-multiply rate measured in the same run, and
the peak resident memory (``resource.getrusage``).

    python benchmarks/diagnostics_scale.py [--num-latents 16000] [--input-dim 768] [--n 100000] [--k 32]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from dictlab.data import SparseCodes, random_unit_dictionary, sample_distinct
from dictlab.diagnostics import antipodal_pairs, dense_latents, kkt_violation, stationarity

TARGET_S = 60.0
N_ANTIPODAL = 10
DENSE = (0, 1, 2)
DENSE_SHARE = 0.6


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _make(p: int, m: int, n: int, k: int, chunk: int = 10_000) -> tuple[torch.Tensor, torch.Tensor, SparseCodes]:
    """y (n, m), the dictionary (p, m) and the codes, written chunk by chunk into preallocated tensors (so the
    peak memory of the data is the data)."""
    gen = torch.Generator().manual_seed(0)
    d = random_unit_dictionary(p, m, gen)
    d[p - N_ANTIPODAL :] = -d[:N_ANTIPODAL].flip(0)  # atom p-1-i = −atom i
    y = torch.empty(n, m)
    indices = torch.empty(n, k, dtype=torch.int64)
    values = torch.empty(n, k)
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        size = rows.stop - start
        idx = sample_distinct(size, k, p - len(DENSE), gen, offset=len(DENSE))  # latents ≥ 3, distinct per row
        for column, latent in enumerate(DENSE):
            idx[torch.rand(size, generator=gen) < DENSE_SHARE, column] = latent
        indices[rows] = idx
        values[rows] = 0.1 + torch.rand(size, k, generator=gen)
        y[rows] = SparseCodes(indices[rows], values[rows], p).decode(d) + 0.01 * torch.randn(size, m, generator=gen)
    return y, d, SparseCodes(indices, values, p)


def _matmul_rate(p: int, m: int, rows: int) -> float:
    """GFLOP/s of one (rows, m)·(m, p) product, the KKT's gradient block (best of 3)."""
    a, b = torch.randn(rows, m), torch.randn(m, p)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * rows * m * p / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-latents", type=int, default=16_000)
    parser.add_argument("--input-dim", type=int, default=768)
    parser.add_argument("--n", type=int, default=100_000, help="samples")
    parser.add_argument("--k", type=int, default=32, help="active latents per sample")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--estimate-lam", action="store_true", help="KKT with the estimated λ (one more pass)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    p, m, n, k = args.num_latents, args.input_dim, args.n, args.k

    start = time.perf_counter()
    y, d, codes = _make(p, m, n, k)
    made = time.perf_counter() - start
    base_mib = _peak_mib()
    print(f"p={p} m={m} N={n} k={k}, {torch.get_num_threads()} threads; data made in {made:.1f} s "
          f"(y {y.numel() * 4 / 2**20:.0f} MiB, codes {codes.indices.numel() * 12 / 2**20:.0f} MiB), "
          f"peak RSS so far {base_mib:.0f} MiB")

    times: dict[str, float] = {}

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        out = fn()
        times[name] = time.perf_counter() - start
        print(f"  {name:<26} {times[name]:7.2f} s   peak RSS {_peak_mib():6.0f} MiB")
        return out

    station = timed("stationarity residual", lambda: stationarity(y, codes, d))
    lam = 0.1
    kkt = timed("KKT violation" + (" (lam estimated)" if args.estimate_lam else f" (lam={lam})"),
                lambda: kkt_violation(y, codes, d, lam=None if args.estimate_lam else lam))
    pairs = timed("antipodal pairs", lambda: antipodal_pairs(d))
    dense = timed("dense latents", lambda: dense_latents(codes))

    total = sum(times.values())
    verdict = "under" if total < TARGET_S else "OVER"
    print(f"total {total:.1f} s: {verdict} the target of {TARGET_S:.0f} s on 2 cores")
    kkt_name = next(name for name in times if name.startswith("KKT"))
    rows = max(1, (1 << 24) // p)
    rate = _matmul_rate(p, m, rows)
    kkt_rate = 2 * n * p * m / times[kkt_name] / 1e9
    print(f"KKT: {n * p / times[kkt_name] / 1e6:.0f} M entries/s, {n / times[kkt_name]:.0f} samples/s, "
          f"{kkt_rate:.0f} GFLOP/s of useful matmul vs {rate:.0f} GFLOP/s for its ({rows}, {m})·({m}, {p}) "
          f"block alone ({100 * kkt_rate / rate:.0f} %)")
    print(f"peak RSS {_peak_mib():.0f} MiB ({_peak_mib() - base_mib:.0f} MiB above the data)")

    found = sorted(map(tuple, pairs.pairs.tolist()))
    expected = [(i, p - 1 - i) for i in range(N_ANTIPODAL)]
    assert found == expected, f"antipodal pairs found {found[:12]}, planted {expected}"
    assert dense.latents.tolist() == list(DENSE), f"dense latents found {dense.latents.tolist()}"
    print(f"found the {N_ANTIPODAL} planted antipodal pairs and the dense latents {list(DENSE)}; "
          f"residual median {station.quantiles['median']:.3f}, KKT median sample max {kkt.quantiles['median']:.3f} "
          f"(lam {kkt.lam:.3g})")


if __name__ == "__main__":
    main()
