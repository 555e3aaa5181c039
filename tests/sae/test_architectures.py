"""The sparsity mechanisms against float64 references computed independently of the module."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dictlab.inference.matching_pursuit import matching_pursuit
from dictlab.sae import (
    SAE_ARCHITECTURES,
    BatchTopKSAEConfig,
    JumpReLUSAEConfig,
    MatchingPursuitSAEConfig,
    ReLUSAEConfig,
    SAEConfig,
    SparseAutoencoder,
    TopKSAEConfig,
    TrainConfig,
    make_sae,
    sae_config_class,
)
from dictlab.sae.jumprelu import JumpReLUFunction

ARCHITECTURES = ["relu", "topk", "batchtopk", "jumprelu", "mp"]


def sae_config(architecture: str, d_in: int = 12, d_sae: int = 30, k: int = 4, **fields) -> SAEConfig:
    """The architecture's config; ``k`` is passed only to configs that have it."""
    cls = sae_config_class(architecture)
    return cls(d_in=d_in, d_sae=d_sae, **({"k": k} if "k" in cls.model_fields else {}), **fields)


def random_sae(
    architecture: str, d_in: int = 12, d_sae: int = 30, k: int = 4, seed: int = 0, **fields
) -> SparseAutoencoder:
    """An SAE in float64 with random (non-initial) parameters: non-unit decoder rows, non-zero biases."""
    sae = make_sae(sae_config(architecture, d_in, d_sae, k, **fields)).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
        if architecture == "jumprelu":
            sae.log_threshold.fill_(math.log(0.3))
    return sae


def pre_activations(sae: SparseAutoencoder, y: torch.Tensor) -> torch.Tensor:
    return (y - sae.b_dec.detach()) @ sae.W_enc.detach() + sae.b_enc.detach()


def test_registry_holds_every_architecture() -> None:
    # the contract tests below run on these five; seed 004's three have their own files (test_matryoshka.py, …)
    assert SAE_ARCHITECTURES.names() == sorted([*ARCHITECTURES, "crosscoder", "matryoshka_batchtopk", "transcoder"])


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_dictionary_model_contract(architecture: str) -> None:
    sae = random_sae(architecture)
    y = torch.randn(9, 12, dtype=torch.float64)
    sae.eval()
    out = sae(y)
    codes = sae.encode(y)
    assert codes.shape == (9, 30)
    torch.testing.assert_close(codes, out.codes)
    torch.testing.assert_close(sae.decode(codes), out.reconstruction)
    torch.testing.assert_close(out.losses["mse_loss"], (out.reconstruction - y).pow(2).mean())
    assert sae.dictionary.shape == (30, 12) and not sae.dictionary.requires_grad
    torch.testing.assert_close(sae.offset, sae.b_dec.detach())
    assert sae.training is False


# The loss terms each architecture reports, under SAELens's names.
LOSS_TERMS = {
    "relu": ["mse_loss", "l1_loss"],
    "topk": ["mse_loss"],
    "batchtopk": ["mse_loss"],
    "jumprelu": ["mse_loss", "l0_loss"],
    "mp": ["mse_loss"],
}


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_loss_is_the_sum_of_the_named_terms(architecture: str, training: bool) -> None:
    sae = random_sae(architecture, d_sae=60, k=2)  # d_sae ≥ 2·k·d_in: topk and batchtopk train on the gathered path
    y = torch.randn(9, 12, dtype=torch.float64)
    sae.train(training)
    out = sae(y)
    assert list(out.losses) == LOSS_TERMS[architecture]
    assert all(term.shape == () for term in out.losses.values())
    torch.testing.assert_close(out.loss, sum(out.losses.values()), rtol=0, atol=0)
    torch.testing.assert_close(out.losses["mse_loss"], (out.reconstruction - y).pow(2).mean())
    out.loss.backward()
    assert sae.W_dec.grad is not None and bool(sae.W_dec.grad.abs().sum() > 0)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_encode_on_an_empty_batch(architecture: str) -> None:
    sae = random_sae(architecture)
    for dtype in (torch.float32, torch.float64):
        codes = sae.encode(torch.zeros(0, 12, dtype=dtype))
        assert codes.shape == (0, 30) and codes.dtype == torch.float64


