"""The hierarchical generator: Def. 3.9 on every sample, exclusive and free children, the OOD split of unseen
parent combinations, the dictionary's child–parent cosine, canonical tables, errors, and a run end to end."""

from __future__ import annotations

import math

import pytest
import torch

from dictlab.data import (
    DataSizes,
    GroundTruthDataset,
    HierarchicalConfig,
    Hierarchy,
    SparseCodes,
    Split,
    data_config,
    data_spec,
    input_dim_from_cs_bound,
    make_dataset,
    make_hierarchical,
)

SMALL = {
    "num_parents": 6,
    "children_per_parent": 3,
    "num_roots_free": 6,
    "k_parents": 2,
    "k_free": 1,
    "n_samples": 1200,
}
P, C = 6, 3  # parents 0 … 5, children 6 … 23 (parent i: 6 + 3i … 8 + 3i), free 24 … 29
OOD_POOL = torch.arange(3, 6)  # the last num_ood = P // 2 parents


@pytest.fixture(scope="module")
def exclusive() -> GroundTruthDataset:
    return make_hierarchical(seed=1, **SMALL)


@pytest.fixture(scope="module")
def free_children() -> GroundTruthDataset:
    return make_hierarchical(seed=2, exclusive_children=False, max_children_active=3, **SMALL)


def active(split: Split) -> torch.Tensor:
    assert split.codes is not None
    return split.codes.to_dense() != 0


def children_of(i: int) -> torch.Tensor:
    return P + i * C + torch.arange(C)


# --- the Hierarchy type --------------------------------------------------------------------------------------


def test_hierarchy_queries_on_a_three_level_tree():
    #   0 ── 2 ── 4      1 ── 3      5 (free)
    h = Hierarchy(torch.tensor([-1, -1, 0, 1, 2, -1]))
    assert h.children(0).tolist() == [2] and h.children(2).tolist() == [4] and h.children(4).tolist() == []
    assert h.parents().tolist() == [0, 1, 2] and h.leaves().tolist() == [3, 4, 5]
    assert h.depth == 2 and Hierarchy(torch.full((3,), -1)).depth == 0
    assert h.to("cpu").parent.tolist() == h.parent.tolist()


@pytest.mark.parametrize(
    ("parent", "message"),
    [
        (torch.tensor([-1, 0, 1.0]), "int64"),
        (torch.tensor([-1, 3, 0]), r"parent\[1\]=3 must be -1 \(a root\) or a latent in 0 … 2"),
        (torch.tensor([-1, 2, 1]), "cycle"),
        (torch.tensor([0]), "cycle"),
    ],
)
def test_a_malformed_hierarchy_is_refused(parent, message):
    with pytest.raises(ValueError, match=message):
        Hierarchy(parent)


def test_check_rejects_codes_that_violate_def_3_9():
    h = Hierarchy(torch.tensor([-1, -1, 0, 0, 1]))  # parents 0 (children 2, 3) and 1 (child 4)
    fine = SparseCodes(torch.tensor([[0, 2, 1, 4], [0, 3, 2, 1]]), torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0]]), 5)
    h.check(fine)
    h.check(fine.to_dense())  # row 1 stores latents 2 and 1 with value 0: inactive, not a violation
    orphan = SparseCodes(torch.tensor([[0, 2], [1, 3]]), torch.tensor([[1.0, 1], [1, 1]]), 5)  # 3 without 0
    lonely = SparseCodes(torch.tensor([[0, 2], [1, 4]]), torch.tensor([[1.0, 1], [1, 0]]), 5)  # 1, child 4 off
    for codes in (orphan, orphan.to_dense()):
        with pytest.raises(ValueError, match=r"sample 1: latent 3 is active without its parent 0 \(Def. 3.9"):
            h.check(codes)
    for codes in (lonely, lonely.to_dense()):
        with pytest.raises(ValueError, match="sample 1: parent 1 is active with no child active"):
            h.check(codes)
    with pytest.raises(ValueError, match=r"codes must be \(N, 5\)"):
        h.check(torch.zeros(2, 4))


