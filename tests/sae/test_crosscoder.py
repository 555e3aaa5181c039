"""The acausal crosscoder: per-source decoder geometry, Lindsey et al.'s L1 weight, its one-source limit, training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dictlab.methods import Problem, build_method
from dictlab.metrics import match_dictionaries
from dictlab.models import FitContext, load_model
from dictlab.sae import (
    SAELENS_CONFIG_FILE,
    Crosscoder,
    CrosscoderConfig,
    TopKSAEConfig,
    TrainConfig,
    make_sae,
    parse_sae_config,
)

SOURCES, P, K = [6, 10], 12, 2
D_IN = sum(SOURCES)


def crosscoder(d_sae: int = 20, sources: list[int] = SOURCES, **fields) -> Crosscoder:
    sae = make_sae(CrosscoderConfig(d_in=sum(sources), d_sae=d_sae, source_dims=sources, k=K, **fields))
    assert isinstance(sae, Crosscoder)
    return sae


def randomised(sae: Crosscoder, seed: int = 0) -> Crosscoder:
    """``sae`` in float64 with random parameters (decoder blocks off the unit sphere, non-zero biases)."""
    sae = sae.double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
    return sae


def block_norms_by_hand(w_dec: torch.Tensor, sources: list[int]) -> torch.Tensor:
    return torch.stack([block.norm(dim=1) for block in w_dec.split(sources, dim=1)], dim=1)


def two_source_data(n: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Y = Z D, each latent's atom unit-norm in each source block; exactly K active latents per row, U(0.5, 1.5)."""
    g = torch.Generator().manual_seed(0)
    blocks = [torch.randn(P, d, generator=g) for d in SOURCES]
    dictionary = torch.cat([b / b.norm(dim=1, keepdim=True) for b in blocks], dim=1)
    support = torch.rand(n, P, generator=g).argsort(dim=1)[:, :K]
    codes = torch.zeros(n, P).scatter_(1, support, 0.5 + torch.rand(n, K, generator=g))
    return codes @ dictionary, dictionary


def test_the_initial_decoder_is_the_encoder_with_unit_blocks() -> None:
    sae = crosscoder()
    w_enc, w_dec = sae.W_enc.detach(), sae.W_dec.detach()
    torch.testing.assert_close(block_norms_by_hand(w_dec, SOURCES), torch.ones(20, 2))
    by_block = [b / b.norm(dim=1, keepdim=True) for b in w_enc.T.split(SOURCES, dim=1)]
    torch.testing.assert_close(w_dec, torch.cat(by_block, dim=1))


@pytest.mark.parametrize("activation", ["topk", "relu"])
def test_every_block_stays_at_unit_norm_through_training(activation: str) -> None:
    y, _ = two_source_data(n=256)
    sae = crosscoder(activation=activation)
    sae.train_config = TrainConfig(n_steps=60, batch_size=64)
    sae.fit(y)
    w_dec = sae.W_dec.detach()
    torch.testing.assert_close(block_norms_by_hand(w_dec, SOURCES), torch.ones(20, 2))
    assert float((w_dec.norm(dim=1) - 2**0.5).abs().max()) < 1e-5  # a row of s unit blocks has norm √s
    for s, width in enumerate(SOURCES):
        assert sae.source_dictionary(s).shape == (20, width)
    torch.testing.assert_close(torch.cat([sae.source_dictionary(s) for s in range(2)], dim=1), sae.dictionary)