def test_relu_codes_and_l1_loss() -> None:
    sae = random_sae("relu", l1_coefficient=0.25)
    y = torch.randn(7, 12, dtype=torch.float64)
    expected = torch.relu(pre_activations(sae, y))
    out = sae(y)
    torch.testing.assert_close(out.codes, expected)
    # λ · mean_b Σ_j z_bj ‖W_dec_j‖, the row norms being those of the (non-unit) random decoder
    norms = [math.sqrt(sum(float(w) ** 2 for w in row)) for row in sae.W_dec.detach()]
    by_hand = 0.25 * sum(sum(float(z) * n for z, n in zip(row, norms, strict=True)) for row in expected) / 7
    assert out.losses["l1_loss"].item() == pytest.approx(by_hand, rel=1e-12)
    mse = float(((out.reconstruction.detach() - y) ** 2).sum()) / (7 * 12)
    assert out.loss.item() == pytest.approx(mse + by_hand, rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 9), d_sae=st.integers(2, 40), k_frac=st.floats(0.0, 1.0), seed=st.integers(0, 10_000))
def test_topk_codes_are_the_k_largest_relu_pre_activations(n: int, d_sae: int, k_frac: float, seed: int) -> None:
    k = 1 + int(k_frac * (d_sae - 1))
    sae = random_sae("topk", d_sae=d_sae, k=k, seed=seed)
    y = torch.randn(n, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    codes = sae.encode(y)
    pre = pre_activations(sae, y)
    assert bool(((codes != 0).sum(dim=1) <= k).all())
    for row in range(n):
        order = pre[row].argsort(descending=True)
        expected = torch.zeros(d_sae, dtype=torch.float64)
        expected[order[:k]] = torch.relu(pre[row, order[:k]])
        torch.testing.assert_close(codes[row], expected)


@pytest.mark.parametrize("architecture", ["topk", "batchtopk"])
def test_gathered_training_forward_equals_dense(architecture: str) -> None:
    sae = random_sae(architecture, d_sae=40, k=3)
    y = torch.randn(16, 12, dtype=torch.float64)
    sae.train()
    gathered = sae.forward_gathered(y)
    gathered.loss.backward()
    grads = [p.grad.clone() for p in sae.parameters()]
    sae.zero_grad()
    dense = SparseAutoencoder.forward(sae, y)
    dense.loss.backward()
    torch.testing.assert_close(gathered.codes, dense.codes)
    torch.testing.assert_close(gathered.reconstruction, dense.reconstruction)
    assert list(gathered.losses) == list(dense.losses) == ["mse_loss"]
    torch.testing.assert_close(gathered.losses["mse_loss"], dense.losses["mse_loss"])
    for grad, p in zip(grads, sae.parameters(), strict=True):
        torch.testing.assert_close(grad, p.grad)


def test_batchtopk_keeps_exactly_k_times_batch_in_training() -> None:
    sae = random_sae("batchtopk", d_sae=30, k=4)
    with torch.no_grad():
        sae.b_enc.fill_(10.0)  # every pre-activation positive, so k·B of them can be kept
    y = torch.randn(11, 12, dtype=torch.float64)
    sae.train()
    codes = sae(y).codes
    assert int((codes != 0).sum()) == 4 * 11
    per_sample = (codes != 0).sum(dim=1)
    assert per_sample.max() > per_sample.min()  # a batch budget, not a per-sample one
    pre = pre_activations(sae, y)
    kth_largest = pre.flatten().sort(descending=True).values[4 * 11 - 1]
    torch.testing.assert_close(codes, torch.where(pre >= kth_largest, pre, 0.0))


def test_batchtopk_threshold_is_a_running_mean_of_the_smallest_kept_activation() -> None:
    sae = random_sae("batchtopk", d_sae=30, k=4, topk_threshold_lr=0.25)
    sae.reset_sparsity_state()
    y1, y2 = torch.randn(8, 12, dtype=torch.float64), torch.randn(8, 12, dtype=torch.float64)
    sae.train()
    smallest = []
    for y in (y1, y2):
        codes = sae(y).codes.detach()
        smallest.append(float(codes[codes > 0].min()))
    expected = smallest[0] + 0.25 * (smallest[1] - smallest[0])  # first batch sets θ, then EMA
    torch.testing.assert_close(sae.threshold, torch.full((30,), expected, dtype=torch.float64))
    sae.eval()
    y = torch.randn(20, 12, dtype=torch.float64)
    pre = pre_activations(sae, y)
    torch.testing.assert_close(sae.encode(y), torch.where(pre > expected, pre, 0.0))


def test_jumprelu_straight_through_gradients_on_a_hand_example() -> None:
    eps = 0.2
    theta = torch.tensor([0.5, 1.0], dtype=torch.float64, requires_grad=True)
    pre = torch.tensor([[0.45, 1.05], [0.62, 0.50], [0.55, 1.30]], dtype=torch.float64, requires_grad=True)
    codes, step = JumpReLUFunction.apply(pre, theta, eps)
    expected_codes = torch.tensor([[0.0, 1.05], [0.62, 0.0], [0.55, 1.30]], dtype=torch.float64)
    torch.testing.assert_close(codes.detach(), expected_codes)
    torch.testing.assert_close(step.detach(), torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64))
    # Inside the kernel |pre − θ| ≤ ε/2 = 0.1: latent 0 rows 0 and 2, latent 1 row 0.
    (grad_codes,) = torch.autograd.grad(codes.sum(), theta, retain_graph=True)
    torch.testing.assert_close(grad_codes, torch.tensor([-(0.5 / eps) * 2, -(1.0 / eps) * 1], dtype=torch.float64))
    (grad_step,) = torch.autograd.grad(step.sum(), theta, retain_graph=True)
    torch.testing.assert_close(grad_step, torch.tensor([-(1 / eps) * 2, -(1 / eps) * 1], dtype=torch.float64))
    (grad_pre,) = torch.autograd.grad(codes.sum() + step.sum(), pre)
    torch.testing.assert_close(grad_pre, step.detach())  # no straight-through gradient of the step to pre