def test_a_dataset_checks_the_length_of_its_hierarchy(exclusive):
    assert exclusive.hierarchy is not None
    assert exclusive.hierarchy.children(0).tolist() == children_of(0).tolist()
    assert exclusive.hierarchy.parents().tolist() == list(range(P)) and len(exclusive.hierarchy.leaves()) == 24
    moved = exclusive.to("cpu")
    assert moved.hierarchy is not None and torch.equal(moved.hierarchy.parent, exclusive.hierarchy.parent)
    with pytest.raises(ValueError, match="the hierarchy has 3 latents, the dictionary 30"):
        GroundTruthDataset(
            exclusive.config,
            0,
            exclusive.dictionary,
            {"train": exclusive.train},
            hierarchy=Hierarchy(torch.tensor([-1, 0, 0])),
        )
    assert make_dataset({"num_latents": 20, "k": 2, "n_samples": 20}, seed=0).hierarchy is None


# --- Def. 3.9 and the children -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["exclusive", "free_children"])
def test_every_sample_of_every_split_obeys_def_3_9(name, request):
    data = request.getfixturevalue(name)
    for split in data.splits.values():
        data.hierarchy.check(split.codes)
        data.hierarchy.check(split.codes.to_dense())
        on = active(split)  # an independent check: parent i on ⇔ some child of i on
        for i in range(P):
            assert torch.equal(on[:, i], on[:, children_of(i)].any(dim=1))
        assert (on[:, :P].sum(dim=1) == 2).all() and (on[:, 24:].sum(dim=1) == 1).all()


def test_exclusive_children_give_one_child_per_active_parent_and_a_fixed_k(exclusive):
    config = exclusive.config
    assert config.sizes() == DataSizes(30, 5, config.resolved_input_dim, 600) == exclusive.sizes()
    for split in exclusive.splits.values():
        on = active(split)
        per_parent = on[:, P:24].reshape(-1, P, C).sum(dim=2)
        assert torch.equal(per_parent, on[:, :P].long())  # exactly one child where the parent is on, else none
        assert split.codes.k == exclusive.k == 5 and (split.codes.values != 0).all()


def test_free_children_give_one_to_max_children_per_active_parent(free_children):
    assert free_children.k is None and free_children.config.sizes().k is None
    counts = []
    for split in free_children.splits.values():
        on = active(split)
        per_parent = on[:, P:24].reshape(-1, P, C).sum(dim=2)
        assert (per_parent[~on[:, :P]] == 0).all()
        counts.append(per_parent[on[:, :P]])
        # every row stores 2 parents, 2 × 3 children (the inactive ones with value 0), 1 free latent
        codes = split.codes
        assert codes.k == 9 and (codes.to_dense() != 0).sum() == (codes.values != 0).sum()
        assert torch.equal(codes.indices.sort(dim=1).values.unique_consecutive(dim=1), codes.indices.sort(dim=1).values)
    every = torch.cat(counts)
    assert set(every.tolist()) == {1, 2, 3}
    # the count is uniform on 1 … 3
    assert all(abs((every == c).float().mean().item() - 1 / 3) < 0.03 for c in (1, 2, 3))


def test_magnitudes_lie_in_their_range_with_the_parents_scaled():
    data = make_hierarchical(seed=0, parent_magnitude_scale=3.0, magnitude_min=0.2, magnitude_max=0.4, **SMALL)
    dense = data.train.codes.to_dense()
    parents, rest = dense[:, :P], dense[:, P:]
    assert parents[parents != 0].min() >= 0.6 - 1e-6 and parents.max() <= 1.2 + 1e-6
    assert rest[rest != 0].min() >= 0.2 - 1e-6 and rest.max() <= 0.4 + 1e-6


# --- the OOD split: combinations never seen in training -------------------------------------------------------


def test_parent_0_meets_the_ood_pool_only_in_the_ood_split(exclusive):
    for name in ("train", "id"):
        on = active(exclusive[name])
        with_p0 = on[:, 0]
        assert not (on[with_p0][:, OOD_POOL]).any()  # never parent 0 with an OOD-pool parent
        assert not (on[with_p0][:, torch.cat([children_of(i) for i in OOD_POOL.tolist()])]).any()
        assert on[~with_p0][:, OOD_POOL].any()  # the OOD-pool parents are seen, in setting B
        assert abs(with_p0.float().mean().item() - 0.5) < 0.05  # settings A and B, 1/2 each
    on = active(exclusive["ood"])
    assert on[:, 0].all() and (on[:, OOD_POOL].sum(dim=1) == 1).all()  # setting C: 0 + k_parents-1 OOD parents
    assert not on[:, 1:3].any()


