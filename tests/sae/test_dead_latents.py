"""Dead latents: the exact count, AuxK against a float64 brute force and its gradient, resampling's laws."""

from __future__ import annotations

import pytest
import torch

from dictlab.models import FitContext
from dictlab.sae import MatchingPursuitSAEConfig, ReLUSAEConfig, TopKSAEConfig, TrainConfig, make_sae
from dictlab.sae.base import SparseAutoencoder
from dictlab.sae.dead_latents import (
    DeadLatents,
    Resampler,
    auxk_loss,
    default_k_aux,
    resample_dead_latents,
    sample_losses,
)
from dictlab.sae.training import make_optimizer, make_resampler, train_sae


def positive_data(n: int = 256, m: int = 8, seed: int = 0) -> torch.Tensor:
    """Observations with every coordinate in [0.5, 1.5]: a direction with all-negative entries reads < 0 on all."""
    return 0.5 + torch.rand(n, m, generator=torch.Generator().manual_seed(seed))


def sae_with_dead_latents(d_in: int = 8, d_sae: int = 12, dead: tuple[int, ...] = (2, 5, 9)) -> SparseAutoencoder:
    """A ReLU SAE on ``positive_data``: latents ``dead`` read −1/√m on every coordinate with bias −1 (they never
    fire); the others read +1/√m with bias +1 (they fire on every sample)."""
    sae = make_sae(ReLUSAEConfig(d_in=d_in, d_sae=d_sae))
    with torch.no_grad():
        sign = torch.ones(d_sae)
        sign[list(dead)] = -1.0
        sae.W_enc.copy_(sign.expand(d_in, d_sae) / d_in**0.5)
        sae.b_enc.copy_(sign)
    return sae


def test_dead_latents_count_steps_since_firing_and_a_window_of_steps() -> None:
    dead = DeadLatents(d_sae=3, window=2)
    fire = [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]]
    expected = [[0, 1, 1], [1, 2, 2], [2, 0, 3], [3, 1, 4]]
    for step, (codes, since) in enumerate(zip(fire, expected, strict=True)):
        assert dead.possible == (step >= 2)
        dead.observe(torch.tensor([codes, [0.0, 0.0, 0.0]]))  # a second sample that fires nothing
        assert dead.steps_since_fired.tolist() == since
    assert dead.mask.tolist() == [True, False, True] and dead.count() == 2
    assert dead.indices().tolist() == [0, 2]
    dead.revive(torch.tensor([2]))
    assert dead.log_values() == {"dead_latents": 1.0}


def test_training_counts_latents_whose_encoder_points_away_from_all_data_exactly() -> None:
    y, window = positive_data(), 5
    sae = sae_with_dead_latents()
    config = TrainConfig(n_steps=8, batch_size=64, lr=1e-6, warmup_steps=0, dead_feature_window=window, log_every=1)
    history = train_sae(sae, y, config, FitContext())
    # dead once not fired for `window` steps: after step 5 (1-based) and from then on, exactly the 3 constructed
    assert history.series("dead_latents") == [0.0] * (window - 1) + [3.0] * (8 - window + 1)


# --- AuxK -------------------------------------------------------------------------------------------------


def auxk_brute_force(
    sae: SparseAutoencoder, y: torch.Tensor, residual: torch.Tensor, dead: torch.Tensor, k_aux: int
) -> float:
    """The AuxK term in float64, sample by sample: sort the dead latents' pre-activations, keep the k_aux largest."""
    w_enc, b_enc, w_dec, b_dec = (t.detach().double() for t in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec))
    dead_ids = dead.nonzero().squeeze(1).tolist()
    total = 0.0
    for n in range(y.shape[0]):
        pre = (y[n].double() - b_dec) @ w_enc + b_enc
        chosen = sorted(dead_ids, key=lambda j: -float(pre[j]))[:k_aux]
        estimate = sum((pre[j] * w_dec[j] for j in chosen), torch.zeros(w_dec.shape[1], dtype=torch.float64))
        total += float((estimate - residual[n].double()).pow(2).sum())
    scale = min(len(dead_ids) / k_aux, 1.0)
    return scale * total / (y.shape[0] * w_dec.shape[1])