def test_jumprelu_sae_threshold_gradient_and_zero_codes_below_threshold() -> None:
    sae = make_sae(JumpReLUSAEConfig(d_in=2, d_sae=2, l0_coefficient=0.3, jumprelu_bandwidth=0.2)).double()
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(2))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.log_threshold.copy_(torch.tensor([0.5, 1.0]).log())
    y = torch.tensor([[0.45, 1.05], [0.62, 0.50], [0.55, 1.30]], dtype=torch.float64)  # pre = y
    codes = sae.encode(y)
    assert bool((codes[y <= sae.threshold.detach()] == 0).all())
    torch.testing.assert_close(codes[y > sae.threshold.detach()], y[y > sae.threshold.detach()])
    sae.train()
    out = sae(y)
    torch.testing.assert_close(out.losses["l0_loss"], 0.3 * torch.tensor(4.0 / 3, dtype=torch.float64))
    out.losses["l0_loss"].backward()
    # ∂/∂log θ = θ · ∂/∂θ; the L0 penalty is 0.3 · mean over the 3 samples; kernel counts (2, 1).
    expected = torch.tensor([0.5 * -(1 / 0.2) * 2, 1.0 * -(1 / 0.2) * 1], dtype=torch.float64) * 0.3 / 3
    torch.testing.assert_close(sae.log_threshold.grad, expected)


@pytest.mark.parametrize(("absolute", "reselect"), [(False, True), (True, False)])
def test_mp_sae_codes_are_matching_pursuit_on_the_normalised_decoder(absolute: bool, reselect: bool) -> None:
    sae = random_sae("mp", d_sae=25, k=15, mp_absolute=absolute, mp_allow_reselect=reselect)
    assert not hasattr(sae, "W_enc")
    y = torch.randn(10, 12, dtype=torch.float64)
    w = sae.W_dec.detach()
    unit = w / w.norm(dim=1, keepdim=True)
    expected = matching_pursuit(y - sae.b_dec.detach(), unit, 15, absolute=absolute, allow_reselect=reselect).codes
    torch.testing.assert_close(sae.encode(y), expected)
    torch.testing.assert_close(sae.dictionary, unit)
    torch.testing.assert_close(sae.decode(expected), expected @ unit + sae.b_dec.detach())


def test_mp_sae_trains_the_decoder_through_matching_pursuit() -> None:
    sae = random_sae("mp", d_sae=25, k=3)
    out = sae(torch.randn(10, 12, dtype=torch.float64))
    out.loss.backward()
    assert sae.W_dec.grad is not None and float(sae.W_dec.grad.abs().sum()) > 0
    assert sae.b_dec.grad is not None and float(sae.b_dec.grad.abs().sum()) > 0


def test_initialisation_is_the_studys() -> None:
    sae = make_sae(ReLUSAEConfig(d_in=50, d_sae=400))
    w_enc, w_dec = sae.W_enc.detach(), sae.W_dec.detach()
    bound = 1 / math.sqrt(50)
    assert float(w_enc.abs().max()) <= bound
    assert float(w_enc.abs().max()) > 0.95 * bound
    torch.testing.assert_close(w_dec, w_enc.T / w_enc.T.norm(dim=1, keepdim=True))
    assert not sae.b_enc.detach().any() and not sae.b_dec.detach().any()


