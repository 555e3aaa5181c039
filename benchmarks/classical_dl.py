"""dictlab against the libraries users would pick instead — scikit-learn and SPAMS — measured in one run.

Part 1, sparse coding at equal objective. On the study's data (``compositional``, num_latents P, seed 0) and
with the TRUE dictionary, every solver solves the non-negative Lasso of the train split (N = 2,500 rows)

    min_Z  Σ_i ½‖y_i − z_i D‖² + λ‖z_i‖₁,   Z ≥ 0,   λ = 0.1 (the study's)

and every solver's codes are scored by that one float64 formula. The reference is the best objective any
solver reached (the LARS solvers are exact up to rounding). A solver's time is the time of its cheapest
setting whose objective is within 1e-4 and within 1e-6 (relative) of the reference: iterative solvers —
dictlab's FISTA (iterations) and scikit-learn's coordinate descent (``max_iter``, the knob ``sparse_encode``
exposes; its tolerance is fixed at 1e-8 inside) — are run for growing settings (×2; ×1.5 from the setting the
looser tolerance needed), then bisected to within 10 %; exact solvers (LARS) run once. Every library has the
positivity option (``sparse_encode(positive=True)``, ``spams.lasso(pos=True)``, dictlab ``nonneg=True``), so no
row solves the signed Lasso instead. The baseline of the ratios is dictlab's FISTA in float64, timed in the
same run: ratio = seconds / baseline seconds at the same tolerance (> 1: slower than dictlab). Everything runs
in float64, plus float32 rows for dictlab and SPAMS.

Part 2, dictionary learning. Fitted on the train split, scored on ``id`` and ``ood``: scikit-learn's
``MiniBatchDictionaryLearning``, SPAMS's ``trainDL`` (both online dictionary learning, Mairal et al. 2009/2010,
on the same Lasso with unit-ball atoms) and dictlab's learners by method name, all given the same float32
training array (the data's dtype; scikit-learn and SPAMS keep float32). Every learned dictionary is
scored the same way: atoms scaled to unit norm, the matched mean |cos| to the true dictionary
(``match_dictionaries``), the MCC of FISTA codes (λ = 0.1, 100 iterations, z ≥ 0 — the oracle's solver) on the
id and ood splits (``split_mcc``), and the mean train objective ½‖y − zD‖² + λ‖z‖₁ of those codes. The
oracle (FISTA on the true dictionary) and an untrained random unit dictionary bound the table.

Budget: the online learners get the same passes over the data — ``--epochs`` (default: dictlab online_dl's own
``epochs``, 30 when that method is not registered) with mini-batches of ``--batch-size`` (default: online_dl's,
else 256). scikit-learn: ``max_iter`` = epochs (its ``max_iter`` counts passes) with early stopping off
(``tol=0``, ``max_no_improvement=None``); SPAMS: ``iter`` = ceil(epochs · N / batch) mini-batches (its ``iter``
counts mini-batches). One exception keeps the default run to minutes: a library whose warm-up (a few
mini-batches, timed) says equal passes would take longer than ``--library-seconds`` (default 90) gets the most
whole epochs that fit, and its row says so — at P = 1000 scikit-learn needs ~1.7 s per mini-batch on one core,
~8 min for 30 epochs (``--sklearn-epochs 30`` runs them; ``--spams-epochs`` likewise). dictlab's batch learners
(dl_fista, mod, ksvd) run their own defaults (``--set`` changes them); their budget column says what they ran.

Threads: torch ``set_num_threads(T)``, SPAMS ``numThreads=T``, every BLAS/OpenMP pool limited to T
(threadpoolctl); scikit-learn's parallelism is ``n_jobs`` (joblib processes, per call), whose dispatch costs more
than it saves on small calls, so scikit-learn gets whichever of n_jobs = 1 or T a trial call is faster with
(the table says which). Times are the median of ``--repeats`` runs after one warm-up (interleaved across
solvers, so that load from other processes hits all alike); fits are timed once, after a warm-up fit of each
library on a few mini-batches. The machine's load average is printed with the results.

Layouts (ours: batch first, atoms as rows, Y (N, m) ≈ Z (N, p) · D (p, m)): scikit-learn uses the same
(X (n_samples, n_features) = Y, dictionary / ``components_`` (n_components, n_features) = D, codes = Z);
SPAMS uses columns as signals, Fortran order: X (m, N) = Yᵀ, D (m, p) = Dᵀ, codes α (p, N) sparse = Zᵀ.

    python benchmarks/classical_dl.py [--sizes 100,1000] [--methods online_dl,ksvd,mod,dl_fista] [--seed 0]
        [--epochs E] [--batch-size B] [--library-seconds 90] [--sklearn-epochs E] [--spams-epochs E]
        [--threads T] [--sklearn-jobs J] [--repeats 5] [--parts coding,learning] [--set METHOD.FIELD=VALUE ...]
        [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse
import spams
import torch
from sklearn.decomposition import MiniBatchDictionaryLearning, sparse_encode
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from dictlab.cli import CliError, parse_overrides
from dictlab.data import GroundTruthDataset, make_dataset, random_unit_dictionary
from dictlab.diagnostics import json_ready
from dictlab.experiments.evaluate import encode_splits
from dictlab.experiments.runs import package_versions
from dictlab.inference import FistaSolver, fista
from dictlab.methods import METHODS, Problem, build_method
from dictlab.metrics import match_dictionaries, split_mcc
from dictlab.models import FitContext, SparseCodingModel
from dictlab.models.base import derived_generator

LAM = 0.1  # the study's λ
TOLERANCES = (1e-4, 1e-6)  # relative objective gaps at which part 1 times every solver
DEFAULT_METHODS = "online_dl,ksvd,mod,dl_fista"
ONLINE_METHOD = "online_dl"  # dictlab's online learner: the baseline of part 2 and the source of the budget
FALLBACK_EPOCHS, FALLBACK_BATCH = 30, 256  # the budget when online_dl is not registered
# --quick: P = 100 only, few passes, short dictlab schedules (each applied only if the method accepts it)
QUICK_EPOCHS = 5
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "dl_fista": {"max_rounds": 60, "grow_after": 30},
    "mod": {"max_rounds": 20},
    "ksvd": {"max_rounds": 10},
}
KNOB_LABELS = {"iterations": "iters", "max_iter": "max_iter"}
FIT_WARMUP_BATCHES = 4  # mini-batches of a library's warm-up fit (also the n_jobs trial)


# --- the problem, layouts and parameter conversions (pure helpers) ------------------------------------------


def lasso_objective(y: Any, dictionary: Any, codes: Any, lam: float) -> float:
    """Σ_i ½‖y_i − z_i D‖² + λ‖z_i‖₁ in float64 for y (N, m), dictionary (p, m), codes (N, p) (any of numpy,
    torch or scipy sparse). The one formula every solver's codes are scored by."""
    if scipy.sparse.issparse(codes):
        codes = codes.toarray()
    y64 = torch.as_tensor(np.asarray(y), dtype=torch.float64)
    d64 = torch.as_tensor(np.asarray(dictionary), dtype=torch.float64)
    z64 = torch.as_tensor(np.asarray(codes), dtype=torch.float64)
    residual = y64 - z64 @ d64
    return float(0.5 * residual.square().sum() + lam * z64.abs().sum())


