"""The pure helpers of benchmarks/classical_dl.py: the objective, the libraries' parameters and layouts, the search."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("spams")
pytest.importorskip("sklearn")

from sklearn.decomposition import sparse_encode
from sklearn.linear_model import Lasso

from dictlab.inference import fista

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "classical_dl.py"
_SPEC = importlib.util.spec_from_file_location("classical_dl", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
bench = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("classical_dl", bench)  # dataclasses look their module up while the file executes
_SPEC.loader.exec_module(bench)

LAM = 0.1


def _problem(n: int = 12, p: int = 8, m: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    d = rng.standard_normal((p, m))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    z = rng.random((n, p)) * (rng.random((n, p)) < 0.3)
    return z @ d, d


def test_objective_is_the_lasso_of_every_layout() -> None:
    y, d = _problem()
    z = np.abs(np.random.default_rng(1).standard_normal((y.shape[0], d.shape[0])))
    expected = 0.5 * ((y - z @ d) ** 2).sum() + LAM * np.abs(z).sum()
    assert bench.lasso_objective(y, d, z, LAM) == pytest.approx(expected, rel=1e-12)
    assert bench.lasso_objective(torch.tensor(y), torch.tensor(d), torch.tensor(z), LAM) == pytest.approx(expected)


def test_sklearn_alpha_gives_our_problem() -> None:
    """sparse_encode(alpha=λ) and Lasso(alpha=λ/m) on (Dᵀ, y) reach the objective FISTA converges to."""
    y, d = _problem()
    best = bench.lasso_objective(
        y, d, fista(torch.tensor(y), torch.tensor(d), LAM, max_iter=5000, nonneg=True).codes, LAM
    )
    codes = sparse_encode(y, d, algorithm="lasso_lars", alpha=bench.sklearn_alpha(LAM), positive=True)
    assert bench.lasso_objective(y, d, codes, LAM) == pytest.approx(best, rel=1e-9)
    lasso = Lasso(
        alpha=bench.lasso_estimator_alpha(LAM, d.shape[1]),
        fit_intercept=False,
        positive=True,
        tol=1e-12,
        max_iter=100_000,
    )
    direct = np.stack([lasso.fit(d.T, row).coef_ for row in y])
    assert bench.lasso_objective(y, d, direct, LAM) == pytest.approx(best, rel=1e-9)


def test_spams_layout_round_trip() -> None:
    import spams

    y, d = _problem()
    x_sp, d_sp = bench.to_spams(y, d)
    assert x_sp.shape == (y.shape[1], y.shape[0]) and d_sp.shape == (d.shape[1], d.shape[0])
    assert x_sp.flags.f_contiguous and d_sp.flags.f_contiguous
    codes = bench.from_spams_codes(spams.lasso(x_sp, D=d_sp, lambda1=LAM, mode=2, pos=True, numThreads=1))
    assert codes.shape == (y.shape[0], d.shape[0]) and codes.min() >= 0
    lars = sparse_encode(y, d, algorithm="lasso_lars", alpha=LAM, positive=True)
    assert bench.lasso_objective(y, d, codes, LAM) == pytest.approx(bench.lasso_objective(y, d, lars, LAM), rel=1e-9)


def test_smallest_setting_finds_the_threshold_within_ten_percent() -> None:
    calls: list[int] = []

    def objective_at(k: int) -> float:
        calls.append(k)
        return 1.0 + 1.0 / k

    cache: dict[int, float] = {}
    found = bench.smallest_setting(objective_at, 1.0 + 1.0 / 300, 16, 4096, cache)
    assert found is not None and 300 <= found <= 330
    assert len(calls) == len(set(calls)) == len(cache)  # nothing evaluated twice
    assert bench.smallest_setting(objective_at, 1.0, 16, 64, {}) is None
    # from a known failing setting (the looser tolerance's answer) and a hint that already passes
    assert bench.smallest_setting(objective_at, 1.0 + 1.0 / 300, 400, 4096, cache, lo=200, growth=1.5) in range(
        300, 331
    )


def test_budget_helpers() -> None:
    assert bench.spams_iterations(30, 2500, 256) == math.ceil(30 * 2500 / 256)
    # the benchmark's --set is the CLI's
    assert bench.parse_overrides(["dl_fista.max_rounds=50", "mod.coder=omp"], ["dl_fista", "mod"]) == {
        "dl_fista": {"max_rounds": 50},
        "mod": {"coder": "omp"},
    }
    with pytest.raises(bench.CliError, match=r"METHOD\.FIELD=VALUE"):
        bench.parse_overrides(["max_rounds=50"], ["dl_fista"])
    fields = bench.budget_fields({"online_dl": {"epochs": 30, "batch_size": 256, "lam": 0.1}})
    assert fields == {"epochs": 30, "batch_size": 256}
    assert bench.describe_budget(fields) == "30 ep×256"
    assert bench.describe_budget({"max_rounds": 50}) == "≤50 rounds"
    assert bench.capped_epochs(30, 0.1, 10, cap_s=90) == 30  # 30 s fits
    assert bench.capped_epochs(30, 1.7, 10, cap_s=90) == 5  # 17 s per epoch
    assert bench.capped_epochs(30, 100.0, 10, cap_s=90) == 1  # at least one pass