@pytest.mark.parametrize(("n_dead", "k_aux"), [(7, 3), (2, 4), (0, 4)])
def test_auxk_loss_equals_a_float64_brute_force(n_dead: int, k_aux: int) -> None:
    g = torch.Generator().manual_seed(n_dead)
    sae = make_sae(TopKSAEConfig(d_in=6, d_sae=10, k=2))
    sae.reset_parameters(g)
    with torch.no_grad():
        sae.b_enc.copy_(torch.randn(10, generator=g))
        sae.b_dec.copy_(torch.randn(6, generator=g))
    y, residual = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    dead = torch.zeros(10, dtype=torch.bool)
    dead[torch.randperm(10, generator=g)[:n_dead]] = True
    value = auxk_loss(sae, sae.encoder_input(y), residual, dead, k_aux).detach()
    assert float(value) == pytest.approx(auxk_brute_force(sae, y, residual, dead, k_aux), rel=1e-5, abs=1e-12)
    assert (float(value) == 0.0) == (n_dead == 0)


def test_auxk_gradient_reaches_only_the_dead_latents() -> None:
    g = torch.Generator().manual_seed(1)
    sae = make_sae(TopKSAEConfig(d_in=6, d_sae=10, k=2))
    y, residual = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    dead = torch.zeros(10, dtype=torch.bool)
    dead[[1, 4, 8]] = True  # fewer than k_aux: the selected live latents are masked out
    auxk_loss(sae, sae.encoder_input(y), residual, dead, k_aux=5).backward()
    for grad, axis in ((sae.W_enc.grad, 1), (sae.b_enc.grad, 0), (sae.W_dec.grad, 0)):
        assert grad is not None
        per_latent = grad.abs().movedim(axis, 0).reshape(10, -1).sum(dim=1)  # (d_sae,) |gradient| per latent
        assert torch.equal(per_latent[~dead], torch.zeros(7)) and bool((per_latent[dead] > 0).all())
    assert sae.b_dec.grad is None  # the encoder input and the residual are constants of the term


def test_training_logs_the_auxk_term_and_mp_refuses_it() -> None:
    y = positive_data(m=8)
    config = TrainConfig(n_steps=12, batch_size=64, log_every=4, dead_feature_window=4, aux_loss_coefficient=0.5)
    sae = make_sae(TopKSAEConfig(d_in=8, d_sae=64, k=1), config).fit(y, FitContext(seed=0))
    terms = sae.history.series("auxiliary_reconstruction_loss")
    assert terms[0] == 0.0  # no latent can be dead within the first window of steps
    assert all(t > 0 for t in terms[1:]) and min(sae.history.series("dead_latents")[1:]) > 0
    assert default_k_aux(8) == 4 and default_k_aux(1) == 1
    mp = make_sae(MatchingPursuitSAEConfig(d_in=8, d_sae=16, k=2), config)
    with pytest.raises(ValueError, match=r"aux_loss_coefficient=0\.5: AuxK .* the mp SAE has no encoder"):
        mp.fit(y)


# --- resampling -------------------------------------------------------------------------------------------


def trained_state(sae: SparseAutoencoder, y: torch.Tensor) -> torch.optim.Optimizer:
    """An Adam optimiser after three steps on y, every moment then made non-zero (a dead latent gets no gradient)."""
    optimizer = make_optimizer(sae, TrainConfig(lr=1e-3))
    for _ in range(3):
        optimizer.zero_grad()
        sae(y).loss.backward()
        optimizer.step()
    g = torch.Generator().manual_seed(5)
    for state in optimizer.state.values():
        for key in ("exp_avg", "exp_avg_sq"):
            state[key].add_(torch.rand(state[key].shape, generator=g) + 0.1)
    return optimizer


