"""The Linear Representation Bench (seed 004, App. C): the bounded-interference construction and its gradient,
the laws of the codes (Bernoulli(1 − S) activity, c_min + Exp(β) magnitudes), observations, targets and sources,
the OOD split of unseen group pairs, seeds, errors and canonical tables, and a run end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch
from scipy import stats

from dictlab.data import (
    DataSizes,
    GroundTruthDataset,
    LRBConfig,
    bounded_interference_features,
    data_config,
    data_spec,
    interference_loss,
    make_dataset,
    make_lrb,
    random_unit_dictionary,
)
from dictlab.data.lrb import InterferenceUnreachable, _ordered_subsets

LEVEL = 1e-3  # significance level of every statistical test here (fixed seeds: each passes or fails for good)
SMALL = {"num_latents": 60, "input_dim": 30, "max_interference": 0.3, "n_samples": 3000, "eval_samples": 1000}


def max_interference(features: torch.Tensor) -> float:
    gram = features.double() @ features.double().T
    return float(gram.fill_diagonal_(-math.inf).max())


def active(codes) -> torch.Tensor:
    """(N, n) bool: the active latents (value != 0; padding entries are stored with value 0)."""
    return codes.to_dense() != 0


@pytest.fixture(scope="module")
def small() -> GroundTruthDataset:
    return make_lrb(seed=3, dtype=torch.float64, target_dim=20, **SMALL)


# --- the feature directions (C.1) ---------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "dim", "bound"), [(100, 50, 0.1), (300, 64, 0.2), (200, 120, 0.05), (60, 30, 0.3)])
def test_the_construction_meets_the_bound_with_unit_directions(n, dim, bound):
    start = random_unit_dictionary(n, dim, torch.Generator().manual_seed(7), torch.float64)
    assert max_interference(start) > bound + 0.05  # the Gaussian start is far from it: the descent did the work
    features = bounded_interference_features(
        n, dim, bound, generator=torch.Generator().manual_seed(7), dtype=torch.float64
    )
    assert features.shape == (n, dim)
    assert max_interference(features) <= bound
    torch.testing.assert_close(features.norm(dim=1), torch.ones(n, dtype=torch.float64), rtol=0, atol=1e-12)


def test_directions_that_already_meet_the_bound_are_returned_as_drawn():
    start = random_unit_dictionary(40, 200, torch.Generator().manual_seed(1), torch.float64)
    assert max_interference(start) < 0.5
    features = bounded_interference_features(40, 200, 0.5, generator=torch.Generator().manual_seed(1))
    assert features.dtype == torch.float32 and torch.equal(features, start.float())


def test_the_analytic_gradient_of_the_interference_loss_is_autograds():
    w = torch.randn(12, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # not unit: any W
    bound, margin, weight = 0.6, 0.4, 0.3  # threshold M − ε = 0.2
    gram = w @ w.T
    off = ~torch.eye(12, dtype=torch.bool)
    g = gram[off]
    assert (g > bound - margin).any() and ((g > 0) & (g < bound - margin)).any() and (g < 0).any()  # every piece
    reference = w.clone().requires_grad_(True)
    rgram = reference @ reference.T
    loss = ((rgram - (bound - margin)).clamp_min(0) ** 2)[off].sum() + weight * (rgram.clamp_min(0) ** 2)[off].sum()
    loss.backward()
    value, gradient = interference_loss(w, bound, margin=margin, negative_weight=weight)
    torch.testing.assert_close(value, loss.detach(), rtol=1e-13, atol=0)
    torch.testing.assert_close(gradient, reference.grad, rtol=1e-12, atol=1e-12)


def test_an_unreachable_bound_is_a_one_line_error_naming_the_fields():
    with pytest.raises(ValueError, match="num_latents=200") as error:
        make_lrb(num_latents=200, input_dim=5, max_interference=0.05, n_samples=10, eval_samples=10)
    message = str(error.value)
    assert "\n" not in message and "input_dim=5" in message and "max_interference=0.05" in message
    best = float(message.split("steps was ")[1].split(" ")[0])
    assert best > 0.05 and "raise input_dim or max_interference, or lower num_latents" in message
    # the target matrix is built the same way; its failure names target_dim
    with pytest.raises(ValueError, match=r"target_dim=2 dimensions cannot be given max_interference=0.3") as error:
        make_lrb(seed=0, target_dim=2, **SMALL)
    assert "\n" not in str(error.value)


def test_the_step_budget_is_reported_when_it_runs_out():
    with pytest.raises(InterferenceUnreachable, match=r"after 1 steps .* \(max_steps=1 reached\)") as error:
        bounded_interference_features(300, 64, 0.1, generator=torch.Generator().manual_seed(0), max_steps=1)
    assert error.value.steps == 1 and error.value.best > 0.1 and not error.value.stalled
    with pytest.raises(ValueError, match="raise interference_max_steps"):
        make_lrb(
            seed=0, interference_max_steps=1, **{**SMALL, "num_latents": 300, "input_dim": 64, "max_interference": 0.1}
        )


def test_float32_data_keep_the_bound_to_rounding():
    data = make_lrb(seed=0, **SMALL)
    assert data.dictionary.dtype == torch.float32 and max_interference(data.dictionary) <= 0.3 + 1e-6


# --- the codes (C.2) -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("pool", "width"), [(6, 2), (6, 3)])  # Floyd + shuffle (width² ≤ pool); top-k of keys
def test_ordered_subsets_are_uniform_in_order(pool, width):
    rows = 30_000
    chosen = _ordered_subsets(rows, width, pool, torch.Generator().manual_seed(0))
    assert ((chosen[:, :, None] == chosen[:, None, :]).sum(dim=(1, 2)) == width).all()  # distinct in every row
    pair = chosen[:, 0] * pool + chosen[:, 1]  # the ordered first two: uniform over pool·(pool−1) pairs
    observed = torch.bincount(pair, minlength=pool * pool).reshape(pool, pool)
    assert observed.diagonal().sum() == 0
    counts = observed[~torch.eye(pool, dtype=torch.bool)].double().numpy()
    assert stats.chisquare(counts).pvalue > LEVEL


@pytest.mark.parametrize(
    "fields",
    [
        {"num_latents": 100, "input_dim": 40, "sparsity": 0.9, "max_interference": 0.6},  # top-k keys
        {"num_latents": 2000, "input_dim": 64, "sparsity": 0.995, "max_interference": 0.9},  # Floyd + shuffle
    ],
)
def test_every_feature_is_active_with_probability_one_minus_s(fields):
    data = make_lrb(seed=1, n_samples=20_000, eval_samples=10, **fields)
    codes, n, p = data.train.codes, fields["num_latents"], 1 - fields["sparsity"]
    assert codes is not None
    mask = active(codes)
    rows = len(codes)
    # chi-square over features: Σ (c_j − Np)² / (Np(1−p)) ~ χ²_n for independent Bernoulli(p) columns
    per_feature = mask.sum(dim=0).double()
    statistic = float(((per_feature - rows * p) ** 2).sum() / (rows * p * (1 - p)))
    assert stats.chi2.sf(statistic, n) > LEVEL
    # the number active per sample is Binomial(n, p): chi-square over counts, tails pooled to expected ≥ 5
    per_row = mask.sum(dim=1)
    support = torch.arange(n + 1)
    expected = rows * stats.binom.pmf(support.numpy(), n, p)
    low, high = int(stats.binom.ppf(0.002, n, p)), int(stats.binom.ppf(0.998, n, p))
    observed = [int((per_row <= low).sum())] + [int((per_row == c).sum()) for c in range(low + 1, high)]
    observed.append(int((per_row >= high).sum()))
    wanted = [expected[: low + 1].sum(), *expected[low + 1 : high], expected[high:].sum()]
    assert stats.chisquare(observed, wanted).pvalue > LEVEL
    # the rows are padded to the split's largest count with value-0 entries on distinct latents
    assert codes.k == max(1, int(per_row.max()))
    idx = codes.indices
    assert ((idx[:, :, None] == idx[:, None, :]).sum(dim=(1, 2)) == codes.k).all()


def test_active_magnitudes_are_c_min_plus_an_exponential():
    data = make_lrb(seed=2, min_activation=0.5, activation_scale=2.0, sparsity=0.8, dtype=torch.float64, **SMALL)
    codes = data.train.codes
    assert codes is not None
    values = codes.values[codes.values != 0]
    assert values.numel() > 10_000 and float(values.min()) >= 0.5
    result = stats.kstest((values - 0.5).numpy(), "expon", args=(0, 2.0))
    assert result.pvalue > LEVEL
    # the same test rejects a wrong scale: it has the power to see one
    assert stats.kstest((values - 0.5).numpy(), "expon", args=(0, 2.2)).pvalue < LEVEL


# --- observations, targets, sources --------------------------------------------------------------------------


def test_observations_and_targets_are_the_codes_decoded(small):
    assert small.target_dictionary is not None and small.target_dictionary.shape == (60, 20)
    assert small.dictionary.shape == (60, 30) and small.sources is None and small.k is None
    for split in small.splits.values():
        assert split.codes is not None and split.target is not None and split.labels is None
        dense = split.codes.to_dense()
        assert torch.equal(split.y, split.codes.decode(small.dictionary))
        torch.testing.assert_close(split.y, dense @ small.dictionary, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(split.target, dense @ small.target_dictionary, rtol=1e-12, atol=1e-12)
    w_r = small.target_dictionary
    assert max_interference(w_r) <= 0.3
    torch.testing.assert_close(w_r.norm(dim=1), torch.ones(60, dtype=torch.float64), rtol=0, atol=1e-12)
    # W_r has its own stream: without targets the dictionary, codes and observations are the same
    plain = make_lrb(seed=3, dtype=torch.float64, **SMALL)
    assert plain.target_dictionary is None and plain.train.target is None
    assert torch.equal(plain.dictionary, small.dictionary) and torch.equal(plain["id"].y, small["id"].y)
    assert small.sizes() == DataSizes(60, None, 30, 3000, 20, None) == LRBConfig(target_dim=20, **SMALL).sizes()


def test_crosscoder_sources_are_independent_blocks_each_with_the_bound(small):
    data = make_lrb(seed=3, dtype=torch.float64, num_sources=3, **SMALL)
    assert data.dictionary.shape == (60, 90) and data.sources == (30, 30, 30)
    blocks = data.dictionary.split(30, dim=1)
    for block in blocks:
        assert max_interference(block) <= 0.3
        torch.testing.assert_close(block.norm(dim=1), torch.ones(60, dtype=torch.float64), rtol=0, atol=1e-12)
    # independent draws: two unrelated unit vectors in 30 dims have |cos| ~ 1/√30, never all equal
    assert float((blocks[0] * blocks[1]).sum(dim=1).abs().mean()) < 0.3
    assert torch.equal(blocks[0], small.dictionary)  # the first source is the one-source dictionary
    train = data.train
    assert train.codes is not None and torch.equal(train.codes.indices, small.train.codes.indices)
    for block, y in zip(blocks, train.y.split(30, dim=1), strict=True):
        torch.testing.assert_close(y, train.codes.decode(block), rtol=1e-12, atol=1e-12)
    assert data.sizes() == DataSizes(60, None, 90, 3000, None, (30, 30, 30))


# --- the OOD split of group pairs never seen together ------------------------------------------------------------


def test_train_and_id_stay_in_one_group_and_ood_spans_two():
    config = LRBConfig(ood_groups=3, sparsity=0.95, **{**SMALL, "eval_samples": 6000})
    data = make_lrb(config, seed=4)
    groups = config.latent_groups()
    assert groups is not None and groups.tolist() == [0] * 20 + [1] * 20 + [2] * 20
    assert list(data.splits) == ["train", "id", "ood"] and [len(s) for s in data.splits.values()] == [3000, 6000, 6000]

    def touched(split):  # (N, g) bool: the groups a sample's active features lie in
        mask = active(split.codes).reshape(len(split), 3, 20)
        return mask.any(dim=2)

    for name in ("train", "id"):
        assert (touched(data[name]).sum(dim=1) <= 1).all(), name  # no two groups ever active together
    assert (touched(data["ood"]).sum(dim=1) >= 2).all()
    # train/id: the row's group at probability min(1, 3·0.05) = 0.15, so E[count] = 20·0.15 = n(1 − S) = 3
    counts = active(data["id"].codes).sum(dim=1).double()
    assert abs(float(counts.mean()) - 3) < 4 * math.sqrt(20 * 0.15 * 0.85 / 6000)
    # ood is the Bernoulli(0.05) mask conditioned on touching two groups: P(j active | accepted)
    # = p (1 − q^(g−1)) / P(accepted), q = S^(n/g); the whole row is redrawn, not patched
    p, q = 0.05, 0.95**20
    expected = p * (1 - q**2) / config.ood_acceptance
    frequency = float(active(data["ood"].codes).double().mean())
    assert abs(frequency - expected) < 4 * math.sqrt(expected * (1 - expected) / (6000 * 60))
    assert abs(expected - p) > 8 * math.sqrt(expected * (1 - expected) / (6000 * 60))  # distinguishable from p


def test_the_ood_acceptance_is_the_probability_of_touching_two_groups():
    config = LRBConfig(ood_groups=4, sparsity=0.97, num_latents=40)
    mask = torch.rand(200_000, 40, generator=torch.Generator().manual_seed(0)) < 0.03
    touches = mask.reshape(-1, 4, 10).any(dim=2).sum(dim=1) >= 2
    share = float(touches.double().mean())
    assert abs(share - config.ood_acceptance) < 4 * math.sqrt(share * (1 - share) / 200_000)


def test_without_groups_there_is_no_ood_split(small):
    assert list(small.splits) == ["train", "id"] and LRBConfig().latent_groups() is None


# --- seeds, errors, tables --------------------------------------------------------------------------------------


def test_the_seed_fixes_the_data():
    fields = {**SMALL, "ood_groups": 2, "sparsity": 0.9}
    one, again, other = make_lrb(seed=5, **fields), make_lrb(seed=5, **fields), make_lrb(seed=6, **fields)
    assert torch.equal(one.dictionary, again.dictionary)
    for name in ("train", "id", "ood"):
        a, b = one[name], again[name]
        assert torch.equal(a.y, b.y) and torch.equal(a.codes.indices, b.codes.indices)
        assert torch.equal(a.codes.values, b.codes.values)
    assert not torch.allclose(one.dictionary, other.dictionary, atol=0.1)
    assert one.train.y.shape == other.train.y.shape and not torch.allclose(one.train.y, other.train.y, atol=0.1)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sparsity": 1.0}, r"data.sparsity=1.0: Input should be less than 1"),
        ({"sparsity": -0.1}, r"data.sparsity=-0.1: Input should be greater than or equal to 0"),
        ({"max_interference": 0}, r"data.max_interference=0: Input should be greater than 0"),
        ({"max_interference": 1.0}, r"data.max_interference=1.0: Input should be less than 1"),
        ({"num_sources": 0}, r"data.num_sources=0: Input should be greater than or equal to 1"),
        ({"num_latents": 1}, r"data.num_latents=1: Input should be greater than or equal to 2"),
        ({"input_dim": 0}, r"data.input_dim=0: Input should be greater than or equal to 1"),
        ({"activation_scale": 0.0}, r"data.activation_scale=0.0: Input should be greater than 0"),
        ({"min_activation": -1.0}, r"data.min_activation=-1.0: Input should be greater than or equal to 0"),
        ({"target_dim": 0}, r"data.target_dim=0: Input should be greater than or equal to 1"),
        ({"ood_groups": 1}, r"ood_groups=1: must be 0 \(no OOD split\) or >= 2"),
        ({"ood_groups": 7}, r"ood_groups=7 must divide num_latents=60 into equal groups"),
        ({"ood_groups": 120}, r"ood_groups=120 must divide num_latents=60 into equal groups \(and be <= it\)"),
        ({"ood_groups": 2, "sparsity": 0.999}, r"ood_groups=2 with sparsity=0.999: an OOD draw touches two groups"),
        ({"sparsity": True}, r"data.sparsity=True: Input should be a valid number"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message) as error:
        data_config({"generator": "lrb", **SMALL, **fields})
    assert "\n" not in str(error.value) and str(error.value).startswith("data (lrb): ")


def test_the_table_round_trips_and_makes_the_same_data():
    spec = data_spec({"generator": "lrb", **SMALL, "ood_groups": 3})
    assert spec["generator"] == "lrb" and spec["sparsity"] == 0.99 and spec["target_dim"] is None
    assert set(spec) == {"generator", *LRBConfig.model_fields}
    assert data_spec(json.loads(json.dumps(spec))) == spec == data_config(spec).to_spec()
    built, direct = make_dataset(spec, seed=0), make_lrb(seed=0, **SMALL, ood_groups=3)
    assert built.generator == "lrb" and built.config == LRBConfig(**SMALL, ood_groups=3)
    assert torch.equal(built["ood"].y, direct["ood"].y) and built.sizes() == built.config.sizes()
    defaults = LRBConfig()
    assert defaults.sizes() == DataSizes(1000, None, 768, 100_000, None, None)
    assert (defaults.sparsity, defaults.max_interference, defaults.num_latents) == (0.99, 0.1, 1000)


# --- end to end --------------------------------------------------------------------------------------------------


def test_the_oracle_recovers_the_codes_of_lrb_data(tmp_path):
    from dictlab.experiments.runs import RunSpec
    from dictlab.experiments.store import ResultStore
    from dictlab.experiments.sweep import run_sweep

    data = {"generator": "lrb", **SMALL, "sparsity": 0.95, "n_samples": 600, "eval_samples": 300, "ood_groups": 3}
    runs = [RunSpec(experiment="lrb", task="method", data=data, seed=0, params={"method": "fista_oracle"})]
    with ResultStore(tmp_path / "r.sqlite") as store:
        summary = run_sweep(runs, store, progress=False)
        assert (summary.ran, summary.failed) == (1, 0), [r.error for r in store.runs(status="failed")]
        (row,) = store.records()
    assert row["data.generator"] == "lrb" and row["dict_mean_cosine"] > 0.999
    assert row["mcc_id"] > 0.9 and row["mcc_ood"] > 0.9