def test_splits_have_the_compositional_sizes(exclusive):
    assert list(exclusive.splits) == ["train", "id", "ood"]
    assert [len(s) for s in exclusive.splits.values()] == [600, 600, 600]


@pytest.mark.parametrize("label", ["parent_magnitude", "parent_active", "child_active"])
def test_labels_follow_their_rule(label):
    data = make_hierarchical(seed=3, label=label, **SMALL)
    for name, split in data.splits.items():
        z = split.codes.to_dense()
        expected = {"parent_magnitude": z[:, 0] > 1.0, "parent_active": z[:, 0] != 0, "child_active": z[:, P] != 0}
        assert torch.equal(split.labels, expected[label])
        if label == "parent_magnitude":  # as compositional's z0 > 0.5: 1/4 of ID, 1/2 of OOD samples
            rate = split.labels.float().mean().item()
            assert abs(rate - (0.5 if name == "ood" else 0.25)) < 0.05


# --- observations, dictionary, determinism ------------------------------------------------------------------


def test_observations_are_codes_times_dictionary():
    data = make_hierarchical(seed=0, dtype=torch.float64, **SMALL)
    for split in data.splits.values():
        assert torch.allclose(split.y, split.codes.to_dense() @ data.dictionary, atol=1e-12)
    noisy = make_hierarchical(seed=0, dtype=torch.float64, noise_std=0.1, **SMALL)
    residual = noisy.train.y - noisy.train.codes.to_dense() @ noisy.dictionary
    assert abs(residual.std().item() - 0.1) < 0.005


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data(exclusive):
    again = make_hierarchical(seed=1, **SMALL)
    other = make_hierarchical(seed=4, **SMALL)
    for name, split in exclusive.splits.items():
        assert torch.equal(split.y, again[name].y) and torch.equal(split.codes.indices, again[name].codes.indices)
        assert not torch.equal(split.y, other[name].y)
    assert torch.equal(exclusive.dictionary, again.dictionary)
    assert not torch.equal(exclusive.dictionary, other.dictionary)


