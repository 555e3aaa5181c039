"""The data seam: generators by name with typed configs, canonical data tables, and a new generator that takes
one definition plus its registration to run through the runner, the store and the report."""

from __future__ import annotations

import pytest
import torch
from pydantic import Field

from dictlab.data import (
    GENERATORS,
    DataSizes,
    GeneratorConfig,
    GroundTruthDataset,
    SparseCodes,
    Split,
    data_config,
    data_spec,
    make_compositional,
    make_dataset,
    random_unit_dictionary,
    register_generator,
    sample_distinct,
)

# --- a generator as a user would write one: a config, a function, a registration ------------------------------


class ToyConfig(GeneratorConfig):
    """k-sparse codes on uniformly random supports, no labels, an OOD split drawn like the rest."""

    num_latents: int = Field(20, ge=2)
    k: int = Field(2, ge=1)
    input_dim: int = Field(12, ge=1)
    n_samples: int = Field(300, ge=6)

    def sizes(self) -> DataSizes:
        return DataSizes(self.num_latents, self.k, self.input_dim, self.n_samples // 3)


def make_toy(config: ToyConfig, seed: int, dtype: torch.dtype) -> GroundTruthDataset:
    generator = torch.Generator().manual_seed(seed)
    dictionary = random_unit_dictionary(config.num_latents, config.input_dim, generator, dtype)

    def split(rows: int) -> Split:
        indices = sample_distinct(rows, config.k, config.num_latents, generator)
        codes = SparseCodes(indices, torch.rand(rows, config.k, generator=generator, dtype=dtype), config.num_latents)
        return Split(codes.decode(dictionary), codes)

    third = config.n_samples // 3
    return GroundTruthDataset(
        config, seed, dictionary, {"train": split(third), "id": split(third), "ood": split(third)}, k=config.k
    )


if "test.toy" not in GENERATORS:
    register_generator("test.toy", ToyConfig, "uniform k-sparse supports, no labels (a test generator)")(make_toy)

TOY = {"generator": "test.toy", "num_latents": 20, "k": 2, "input_dim": 12, "n_samples": 300}


# --- the registry and canonical tables --------------------------------------------------------------------------


def test_generators_are_looked_up_by_name_with_a_readable_error():
    assert "compositional" in GENERATORS.names()
    with pytest.raises(ValueError, match="unknown generator 'nope'; allowed: compositional"):
        data_config({"generator": "nope"})
    with pytest.raises(ValueError, match=r"data \(compositional\): data.num_latent: unknown field 'num_latent'"):
        data_config({"num_latent": 30})
    with pytest.raises(ValueError, match=r"data \(test.toy\): data.k=True: Input should be a valid integer"):
        data_config({**TOY, "k": True})


def test_the_canonical_table_names_the_generator_and_makes_derived_fields_explicit():
    short = data_spec({"num_latents": 30, "k": 3})
    assert short["generator"] == "compositional" and short["input_dim"] == 14 and short["num_ood"] == 15
    assert data_spec({**short, "cs_constant": 2.0}) == short == data_spec({"num_latents": 30, "k": 3, "input_dim": 14})
    # two constants of the compressed-sensing bound that give one input_dim make the same data
    assert data_spec({"num_latents": 50, "k": 3, "cs_constant": 6}) == data_spec(
        {"num_latents": 50, "k": 3, "cs_constant": 7}
    )
    assert data_config(short).sizes() == DataSizes(30, 3, 14, 2500)


def test_make_dataset_is_the_generator_and_checks_the_seed():
    data = make_dataset({"num_latents": 30, "k": 3, "n_samples": 200}, seed=4)
    direct = make_compositional(num_latents=30, k=3, n_samples=200, seed=4)
    assert list(data.splits) == ["train", "id", "ood"] and torch.equal(data["ood"].y, direct["ood"].y)
    assert list(data.evaluation_splits()) == ["id", "ood"]
    for seed in ("x", 1.5, -1, True):
        with pytest.raises(ValueError, match="seed must be an integer"):
            make_dataset(TOY, seed=seed)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has no split 'val'; it has train, id, ood"):
        data["val"]


def test_a_dataset_checks_its_splits_against_its_dictionary():
    d = torch.randn(5, 3)
    with pytest.raises(ValueError, match="needs a 'train' split"):
        GroundTruthDataset(ToyConfig(), 0, d, {"id": Split(torch.zeros(2, 3))})
    with pytest.raises(ValueError, match=r"split 'train': y must be \(N, 3\)"):
        GroundTruthDataset(ToyConfig(), 0, d, {"train": Split(torch.zeros(2, 4))})
    with pytest.raises(ValueError, match="labels have 3 rows but y has 2"):
        Split(torch.zeros(2, 3), labels=torch.zeros(3, dtype=torch.bool))


# --- one new generator, end to end ---------------------------------------------------------------------------


def test_a_new_generator_runs_through_the_runner_store_and_report(tmp_path):
    from dictlab.experiments.runs import RunSpec
    from dictlab.experiments.store import ResultStore
    from dictlab.experiments.sweep import run_sweep
    from dictlab.report import build_report

    runs = [
        RunSpec(experiment="toy", task="method", data=TOY, seed=seed, params={"method": method, "overrides": overrides})
        for seed in (0, 1)
        for method, overrides in (("fista_oracle", {}), ("sae_topk", {"n_steps": 40}))
    ]
    with ResultStore(tmp_path / "r.sqlite") as store:
        summary = run_sweep(runs, store, progress=False)
        assert (summary.ran, summary.failed) == (4, 0), [r.error for r in store.runs(status="failed")]
        rows = store.records()
        assert {row["data.generator"] for row in rows} == {"test.toy"}
        oracle = [row for row in rows if row["label"] == "fista_oracle"]
        assert all(row["mcc_ood"] > 0.9 and row["dict_mean_cosine"] > 0.999 for row in oracle)
        # the data have no labels: no probe or AUC metric, rather than a failed run
        assert not any(key.startswith(("acc_", "auc_")) for row in rows for key in row)
        page = build_report(store, tmp_path / "report")
    assert "mcc_ood" in page.read_text() or "MCC" in page.read_text()
