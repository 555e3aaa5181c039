"""The trainer: batching, schedules, decoder geometry, determinism, history, and learning easy data."""

from __future__ import annotations

import math

import pytest
import torch

from dictlab.config import parse_config
from dictlab.metrics import match_dictionaries
from dictlab.models import FitContext
from dictlab.models.base import Anchors
from dictlab.sae import ReLUSAEConfig, SAEConfig, TopKSAEConfig, TrainConfig, make_sae, sae_config_class
from dictlab.sae.base import ForwardOutput, SparseAutoencoder
from dictlab.sae.training import RENORMALISATION, HistoryLogger, batches, lr_factor

ARCHITECTURES = ["relu", "topk", "batchtopk", "jumprelu", "mp"]


def sae_config(architecture: str, d_in: int = 16, d_sae: int = 24, k: int = 2, **fields) -> SAEConfig:
    cls = sae_config_class(architecture)
    return cls(d_in=d_in, d_sae=d_sae, **({"k": k} if "k" in cls.model_fields else {}), **fields)


def easy_data(n: int = 1024, m: int = 16, k: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Y = Z D with an orthonormal (m, m) dictionary D and exactly-k-sparse codes Z ~ U(0.5, 1.5)."""
    g = torch.Generator().manual_seed(seed)
    dictionary, _ = torch.linalg.qr(torch.randn(m, m, generator=g))
    support = torch.rand(n, m, generator=g).argsort(dim=1)[:, :k]
    codes = torch.zeros(n, m).scatter_(1, support, 0.5 + torch.rand(n, k, generator=g))
    return codes @ dictionary, dictionary


def test_batches_cover_every_row_once_per_epoch() -> None:
    y = torch.arange(10.0).unsqueeze(1)
    out = list(batches(y, 4, 7, torch.Generator().manual_seed(0)))
    assert len(out) == 7
    assert [b.shape[0] for b, _, _ in out] == [4, 4, 2, 4, 4, 2, 4]
    assert [epoch for _, _, epoch in out] == [None, None, 0, None, None, 1, None]
    assert all(target is None for _, target, _ in out)
    for first in (0, 3):
        rows = torch.cat([b for b, _, _ in out[first : first + 3]]).squeeze(1)
        assert sorted(rows.tolist()) == list(range(10))
    second = list(batches(y, 4, 7, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a, b) for (a, _, _), (b, _, _) in zip(out, second, strict=True))


def test_batches_keep_targets_with_their_rows() -> None:
    y = torch.arange(10.0).unsqueeze(1)
    target = torch.stack([y.squeeze(1) * 10, -y.squeeze(1)], dim=1)  # (10, 2), row i ↔ y_i
    plain = list(batches(y, 4, 6, torch.Generator().manual_seed(1)))
    paired = list(batches(y, 4, 6, torch.Generator().manual_seed(1), target))
    for (a, _, epoch_a), (b, t, epoch_b) in zip(plain, paired, strict=True):
        assert torch.equal(a, b) and epoch_a == epoch_b  # the same shuffle with or without targets
        assert t is not None and torch.equal(t, torch.cat([b * 10, -b], dim=1))


def test_lr_schedules() -> None:
    cosine = TrainConfig(n_steps=110, warmup_steps=10, lr_schedule="cosine")
    assert [lr_factor(s, 110, cosine) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert lr_factor(10, 110, cosine) == 1.0
    assert lr_factor(60, 110, cosine) == pytest.approx(0.5)
    assert lr_factor(109, 110, cosine) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))
    linear = TrainConfig(n_steps=110, warmup_steps=10, lr_schedule="linear")
    assert lr_factor(60, 110, linear) == pytest.approx(0.5)
    constant = TrainConfig(n_steps=110, warmup_steps=0, lr_schedule="constant")
    assert {lr_factor(s, 110, constant) for s in range(110)} == {1.0}


def test_renormalisation_policies() -> None:
    study = TrainConfig.study()
    assert [RENORMALISATION[study.renormalise_decoder](e, study) for e in (None, 0, 1, 49, 50, 450)] == [
        False,
        True,
        False,
        False,
        True,
        True,
    ]
    assert RENORMALISATION["every_step"](None, study) and not RENORMALISATION["never"](0, study)


def test_gradient_projection_keeps_rows_on_the_sphere_to_first_order() -> None:
    sae = make_sae(ReLUSAEConfig(d_in=10, d_sae=30)).double()
    y = torch.randn(64, 10, dtype=torch.float64)
    sae(y).loss.backward()
    raw = sae.W_dec.grad.clone()
    sae.project_decoder_grad_()
    w, g = sae.W_dec.detach(), sae.W_dec.grad
    torch.testing.assert_close((g * w).sum(dim=1), torch.zeros(30, dtype=torch.float64), atol=1e-15, rtol=0)
    torch.testing.assert_close(g + (raw * w).sum(dim=1, keepdim=True) * w, raw)  # only the radial part is removed
    for eta in (1e-2, 1e-3):
        drift = (w - eta * g).norm(dim=1) - w.norm(dim=1)  # = √(1 + η²‖g‖²) − 1 ≈ η²‖g‖²/2 for unit rows
        assert float(drift.abs().max()) <= eta**2 * float((g * g).sum(dim=1).max())
        raw_drift = (w - eta * raw).norm(dim=1) - w.norm(dim=1)  # without projection the drift is first order in η
        assert float(raw_drift.abs().max()) > 10 * float(drift.abs().max())


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_decoder_rows_are_unit_norm_after_training(architecture: str) -> None:
    y, _ = easy_data(n=256)
    sae = make_sae(sae_config(architecture), TrainConfig(n_steps=100, batch_size=64))
    sae.fit(y)  # without renormalisation the rows drift by 0.4-0.9 in these 100 Adam steps
    torch.testing.assert_close(sae.W_dec.detach().norm(dim=1), torch.ones(24))
    assert sae.training is False


def test_without_renormalisation_rows_leave_the_sphere() -> None:
    y, _ = easy_data(n=256)
    config = TrainConfig(n_steps=100, batch_size=64, renormalise_decoder="never")
    sae = make_sae(ReLUSAEConfig(d_in=16, d_sae=24), config).fit(y)
    assert float((sae.W_dec.detach().norm(dim=1) - 1).abs().max()) > 0.1  # Adam steps are not tangent


def test_training_is_deterministic_for_a_seed() -> None:
    y, _ = easy_data(n=256)
    config = TrainConfig(n_steps=40, batch_size=32, log_every=10)

    def fit(seed: int):
        return make_sae(TopKSAEConfig(d_in=16, d_sae=24, k=2), config).fit(y, FitContext(seed=seed))

    a, b, c = fit(3), fit(3), fit(4)
    for name, tensor in a.tensors().items():
        assert torch.equal(tensor, b.tensors()[name]), name
    assert a.history.records == b.history.records
    assert not torch.equal(a.W_dec, c.W_dec)


def test_relu_sae_recovers_an_orthonormal_dictionary() -> None:
    y, dictionary = easy_data()
    sae = make_sae(ReLUSAEConfig(d_in=16, d_sae=16), TrainConfig(log_every=200))
    sae.fit(y, FitContext(seed=0, ground_truth=dictionary))
    match = match_dictionaries(sae.dictionary, dictionary)
    assert match.mean_cosine > 0.9
    history = sae.history
    assert history.series("step") == [200.0, 400.0, 600.0, 800.0]
    assert history[-1]["mean_cosine"] == pytest.approx(match.mean_cosine)
    assert history[-1]["mse_loss"] < history[0]["mse_loss"]
    expected = {"step", "lr", "loss", "mse_loss", "l1_loss", "l0", "dead_latents", "mean_cosine", "frac_close"}
    assert set(history[0]) == expected


def test_history_records_every_log_every_steps_and_at_the_end() -> None:
    y, _ = easy_data(n=256)
    sae = make_sae(TopKSAEConfig(d_in=16, d_sae=24, k=2), TrainConfig(n_steps=25, batch_size=64, log_every=10))
    sae.fit(y)
    assert sae.history.series("step") == [10.0, 20.0, 25.0]
    assert sae.history.series("l0") == [2.0, 2.0, 2.0] or max(sae.history.series("l0")) <= 2.0
    assert set(sae.history[0]) == {"step", "lr", "loss", "mse_loss", "l0", "dead_latents"}  # TopK: only the MSE
    assert sae.history.series("loss") == sae.history.series("mse_loss")
    assert "mean_cosine" not in sae.history[0]
    silent = make_sae(ReLUSAEConfig(d_in=16, d_sae=24), TrainConfig(n_steps=5, log_every=None)).fit(y)
    assert len(silent.history) == 0


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_history_logs_every_loss_term_under_its_name(architecture: str) -> None:
    y, _ = easy_data(n=256)
    sae = make_sae(sae_config(architecture), TrainConfig(n_steps=12, batch_size=64, log_every=4))
    terms = list(sae(y[:64]).losses)
    sae.fit(y)
    assert terms[0] == "mse_loss"
    assert list(sae.history[0]) == ["step", "lr", "loss", *terms, "l0", "dead_latents"]
    for record in sae.history:
        assert record["loss"] == pytest.approx(sum(record[name] for name in terms), rel=1e-12)
        assert all(record[name] >= 0 for name in terms)


def test_relu_history_splits_the_loss_into_mse_and_l1() -> None:
    y, _ = easy_data(n=256)
    config = ReLUSAEConfig(d_in=16, d_sae=24, l1_coefficient=0.05)
    sae = make_sae(config, TrainConfig(n_steps=30, batch_size=64, log_every=10)).fit(y)
    mse, l1, loss = (sae.history.series(name) for name in ("mse_loss", "l1_loss", "loss"))
    assert len(mse) == len(l1) == len(loss) == 3
    assert all(m > 0 and p > 0 for m, p in zip(mse, l1, strict=True))
    assert loss == pytest.approx([m + p for m, p in zip(mse, l1, strict=True)], rel=1e-12)


def test_history_terms_are_means_over_the_steps_since_the_previous_entry() -> None:
    """Logging does not change training, so entries every 5 steps are the means of 5 entries every step."""
    y, _ = easy_data(n=256)

    def history(log_every: int):
        config = ReLUSAEConfig(d_in=16, d_sae=24, l1_coefficient=0.05)
        train = TrainConfig(n_steps=15, batch_size=32, log_every=log_every)
        return make_sae(config, train).fit(y, FitContext(seed=2)).history

    every_step, every_five = history(1), history(5)
    assert every_five.series("step") == [5.0, 10.0, 15.0]
    for i, record in enumerate(every_five):
        window = every_step.records[5 * i : 5 * i + 5]
        for name in ("loss", "mse_loss", "l1_loss"):
            assert record[name] == pytest.approx(sum(r[name] for r in window) / 5, rel=1e-5), name
        assert record["l0"] == window[-1]["l0"] and record["lr"] == window[-1]["lr"]  # of the last batch, not means


def test_history_logger_refuses_terms_that_change_between_steps() -> None:
    sae = make_sae(ReLUSAEConfig(d_in=4, d_sae=6))
    logger = HistoryLogger(sae, log_every=10, total_steps=100, ground_truth=None)
    codes, zero = torch.zeros(2, 6), torch.zeros(())
    logger.observe(0, ForwardOutput(torch.zeros(2, 4), codes, {"mse_loss": zero, "l1_loss": zero}), lr=1.0)
    with pytest.raises(RuntimeError, match="same loss terms"):
        logger.observe(1, ForwardOutput(torch.zeros(2, 4), codes, {"mse_loss": zero}), lr=1.0)


def test_fit_follows_the_input_dtype_and_epochs_count_passes() -> None:
    y, _ = easy_data(n=100)
    sae = make_sae(ReLUSAEConfig(d_in=16, d_sae=24), TrainConfig(n_steps=None, epochs=2, batch_size=30, log_every=1))
    sae.fit(y.double())
    assert sae.W_dec.dtype == torch.float64 and sae.encode(y.double()).dtype == torch.float64
    assert len(sae.history) == 2 * 4


def test_init_b_dec_to_mean() -> None:
    y, _ = easy_data(n=100)
    y = y + 3.0
    train = TrainConfig(n_steps=1, lr=1e-9, warmup_steps=0, init_b_dec_to_mean=True)
    sae = make_sae(ReLUSAEConfig(d_in=16, d_sae=24), train)
    sae.fit(y)
    torch.testing.assert_close(sae.b_dec.detach(), y.mean(dim=0), atol=1e-6, rtol=0)


def reference_training(sae: SparseAutoencoder, y: torch.Tensor, config: TrainConfig, seed: int) -> list[float]:
    """The trainer as it was before dead latents, AuxK, resampling and anchoring, written out: the study's init
    from the fit's stream, fused Adam, the schedule, projected decoder gradients, rows renormalised every step.
    Returns the MSE of every step."""
    generator = FitContext(seed=seed).generator(sae.kind)
    sae.reset_parameters(generator)
    total = config.total_steps(y.shape[0])
    optimizer = torch.optim.Adam(sae.parameters(), lr=config.lr, fused=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, config))
    sae.train()
    mse = []
    for batch, _, _ in batches(y, config.batch_size, total, generator):
        out = sae(batch)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        sae.project_decoder_grad_()
        optimizer.step()
        schedule.step()
        sae.normalise_decoder_()
        mse.append(out.losses["mse_loss"].item())
    return mse


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_with_every_option_off_training_is_bit_identical_to_the_plain_loop(architecture: str) -> None:
    """Dead-latent counting runs on every step but never changes a parameter; the other options are off."""
    y, _ = easy_data(n=200)
    config = TrainConfig(n_steps=30, batch_size=64, log_every=1)
    cfg = sae_config(architecture, d_sae=64)  # TopK and BatchTopK train on the gathered entries here
    trained = make_sae(cfg, config).fit(y, FitContext(seed=7))
    reference = make_sae(cfg, config)
    mse = reference_training(reference, y, config, seed=7)
    for name, tensor in trained.tensors().items():
        assert torch.equal(tensor, reference.tensors()[name]), name
    assert trained.history.series("mse_loss") == mse


def test_every_option_adds_its_term_and_counts_to_the_history() -> None:
    y, _ = easy_data(n=256)
    anchors = Anchors(encoder=torch.eye(16)[:2], decoder=torch.eye(16)[:2])
    config = TrainConfig(
        n_steps=20, batch_size=64, log_every=10, dead_feature_window=5, aux_loss_coefficient=1.0, resample_every=5,
        anchor_features=2,
    )  # fmt: skip
    sae = make_sae(ReLUSAEConfig(d_in=16, d_sae=24), config).fit(y, FitContext(seed=0, anchors=anchors))
    names = ["mse_loss", "l1_loss", "auxiliary_reconstruction_loss", "anchor_loss"]
    assert list(sae.history[0]) == ["step", "lr", "loss", *names, "l0", "dead_latents", "resampled_latents"]
    for record in sae.history:
        assert record["loss"] == pytest.approx(sum(record[name] for name in names), rel=1e-12)


def test_training_options_are_checked_fields() -> None:
    for values, field in (
        ({"dead_feature_window": 0}, "dead_feature_window"),
        ({"aux_loss_coefficient": -1.0}, "aux_loss_coefficient"),
        ({"k_aux": 0}, "k_aux"),
        ({"resample_every": 0}, "resample_every"),
        ({"resample_stop": 1.5}, "resample_stop"),
        ({"anchor_features": -1}, "anchor_features"),
        ({"anchor_coefficient": -0.1}, "anchor_coefficient"),
    ):
        with pytest.raises(ValueError, match=field):
            parse_config(TrainConfig, values)
    defaults = TrainConfig()
    assert (defaults.aux_loss_coefficient, defaults.resample_every, defaults.anchor_features) == (0.0, None, 0)