def test_every_architecture_starts_from_the_same_decoder() -> None:
    decoders = [make_sae(sae_config(a, d_in=8, d_sae=20, k=3)).W_dec.detach() for a in ARCHITECTURES]
    for d in decoders[1:]:
        torch.testing.assert_close(d, decoders[0])


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"k\n.*Field required"):
        TopKSAEConfig(d_in=4, d_sae=8)
    allowed = "allowed: batchtopk, crosscoder, jumprelu, matryoshka_batchtopk, mp, relu, topk, transcoder"
    with pytest.raises(ValueError, match=f"unknown SAE architecture 'gated'; {allowed}"):
        sae_config_class("gated")
    with pytest.raises(ValueError, match="k=9 must be at most d_sae=8"):
        MatchingPursuitSAEConfig(d_in=4, d_sae=8, k=9)
    with pytest.raises(ValueError, match="k=9 must be at most d_sae=8"):
        BatchTopKSAEConfig(d_in=4, d_sae=8, k=9)
    with pytest.raises(ValueError, match="l1_coefficient"):
        ReLUSAEConfig(d_in=4, d_sae=8, l1_coefficient=-1.0)
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        ReLUSAEConfig(d_in=4, d_sae=8, k=3)  # an architecture has only its own fields
    with pytest.raises(ValueError, match="Input should be 'relu'"):
        ReLUSAEConfig(d_in=4, d_sae=8, architecture="topk")
    with pytest.raises(ValueError, match="exactly one of n_steps and epochs"):
        TrainConfig(n_steps=10, epochs=2)
    with pytest.raises(ValueError, match=r"build SAEs with dictlab\.sae\.make_sae"):
        SAE_ARCHITECTURES["topk"](ReLUSAEConfig(d_in=4, d_sae=8))
    with pytest.raises(ValueError, match=r"ReLUSAE needs a ReLUSAEConfig, got a SAEConfig"):
        make_sae(SAEConfig(d_in=4, d_sae=8, architecture="relu"))
    sae = make_sae(ReLUSAEConfig(d_in=4, d_sae=8))
    with pytest.raises(ValueError, match="4 columns"):
        sae.encode(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="NaN"):
        sae.fit(torch.full((3, 4), math.nan))


def test_study_preset() -> None:
    train = TrainConfig.study()
    recipe = (train.lr, train.batch_size, train.epochs, train.optimizer, train.weight_decay)
    assert recipe == (5e-4, 64, 500, "adamw", 0.01)
    assert train.renormalise_decoder == "every_n_epochs" and train.renormalise_every_epochs == 50
    assert train.total_steps(2500) == 500 * 40
    jumprelu = JumpReLUSAEConfig.study(d_in=4, d_sae=8)
    assert jumprelu.l0_coefficient == 1e-4
    assert (jumprelu.jumprelu_bandwidth, jumprelu.jumprelu_init_threshold) == (1e-3, 1e-3)
    assert ReLUSAEConfig.study(d_in=4, d_sae=8).l1_coefficient == 1e-4
    assert ReLUSAEConfig.study(d_in=4, d_sae=8, l1_coefficient=0.5).l1_coefficient == 0.5
    mp = MatchingPursuitSAEConfig.study(d_in=4, d_sae=8, k=2)
    assert (mp.mp_absolute, mp.mp_allow_reselect) == (True, False)
    # the study changed nothing of TopK and BatchTopK: their study config is their default one
    assert TopKSAEConfig.study(d_in=4, d_sae=8, k=2) == TopKSAEConfig(d_in=4, d_sae=8, k=2)
    assert BatchTopKSAEConfig.study(d_in=4, d_sae=8, k=2) == BatchTopKSAEConfig(d_in=4, d_sae=8, k=2)
    assert SAEConfig.study(d_in=4, d_sae=8, architecture="x") == SAEConfig(d_in=4, d_sae=8, architecture="x")
    # and the defaults are dictlab's recipe, not the study's
    assert ReLUSAEConfig(d_in=4, d_sae=8).l1_coefficient == 3e-3
    assert MatchingPursuitSAEConfig(d_in=4, d_sae=8, k=2).mp_allow_reselect is True