def test_the_gradient_projection_removes_each_blocks_radial_part() -> None:
    sae = randomised(crosscoder())
    g = torch.randn(sae.W_dec.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    sae.W_dec.grad = g.clone()
    sae.project_decoder_grad_()
    w = sae.W_dec.detach()
    for grad_block, w_block, g_block in zip(
        sae.W_dec.grad.split(SOURCES, dim=1), w.split(SOURCES, dim=1), g.split(SOURCES, dim=1), strict=True
    ):
        torch.testing.assert_close((grad_block * w_block).sum(dim=1), torch.zeros(20, dtype=torch.float64))
        radial = (g_block * w_block).sum(dim=1, keepdim=True) / (w_block * w_block).sum(dim=1, keepdim=True)
        torch.testing.assert_close(grad_block, g_block - radial * w_block)


def test_the_l1_weight_is_the_sum_of_the_per_source_decoder_norms() -> None:
    sae = randomised(crosscoder(activation="relu", l1_coefficient=0.25))
    y = torch.randn(7, D_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = sae.train()(y)
    assert list(out.losses) == ["mse_loss", "l1_loss"]
    w_dec = sae.W_dec.detach().tolist()
    weights = [sum(sum(v * v for v in row[a : a + d]) ** 0.5 for a, d in ((0, 6), (6, 10))) for row in w_dec]
    codes = out.codes.detach().tolist()
    by_hand = 0.25 * sum(sum(z * w for z, w in zip(row, weights, strict=True)) for row in codes) / len(codes)
    assert out.losses["l1_loss"].item() == pytest.approx(by_hand, rel=1e-12)
    pre = (y - sae.b_dec.detach()) @ sae.W_enc.detach() + sae.b_enc.detach()
    torch.testing.assert_close(out.codes.detach(), torch.relu(pre))
    assert sae.l1_weights().tolist() == pytest.approx(weights, rel=1e-12)


@pytest.mark.parametrize("d_sae", [20, 40])  # 20 < k·d_in trains on the dense path, 40 ≥ k·d_in on the gathered one
def test_one_source_is_a_topk_sae(d_sae: int) -> None:
    ours = crosscoder(d_sae=d_sae, sources=[D_IN])
    topk = make_sae(TopKSAEConfig(d_in=D_IN, d_sae=d_sae, k=K))
    for name, tensor in topk.tensors().items():
        torch.testing.assert_close(ours.tensors()[name], tensor, rtol=1e-6, atol=1e-7)  # the same initialisation
    assert ours.train().uses_gather() == (d_sae >= K * D_IN)
    y = torch.randn(32, D_IN, generator=torch.Generator().manual_seed(2))
    a, b = ours(y), topk.train()(y)
    assert list(a.losses) == list(b.losses) == ["mse_loss"]
    torch.testing.assert_close(a.codes, b.codes, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-5, atol=0)
    train = TrainConfig(n_steps=30, batch_size=16, log_every=10)
    ours.train_config, topk.train_config = train, train
    ours.fit(y, FitContext(seed=3))
    topk.fit(y, FitContext(seed=3))
    for name, tensor in topk.tensors().items():
        torch.testing.assert_close(ours.tensors()[name], tensor, rtol=1e-4, atol=1e-5)
    assert ours.history.series("mse_loss") == pytest.approx(topk.history.series("mse_loss"), rel=1e-4)


@pytest.mark.parametrize("activation", ["topk", "relu"])
def test_training_lowers_the_loss_and_learns_the_dictionary(activation: str) -> None:
    y, dictionary = two_source_data()
    sae = crosscoder(d_sae=24, activation=activation)
    sae.train_config = TrainConfig(n_steps=300, batch_size=128, lr=1e-2, log_every=50)
    sources = dictionary.split(SOURCES, dim=1)

    def cosines() -> list[float]:  # the whole atoms, then each source's matched alone
        pairs = [(sae.dictionary, dictionary)] + [(sae.source_dictionary(s), sources[s]) for s in range(2)]
        return [match_dictionaries(learned, true).mean_cosine for learned, true in pairs]

    untrained = cosines()
    sae.fit(y, FitContext(seed=0))
    # measured (seeds 0-2): the MSE falls to 0.03-0.11 (topk) and 0.02-0.04 (relu) of its first entry; matched
    # cosine 0.95-0.99 (topk) and 0.79-0.90 (relu) against 0.54 untrained; per source 0.85-0.99 against 0.80, 0.64
    assert sae.history[-1]["mse_loss"] < 0.2 * sae.history[0]["mse_loss"]
    learned = cosines()
    assert learned[0] > untrained[0] + 0.2
    assert learned[1] > untrained[1] and learned[2] > untrained[2]


@pytest.mark.parametrize(("activation", "name"), [("topk", "topk_crosscoder"), ("relu", "crosscoder")])
def test_save_load_round_trip(activation: str, name: str, tmp_path: Path) -> None:
    y, _ = two_source_data(n=200)
    sae = crosscoder(activation=activation)
    sae.train_config = TrainConfig(n_steps=20, batch_size=50)
    sae.fit(y)
    sae.save(str(tmp_path))
    cfg = json.loads((tmp_path / SAELENS_CONFIG_FILE).read_text())
    assert cfg["architecture"] == name and cfg["apply_b_dec_to_input"] is True
    assert cfg.get("k") == (K if activation == "topk" else None)
    assert cfg["dictlab"]["sae"] == sae.cfg.model_dump() and cfg["dictlab"]["sae"]["source_dims"] == SOURCES
    loaded = load_model(tmp_path)
    assert isinstance(loaded, Crosscoder) and loaded.cfg == sae.cfg and loaded.train_config == sae.train_config
    codes = sae.encode(y)
    assert torch.equal(loaded.encode(y), codes)
    assert torch.equal(loaded.decode(codes), sae.decode(codes))


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ([6, 9], "source_dims [6, 9] must sum to d_in=16"),
        ([6, 0, 10], "source_dims.1=0: Input should be greater than or equal to 1"),
        ([], "source_dims=[]: List should have at least 1 item after validation, not 0"),
        ([6, 10.0], "source_dims.1=10.0: Input should be a valid integer"),
    ],
)
def test_bad_source_dims_are_one_line_errors_naming_the_field(sources: list, message: str) -> None:
    values = {"architecture": "crosscoder", "d_in": D_IN, "d_sae": 20, "k": K, "source_dims": sources}
    with pytest.raises(ValueError, match="source_dims") as err:
        parse_sae_config(values)
    assert str(err.value) == message


def test_source_dictionary_refuses_a_source_it_does_not_have() -> None:
    with pytest.raises(ValueError, match=r"^source must be in \[0, 1\], got 2$"):
        crosscoder().source_dictionary(2)


def test_the_method_takes_the_sources_from_the_data() -> None:
    problem = Problem(num_latents=20, k=3, input_dim=D_IN, ground_truth=torch.randn(20, D_IN), sources=(6, 10))
    sae = build_method("sae_crosscoder", problem)
    assert isinstance(sae, Crosscoder) and sae.cfg.source_dims == SOURCES and sae.cfg.k == 3
    one_source = Problem(num_latents=20, k=3, input_dim=D_IN, ground_truth=torch.randn(20, D_IN))
    with pytest.raises(ValueError, match="method sae_crosscoder encodes several sources and these data are one"):
        build_method("sae_crosscoder", one_source)
