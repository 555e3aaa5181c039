"""The transcoder: uncentred encoder, decoder to the target space, the skip connection, training and saving."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dictlab.methods import Problem, build_method
from dictlab.metrics import match_dictionaries, r2
from dictlab.models import FitContext, load_model
from dictlab.sae import (
    SAELENS_CONFIG_FILE,
    SAELENS_WEIGHTS_FILE,
    SparseAutoencoder,
    TopKSAEConfig,
    TrainConfig,
    Transcoder,
    TranscoderConfig,
    make_sae,
    parse_sae_config,
)

D_IN, D_OUT, P, K = 16, 12, 12, 2


def linear_map_data(n: int = 1200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x_p = Z D_p with unit atoms D_p (P, D_IN) and exactly K active latents per row (values U(0.5, 1.5)), and
    x_r = x_p @ M for a fixed M (D_IN, D_OUT). Returns x_p, x_r, the target dictionary D_p @ M (P, D_OUT) and M."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(P, D_IN, generator=g)
    atoms /= atoms.norm(dim=1, keepdim=True)
    linear_map = torch.randn(D_IN, D_OUT, generator=g) / math.sqrt(D_IN)
    support = torch.rand(n, P, generator=g).argsort(dim=1)[:, :K]
    codes = torch.zeros(n, P).scatter_(1, support, 0.5 + torch.rand(n, K, generator=g))
    x_p = codes @ atoms
    return x_p, x_p @ linear_map, atoms @ linear_map, linear_map


def random_transcoder(d_sae: int = 20, seed: int = 0, **fields) -> Transcoder:
    """A float64 transcoder with random parameters (non-unit decoder rows, non-zero biases, W_skip ≠ 0)."""
    sae = make_sae(TranscoderConfig(d_in=D_IN, d_sae=d_sae, d_out=D_OUT, **fields)).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
    assert isinstance(sae, Transcoder)
    return sae


def inputs(n: int = 9, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D_IN, generator=g, dtype=torch.float64)
    return x, torch.randn(n, D_OUT, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("activation", ["topk", "relu"])
def test_forward_reads_the_inputs_uncentred_and_predicts_the_target(activation: str, skip: bool) -> None:
    sae = random_transcoder(activation=activation, k=3, skip=skip, l1_coefficient=0.25).eval()
    x, target = inputs()
    w_enc, b_enc, w_dec, b_dec = (t.detach() for t in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec))
    pre = x @ w_enc + b_enc  # no b_dec: it has d_out entries and lives in the target space
    if activation == "topk":
        kth = pre.sort(dim=1, descending=True).values[:, 2:3]
        codes = torch.where(pre >= kth, torch.relu(pre), 0.0)
    else:
        codes = torch.relu(pre)
    prediction = codes @ w_dec + b_dec + (x @ sae.W_skip.detach() if skip else 0.0)
    out = sae(x, target)
    torch.testing.assert_close(out.codes, codes)
    torch.testing.assert_close(sae.encode(x), codes)
    torch.testing.assert_close(out.reconstruction, prediction)
    torch.testing.assert_close(sae.predict(x), prediction)
    torch.testing.assert_close(sae.decode(codes), codes @ w_dec + b_dec)  # decode: the sparse part alone
    assert sae.dictionary.shape == (20, D_OUT) and sae.offset.shape == (D_OUT,)
    assert sae.encoder_directions is not None and sae.encoder_directions.shape == (20, D_IN)
    mse = ((prediction - target) ** 2).mean()
    torch.testing.assert_close(out.losses["mse_loss"], mse, rtol=1e-12, atol=0)
    if activation == "relu":
        norms = w_dec.norm(dim=1)
        l1 = 0.25 * sum(float(z @ norms) for z in codes) / codes.shape[0]
        assert list(out.losses) == ["mse_loss", "l1_loss"]
        assert out.losses["l1_loss"].item() == pytest.approx(l1, rel=1e-12)
    else:
        assert list(out.losses) == ["mse_loss"]


@pytest.mark.parametrize("skip", [False, True])
def test_gathered_topk_training_pass_equals_the_dense_one(skip: bool) -> None:
    sae = random_transcoder(d_sae=60, k=2, skip=skip).train()  # 2·60 ≥ k·(d_in + d_out): gathered
    assert sae.uses_gather()
    x, target = inputs(n=16)
    gathered = sae(x, target)
    grads = torch.autograd.grad(gathered.loss, list(sae.parameters()))
    codes, _ = sae.sparse_code(sae.encoder_input(x))
    dense_prediction = sae.add_skip(x, codes @ sae.W_dec + sae.b_dec)
    dense = ((dense_prediction - target) ** 2).mean()
    torch.testing.assert_close(gathered.codes, codes)
    torch.testing.assert_close(gathered.reconstruction, dense_prediction)
    torch.testing.assert_close(gathered.loss, dense)
    for grad, reference in zip(grads, torch.autograd.grad(dense, list(sae.parameters())), strict=True):
        torch.testing.assert_close(grad, reference)


def test_with_the_true_map_as_skip_and_no_codes_the_prediction_is_exact() -> None:
    x_p, _, _, linear_map = (t.double() for t in linear_map_data(n=50))
    x_r = x_p @ linear_map
    sae = make_sae(TranscoderConfig(d_in=D_IN, d_sae=P, d_out=D_OUT, activation="relu", skip=True)).double()
    with torch.no_grad():
        sae.W_skip.copy_(linear_map)
        sae.b_enc.fill_(-1e3)  # every pre-activation negative: all codes 0
    assert not sae.encode(x_p).any()
    torch.testing.assert_close(sae.predict(x_p), x_r, rtol=0, atol=1e-14)
    assert float(sae.train()(x_p, x_r).losses["mse_loss"].detach()) < 1e-28


@pytest.mark.parametrize(("activation", "skip"), [("topk", False), ("relu", False), ("topk", True)])
def test_training_predicts_the_target_on_held_out_rows(activation: str, skip: bool) -> None:
    x_p, x_r, target_dictionary, _ = linear_map_data()
    train, held_out = slice(0, 1000), slice(1000, None)
    config = TranscoderConfig(d_in=D_IN, d_sae=24, d_out=D_OUT, activation=activation, k=K, skip=skip)
    sae = make_sae(config, TrainConfig(n_steps=300, batch_size=128, lr=1e-2, log_every=50))
    untrained = match_dictionaries(sae.dictionary, target_dictionary).mean_cosine
    before = r2(x_r[held_out], sae.predict(x_p[held_out]))
    sae.fit(x_p[train], FitContext(seed=0, target=x_r[train]))
    # measured (seeds 0-2): the MSE falls to 0.10-0.18 (topk), 0.01-0.02 (relu), < 0.001 (skip) of its first entry
    assert sae.history[-1]["mse_loss"] < 0.25 * sae.history[0]["mse_loss"]
    after = r2(x_r[held_out], sae.predict(x_p[held_out]))
    assert after > 0.85 and before < 0  # measured: 0.88-0.95 (topk), 0.99 (relu), 1.00 (skip); -0.4 to -0.6 untrained
    if not skip:  # with the skip connection the linear map need not go through the latents at all
        learned = match_dictionaries(sae.dictionary, target_dictionary).mean_cosine
        assert learned > untrained + 0.2  # measured: 0.84-0.91 (topk), 0.87-0.89 (relu) against 0.57 untrained
    torch.testing.assert_close(sae.W_dec.detach().norm(dim=1), torch.ones(24))


def test_encoder_starts_as_every_sae_of_the_input_width() -> None:
    transcoder = make_sae(TranscoderConfig(d_in=D_IN, d_sae=20, d_out=D_OUT, k=2, skip=True))
    topk = make_sae(TopKSAEConfig(d_in=D_IN, d_sae=20, k=2))
    torch.testing.assert_close(transcoder.W_enc, topk.W_enc, rtol=0, atol=0)
    assert not transcoder.W_skip.detach().any() and not transcoder.b_dec.detach().any()


def test_errors_are_one_line_and_say_what_to_do() -> None:
    x_p, x_r, _, _ = linear_map_data(n=64)
    sae = make_sae(TranscoderConfig(d_in=D_IN, d_sae=20, d_out=D_OUT, k=2), TrainConfig(n_steps=2))
    with pytest.raises(ValueError, match=r"^a transcoder SAE predicts targets: fit it with FitContext\(target=\.+\)$"):
        sae.fit(x_p)
    with pytest.raises(ValueError, match=rf"^context.target must have {D_OUT} columns, got shape \(64, {D_IN}\)$"):
        sae.fit(x_p, FitContext(target=x_p))
    with pytest.raises(ValueError, match=r"^a transcoder reconstructs a target: call it as sae\(y, target\)"):
        sae(x_p)
    mean_start = make_sae(sae.cfg, TrainConfig(n_steps=2, init_b_dec_to_mean=True))
    with pytest.raises(ValueError, match=r"^init_b_dec_to_mean=True is not supported by a transcoder"):
        mean_start.fit(x_p, FitContext(target=x_r))
    base = {"architecture": "transcoder", "d_in": D_IN, "d_sae": 20}
    with pytest.raises(ValueError, match=r"^d_out: Field required$"):
        parse_sae_config({**base, "k": 2})
    with pytest.raises(ValueError, match=r"^k is required with activation='topk'$"):
        parse_sae_config({**base, "d_out": D_OUT})
    with pytest.raises(ValueError, match=r"^k=21 must be at most d_sae=20$"):
        parse_sae_config({**base, "d_out": D_OUT, "k": 21})
    assert parse_sae_config({**base, "d_out": D_OUT, "activation": "relu"}).k is None  # type: ignore[attr-defined]


SAELENS_NAMES = {
    ("topk", False): "topk_transcoder",
    ("topk", True): "skip_topk_transcoder",
    ("relu", False): "transcoder",
    ("relu", True): "skip_transcoder",
}


@pytest.mark.parametrize(("activation", "skip"), list(SAELENS_NAMES))
def test_save_load_round_trip(activation: str, skip: bool, tmp_path: Path) -> None:
    x_p, x_r, _, _ = linear_map_data(n=200)
    config = TranscoderConfig(d_in=D_IN, d_sae=20, d_out=D_OUT, activation=activation, k=K, skip=skip)
    sae = make_sae(config, TrainConfig(n_steps=20, batch_size=50)).fit(x_p, FitContext(target=x_r))
    sae.save(str(tmp_path))
    cfg = json.loads((tmp_path / SAELENS_CONFIG_FILE).read_text())
    assert cfg["architecture"] == SAELENS_NAMES[activation, skip]
    assert (cfg["d_in"], cfg["d_sae"], cfg["d_out"], cfg["apply_b_dec_to_input"]) == (D_IN, 20, D_OUT, False)
    assert cfg.get("k") == (K if activation == "topk" else None)
    assert cfg["dictlab"]["sae"] == sae.cfg.model_dump()
    tensors = load_file(str(tmp_path / SAELENS_WEIGHTS_FILE))
    shapes = {"W_enc": (D_IN, 20), "b_enc": (20,), "W_dec": (20, D_OUT), "b_dec": (D_OUT,)}
    if skip:
        shapes["W_skip"] = (D_OUT, D_IN)  # SAELens's layout
        torch.testing.assert_close(tensors["W_skip"], sae.W_skip.detach().T, rtol=0, atol=0)
    assert {name: tuple(t.shape) for name, t in tensors.items()} == shapes
    loaded = load_model(tmp_path)
    assert isinstance(loaded, Transcoder) and loaded.cfg == sae.cfg and loaded.train_config == sae.train_config
    codes = sae.encode(x_p)
    assert torch.equal(loaded.encode(x_p), codes)
    assert torch.equal(loaded.decode(codes), sae.decode(codes))
    assert torch.equal(loaded.predict(x_p), sae.predict(x_p))


def test_a_folder_saelens_wrote_for_a_skip_transcoder_loads(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(3)
    tensors = {
        "W_enc": torch.randn(D_IN, 20, generator=g),
        "b_enc": torch.randn(20, generator=g),
        "W_dec": torch.randn(20, D_OUT, generator=g),
        "b_dec": torch.randn(D_OUT, generator=g),
        "W_skip": torch.randn(D_OUT, D_IN, generator=g),
    }
    save_file(tensors, str(tmp_path / SAELENS_WEIGHTS_FILE))
    cfg = {"architecture": "skip_transcoder", "d_in": D_IN, "d_sae": 20, "d_out": D_OUT, "dtype": "float32"}
    (tmp_path / SAELENS_CONFIG_FILE).write_text(json.dumps({**cfg, "apply_b_dec_to_input": False}))
    sae = load_model(tmp_path)
    assert isinstance(sae, Transcoder) and (sae.cfg.activation, sae.cfg.skip) == ("relu", True)
    x = torch.randn(5, D_IN, generator=g)
    # SAELens's SkipTranscoder.forward: relu(x W_enc + b_enc) W_dec + b_dec + x W_skipᵀ
    expected = torch.relu(x @ tensors["W_enc"] + tensors["b_enc"]) @ tensors["W_dec"] + tensors["b_dec"]
    torch.testing.assert_close(sae.predict(x), expected + x @ tensors["W_skip"].T)
    (tmp_path / SAELENS_CONFIG_FILE).write_text(json.dumps({**cfg, "apply_b_dec_to_input": True}))
    with pytest.raises(ValueError, match="apply_b_dec_to_input=true is not supported for skip_transcoder"):
        load_model(tmp_path)


def test_the_method_takes_d_out_from_the_data() -> None:
    problem = Problem(num_latents=20, k=3, input_dim=D_IN, ground_truth=torch.randn(20, D_IN), target_dim=D_OUT)
    sae = build_method("sae_transcoder", problem)
    assert isinstance(sae, SparseAutoencoder) and sae.predicts_target
    assert (sae.cfg.d_in, sae.cfg.d_out, sae.cfg.k) == (D_IN, D_OUT, 3)  # type: ignore[attr-defined]
    no_target = Problem(num_latents=20, k=3, input_dim=D_IN, ground_truth=torch.randn(20, D_IN))
    with pytest.raises(ValueError, match="method sae_transcoder predicts targets and these data have none"):
        build_method("sae_transcoder", no_target)