@pytest.mark.parametrize("c", [0.3, 0.8])
def test_child_parent_cosine_is_exact_and_siblings_share_c_squared(c):
    config = HierarchicalConfig(num_parents=40, children_per_parent=5, num_roots_free=0, k_free=0, input_dim=60)
    data = make_hierarchical(config.model_copy(update={"child_parent_cosine": c}), seed=0, dtype=torch.float64)
    d = data.dictionary
    assert torch.allclose(d.norm(dim=1), torch.ones(len(d), dtype=d.dtype), atol=1e-12)
    children = torch.arange(40, 240)
    cos = (d[children] * d[children // 5 - 8]).sum(dim=1)  # child 40 + 5i + j has parent i
    assert torch.allclose(cos, torch.full_like(cos, c), atol=1e-12)
    blocks = d[children].reshape(40, 5, -1)
    gram = blocks @ blocks.transpose(1, 2)
    siblings = gram[:, ~torch.eye(5, dtype=torch.bool)]  # 800 pairs; E = c² (their random parts are independent)
    assert abs(siblings.mean().item() - c * c) < 4 * (1 - c * c) / math.sqrt(60 * 400)


def test_without_a_cosine_the_atoms_are_independent():
    data = make_hierarchical(num_parents=40, children_per_parent=5, num_roots_free=0, k_free=0, input_dim=60, seed=0)
    d = data.dictionary.double()
    cos = (d[40:240] * d[torch.arange(40, 240) // 5 - 8]).sum(dim=1)
    # 200 cosines of independent random unit vectors: mean 0, std 1/√m
    assert abs(cos.mean().item()) < 4 / math.sqrt(60 * 200) and abs(cos.std().item() - 1 / math.sqrt(60)) < 0.03


# --- the config: derived fields, canonical tables, errors ----------------------------------------------------


def test_defaults_and_the_compressed_sensing_rule():
    config = HierarchicalConfig()
    assert config.num_latents == 70 and config.k == 8 and config.resolved_num_ood == 5
    assert config.sizes() == DataSizes(70, 8, input_dim_from_cs_bound(70, 8), 2500) == DataSizes(70, 8, 35, 2500)
    free = HierarchicalConfig(exclusive_children=False)  # mean children (1+4)/2: 3 × 3.5 + 2 = 12.5 → 13
    assert free.mean_active == 12.5 and free.sizes() == DataSizes(70, None, input_dim_from_cs_bound(70, 13), 2500)


def test_the_canonical_table_fills_derived_fields():
    spec = data_spec({"generator": "hierarchical", **SMALL})
    config = HierarchicalConfig(**SMALL)
    assert spec["input_dim"] == config.resolved_input_dim == input_dim_from_cs_bound(30, 5)
    assert spec["num_ood"] == 3 and spec["generator"] == "hierarchical" and spec["max_children_active"] is None
    assert data_spec({"generator": "hierarchical", **SMALL, "input_dim": spec["input_dim"], "cs_constant": 2.5}) == spec
    free = data_spec({"generator": "hierarchical", **SMALL, "exclusive_children": False})
    assert free["max_children_active"] == 3
    # one child at most is the exclusive case: the same table and the same data
    one = {"generator": "hierarchical", **SMALL, "exclusive_children": False, "max_children_active": 1}
    assert data_spec(one) == spec
    assert torch.equal(make_dataset(one, seed=5)["ood"].y, make_dataset(spec, seed=5)["ood"].y)
    assert make_dataset(one, seed=5).k == 5


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"children_per_parent": 0}, r"data.children_per_parent=0: Input should be greater than or equal to 1"),
        ({"k_parents": 7}, r"k_parents=7 must be < num_parents=6"),
        ({"num_ood": 6}, r"num_ood=6 must be < num_parents - 1 = 5"),
        ({"num_ood": 5}, r"num_ood=5 must be < num_parents - 1 = 5"),
        ({"k_parents": 4}, r"k_parents=4: setting A needs k_parents-1=3 parents from the ID pool of size 2"),
        ({"k_parents": 1}, r"data.k_parents=1: Input should be greater than or equal to 2"),
        ({"k_free": 7}, r"k_free=7 must be <= num_roots_free=6"),
        ({"exclusive_children": False, "max_children_active": 4}, r"max_children_active=4 must be <= children_per"),
        ({"magnitude_max": 0.1}, r"magnitude_max=0.1 must be >= magnitude_min=0.5"),
        ({"input_dim": 31}, r"input_dim=31 must be <= num_latents=30"),
        ({"input_dim": 4}, r"input_dim=4 must be >= 5"),
        ({"child_parent_cosine": 1.0}, r"data.child_parent_cosine=1.0: Input should be less than 1"),
        ({"label": "dog"}, r"data.label='dog': Input should be"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message) as error:
        data_config({"generator": "hierarchical", **SMALL, **fields})
    assert "\n" not in str(error.value) and str(error.value).startswith("data (hierarchical): ")


# --- end to end -----------------------------------------------------------------------------------------------


def test_the_oracle_and_an_sae_run_on_hierarchical_data(tmp_path):
    from dictlab.experiments.runs import RunSpec
    from dictlab.experiments.store import ResultStore
    from dictlab.experiments.sweep import run_sweep

    data = {"generator": "hierarchical", **SMALL, "n_samples": 800}
    runs = [
        RunSpec(experiment="hier", task="method", data=data, seed=0, params={"method": method, "overrides": o})
        for method, o in (("fista_oracle", {}), ("sae_topk", {"n_steps": 40}))
    ]
    with ResultStore(tmp_path / "r.sqlite") as store:
        summary = run_sweep(runs, store, progress=False)
        assert (summary.ran, summary.failed) == (2, 0), [r.error for r in store.runs(status="failed")]
        rows = {row["label"]: row for row in store.records()}
    assert rows["fista_oracle"]["data.generator"] == "hierarchical"
    assert rows["fista_oracle"]["mcc_ood"] > 0.9 and rows["fista_oracle"]["mcc_id"] > 0.9
    assert rows["fista_oracle"]["dict_mean_cosine"] > 0.999 and "auc_ood" in rows["fista_oracle"]
    assert set(rows) == {"fista_oracle", "sae_topk"}
