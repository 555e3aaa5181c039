"""Feature anchoring (seed 004, Eqs. 23–25): anchors from the truth or class means, the loss, and training with it."""

from __future__ import annotations

import pytest
import torch

from dictlab.models import FitContext
from dictlab.models.base import Anchors
from dictlab.sae import MatchingPursuitSAEConfig, ReLUSAEConfig, TopKSAEConfig, TrainConfig, make_sae
from dictlab.sae.anchoring import anchor_loss, class_mean_anchors, ground_truth_anchors, unit_rows
from dictlab.sae.training import train_sae


def anchor_loss_float64(w_enc: torch.Tensor | None, w_dec: torch.Tensor, anchors: Anchors) -> float:
    """Eq. 25 entry by entry in float64: Σ_ij (W_E[i, j] − w̃_p^(i)_j)² + Σ_ij (W_D[j, i] − w̃_r^(i)_j)² over i < k."""
    total, k = 0.0, anchors.k
    if w_enc is not None and anchors.encoder is not None:
        encoder_rows = w_enc.double().T  # W_E (d_sae, d_in): row i is what latent i reads
        total += sum(float((encoder_rows[i] - anchors.encoder[i].double()).pow(2).sum()) for i in range(k))
    if anchors.decoder is not None:
        total += sum(float((w_dec[i].double() - anchors.decoder[i].double()).pow(2).sum()) for i in range(k))
    return total


@pytest.mark.parametrize("sides", ["both", "decoder", "encoder", "no_encoder"])
def test_anchor_loss_equals_its_float64_definition(sides: str) -> None:
    g = torch.Generator().manual_seed(0)
    w_enc, w_dec = torch.randn(7, 11, generator=g), torch.randn(11, 5, generator=g)  # a transcoder's widths
    encoder = None if sides == "decoder" else unit_rows(torch.randn(3, 7, generator=g))
    decoder = None if sides == "encoder" else unit_rows(torch.randn(3, 5, generator=g))
    anchors = Anchors(encoder=encoder, decoder=decoder)
    w = None if sides == "no_encoder" else w_enc
    value = anchor_loss(w, w_dec, anchors)
    assert float(value) == pytest.approx(anchor_loss_float64(w, w_dec, anchors), rel=1e-6)
    assert float(value) > 0


def test_anchor_loss_refuses_anchors_that_do_not_fit() -> None:
    anchors = Anchors(encoder=torch.ones(3, 7), decoder=torch.ones(3, 5))
    with pytest.raises(ValueError, match="3 anchors need at least 3 latents"):
        anchor_loss(torch.ones(7, 2), torch.ones(2, 5), anchors)
    with pytest.raises(ValueError, match=r"anchors.encoder must be \(3, 6\)"):
        anchor_loss(torch.ones(6, 4), torch.ones(4, 5), anchors)
    with pytest.raises(ValueError, match=r"anchors.decoder must be \(3, 4\)"):
        anchor_loss(torch.ones(7, 4), torch.ones(4, 4), anchors)


def test_ground_truth_anchors_are_distinct_true_features_as_unit_rows() -> None:
    g = torch.Generator().manual_seed(1)
    dictionary, target = torch.randn(20, 6, generator=g), torch.randn(20, 4, generator=g)
    anchors, chosen = ground_truth_anchors(dictionary, 5, torch.Generator().manual_seed(2), target_dictionary=target)
    assert len(set(chosen.tolist())) == 5
    assert anchors.encoder is not None and anchors.decoder is not None
    torch.testing.assert_close(anchors.encoder, dictionary[chosen] / dictionary[chosen].norm(dim=1, keepdim=True))
    torch.testing.assert_close(anchors.decoder, target[chosen] / target[chosen].norm(dim=1, keepdim=True))
    again, same = ground_truth_anchors(dictionary, 5, torch.Generator().manual_seed(2), encoder=False)
    assert torch.equal(same, chosen) and again.encoder is None  # the draw depends only on the generator
    assert again.decoder is not None and torch.equal(again.decoder, anchors.encoder)  # an SAE writes what it reads
    with pytest.raises(ValueError, match="anchor_features=21 must be between 1 and the data's 20"):
        ground_truth_anchors(dictionary, 21, g)


def test_class_mean_anchors_are_the_normalised_class_means_in_sorted_order() -> None:
    g = torch.Generator().manual_seed(3)
    y, target = torch.randn(40, 6, generator=g), torch.randn(40, 4, generator=g)
    labels = torch.randint(0, 3, (40,), generator=g) * 5 + 2  # classes 2, 7, 12
    anchors = class_mean_anchors(y.double(), labels, target=target.double())
    for side, data in ((anchors.encoder, y), (anchors.decoder, target)):
        assert side is not None
        for row, label in enumerate((2, 7, 12)):
            mean = data[labels == label].double().mean(dim=0)
            torch.testing.assert_close(side[row], mean / mean.norm())
    with pytest.raises(ValueError, match=r"labels must be \(40,\)"):
        class_mean_anchors(y, labels[:-1])


# --- training with anchors ----------------------------------------------------------------------------------


def data_and_anchors(k: int = 3) -> tuple[torch.Tensor, Anchors]:
    g = torch.Generator().manual_seed(4)
    y = torch.relu(torch.randn(512, 16, generator=g))
    rows = unit_rows(torch.randn(k, 16, generator=g))
    return y, Anchors(encoder=rows, decoder=rows)


