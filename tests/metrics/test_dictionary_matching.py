"""Dictionary matching by |cosine| with the Hungarian algorithm, atoms as rows."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dictlab.metrics import match_dictionaries


def unit_rows(p: int, m: int, seed: int) -> torch.Tensor:
    d = torch.randn(p, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return d / d.norm(dim=1, keepdim=True)


def test_permuted_sign_flipped_rescaled_copy_is_recovered_exactly():
    g = torch.Generator().manual_seed(0)
    true = unit_rows(40, 20, seed=1) * 1.5
    perm = torch.randperm(40, generator=g)
    signs = torch.where(torch.rand(40, 1, generator=g) < 0.5, -1.0, 1.0).double()
    learned = true[perm] * signs * 2.5
    result = match_dictionaries(learned, true)
    assert result.mean_cosine == pytest.approx(1.0, abs=1e-9)
    assert result.mean_angle == pytest.approx(0.0, abs=1e-6)
    assert result.frac_close == 1.0
    assert result.mean_norm_ratio == pytest.approx(2.5, abs=1e-12)
    assert torch.equal(result.assignment[perm], torch.arange(40))  # learned row j holds true atom perm[j]
    torch.testing.assert_close(result.cosines, torch.ones(40, dtype=torch.float64))


def test_matching_is_the_best_permutation_by_brute_force():
    true, learned = unit_rows(5, 3, seed=2), unit_rows(5, 3, seed=3) * torch.arange(1.0, 6.0).double()[:, None]
    cos = (true @ (learned / learned.norm(dim=1, keepdim=True)).T).abs()
    best = max(itertools.permutations(range(5)), key=lambda s: sum(float(cos[i, s[i]]) for i in range(5)))
    result = match_dictionaries(learned, true)
    assert result.assignment.tolist() == list(best)
    matched = cos[torch.arange(5), torch.tensor(best)]
    assert result.mean_cosine == pytest.approx(float(matched.mean()), abs=1e-12)
    assert result.mean_angle == pytest.approx(float(torch.arccos(matched).mean()), abs=1e-12)
    assert result.mean_norm_ratio == pytest.approx(float(torch.tensor(best, dtype=torch.float64).add(1).mean()))
    assert result.frac_close == pytest.approx(float((matched > 0.9).double().mean()))


def test_fewer_learned_atoms_leaves_true_atoms_unmatched():
    true = torch.eye(4, dtype=torch.float64)
    learned = torch.tensor([[0.0, 0, 3, 0], [0.6, 0.8, 0, 0]], dtype=torch.float64)
    result = match_dictionaries(learned, true)
    # atom 2 is matched exactly; one of atoms 0/1 takes the mixed atom (cos 0.8 beats 0.6)
    assert result.assignment.tolist() == [-1, 1, 0, -1]
    assert result.cosines[2] == pytest.approx(1.0) and result.cosines[1] == pytest.approx(0.8)
    assert math.isnan(float(result.cosines[0])) and math.isnan(float(result.cosines[3]))
    assert result.mean_cosine == pytest.approx(0.9)  # over the two matched pairs
    assert result.frac_close == pytest.approx(0.5)
    assert result.mean_norm_ratio == pytest.approx((3.0 + 1.0) / 2)
    assert result.as_dict()["mean_cosine"] == result.mean_cosine


def test_extra_learned_atoms_do_not_hurt_a_perfect_match_and_threshold_applies():
    true = unit_rows(6, 8, seed=4)
    learned = torch.cat([unit_rows(10, 8, seed=5), true.flip(0)])
    assert match_dictionaries(learned, true).mean_cosine == pytest.approx(1.0, abs=1e-12)
    near = true + 0.2 * unit_rows(6, 8, seed=6)
    cos = torch.nn.functional.cosine_similarity(near, true).abs()
    ordered = cos.sort().values
    threshold = float(ordered[2] + ordered[3]) / 2  # exactly 3 of 6 pairs are above it
    assert match_dictionaries(near, true).assignment.tolist() == list(range(6))
    assert match_dictionaries(near, true, threshold=threshold).frac_close == 0.5


def test_rejects_mismatched_observation_dimension():
    with pytest.raises(ValueError, match="columns"):
        match_dictionaries(torch.randn(3, 4), torch.randn(3, 5))
