"""Support recovery: arms, and the laws — least squares on the true support recovers the true codes exactly;
right support with wrong magnitudes is repaired by the re-estimation."""

from __future__ import annotations

import pytest
import torch

from dictlab.data import GroundTruthDataset
from dictlab.experiments.tasks import TASKS
from dictlab.models import SparseCodingModel
from dictlab.surgery import SupportRecoveryParams, support_lstsq_codes, support_recovery_records

from .conftest import SAE_OVERRIDES, context, spec


class HalvedTrueCodes(SparseCodingModel):
    """Test double: an encoder with the true support and half the true magnitudes (looked up per split)."""

    def __init__(self, data: GroundTruthDataset) -> None:
        super().__init__(data.dictionary)
        self._codes = {s.y.data_ptr(): s.codes.to_dense() for s in (data.train, data["id"], data["ood"])}

    def encode(self, y: torch.Tensor, z0: torch.Tensor | None = None) -> torch.Tensor:
        return 0.5 * self._codes[y.data_ptr()]


def test_task_records_every_arm(data):
    run = spec("surgery.support_recovery", method="sae_topk", overrides=SAE_OVERRIDES)
    records = TASKS["surgery.support_recovery"].run(data, run, context())
    assert [r.label for r in records] == ["sae_topk", "support_lstsq+sae_topk", "fista+sae_topk", "fista_oracle"]
    for r in records:
        for split in ("id", "ood"):
            p, rec, f1 = (r.metrics[f"support_{name}_{split}"] for name in ("precision", "recall", "f1"))
            assert min(p, rec, f1) >= 0 and max(p, rec, f1) <= 1
    by_label = {r.label: r.metrics for r in records}
    # the least-squares arm keeps the SAE's support (only clamping at 0 can remove atoms)
    assert by_label["support_lstsq+sae_topk"]["l0_id"] <= by_label["sae_topk"]["l0_id"] + 1e-9


def test_least_squares_on_the_true_support_recovers_the_true_codes(data64):
    model = SparseCodingModel(data64.dictionary)
    true = {"train": data64.train, "id": data64["id"], "ood": data64["ood"]}
    support_of = {name: 0.5 * s.codes.to_dense() for name, s in true.items()}
    exact = support_lstsq_codes(model, data64, support_of, ridge=0.0)
    study = support_lstsq_codes(model, data64, support_of)  # ρ = 1e-8 biases by O(ρ / σ_min²)
    for name, split in true.items():
        torch.testing.assert_close(exact[name], split.codes.to_dense(), rtol=0, atol=1e-10)
        torch.testing.assert_close(study[name], split.codes.to_dense(), rtol=0, atol=1e-6)


def test_right_support_wrong_magnitudes_is_repaired(data64):
    params = SupportRecoveryParams(ridge=0.0)
    records = {r.label: r.metrics for r in support_recovery_records(data64, HalvedTrueCodes(data64), params, seed=0)}
    own, fixed = records["sae_topk"], records["support_lstsq+sae_topk"]
    for split in ("id", "ood"):
        assert own[f"support_f1_{split}"] == pytest.approx(1.0) and fixed[f"support_f1_{split}"] == pytest.approx(1.0)
        assert fixed[f"r2_{split}"] == pytest.approx(1.0, abs=1e-9)
        assert own[f"r2_{split}"] < 0.9  # half magnitudes reconstruct badly
        assert fixed[f"mcc_{split}"] == pytest.approx(1.0, abs=1e-9)
