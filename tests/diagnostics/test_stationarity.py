"""The stationarity residual and the KKT violation against constructed optima, float64 references and the
streaming contract (every input form and chunking gives the one-chunk result)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dictlab.data import SparseCodes
from dictlab.diagnostics import kkt_violation, quantile_summary, sparse_codes, stationarity
from dictlab.diagnostics.codes import code_chunks
from dictlab.inference import least_squares_on_support
from dictlab.learners.dictionary_update import least_squares_dictionary

from .conftest import exact_nonneg_lasso


def _random_rotation(m: int, seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(m, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


# --- stationarity -----------------------------------------------------------------------------------------------


def test_residual_vanishes_at_a_learned_stationary_point(optimum):
    result = stationarity(optimum.y, optimum.codes, optimum.dictionary)
    assert not bool(result.dead.any())
    # measured ~3e-13 (the fixed-point error of the alternating solver); the stated tolerance is 1e-9
    assert float(result.residual.max()) < 1e-9
    assert torch.allclose(result.cosine, torch.ones(6, dtype=torch.float64), atol=1e-12)
    # the joint optimum: d_j·g_j = λ Σ_n z_nj for every atom (the multiplier is λ)
    assert torch.allclose(result.multiplier, torch.full((6,), optimum.lam, dtype=torch.float64), rtol=1e-9)
    assert result.quantiles["max"] == pytest.approx(float(result.residual.max()))


def test_residual_is_large_for_a_rotated_dictionary_with_optimal_codes(optimum):
    # the codes are re-solved for the rotated dictionary, so only the atoms' directions are wrong
    for seed in range(3):
        rotated = optimum.dictionary @ _random_rotation(optimum.y.shape[1], seed)
        codes = exact_nonneg_lasso(optimum.y, rotated, optimum.lam)
        result = stationarity(optimum.y, codes, rotated)
        live = result.residual[~result.dead]
        # measured: median 0.99 over atoms for seeds 0-2, smallest 0.79
        assert float(live.median()) > 0.9
        assert float(live.min()) > 0.3


def test_least_squares_codes_need_the_pull_coherence_not_the_angle():
    """Codes without an L1 term (TopK, OMP) are least squares on their supports, so d_j·g_j = 0: the multiplier
    is 0 and the angle residual is arbitrary. Alternating least squares on fixed supports (codes on the
    supports, then the MOD dictionary, atoms normalised with the codes rescaled: Z D unchanged) converges to
    G = RᵀZ = 0, the stationary point of that problem, which ``pull_coherence`` sees and the residual does not."""
    gen = torch.Generator().manual_seed(0)
    p, m, n = 6, 10, 300
    d = torch.randn(p, m, generator=gen, dtype=torch.float64)
    d /= d.norm(dim=1, keepdim=True)
    support = torch.rand(n, p, generator=gen) < 0.3
    y = (support * (0.5 + torch.rand(n, p, generator=gen, dtype=torch.float64))) @ d
    y += 0.05 * torch.randn(n, m, generator=gen, dtype=torch.float64)
    d = d + 0.1 * torch.randn(p, m, generator=gen, dtype=torch.float64)
    for _ in range(30):
        z = least_squares_on_support(y, d, support)
        d = least_squares_dictionary(z, y, ridge=0.0)
        d = d / d.norm(dim=1, keepdim=True)
    result = stationarity(y, least_squares_on_support(y, d, support), d)
    assert float(result.pull_coherence.max()) < 1e-5  # measured 1e-7 (the solver's ridge of 1e-8)
    assert float(result.multiplier.abs().max()) < 1e-6
    assert float(result.residual.min()) > 0.1  # measured 0.39-0.67: noise, not a verdict


def test_stationarity_matches_a_dense_float64_reference():
    gen = torch.Generator().manual_seed(3)
    n, p, m = 50, 9, 7
    y = torch.randn(n, m, generator=gen, dtype=torch.float64)
    d = 2.0 * torch.randn(p, m, generator=gen, dtype=torch.float64)  # atoms of any norm
    z = torch.relu(torch.randn(n, p, generator=gen, dtype=torch.float64) - 0.8)
    z[:, 4] = 0.0  # a dead atom
    offset = torch.randn(m, generator=gen, dtype=torch.float64)
    inputs = [t.clone() for t in (y, z, d, offset)]
    result = stationarity(y, z, d, offset=offset)
    kkt_violation(y, z, d, lam=0.1, offset=offset, unit_atoms=True)
    assert all(torch.equal(a, b) for a, b in zip(inputs, (y, z, d, offset), strict=True))  # inputs untouched
    g = (y - offset - z @ d).T @ z  # (m, p): column j is g_j
    unit = d / d.norm(dim=1, keepdim=True)
    for j in range(p):
        if j == 4:
            assert result.dead[j] and math.isnan(float(result.residual[j])) and math.isnan(float(result.multiplier[j]))
            continue
        gj = g[:, j]
        tangential = gj - (unit[j] @ gj) * unit[j]
        assert float(result.residual[j]) == pytest.approx(float(tangential.norm() / gj.norm()), rel=1e-12)
        assert float(result.cosine[j]) == pytest.approx(float(unit[j] @ gj / gj.norm()), rel=1e-12)
        assert float(result.multiplier[j]) == pytest.approx(float(unit[j] @ gj / z[:, j].sum()), rel=1e-12)
        spread = (z[:, j] * (y - offset - z @ d).norm(dim=1)).sum()
        assert float(result.pull_coherence[j]) == pytest.approx(float(gj.norm() / spread), rel=1e-12)
    torch.testing.assert_close(result.pull, g.T, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(result.usage, (z != 0).double().mean(0))
    assert result.summary()["dead_atoms"] == 1


def test_residual_does_not_depend_on_how_scale_is_split_between_codes_and_atoms(optimum):
    scale = torch.linspace(0.3, 3.0, 6, dtype=torch.float64)
    base = stationarity(optimum.y, optimum.codes, optimum.dictionary)
    scaled = stationarity(optimum.y, optimum.codes * scale, optimum.dictionary / scale[:, None])
    torch.testing.assert_close(scaled.residual, base.residual, rtol=0, atol=1e-12)
    torch.testing.assert_close(scaled.multiplier, base.multiplier, rtol=1e-10, atol=0)


# --- KKT violation ----------------------------------------------------------------------------------------------


def test_kkt_violation_vanishes_for_exact_lasso_codes_and_lambda_is_recovered(optimum):
    given = kkt_violation(optimum.y, optimum.codes, optimum.dictionary, lam=optimum.lam)
    assert given.quantiles["max"] < 1e-9  # measured 8e-15
    assert float(given.atom_max.max()) < 1e-9
    estimated = kkt_violation(optimum.y, optimum.codes, optimum.dictionary)
    assert estimated.lam_estimated and not given.lam_estimated
    assert estimated.lam == pytest.approx(optimum.lam, rel=0.01)  # measured: to 1e-12
    assert estimated.quantiles["max"] < 1e-9


def test_kkt_violation_is_large_for_halved_codes(optimum):
    half = 0.5 * optimum.codes
    given = kkt_violation(optimum.y, half, optimum.dictionary, lam=optimum.lam)
    # measured: the median sample's worst entry is 5.1 λ off, active entries 4.9 λ on average
    assert given.quantiles["median"] > 1.0
    assert given.active_mean > 1.0
    best = kkt_violation(optimum.y, half, optimum.dictionary)
    # even the best-fitting λ (0.58 here) leaves the active entries 33 % of λ off on average
    assert best.lam > 2 * optimum.lam
    assert best.active_mean > 0.1


def _kkt_reference(y, z, d, lam, nonneg):
    c = (y - z @ d) @ d.T
    if nonneg:
        v = torch.where(z > 0, (c - lam).abs(), (c - lam).clamp_min(0))
    else:
        v = torch.where(z != 0, (c - lam * torch.sign(z)).abs(), (c.abs() - lam).clamp_min(0))
    return v / lam


@pytest.mark.parametrize("nonneg", [True, False])
def test_kkt_violation_matches_a_dense_float64_reference(nonneg):
    gen = torch.Generator().manual_seed(5)
    n, p, m, lam = 40, 12, 8, 0.2
    d = torch.randn(p, m, generator=gen, dtype=torch.float64)
    z = torch.randn(n, p, generator=gen, dtype=torch.float64)
    z = torch.where(z.abs() > 1.0, z if not nonneg else z.abs(), 0.0)
    # codes too small for y, so that some λ > 0 fits them (the estimate is positive)
    y = 1.3 * z @ d + 0.1 * torch.randn(n, m, generator=gen, dtype=torch.float64)
    ref = _kkt_reference(y, z, d, lam, nonneg)
    result = kkt_violation(y, z, d, lam=lam, nonneg=nonneg, rows_per_chunk=7)
    torch.testing.assert_close(result.sample_max, ref.amax(1))
    torch.testing.assert_close(result.sample_mean, ref.mean(1))
    torch.testing.assert_close(result.atom_max, ref.amax(0))
    torch.testing.assert_close(result.atom_mean, ref.mean(0))
    active = z != 0
    assert result.mean == pytest.approx(float(ref.mean()), rel=1e-12)
    assert result.active_mean == pytest.approx(float(ref[active].mean()), rel=1e-12)
    assert result.inactive_mean == pytest.approx(float(ref[~active].mean()), rel=1e-12)
    assert result.n_active == int(active.sum())
    c = (y - z @ d) @ d.T
    lam_hat = (c[active] * (1.0 if nonneg else torch.sign(z[active]))).median()
    assert kkt_violation(y, z, d, nonneg=nonneg).lam == pytest.approx(float(lam_hat), rel=1e-12)


def test_unit_atoms_measures_the_unit_norm_problem(optimum):
    # scaling atoms by s and codes by 1/s changes the Lasso as given, not the unit-norm one
    scale = torch.linspace(0.5, 2.0, 6, dtype=torch.float64)
    d, z = optimum.dictionary * scale[:, None], optimum.codes / scale
    assert kkt_violation(optimum.y, z, d, lam=optimum.lam).quantiles["max"] > 0.1
    unit = kkt_violation(optimum.y, z, d, lam=optimum.lam, unit_atoms=True)
    assert unit.quantiles["max"] < 1e-9


def test_kkt_with_an_offset_equals_kkt_on_centred_data(optimum):
    offset = torch.linspace(-1, 1, optimum.y.shape[1], dtype=torch.float64)
    shifted = kkt_violation(optimum.y + offset, optimum.codes, optimum.dictionary, lam=optimum.lam, offset=offset)
    assert shifted.quantiles["max"] < 1e-9


# --- streaming: every input form, any chunking ------------------------------------------------------------------


def _forms(z: torch.Tensor):
    k = int((z != 0).sum(1).max())
    _, indices = z.abs().topk(k, dim=1)
    as_sparse_codes = SparseCodes(indices, torch.gather(z, 1, indices), z.shape[1])
    assert torch.equal(as_sparse_codes.to_dense(), z)
    return {
        "dense": z,
        "numpy": z.numpy(),
        "coo": z.to_sparse(),
        "csr": z.to_sparse_csr(),
        "sparse_codes": as_sparse_codes,
        "encoder": lambda rows: z[_row_lookup(rows)],
        "encoder_sparse": lambda rows: z[_row_lookup(rows)].to_sparse(),
    }


_Y: dict[str, torch.Tensor] = {}


def _row_lookup(rows: torch.Tensor) -> torch.Tensor:
    """Which rows of the stored y an encoder was called on (it gets observation rows, not indices)."""
    y = _Y["y"]
    match = (rows[:, None, :] == y[None, :, :]).all(-1).double().argmax(1)
    return match


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("form", ["dense", "numpy", "coo", "csr", "sparse_codes", "encoder", "encoder_sparse"])
def test_streaming_equals_one_chunk_for_every_input_form(form):
    gen = torch.Generator().manual_seed(11)
    n, p, m = 45, 10, 6
    d = torch.randn(p, m, generator=gen, dtype=torch.float64)
    z = torch.relu(torch.randn(n, p, generator=gen, dtype=torch.float64) - 0.5)
    y = 1.5 * z @ d + 0.1 * torch.randn(n, m, generator=gen, dtype=torch.float64)
    _Y["y"] = y
    codes = _forms(z)[form]
    reference_s = stationarity(y, z, d, rows_per_chunk=n)
    reference_k = kkt_violation(y, z, d, rows_per_chunk=n)
    for rows in (1, 7, n):
        s = stationarity(y, codes, d, rows_per_chunk=rows)
        k = kkt_violation(y, codes, d, rows_per_chunk=rows)
        for name in ("residual", "cosine", "multiplier", "pull_coherence", "usage", "mass", "pull"):
            torch.testing.assert_close(
                getattr(s, name), getattr(reference_s, name), rtol=1e-10, atol=1e-10, equal_nan=True
            )
        assert torch.equal(s.dead, reference_s.dead)
        assert k.lam == pytest.approx(reference_k.lam, rel=1e-10)
        for name in ("sample_max", "sample_mean", "atom_max", "atom_mean"):
            torch.testing.assert_close(getattr(k, name), getattr(reference_k, name), rtol=1e-10, atol=1e-10)
        assert k.mean == pytest.approx(reference_k.mean, rel=1e-10)


def test_sparse_codes_of_an_encoder_equals_the_dense_codes():
    gen = torch.Generator().manual_seed(2)
    y = torch.randn(23, 5, generator=gen, dtype=torch.float64)
    w = torch.randn(5, 9, generator=gen, dtype=torch.float64)
    encoded = sparse_codes(lambda rows: torch.relu(rows @ w), 23, y=y, rows_per_chunk=4)
    assert encoded.layout == torch.sparse_coo and encoded.shape == (23, 9)
    torch.testing.assert_close(encoded.to_dense(), torch.relu(y @ w), rtol=0, atol=0)


def test_stationarity_never_forms_a_dense_block_for_sparse_codes():
    # every chunk of SparseCodes input holds only its non-zeros: N·k entries in all
    gen = torch.Generator().manual_seed(0)
    indices = torch.stack([torch.randperm(1000, generator=gen)[:3] for _ in range(20)])
    codes = SparseCodes(indices, torch.rand(20, 3, generator=gen), 1000)
    chunks = list(code_chunks(codes, 20, num_latents=1000, rows_per_chunk=6))
    assert [c.n for c in chunks] == [6, 6, 6, 2]
    assert sum(c.val.numel() for c in chunks) == 60


# --- bad input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda y, z, d: stationarity(y, z[:, :3], d), "codes must have 4 columns"),
        (lambda y, z, d: stationarity(y, z[:5], d), "codes must have 10 rows"),
        (lambda y, z, d: stationarity(y, z, d[:, :2]), "dictionary must have 3 columns"),
        (lambda y, z, d: stationarity(y, "codes", d), "codes must be a dense or sparse (N, p) tensor"),
        (lambda y, z, d: stationarity(y, z, d, offset=torch.zeros(5)), "offset must be a finite"),
        (lambda y, z, d: stationarity(y, lambda rows: "x", d), "the encoder's output for rows 0:10"),
        (lambda y, z, d: stationarity(y, z.to_sparse(), d[:3]), "codes must have shape (10, 3)"),
        (lambda y, z, d: kkt_violation(y, z, d, lam=-1.0), "lam must be > 0"),
        (lambda y, z, d: kkt_violation(y, -z, d, lam=0.1), "nonneg=True but rows 0:10 have negative codes"),
        (lambda y, z, d: kkt_violation(y, z * 0, d), "cannot estimate λ, the codes have no active entry"),
        (lambda y, z, d: kkt_violation(y * 0, z, d), "no λ > 0 makes these codes optimal"),
        (
            lambda y, z, d: stationarity(y, SparseCodes(torch.zeros(10, 1, dtype=torch.long), torch.ones(10, 1), 7), d),
            "codes must have 4 latents",
        ),
        (lambda y, z, d: stationarity(y, z, d, rows_per_chunk=0), "rows_per_chunk must be >= 1"),
    ],
)
def test_bad_input_is_one_line_naming_the_parameter(call, message):
    gen = torch.Generator().manual_seed(0)
    y, d = torch.randn(10, 3, generator=gen), torch.randn(4, 3, generator=gen)
    z = torch.rand(10, 4, generator=gen)
    with pytest.raises(ValueError) as err:
        call(y, z, d)
    assert message in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_quantile_summary_matches_numpy():
    values = torch.tensor([3.0, 1.0, math.nan, 2.0, 10.0])
    out = quantile_summary(values)
    finite = np.array([3.0, 1.0, 2.0, 10.0])
    for name, q in (("q05", 0.05), ("q25", 0.25), ("median", 0.5), ("q95", 0.95), ("max", 1.0)):
        assert out[name] == pytest.approx(float(np.quantile(finite, q)))
    assert math.isnan(quantile_summary(torch.tensor([math.nan]))["median"])