def sklearn_alpha(lam: float) -> float:
    """``alpha`` of ``sklearn.decomposition.sparse_encode`` (and of ``MiniBatchDictionaryLearning``) for our λ.

    ``sklearn.linear_model.Lasso`` minimises (1/(2·n_samples))‖y − Xw‖² + α‖w‖₁. ``sparse_encode`` solves
    each signal y (m,) as a Lasso regression of y on X = Dᵀ (m, p), so its "samples" are our m coordinates and
    n_samples = n_features = m; it passes α = alpha / n_features to Lasso. Per signal it minimises
    (1/(2m))‖y − zD‖² + (alpha/m)‖z‖₁ = (1/m)·[½‖y − zD‖² + alpha‖z‖₁]: our problem with alpha = λ, no
    conversion. (``Lasso`` called directly needs α = λ/m: ``lasso_estimator_alpha``.) MiniBatchDictionaryLearning
    codes every mini-batch with ``sparse_encode(alpha=self.alpha)`` and reports the cost
    (½‖X − UV‖² + alpha‖U‖₁)/batch_size: alpha = λ as well. Part 1 verifies this on the objective."""
    return lam


def lasso_estimator_alpha(lam: float, input_dim: int) -> float:
    """α of ``sklearn.linear_model.Lasso`` fitted on (X = Dᵀ, y) for our λ: its data term is 1/(2m)‖·‖²."""
    return lam / input_dim