def anchored_fit(architecture: str, coefficient: float, anchors: Anchors, y: torch.Tensor):
    config = ReLUSAEConfig(d_in=16, d_sae=24) if architecture == "relu" else TopKSAEConfig(d_in=16, d_sae=24, k=2)
    train = TrainConfig(
        n_steps=200, batch_size=64, log_every=100, anchor_features=anchors.k, anchor_coefficient=coefficient
    )
    return make_sae(config, train).fit(y, FitContext(seed=0, anchors=anchors))


@pytest.mark.parametrize("architecture", ["relu", "topk"])
def test_a_large_anchor_weight_pins_the_anchored_latents_and_zero_leaves_them_free(architecture: str) -> None:
    y, anchors = data_and_anchors()
    assert anchors.encoder is not None and anchors.decoder is not None
    for coefficient, pinned in ((1e3, True), (0.0, False)):
        sae = anchored_fit(architecture, coefficient, anchors, y)
        decoder_gap = float((sae.W_dec.detach()[:3] - anchors.decoder).norm())
        encoder_gap = float((sae.W_enc.detach()[:, :3].T - anchors.encoder).norm())
        if pinned:  # Adam's steps shrink with the cosine schedule: what is left is the last steps' jitter
            assert decoder_gap < 5e-3 and encoder_gap < 5e-3
        else:  # random initial rows are ~√2 from random unit anchors, and nothing pulls them there
            assert decoder_gap > 1.0 and encoder_gap > 1.0
            assert sae.history.series("anchor_loss") == [0.0, 0.0]
        torch.testing.assert_close(sae.W_dec.detach().norm(dim=1), torch.ones(24))  # the sphere constraint holds


def test_the_logged_anchor_term_is_the_weighted_loss_at_the_current_parameters() -> None:
    y, anchors = data_and_anchors()
    sae = make_sae(ReLUSAEConfig(d_in=16, d_sae=24))
    start = anchor_loss_float64(sae.W_enc.detach(), sae.W_dec.detach(), anchors)
    train = TrainConfig(n_steps=1, log_every=1, anchor_features=3, anchor_coefficient=0.1)
    history = train_sae(sae, y, train, FitContext(anchors=anchors))
    assert list(history[0])[3:6] == ["mse_loss", "l1_loss", "anchor_loss"]
    assert history[0]["anchor_loss"] == pytest.approx(0.1 * start, rel=1e-6)
    assert history[0]["loss"] == pytest.approx(history[0]["mse_loss"] + history[0]["l1_loss"] + 0.1 * start, rel=1e-6)


def test_anchor_request_names_the_training_configs_anchors() -> None:
    config = ReLUSAEConfig(d_in=4, d_sae=6)
    assert make_sae(config).anchor_request() is None
    anchored = TrainConfig(anchor_features=2, anchor_source="class_means")
    assert make_sae(config, anchored).anchor_request() == (2, "class_means")
    with pytest.raises(ValueError, match="anchor_source"):
        TrainConfig(anchor_source="labels")  # type: ignore[arg-type]


def test_bad_anchors_are_one_line_errors_naming_the_field() -> None:
    y, anchors = data_and_anchors()
    train = TrainConfig(n_steps=2, anchor_features=3)
    sae = make_sae(ReLUSAEConfig(d_in=16, d_sae=24), train)
    cases = [
        (None, r"anchor_features=3: training needs FitContext\(anchors=...\)"),
        (Anchors(encoder=None, decoder=torch.ones(2, 16)), "context.anchors: anchor_features=3 needs 3 anchors, got 2"),
        (Anchors(encoder=torch.ones(3, 5), decoder=None), r"context.anchors.encoder must be \(3, 16\), got \(3, 5\)"),
        (Anchors(encoder=None, decoder=torch.ones(3, 9)), r"context.anchors.decoder must be \(3, 16\), got \(3, 9\)"),
    ]
    for given, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            sae.fit(y, FitContext(anchors=given))
        assert "\n" not in str(err.value)
    mp = make_sae(MatchingPursuitSAEConfig(d_in=16, d_sae=24, k=2), train)
    with pytest.raises(ValueError, match=r"context\.anchors\.encoder: the mp SAE has no encoder"):
        mp.fit(y, FitContext(anchors=anchors))
    too_many = make_sae(ReLUSAEConfig(d_in=16, d_sae=2), train)
    with pytest.raises(ValueError, match="anchor_features=3 must be at most d_sae=2"):
        too_many.fit(y, FitContext(anchors=anchors))


def test_an_mp_sae_anchors_its_decoder() -> None:
    y, anchors = data_and_anchors()
    decoder_only = Anchors(encoder=None, decoder=anchors.decoder)
    train = TrainConfig(n_steps=200, batch_size=64, anchor_features=3, anchor_coefficient=1e3)
    sae = make_sae(MatchingPursuitSAEConfig(d_in=16, d_sae=24, k=2), train).fit(y, FitContext(anchors=decoder_only))
    assert anchors.decoder is not None
    assert float((sae.W_dec.detach()[:3] - anchors.decoder).norm()) < 5e-3
