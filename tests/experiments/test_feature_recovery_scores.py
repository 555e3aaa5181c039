"""GT Recovery and MIP as registered scores: decoder against the true (or target) dictionary, encoder against the
data's dictionary, and per source on crosscoder data — each through ``score_codes``."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from dictlab.data import GroundTruthDataset, Split, make_compositional, random_unit_dictionary
from dictlab.experiments.evaluate import encode_splits, score_codes
from dictlab.inference import FistaSolver
from dictlab.metrics import feature_recovery
from dictlab.models import SparseCodingModel
from dictlab.sae import make_sae
from dictlab.sae.topk import TopKSAEConfig

DECODER = ("mip", "gt_recovery_90", "gt_recovery_95")
ENCODER = ("mip_encoder", "gt_recovery_encoder_90", "gt_recovery_encoder_95")


@pytest.fixture(scope="module")
def data() -> GroundTruthDataset:
    return make_compositional(num_latents=30, k=3, n_samples=400, seed=2)


def _permuted_flipped(atoms: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    signs = torch.where(torch.rand(atoms.shape[0], generator=g) < 0.5, -1.0, 1.0).to(atoms)
    return (atoms * signs[:, None])[torch.randperm(atoms.shape[0], generator=g)]


def _scores(model: SparseCodingModel, data: GroundTruthDataset) -> dict[str, float]:
    return score_codes(model, data, encode_splits(model, data))


def test_the_truth_permuted_and_sign_flipped_recovers_every_feature(data: GroundTruthDataset) -> None:
    model = SparseCodingModel(_permuted_flipped(data.dictionary), FistaSolver(max_iter=20))
    out = _scores(model, data)
    assert out["mip"] == pytest.approx(1.0, abs=1e-6)
    assert out["gt_recovery_90"] == out["gt_recovery_95"] == 1.0
    assert not set(ENCODER) & set(out)  # a sparse-coding model has no encoder
    assert not any(key.startswith("mip_source") for key in out)  # nor these data sources


def test_a_random_dictionary_recovers_nothing_and_scores_its_own_feature_recovery(data: GroundTruthDataset) -> None:
    learned = random_unit_dictionary(45, data.input_dim, torch.Generator().manual_seed(5))
    out = _scores(SparseCodingModel(learned, FistaSolver(max_iter=20)), data)
    expected = feature_recovery(learned, data.dictionary)
    assert out["mip"] == pytest.approx(expected.mip, rel=1e-12) and out["mip"] < 0.9
    assert out["gt_recovery_90"] == expected.gt_recovery[0.9] < 0.5
    assert all(0.0 <= out[key] <= 1.0 for key in DECODER)


def test_an_sae_is_scored_on_its_encoder_against_the_data_dictionary(data: GroundTruthDataset) -> None:
    p, m = data.dictionary.shape
    sae = make_sae(TopKSAEConfig(d_in=m, d_sae=p + 10, k=3))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        encoder_rows = torch.cat([3.0 * _permuted_flipped(data.dictionary), torch.randn(10, m, generator=g)])
        sae.W_enc.copy_(encoder_rows.T)  # rescaled, not unit norm: the cosines do not care
    out = _scores(sae, data)
    assert out["mip_encoder"] == pytest.approx(1.0, abs=1e-6)
    assert out["gt_recovery_encoder_90"] == out["gt_recovery_encoder_95"] == 1.0
    decoder = feature_recovery(sae.dictionary, data.dictionary)  # the untouched random decoder
    assert out["mip"] == pytest.approx(decoder.mip, rel=1e-12) and out["mip"] < 0.9


def test_crosscoder_data_are_scored_per_source_block(data: GroundTruthDataset) -> None:
    p, m = data.dictionary.shape
    widths = (m // 3, m - m // 3)
    crosscoder_data = replace(data, sources=widths)
    first = _permuted_flipped(data.dictionary)[:, : widths[0]]  # source 1: the truth's block, permuted
    second = random_unit_dictionary(p, widths[1], torch.Generator().manual_seed(7))  # source 2: unrelated
    learned = torch.cat([first, second], dim=1)
    out = _scores(SparseCodingModel(learned, FistaSolver(max_iter=20)), crosscoder_data)
    assert out["mip_source1"] == pytest.approx(1.0, abs=1e-6) and out["gt_recovery_90_source1"] == 1.0
    expected = feature_recovery(second, data.dictionary[:, widths[0] :])
    assert out["mip_source2"] == pytest.approx(expected.mip, rel=1e-12) and out["mip_source2"] < 0.9
    assert out["gt_recovery_90_source2"] == expected.gt_recovery[0.9]
    assert "mip_source3" not in out and "mip_source0" not in out
    assert out["mip"] < 0.95  # the whole rows are far from the true features


class _Transcoder(SparseCodingModel):
    """A stand-in transcoder: a fixed dictionary that is meant to decode the targets."""

    predicts_target = True


def test_a_transcoder_is_scored_against_the_target_dictionary(data: GroundTruthDataset) -> None:
    p, m = data.dictionary.shape
    target_dictionary = random_unit_dictionary(p, m, torch.Generator().manual_seed(11))
    splits = {
        name: Split(s.y, s.codes, s.labels, s.codes.decode(target_dictionary))  # type: ignore[union-attr]
        for name, s in data.splits.items()
    }
    with_targets = replace(data, splits=splits, target_dictionary=target_dictionary, sources=(m - 4, 4))
    out = _scores(_Transcoder(_permuted_flipped(target_dictionary), FistaSolver(max_iter=20)), with_targets)
    assert out["mip"] == pytest.approx(1.0, abs=1e-6) and out["gt_recovery_95"] == 1.0
    assert not any(key.startswith("mip_source") for key in out)  # its columns are the targets', not y's blocks
