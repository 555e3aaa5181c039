"""End-to-end time of one study point — every method, one seed — with per-method seconds and OOD MCC.

The target: num_latents=1000 (k=10, n_samples=5000, input_dim 93), all methods, ≤ 60 s in total on a
2-core CPU, with metrics at least as good as the study's. The named baseline is the study's own code on the
same machine, ~1,800 s for this point (DL-FISTA and Softplus-Adam cut to 3,000 steps); it is not re-run here
(it is not part of this repository), so the ratio printed uses that recorded figure.

The methods run exactly as ``dictlab run`` runs them — one-point sweep into a (temporary) results store, the
one runner: runs that share a fit form one batch (``dl_lista`` trains on the DL-FISTA fit ``dl_fista`` makes,
so its fit seconds are LISTA's alone), ``--jobs N`` spreads batches over N processes, each run with
``--threads`` torch threads. The total is wall-clock time from the first run handed out to the last stored,
imports and worker start-up included.

    python benchmarks/study_point.py [--num-latents 1000] [--seed 0] [--methods all] [--jobs 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dictlab.data import data_spec
from dictlab.experiments.runs import RunOutcome, RunSpec, last_line
from dictlab.experiments.spec import ExperimentSpec
from dictlab.experiments.store import ResultStore
from dictlab.experiments.sweep import run_sweep
from dictlab.methods import METHODS

STUDY_CODE_SECONDS_AT_1000 = 1800.0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--num-latents", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--n-samples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="all")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, as `dictlab run --jobs` (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    args = parser.parse_args()

    methods = METHODS.names() if args.methods == "all" else args.methods.split(",")
    data = data_spec({"num_latents": args.num_latents, "k": args.k, "n_samples": args.n_samples})
    spec = ExperimentSpec(name="study-point", methods=methods, seeds=[args.seed], data=data)
    print(f"num_latents={args.num_latents} input_dim={data['input_dim']} device={args.device} "
          f"jobs={args.jobs} threads per run={args.threads}")
    print(f"{'method':<16}{'fit s':>8}{'encode s':>10}{'score s':>9}{'total s':>9}{'MCC ood':>9}{'chance':>8}")

    def show(run: RunSpec, outcome: RunOutcome) -> None:
        if not outcome.ok or not outcome.records:
            print(f"{run.method:<16} FAILED: {last_line(outcome.error)}", flush=True)
            return
        m = outcome.records[0].metrics
        print(f"{run.method:<16}{m['fit_s']:8.2f}{m['encode_s']:10.2f}{m['score_s']:9.2f}{m['total_s']:9.2f}"
              f"{m['mcc_ood']:9.3f}{m['mcc_chance_ood']:8.3f}", flush=True)

    with tempfile.TemporaryDirectory() as folder, ResultStore(Path(folder) / "results.sqlite") as store:
        start = time.perf_counter()
        run_sweep(spec.expand(), store, jobs=args.jobs, threads=args.threads, device=args.device, progress=False,
                  on_outcome=show)
        total = time.perf_counter() - start
    print(f"total {total:.1f} s wall  (study's code: ~{STUDY_CODE_SECONDS_AT_1000:.0f} s → "
          f"{STUDY_CODE_SECONDS_AT_1000 / total:.0f}x)")


if __name__ == "__main__":
    main()
