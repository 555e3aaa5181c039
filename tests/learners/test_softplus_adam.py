"""Softplus-Adam: the loss decreases, encode solves the equivalent Lasso, the study's LR rule, persistence."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dictlab.data import make_compositional
from dictlab.learners.softplus_adam import AdaptiveLR, SoftplusAdam, SoftplusAdamConfig
from dictlab.models import FitContext, load_model, save_model


@pytest.fixture(scope="module")
def data():
    return make_compositional(num_latents=30, k=3, n_samples=800, seed=2)


@pytest.fixture(scope="module")
def fitted(data):
    return SoftplusAdam(SoftplusAdamConfig(width=30, n_steps=120, encode_iter=2000, log_every=30)).fit(
        data.train.y.double(), FitContext(seed=0, ground_truth=data.dictionary.double())
    )


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 20),
    p=st.integers(1, 15),
    m=st.integers(1, 10),
    lam=st.floats(0.0, 2.0),
    seed=st.integers(0, 10**6),
)
def test_study_loss_is_a_scaled_lasso_with_the_effective_lambda(n, p, m, lam, seed):
    # MSE(ZD, Y) + λ·mean(Z ⊙ ‖D_j‖) = (2/(N m)) Σ_i [½‖y_i − u_i D̂‖² + λ_eff ‖u_i‖₁], u = Z ⊙ ‖D_j‖, λ_eff = λm/(2p)
    g = torch.Generator().manual_seed(seed)
    pre = torch.randn(n, p, generator=g, dtype=torch.float64)
    d = torch.randn(p, m, generator=g, dtype=torch.float64)
    y = torch.randn(n, m, generator=g, dtype=torch.float64)
    config = SoftplusAdamConfig(width=p, lam=lam, objective="study")
    loss = float(SoftplusAdam(config).loss(pre, d, y))
    norms = d.norm(dim=1)
    u = torch.nn.functional.softplus(pre) * norms
    lam_eff = config.effective_lam(m, p)
    assert lam_eff == pytest.approx(lam * m / (2 * p))
    half_squared_error = 0.5 * (y - u @ (d / norms[:, None])).pow(2).sum()
    lasso = half_squared_error + lam_eff * u.sum()
    assert loss == pytest.approx(float(2 / (n * m) * lasso), rel=1e-10, abs=1e-12)
    # the lasso objective is the same problem with λ_eff = λ, averaged over rows
    lasso_config = SoftplusAdamConfig(width=p, lam=lam, objective="lasso")
    per_row = float((half_squared_error + lam * u.sum()) / n)
    assert float(SoftplusAdam(lasso_config).loss(pre, d, y)) == pytest.approx(per_row, rel=1e-10, abs=1e-12)
    assert lasso_config.effective_lam(m, p) == lam


def test_loss_decreases(fitted):
    losses = [entry["loss"] for entry in fitted.history]
    assert [entry["step"] for entry in fitted.history] == [1, 30, 60, 90, 120]
    assert losses[-1] < 0.5 * losses[0]
    assert fitted.history[-1]["mean_cosine"] > fitted.history[0]["mean_cosine"]


def test_encode_solves_the_nonnegative_lasso_at_the_effective_lambda(fitted, data):
    # KKT conditions of min ½‖y − uD̂‖² + λ_eff‖u‖₁, u ≥ 0: g = (y − uD̂)D̂ᵀ equals λ_eff where u > 0, ≤ λ_eff where u = 0
    y = data["ood"].y[:200].double()
    d = fitted.dictionary
    torch.testing.assert_close(d.norm(dim=1), torch.ones(30, dtype=torch.float64))
    lam_eff = fitted.settings.effective_lam(d.shape[1], d.shape[0])
    u = fitted.encode(y)
    assert (u >= 0).all()
    gradient = (y - u @ d) @ d.T
    active = u > 1e-10
    assert (gradient[active] - lam_eff).abs().max() < 1e-5
    assert gradient[~active].max() < lam_eff + 1e-5


def test_adaptive_lr_follows_the_study_rule():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    rule = AdaptiveLR(optimizer)
    rates = []
    for loss in [5.0, 4.0, 4.5, 4.2, 4.1, 3.0]:
        rule.step(loss)
        rates.append(optimizer.param_groups[0]["lr"])
    # better, better, worse, worse (2nd: halve), worse, better
    assert rates == pytest.approx([0.11, 0.121, 0.121, 0.0605, 0.0605, 0.06655])
    for _ in range(100):
        rule.step(0.0 if rule.best > 0 else -float(len(rates)))
        rates.append(optimizer.param_groups[0]["lr"])
    assert max(rates) <= 1.0
    for _ in range(100):
        rule.step(1e9)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-6)


def test_study_preset_runs_the_adaptive_rule(data):
    config = SoftplusAdamConfig.study(width=30, n_steps=30, log_every=10)
    assert (config.lam, config.objective, config.lr) == (0.1, "study", 1e-3)
    assert (config.init_shift, config.adaptive_lr) == (-10.0, True)
    model = SoftplusAdam(config).fit(data.train.y)
    rates = [entry["lr"] for entry in model.history]
    assert rates[0] > 1e-3  # the loss improves at first, so the rate grows ×1.1 per step
    assert model.steps_run == 30


def test_fit_is_deterministic_for_a_seed(data):
    config = SoftplusAdamConfig(width=30, n_steps=20)
    first = SoftplusAdam(config).fit(data.train.y, FitContext(seed=3)).dictionary
    again = SoftplusAdam(config).fit(data.train.y, FitContext(seed=3)).dictionary
    other = SoftplusAdam(config).fit(data.train.y, FitContext(seed=4)).dictionary
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_save_load_gives_identical_codes(fitted, data, tmp_path):
    loaded = load_model(save_model(fitted, tmp_path / "softplus"))
    assert isinstance(loaded, SoftplusAdam)
    y = data["ood"].y[:100].double()
    codes = fitted.encode(y)
    assert torch.equal(loaded.encode(y), codes)
    assert torch.equal(loaded.decode(codes), fitted.decode(codes))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"width": 5, "lam": -1.0}, "lam"),
        ({"width": 0}, "width"),
        ({"width": 5, "lr": 0.0}, "lr"),
        ({"width": 5, "objective": "mse"}, "objective"),
    ],
)
def test_bad_configs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SoftplusAdamConfig(**kwargs)


def test_misuse_is_explained(data):
    with pytest.raises(ValueError, match="width"):
        SoftplusAdam().fit(data.train.y)
    with pytest.raises(ValueError, match="call fit first"):
        SoftplusAdam(SoftplusAdamConfig(width=3)).encode(data.train.y)
