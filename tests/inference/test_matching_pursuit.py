"""Matching pursuit: monotone residual, orthogonality to the chosen atom, exact recovery, gradients, tol."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dictlab.inference import matching_pursuit


def _unit_dictionary(p: int, m: int, g: torch.Generator) -> torch.Tensor:
    d = torch.randn(p, m, generator=g, dtype=torch.float64)
    return d / d.norm(dim=1, keepdim=True)


def _reference_mp(
    y: torch.Tensor, d: torch.Tensor, n_steps: int, tol: float | None, absolute: bool, allow_reselect: bool
) -> torch.Tensor:
    """Textbook per-sample loop of Algorithm 1 (MP-SAE paper), in float64."""
    codes = torch.zeros(y.shape[0], d.shape[0], dtype=torch.float64)
    for i in range(y.shape[0]):
        r = y[i].clone()
        chosen: set[int] = set()
        for _ in range(n_steps):
            if tol is not None and r.norm() <= tol * y[i].norm():
                break
            s = d @ r
            score = s.abs() if absolute else s.clone()
            for j in chosen if not allow_reselect else ():
                score[j] = float("-inf")
            j = int(score.argmax())
            codes[i, j] += s[j]
            r = r - s[j] * d[j]
            chosen.add(j)
    return codes


@settings(max_examples=25, deadline=None)
@given(
    p=st.integers(2, 24),
    m=st.integers(1, 10),
    n_steps=st.integers(1, 8),
    absolute=st.booleans(),
    allow_reselect=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_residual_never_grows_and_is_orthogonal_to_the_new_atom(p, m, n_steps, absolute, allow_reselect, seed):
    g = torch.Generator().manual_seed(seed)
    d = _unit_dictionary(p, m, g)
    y = torch.randn(5, m, generator=g, dtype=torch.float64) * 3
    n_steps = min(n_steps, p) if not allow_reselect else n_steps
    previous_codes = torch.zeros(5, p, dtype=torch.float64)
    previous_norm = y.norm(dim=1)
    for t in range(1, n_steps + 1):
        # MP with t steps is the first t steps of MP with more steps, so this walks one run step by step.
        codes = matching_pursuit(y, d, t, absolute=absolute, allow_reselect=allow_reselect).codes
        residual = y - codes @ d
        norm = residual.norm(dim=1)
        assert bool((norm <= previous_norm + 1e-10).all())
        step = codes - previous_codes
        assert bool(((step != 0).sum(dim=1) <= 1).all())  # one atom per step
        # ‖r_t‖² = ‖r_{t−1}‖² − s_j² for unit atoms, and r_t ⟂ D_j. A zero step (the signed argmax re-picking
        # the atom just used, whose correlation is 0) leaves r unchanged; only moved samples name an atom.
        expected = previous_norm.square() - step.square().sum(dim=1)
        torch.testing.assert_close(norm.square(), expected, atol=1e-9, rtol=0)
        moved = step.abs().sum(dim=1) > 0
        atom = step.abs().argmax(dim=1)[moved]
        overlap = (residual[moved] * d[atom]).sum(dim=1)
        torch.testing.assert_close(overlap, torch.zeros_like(overlap), atol=1e-10, rtol=0)
        previous_codes, previous_norm = codes, norm
    if not allow_reselect:
        assert bool(((previous_codes != 0).sum(dim=1) <= n_steps).all())


@pytest.mark.parametrize(("absolute", "allow_reselect"), [(False, True), (True, True), (True, False), (False, False)])
@pytest.mark.parametrize("tol", [None, 0.4])
def test_batched_codes_equal_the_per_sample_loop(absolute, allow_reselect, tol):
    g = torch.Generator().manual_seed(7)
    d = _unit_dictionary(15, 6, g)
    y = torch.randn(12, 6, generator=g, dtype=torch.float64)
    result = matching_pursuit(y, d, 6, tol=tol, absolute=absolute, allow_reselect=allow_reselect)
    expected = _reference_mp(y, d, 6, tol, absolute, allow_reselect)
    torch.testing.assert_close(result.codes, expected, atol=1e-12, rtol=0)


def test_tol_freezes_samples_and_reports_steps():
    g = torch.Generator().manual_seed(1)
    d = _unit_dictionary(40, 8, g)
    y = torch.randn(20, 8, generator=g, dtype=torch.float64)
    result = matching_pursuit(y, d, 200, tol=0.2)
    residual = (y - result.codes @ d).norm(dim=1)
    assert result.converged and 0 < result.n_iter < 200
    assert bool((residual <= 0.2 * y.norm(dim=1)).all())
    # The last sample to converge needed exactly n_iter steps: one step fewer leaves someone above tol.
    fewer = matching_pursuit(y, d, result.n_iter - 1)
    assert bool(((y - fewer.codes @ d).norm(dim=1) > 0.2 * y.norm(dim=1)).any())
    capped = matching_pursuit(y, d, 2, tol=1e-6)
    assert capped.n_iter == 2 and not capped.converged
    assert not matching_pursuit(y, d, 3).converged


@pytest.mark.parametrize("allow_reselect", [True, False])
def test_orthonormal_dictionary_recovers_sparse_codes_exactly(allow_reselect):
    g = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    z = torch.zeros(30, 12, dtype=torch.float64)
    support = torch.rand(30, 12, generator=g).argsort(dim=1)[:, :4]
    z.scatter_(1, support, torch.randn(30, 4, generator=g, dtype=torch.float64))
    codes = matching_pursuit(z @ q, q, 4, absolute=True, allow_reselect=allow_reselect).codes
    torch.testing.assert_close(codes, z, atol=1e-12, rtol=0)


def test_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(5)
    d = _unit_dictionary(6, 4, g).requires_grad_(True)
    y = torch.randn(3, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    # gradcheck's 1e-6 perturbations must not flip an argmax: make sure every selection has a clear margin.
    with torch.no_grad():
        r = y.clone()
        for _ in range(3):
            s = (r @ d.T).abs()
            top2 = s.topk(2, dim=1).values
            assert bool((top2[:, 0] - top2[:, 1] > 1e-3).all())
            j = s.argmax(dim=1)
            r -= (r * d[j]).sum(dim=1, keepdim=True) * d[j]

    def codes(y_: torch.Tensor, d_: torch.Tensor) -> torch.Tensor:
        return matching_pursuit(y_, d_, 3, absolute=True).codes

    assert torch.autograd.gradcheck(codes, (y, d), eps=1e-6, atol=1e-7)
    loss = (y - codes(y, d) @ d).square().sum()
    loss.backward()
    assert d.grad is not None and float(d.grad.abs().sum()) > 0
    assert y.grad is not None and float(y.grad.abs().sum()) > 0


def test_follows_input_dtype_and_rejects_bad_input():
    g = torch.Generator().manual_seed(0)
    d = _unit_dictionary(10, 5, g)
    y = torch.randn(4, 5, generator=g)
    assert matching_pursuit(y, d, 3).codes.dtype == torch.float32
    assert bool((matching_pursuit(y, d, 0).codes == 0).all())
    with pytest.raises(ValueError, match=r"unit norm.*row 2"):
        bad = d.clone()
        bad[2] *= 1.01
        matching_pursuit(y, bad, 3)
    with pytest.raises(ValueError, match="n_steps"):
        matching_pursuit(y, d, 11, allow_reselect=False)
    with pytest.raises(ValueError, match="n_steps"):
        matching_pursuit(y, d, -1)
    with pytest.raises(ValueError, match="tol"):
        matching_pursuit(y, d, 3, tol=0.0)
    with pytest.raises(ValueError, match="dictionary must have 5 columns"):
        matching_pursuit(y, d[:, :4], 3)
    with pytest.raises(ValueError, match="y contains NaN"):
        matching_pursuit(y.masked_fill(y > 1, float("nan")), d, 3)