def to_spams(y: np.ndarray, dictionary: np.ndarray, dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Our Y (N, m) and D (p, m) in SPAMS's layout: X (m, N) and D (m, p), columns as signals / atoms, Fortran
    order (SPAMS refuses C-ordered arrays)."""
    return np.asfortranarray(y.T, dtype=dtype), np.asfortranarray(dictionary.T, dtype=dtype)


def from_spams_codes(alpha: Any) -> np.ndarray:
    """SPAMS's codes α (p, N), a scipy sparse matrix with signals as columns, as our dense Z (N, p)."""
    return np.asarray(alpha.toarray().T)


def spams_iterations(epochs: int, n_samples: int, batch_size: int) -> int:
    """SPAMS's ``iter`` (mini-batches of ``batchsize`` signals) for ``epochs`` passes over n_samples."""
    return max(1, math.ceil(epochs * n_samples / batch_size))


def smallest_setting(
    objective_at: Callable[[int], float],
    target: float,
    start: int,
    cap: int,
    cache: dict[int, float],
    *,
    lo: int = 0,
    growth: float = 2.0,
) -> int | None:
    """The smallest integer setting (iterations) whose objective is ≤ ``target``, to within 10 %: growing
    ``start`` by ``growth`` up to ``cap``, then bisecting between the last failing setting (``lo``, a setting
    known to fail, when the first try passes) and the first passing one; the value returned always passed.
    None when ``cap`` does not reach it. ``cache`` keeps every objective computed, so nothing runs twice."""

    def passes(k: int) -> bool:
        if k not in cache:
            cache[k] = objective_at(k)
        return cache[k] <= target

    k = min(max(1, start, lo + 1), cap)
    while not passes(k):
        if k >= cap:
            return None
        lo, k = k, min(max(k + 1, math.ceil(growth * k)), cap)
    hi = k
    while hi - lo > max(1, hi // 10):
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return hi


def capped_epochs(epochs: int, seconds_per_batch: float, batches_per_epoch: int, cap_s: float) -> int:
    """``epochs`` if that many passes take at most ``cap_s`` at ``seconds_per_batch``; else the most whole
    epochs that fit (at least 1)."""
    per_epoch = seconds_per_batch * batches_per_epoch
    if per_epoch * epochs <= cap_s or per_epoch <= 0:
        return epochs
    return max(1, min(epochs, math.floor(cap_s / per_epoch)))


def budget_fields(config: Any) -> dict[str, Any]:
    """The budget a dictlab model's ``config()`` names (epochs, batch_size, max_rounds, rounds run, ...), found
    at any depth, for the table's budget column."""
    keys = ("epochs", "batch_size", "max_rounds", "rounds_run", "max_steps", "fista_iter")
    found: dict[str, Any] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in keys and isinstance(value, int | float) and key not in found:
                    found[key] = value
                else:
                    walk(value)

    walk(config)
    return found


def describe_budget(fields: dict[str, Any]) -> str:
    if "epochs" in fields:
        batch = f"×{fields['batch_size']}" if "batch_size" in fields else ""
        return f"{fields['epochs']} ep{batch}"
    if "rounds_run" in fields:
        return f"{fields['rounds_run']} rounds"
    if "max_rounds" in fields:
        return f"≤{fields['max_rounds']} rounds"
    return "default"


# --- timing -----------------------------------------------------------------------------------------------


@dataclass
class Timed:
    """One timed call: ``fn`` is run ``repeats`` times after a warm-up; ``seconds`` is the median. ``warm_s``: the
    time of an identical call already made (it was the warm-up, none is run again)."""

    fn: Callable[[], Any]
    repeats: int
    warm_s: float | None = None
    times: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(self.times) if self.times else math.nan


def clock(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def time_interleaved(calls: list[Timed], per_call_budget_s: float) -> None:
    """Warm up every call once, then time them round-robin (each round runs every call still short of its
    repeats), so that load from other processes falls on all alike. A call slower than the budget allows gets
    fewer repeats (at least one)."""
    for call in calls:
        warm = call.warm_s if call.warm_s is not None else clock(call.fn)[0]
        call.repeats = max(1, min(call.repeats, math.ceil(per_call_budget_s / max(warm, 1e-9))))
    for round_ in range(max((c.repeats for c in calls), default=0)):
        for call in calls:
            if round_ < call.repeats:
                call.times.append(clock(call.fn)[0])


# --- part 1: sparse coding at equal objective -------------------------------------------------------------


@dataclass
class CodingRow:
    solver: str
    library: str
    dtype: str
    knob: str  # what the setting counts ("iterations", "max_iter", "" for exact solvers)
    parallel: str  # threads / n_jobs it ran with
    settings: dict[str, int | None] = field(default_factory=dict)  # per tolerance: the setting reaching it
    seconds: dict[str, float] = field(default_factory=dict)
    ratio: dict[str, float] = field(default_factory=dict)
    gap: dict[str, float] = field(default_factory=dict)  # relative gap of the timed setting
    objective: float = math.nan  # best objective this solver reached
    min_code: float = math.nan


@dataclass
class CodingSolver:
    name: str
    library: str
    dtype: str
    run: Callable[[int | None], Any]  # setting → codes (N, p); None for exact solvers
    knob: str = ""
    start: int = 1
    cap: int = 1
    parallel: str = ""


def _tol_key(tol: float) -> str:
    return f"{tol:.0e}"


def _sklearn_jobs(trial: Callable[[int], Any], threads: int) -> tuple[int, float, Any]:
    """The n_jobs (1 or ``threads``) a trial call of scikit-learn is faster with, that call's time and output. The
    caller starts joblib's pool before (its first parallel call spawns the worker processes)."""
    options = [1] if threads == 1 else [1, threads]
    timed = {jobs: clock(functools.partial(trial, jobs)) for jobs in options}
    best = min(timed, key=lambda jobs: timed[jobs][0])
    return best, timed[best][0], timed[best][1]


def coding_benchmark(data: GroundTruthDataset, threads: int, repeats: int, fista_cap: int, cd_cap: int,
                     budget_s: float, lars: bool = True) -> dict[str, Any]:
    """Part 1 on ``data``'s train split with its true dictionary; see the module docstring. ``lars``: include
    scikit-learn's lasso_lars (seconds per call: a Python loop over the samples)."""
    y32, d32 = data.train.y.float().contiguous(), data.dictionary.float().contiguous()
    y64, d64 = y32.double(), d32.double()
    y_np, d_np = y64.numpy(), d64.numpy()
    n, m = y_np.shape

    def objective(codes: Any) -> float:
        return lasso_objective(y64, d64, codes, LAM)

    # --- sklearn: same layout as ours (X = Y (N, m), dictionary = D (p, m), codes Z (N, p)); alpha = λ.
    def sk(algorithm: str, jobs: int, max_iter: int = 1000, alpha: float = sklearn_alpha(LAM)) -> np.ndarray:
        return sparse_encode(y_np, d_np, algorithm=algorithm, alpha=alpha, positive=True, max_iter=max_iter,
                             n_jobs=jobs)

    sparse_encode(y_np[:64], d_np, algorithm="lasso_cd", alpha=LAM, positive=True, n_jobs=threads)  # start joblib
    cd_jobs, _, cd_codes = _sklearn_jobs(lambda jobs: sk("lasso_cd", jobs, cd_cap), threads)
    lars_jobs, lars_s, lars_codes = _sklearn_jobs(lambda jobs: sk("lasso_lars", jobs), threads) if lars else (1, 0, 0)

    # --- SPAMS: X (m, N) = Yᵀ and D (m, p) = Dᵀ, Fortran; mode=2 is ½‖x − Dα‖² + λ1‖α‖₁ + ½λ2‖α‖² (λ2 = 0
    # by default) per column, ``pos`` its positivity flag (``posAlpha`` in trainDL); returns α (p, N) sparse.
    x_sp, d_sp = to_spams(y_np, d_np, np.float64)
    x_sp32, d_sp32 = to_spams(y_np, d_np, np.float32)

    def spams_codes(x: np.ndarray, d: np.ndarray) -> np.ndarray:
        return from_spams_codes(spams.lasso(x, D=d, lambda1=LAM, mode=2, pos=True, numThreads=threads))

    def dictlab_fista(y: torch.Tensor, d: torch.Tensor) -> Callable[[int | None], Any]:
        return lambda k: fista(y, d, LAM, max_iter=int(k or 0), nonneg=True).codes

    parallel = f"{threads} threads"
    solvers = [
        CodingSolver("dictlab fista", "dictlab", "float64", dictlab_fista(y64, d64), "iterations", 16, fista_cap,
                     parallel),
        CodingSolver("dictlab fista", "dictlab", "float32", dictlab_fista(y32, d32), "iterations", 16, fista_cap,
                     parallel),
        CodingSolver("sparse_encode lasso_cd", "scikit-learn", "float64",
                     lambda k: sk("lasso_cd", cd_jobs, int(k or 0)), "max_iter", 1, cd_cap, f"n_jobs={cd_jobs}"),
        CodingSolver("sparse_encode lasso_lars", "scikit-learn", "float64",
                     lambda k: sk("lasso_lars", lars_jobs), parallel=f"n_jobs={lars_jobs}"),
        CodingSolver("spams.lasso (LARS)", "SPAMS", "float64", lambda k: spams_codes(x_sp, d_sp),
                     parallel=f"numThreads={threads}"),
        CodingSolver("spams.lasso (LARS)", "SPAMS", "float32", lambda k: spams_codes(x_sp32, d_sp32),
                     parallel=f"numThreads={threads}"),
    ]
    if not lars:
        solvers = [s for s in solvers if s.name != "sparse_encode lasso_lars"]

    # objectives (and the smallest code, to check z ≥ 0) per solver and setting; None: an exact solver
    objectives: dict[int, dict[int | None, float]] = {i: {} for i in range(len(solvers))}
    min_codes: dict[int, dict[int | None, float]] = {i: {} for i in range(len(solvers))}

    def record(i: int, k: int | None, codes: Any) -> float:
        codes = np.asarray(codes)
        objectives[i][k], min_codes[i][k] = objective(codes), float(codes.min())
        return objectives[i][k]

    # the reference: exact solvers, and coordinate descent at its cap (it stops at its own 1e-8 tolerance)
    cd_index = next(i for i, s in enumerate(solvers) if s.knob == "max_iter")
    record(cd_index, cd_cap, cd_codes)
    for i, solver in enumerate(solvers):
        if not solver.knob:
            record(i, None, lars_codes if solver.name == "sparse_encode lasso_lars" else solver.run(None))
    reference = min(min(values.values()) for values in objectives.values() if values)

    # the alpha conversion, checked on the objective (lasso_cd is the fast one)
    alpha_check = {
        "alpha = λ (sklearn_alpha)": objectives[cd_index][cd_cap],
        "alpha = λ/m (Lasso's 1/m applied twice)": objective(
            sk("lasso_cd", cd_jobs, cd_cap, alpha=lasso_estimator_alpha(LAM, m))),
        "alpha = λ·m": objective(sk("lasso_cd", cd_jobs, cd_cap, alpha=LAM * m)),
    }

    # smallest settings of the iterative solvers at each tolerance (loosest first): doubling from the solver's
    # start, then ×1.5 from the setting the previous tolerance needed (a tighter one needs at least as many); a
    # solver after one with the same name and knob (float32 after float64 FISTA) starts from that one's settings
    settings: dict[int, dict[str, int | None]] = {i: {} for i in range(len(solvers))}
    for i, solver in enumerate(solvers):
        if not solver.knob:
            continue
        cache: dict[int, float] = {k: v for k, v in objectives[i].items() if k is not None}

        def objective_at(k: int, i: int = i, solver: CodingSolver = solver) -> float:
            return record(i, k, solver.run(k))

        hint = next((settings[j] for j in range(i) if (solvers[j].name, solvers[j].knob) == (solver.name,
                                                                                            solver.knob)), {})
        lo, start, growth = 0, solver.start, 2.0
        for tol in TOLERANCES:
            key = _tol_key(tol)
            found = smallest_setting(objective_at, reference * (1 + tol), max(start, hint.get(key) or 0),
                                     solver.cap, cache, lo=lo, growth=growth)
            settings[i][key] = found
            if found is None:
                continue
            lo, start, growth = found - 1, found, 1.5
    best = min(min(values.values()) for values in objectives.values() if values)

    # time every (solver, setting) needed, interleaved
    calls: dict[tuple[int, int | None], Timed] = {}
    for i, solver in enumerate(solvers):
        needed = [None] if not solver.knob else sorted({k for k in settings[i].values() if k is not None})
        for k in needed:
            warm_s = lars_s if solver.name == "sparse_encode lasso_lars" else None  # its n_jobs trial warmed it
            calls[(i, k)] = Timed(functools.partial(solver.run, k), repeats, warm_s)
    time_interleaved(list(calls.values()), budget_s)

    rows = []
    for i, solver in enumerate(solvers):
        row = CodingRow(solver.name, solver.library, solver.dtype, solver.knob, solver.parallel,
                        objective=min(objectives[i].values()))
        for tol in TOLERANCES:
            key = _tol_key(tol)
            k = settings[i].get(key) if solver.knob else None
            timed_k: int | None = k
            if solver.knob and k is None:  # not reached: report the gap at the cap, no time
                timed_k = solver.cap
            value = objectives[i][timed_k]
            row.settings[key] = k
            row.gap[key] = (value - best) / best
            reached = k is not None if solver.knob else row.gap[key] <= tol
            row.seconds[key] = calls[(i, k)].seconds if reached and (i, k) in calls else math.nan
            row.min_code = min_codes[i][timed_k]
        rows.append(row)
    baseline = rows[0]
    for row in rows:
        for key in row.seconds:
            row.ratio[key] = row.seconds[key] / baseline.seconds[key]
    return {"n": n, "m": m, "p": d_np.shape[0], "reference_objective": best, "alpha_check": alpha_check,
            "rows": [asdict(row) for row in rows]}


def print_coding(p: int, result: dict[str, Any], threads: int) -> None:
    best = result["reference_objective"]
    print(f"\n== Part 1, P={p} (N={result['n']}, m={result['m']}): non-negative Lasso, λ={LAM}, true dictionary; "
          f"reference objective {best:.9f} (best of all solvers); torch/SPAMS threads {threads}")
    for label, value in result["alpha_check"].items():
        print(f"   sklearn {label:<45} objective {value:.9f}  gap {(value - best) / best:+.1e}")
    keys = [_tol_key(t) for t in TOLERANCES]
    head = "".join(f"{'setting@' + k:>18}{'s@' + k:>10}{'× dictlab':>10}" for k in keys)
    print(f"{'solver':<26}{'library':<14}{'dtype':<9}{'parallel':<14}{head}{'gap':>10}")
    for row in result["rows"]:
        cells = ""
        for k in keys:
            setting = row["settings"][k]
            if not row["knob"]:
                text = "exact" if not math.isnan(row["seconds"][k]) else "not reached"
            elif setting is None:
                text = "not reached"
            else:
                text = f"{KNOB_LABELS.get(row['knob'], row['knob'])}={setting}"
            cells += f"{text:>18}{row['seconds'][k]:10.3f}{row['ratio'][k]:10.2f}"
        print(f"{row['solver']:<26}{row['library']:<14}{row['dtype']:<9}{row['parallel']:<14}{cells}"
              f"{row['gap'][keys[-1]]:10.1e}")


# --- part 2: dictionary learning --------------------------------------------------------------------------


@dataclass
class LearningRow:
    method: str
    library: str
    budget: str
    fit_s: float
    ratio: float = math.nan
    scores: dict[str, float] = field(default_factory=dict)
    note: str = ""


def score_dictionary(dictionary: Any, data: GroundTruthDataset) -> dict[str, float]:
    """The one scoring of every learned dictionary (p, m): atoms scaled to unit norm; matched |cos| to the truth;
    MCC of FISTA codes (λ=0.1, 100 iterations, z ≥ 0) on id and ood; mean train objective of those codes."""
    d = torch.as_tensor(np.asarray(dictionary) if not isinstance(dictionary, torch.Tensor) else dictionary)
    d = d.detach().float().cpu()
    match = match_dictionaries(d, data.dictionary).as_dict()
    unit = (d / torch.linalg.vector_norm(d, dim=1, keepdim=True).clamp_min(1e-12)).contiguous()
    model = SparseCodingModel(unit, FistaSolver(lam=LAM))
    codes = encode_splits(model, data)
    out = {"mean_cosine": match["mean_cosine"], "frac_close": match["frac_close"]}
    for split in ("id", "ood"):
        truth = data[split].codes
        assert truth is not None, "the compositional generator knows every split's codes"
        out[f"mcc_{split}"] = split_mcc(truth, codes[split]).mcc
    out["train_objective"] = lasso_objective(data.train.y, unit, codes["train"], LAM) / len(data.train)
    return out


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _sklearn_learner(p: int, epochs: int, batch: int, jobs: int, seed: int) -> MiniBatchDictionaryLearning:
    # fit codes: lasso_cd, z ≥ 0, alpha = λ (see sklearn_alpha); atoms in the unit ball; early stopping off so that
    # it makes exactly `epochs` passes (its max_iter counts passes); default init (SVD of the data, zero-padded
    # beyond rank m; unused atoms are resampled from the data), shuffled batches.
    return MiniBatchDictionaryLearning(
        n_components=p, alpha=sklearn_alpha(LAM), max_iter=epochs, fit_algorithm="cd", batch_size=batch,
        transform_algorithm="lasso_cd", transform_alpha=sklearn_alpha(LAM), positive_code=True,
        random_state=seed, tol=0.0, max_no_improvement=None, n_jobs=jobs,
    )


def _spams_learner(x: np.ndarray, p: int, iterations: int, batch: int, threads: int) -> np.ndarray:
    # X (m, N) Fortran; mode=2: min (1/n)Σ ½‖x_i − Dα_i‖² + λ1‖α_i‖₁ + ½λ2‖α_i‖² (λ2 = 1e-9, SPAMS's default)
    # over atoms in the unit ball; posAlpha: α ≥ 0 (named `pos` in spams.lasso); init: K random signals of X,
    # from srandom(0) inside SPAMS (no seed parameter); clean=True replaces unused / duplicate atoms.
    # Returns D (m, K): atoms as columns.
    return np.asarray(spams.trainDL(x, K=p, lambda1=LAM, mode=2, posAlpha=True, batchsize=batch, iter=iterations,
                                    numThreads=threads, verbose=False))


def resolve_budget(methods: list[str], problem: Problem, args: argparse.Namespace,
                   overrides: dict[str, dict[str, Any]]) -> tuple[int, int, str]:
    """(epochs, batch size, where they come from): the flags, else dictlab online_dl's own, else the fallback.
    Explicit flags are also given to online_dl, so that every online learner makes the same passes."""
    own: dict[str, Any] = {}
    if ONLINE_METHOD in methods:
        with contextlib.suppress(ValueError):
            own = budget_fields(build_method(ONLINE_METHOD, problem, overrides.get(ONLINE_METHOD)).config())
    epochs = args.epochs if args.epochs is not None else int(own.get("epochs", FALLBACK_EPOCHS))
    batch = args.batch_size if args.batch_size is not None else int(own.get("batch_size", FALLBACK_BATCH))
    source = "flags" if args.epochs is not None else (f"{ONLINE_METHOD}'s defaults" if own else "fallback")
    return epochs, batch, source


def learning_benchmark(data: GroundTruthDataset, methods: list[str], args: argparse.Namespace,
                       overrides: dict[str, dict[str, Any]], threads: int) -> dict[str, Any]:
    """Part 2 on ``data``; see the module docstring."""
    p, n = data.num_latents, len(data.train)
    problem = Problem.of(data)
    y_train = data.train.y
    epochs, batch, source = resolve_budget(methods, problem, args, overrides)
    overrides = {name: dict(values) for name, values in overrides.items()}
    if ONLINE_METHOD in methods and (args.epochs is not None or args.batch_size is not None):
        overrides.setdefault(ONLINE_METHOD, {}).update({"epochs": epochs, "batch_size": batch})
    rows: list[LearningRow] = []

    rows.append(LearningRow("fista_oracle", "dictlab", "true D", math.nan, scores=score_dictionary(data.dictionary,
                                                                                                   data)))
    random_d = random_unit_dictionary(p, data.input_dim, derived_generator(args.seed, "classical_dl.random"))
    rows.append(LearningRow("random", "dictlab", "untrained", math.nan, scores=score_dictionary(random_d, data)))

    # warm-up: torch kernels, scikit-learn (and its n_jobs trial), SPAMS — a few mini-batches each, whose times
    # also estimate what equal passes would cost each library
    fista(y_train[: 4 * batch], data.dictionary, LAM, max_iter=20, nonneg=True)
    x_np = y_train.numpy()  # scikit-learn's layout is ours: X (N, m)
    x_sp = np.asfortranarray(x_np.T)  # SPAMS: X (m, N), Fortran
    warm = x_np[: FIT_WARMUP_BATCHES * batch]
    batches_per_epoch = math.ceil(n / batch)
    with quiet():
        def trial(jobs: int) -> None:
            _sklearn_learner(p, 1, batch, jobs, args.seed).fit(warm)

        for first in {1, threads}:  # imports, first-call costs, joblib's worker processes
            trial(first)
        if args.sklearn_jobs is not None:
            jobs, sk_trial_s = args.sklearn_jobs, clock(functools.partial(trial, args.sklearn_jobs))[0]
        else:
            jobs, sk_trial_s, _ = _sklearn_jobs(trial, threads)
    spams_trial_s, _ = clock(lambda: _spams_learner(np.asfortranarray(warm.T), p, FIT_WARMUP_BATCHES, batch, threads))
    library_epochs = {
        "scikit-learn": args.sklearn_epochs if args.sklearn_epochs is not None else capped_epochs(
            epochs, sk_trial_s / FIT_WARMUP_BATCHES, batches_per_epoch, args.library_seconds),
        "SPAMS": args.spams_epochs if args.spams_epochs is not None else capped_epochs(
            epochs, spams_trial_s / FIT_WARMUP_BATCHES, batches_per_epoch, args.library_seconds),
    }
    estimate_s = {"scikit-learn": sk_trial_s / FIT_WARMUP_BATCHES * batches_per_epoch * epochs,
                  "SPAMS": spams_trial_s / FIT_WARMUP_BATCHES * batches_per_epoch * epochs}

    explicit = {"scikit-learn": args.sklearn_epochs is not None, "SPAMS": args.spams_epochs is not None}

    def library_note(library: str) -> str:
        given = library_epochs[library]
        if given == epochs:
            return ""
        if explicit[library]:
            return f"; {given} epochs set by flag (online learners: {epochs})"
        return (f"; {given} of {epochs} epochs: {epochs} would take ~{estimate_s[library]:.0f} s (warm-up rate) "
                f"> --library-seconds {args.library_seconds:g}")

    # dictlab
    for name in methods:
        if name not in METHODS.names():
            print(f"   note: method {name!r} is not registered (registered: {', '.join(METHODS.names())}); skipped")
            continue
        settings = overrides.get(name, {})
        try:
            model = build_method(name, problem, settings)
        except ValueError as err:
            print(f"   note: {name}: {err}; running its defaults")
            settings = {}
            model = build_method(name, problem)
        fit_s, _ = clock(functools.partial(model.fit, y_train, FitContext(seed=args.seed)))
        fields = budget_fields(model.config())
        note = ", ".join(f"{k}={v}" for k, v in settings.items())
        rows.append(LearningRow(name, "dictlab", describe_budget(fields), fit_s,
                                scores=score_dictionary(model.dictionary, data), note=note))

    # scikit-learn: X (N, m) = Y; components_ (n_components, n_features) = D (p, m)
    sk_epochs = library_epochs["scikit-learn"]
    with quiet():
        learner = _sklearn_learner(p, sk_epochs, batch, jobs, args.seed)
        fit_s, _ = clock(lambda: learner.fit(x_np))
    rows.append(LearningRow("MiniBatchDictionaryLearning", "scikit-learn", f"{sk_epochs} ep×{batch}", fit_s,
                            scores=score_dictionary(learner.components_, data),
                            note=f"n_jobs={jobs}, {learner.n_steps_} mini-batches{library_note('scikit-learn')}"))

    # SPAMS: D (m, K) → ours D.T (K, m)
    spams_epochs = library_epochs["SPAMS"]
    iterations = spams_iterations(spams_epochs, n, batch)
    fit_s, d_sp = clock(lambda: _spams_learner(x_sp, p, iterations, batch, threads))
    rows.append(LearningRow("trainDL", "SPAMS", f"{spams_epochs} ep×{batch}", fit_s,
                            scores=score_dictionary(d_sp.T, data),
                            note=f"numThreads={threads}, iter={iterations} mini-batches{library_note('SPAMS')}"))

    learned = [r for r in rows if r.library == "dictlab" and not math.isnan(r.fit_s)]
    baseline = next((r for r in learned if r.method == ONLINE_METHOD), learned[0] if learned else None)
    for row in rows:
        if baseline is not None:
            row.ratio = row.fit_s / baseline.fit_s
    return {"p": p, "n_train": n, "m": data.input_dim, "epochs": epochs, "batch_size": batch,
            "budget_source": source, "library_epochs": library_epochs, "equal_pass_estimate_s": estimate_s,
            "baseline": baseline.method if baseline else None,
            "rows": [asdict(row) for row in rows]}


def print_learning(result: dict[str, Any]) -> None:
    print(f"\n== Part 2, P={result['p']} (N_train={result['n_train']}, m={result['m']}): dictionary learning; "
          f"online learners {result['epochs']} epochs, batch {result['batch_size']} ({result['budget_source']}); "
          f"scores: FISTA codes (λ={LAM}) on each unit-normed dictionary")
    base = result["baseline"] or "-"
    print(f"{'method':<30}{'library':<14}{'budget':<14}{'fit s':>8}{'× ' + base:>14}{'cos':>7}{'MCC id':>8}"
          f"{'MCC ood':>9}{'train obj':>11}  note")
    for row in result["rows"]:
        s = row["scores"]
        fit = f"{row['fit_s']:8.2f}" if not math.isnan(row["fit_s"]) else f"{'-':>8}"
        ratio = f"{row['ratio']:14.2f}" if not math.isnan(row["ratio"]) else f"{'-':>14}"
        print(f"{row['method']:<30}{row['library']:<14}{row['budget']:<14}{fit}{ratio}{s['mean_cosine']:7.3f}"
              f"{s['mcc_id']:8.3f}{s['mcc_ood']:9.3f}{s['train_objective']:11.5f}  {row['note']}")


# --- main -------------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    return package_versions(("dictlab", "torch", "numpy", "scikit-learn", "spams-bin", "threadpoolctl"))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", default="100,1000", help="num_latents P, comma-separated (default 100,1000)")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"dictlab methods (default {DEFAULT_METHODS})")
    parser.add_argument("--seed", type=int, default=0, help="data and fit seed; sklearn's random_state (default 0)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="passes of every online learner (default: online_dl's own, else 30; --quick: 5)")
    parser.add_argument("--batch-size", type=int, default=None, help="mini-batch of every online learner "
                        "(default: online_dl's own, else 256)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch threads, SPAMS numThreads, BLAS/OpenMP pools (default: the usable cores)")
    parser.add_argument("--sklearn-jobs", type=int, default=None,
                        help="scikit-learn n_jobs in part 2 (default: 1 or --threads, whichever a trial is faster)")
    parser.add_argument("--library-seconds", type=float, default=90.0,
                        help="an external library gets the online learners' epochs unless its warm-up says they "
                        "would take longer than this; then the most whole epochs that fit (default 90)")
    parser.add_argument("--sklearn-epochs", type=int, default=None, help="scikit-learn's passes, outright")
    parser.add_argument("--spams-epochs", type=int, default=None, help="SPAMS's passes, outright")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats in part 1 (default 5; --quick 3)")
    parser.add_argument("--fista-cap", type=int, default=4096, help="most FISTA iterations tried in part 1")
    parser.add_argument("--cd-cap", type=int, default=1000, help="most coordinate-descent max_iter tried in part 1")
    parser.add_argument("--parts", default="coding,learning", help="which parts to run (default coding,learning)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="METHOD.FIELD=VALUE",
                        help="override a dictlab method's hyperparameter (repeatable)")
    parser.add_argument("--quick", action="store_true",
                        help="P=100 only, 5 epochs, short dictlab schedules, 3 repeats (under a minute)")
    parser.add_argument("--out", default=None, help="write every number as JSON to this file")
    args = parser.parse_args()

    sizes = [100] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    parts = {part.strip() for part in args.parts.split(",")}
    unknown_parts = parts - {"coding", "learning"}
    if unknown_parts:
        parser.error(f"--parts takes coding and/or learning, got {', '.join(sorted(unknown_parts))}")
    try:
        overrides = parse_overrides(args.sets, methods)
    except CliError as err:
        parser.error(str(err))
    if args.quick:
        if args.epochs is None:
            args.epochs = QUICK_EPOCHS
        for name, values in QUICK_OVERRIDES.items():
            overrides[name] = {**values, **overrides.get(name, {})}
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    threads = args.threads
    torch.set_num_threads(threads)

    load_start = os.getloadavg()
    print(f"threads: torch {torch.get_num_threads()}, SPAMS numThreads {threads}, BLAS/OpenMP pools {threads}; "
          f"load average at start {load_start[0]:.2f} on {os.cpu_count()} cores")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in _versions().items()))
    if load_start[0] > (os.cpu_count() or 1) - 0.5:
        print(f"WARNING: the machine is busy (load {load_start[0]:.1f} on {os.cpu_count()} cores): times are noisy, "
              "and torch's parallel regions collapse when a thread is descheduled (see docs/architecture.md, "
              "Threads); compare with --threads 1")
    if args.quick and "coding" in parts:
        print("note: --quick leaves out scikit-learn's lasso_lars in part 1 (seconds per call)")
    missing = [m for m in methods if m not in METHODS.names()]
    if missing:
        print(f"note: not registered, skipped: {', '.join(missing)}")

    results: dict[str, Any] = {"coding": {}, "learning": {}}
    started = time.perf_counter()
    with threadpool_limits(limits=threads), quiet():
        for p in sizes:
            data = make_dataset({"generator": "compositional", "num_latents": p}, seed=args.seed)
            if "coding" in parts:
                t0 = time.perf_counter()
                coding = coding_benchmark(data, threads, repeats, args.fista_cap, args.cd_cap,
                                          budget_s=4.0 if args.quick else 10.0, lars=not args.quick)
                coding["wall_s"] = time.perf_counter() - t0
                results["coding"][str(p)] = coding
                print_coding(p, coding, threads)
                print(f"   (part 1 at P={p}: {coding['wall_s']:.0f} s wall)")
            if "learning" in parts:
                t0 = time.perf_counter()
                learning = learning_benchmark(data, methods, args, overrides, threads)
                learning["wall_s"] = time.perf_counter() - t0
                results["learning"][str(p)] = learning
                print_learning(learning)
                print(f"   (part 2 at P={p}: {learning['wall_s']:.0f} s wall)")
    total = time.perf_counter() - started
    load_end = os.getloadavg()
    print(f"\ntotal {total:.0f} s wall; load average at end {load_end[0]:.2f} (1 min), {load_end[1]:.2f} (5 min)")
    if args.out:
        meta = {"args": vars(args), "threads": threads, "versions": _versions(), "lam": LAM,
                "tolerances": list(TOLERANCES), "load_average": {"start": load_start, "end": load_end},
                "total_s": total, "overrides": overrides}
        with open(args.out, "w") as fh:
            json.dump(json_ready({"meta": meta, **results}), fh, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