def test_resampling_revives_every_target_and_leaves_live_latents_bit_identical() -> None:
    y, dead_ids = positive_data(n=64), (2, 5, 9)
    sae = sae_with_dead_latents(dead=dead_ids)
    optimizer = trained_state(sae, y)
    latents = torch.tensor(dead_ids)
    live = torch.tensor([j for j in range(12) if j not in dead_ids])
    before = {name: t.detach().clone() for name, t in sae.tensors().items()}
    moments = {id(p): {k: v.clone() for k, v in s.items()} for p, s in optimizer.state.items()}
    live_norm = torch.linalg.vector_norm(sae.W_enc.detach()[:, live], dim=0).mean()
    result = resample_dead_latents(sae, optimizer, latents, y, None, torch.Generator().manual_seed(0))

    assert torch.equal(result.latents, latents)
    inputs = y[result.rows] - before["b_dec"]  # the centred inputs the latents were set to
    torch.testing.assert_close(sae.W_dec.detach()[latents], inputs / inputs.norm(dim=1, keepdim=True))
    torch.testing.assert_close(sae.W_enc.detach()[:, latents].norm(dim=0), (0.2 * live_norm).expand(3))
    assert torch.equal(sae.b_enc.detach()[latents], torch.zeros(3))
    pre = sae.pre_activation(sae.encoder_input(y[result.rows])).detach()  # (3, 12): row i is latent i's input
    assert bool((pre[torch.arange(3), latents] > 0).all())  # each fires on the input it was set to
    for name, axis in (("W_enc", 1), ("b_enc", 0), ("W_dec", 0)):  # live latents: bit-identical
        assert torch.equal(before[name].index_select(axis, live), sae.tensors()[name].detach().index_select(axis, live))
    assert torch.equal(before["b_dec"], sae.b_dec.detach())
    for param, axis in ((sae.W_enc, 1), (sae.b_enc, 0), (sae.W_dec, 0)):
        for key in ("exp_avg", "exp_avg_sq"):
            now, old = optimizer.state[param][key], moments[id(param)][key]
            assert torch.equal(now.index_select(axis, live), old.index_select(axis, live))
            assert bool((old.index_select(axis, latents) != 0).all())
            assert torch.equal(now.index_select(axis, latents), torch.zeros_like(now.index_select(axis, latents)))


def test_resampling_draws_inputs_with_probability_proportional_to_the_squared_loss() -> None:
    """With a zero encoder every code is 0, so ŷ = b_dec = 0 and the loss of row n is ‖y_n‖² = n + 1."""
    y = torch.zeros(3, 4)
    y[:, 0] = torch.tensor([1.0, 2.0, 3.0]).sqrt()
    sae = make_sae(ReLUSAEConfig(d_in=4, d_sae=3000))
    with torch.no_grad():
        sae.W_enc.zero_()
    torch.testing.assert_close(sample_losses(sae, y, None), torch.tensor([1.0, 2.0, 3.0]))
    optimizer = make_optimizer(sae, TrainConfig())
    result = resample_dead_latents(sae, optimizer, torch.arange(3000), y, None, torch.Generator().manual_seed(0))
    counts = torch.bincount(result.rows, minlength=3).double()
    expected = 3000 * torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64) / 14
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 13.8  # χ²(2) at p = 0.001; probabilities ∝ ℓ (not ℓ²) would give χ² ≈ 500


def test_resampling_schedule_stops_after_its_fraction_of_training() -> None:
    y = positive_data(n=256)
    config = TrainConfig(
        n_steps=40, batch_size=64, lr=1e-6, warmup_steps=0, dead_feature_window=3, log_every=1,
        resample_every=5, resample_stop=0.5, resample_pool=100,
    )  # fmt: skip
    sae = sae_with_dead_latents()
    history = train_sae(sae, y, config, FitContext(seed=0))
    resampled = history.series("resampled_latents")
    assert [i + 1 for i, n in enumerate(resampled) if n > 0] == [5]  # dead from step 3, revived at 5; nothing after
    assert resampled[4] == 3.0 and history.series("dead_latents")[4] == 0.0
    resampler = Resampler(sae, y, None, DeadLatents(12, 3), torch.Generator(), every=5, last_step=20, pool=10,
                          reinit_scale=0.2)  # fmt: skip
    assert [s for s in range(1, 41) if resampler.due(s)] == [5, 10, 15, 20]
    made = make_resampler(sae, y, None, config, FitContext(), DeadLatents(12, 3), total_steps=40)
    assert made is not None and made.last_step == 20 and made.pool == 100
    assert make_resampler(sae, y, None, TrainConfig(), FitContext(), DeadLatents(12, 3), total_steps=40) is None


def test_resampling_an_mp_sae_sets_only_its_decoder_rows() -> None:
    y = positive_data(n=64)
    sae = make_sae(MatchingPursuitSAEConfig(d_in=8, d_sae=12, k=2))
    before = {name: t.detach().clone() for name, t in sae.tensors().items()}
    latents = torch.tensor([0, 7])
    result = resample_dead_latents(sae, make_optimizer(sae, TrainConfig()), latents, y, None, torch.Generator())
    inputs = y[result.rows] - sae.b_dec.detach()
    torch.testing.assert_close(sae.W_dec.detach()[latents], inputs / inputs.norm(dim=1, keepdim=True))
    others = torch.tensor([j for j in range(12) if j not in (0, 7)])
    assert torch.equal(sae.W_dec.detach()[others], before["W_dec"][others])
    assert set(sae.tensors()) == {"W_dec", "b_dec"} and torch.equal(sae.b_dec.detach(), before["b_dec"])
