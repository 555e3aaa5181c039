"""Antipodal pairs, dense latents, splitting and absorption on dictionaries and codes built to have (or not have)
each structure, against brute-force references."""

from __future__ import annotations

import math

import pytest
import torch

from dictlab.data import SparseCodes
from dictlab.diagnostics import absorption, antipodal_pairs, dense_latents, splitting
from dictlab.diagnostics import structure as structure_module
from dictlab.inference import fista


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _random_atoms(p: int, m: int, seed: int) -> torch.Tensor:
    return _unit(torch.randn(p, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))


# --- antipodal pairs --------------------------------------------------------------------------------------------


def test_antipodal_pairs_are_found_exactly():
    d = _random_atoms(20, 30, 0)
    noise = 0.05 * _random_atoms(1, 30, 1)[0]
    built = torch.cat([d, -d[3:4], -3.0 * d[7:8] + noise])  # atoms 20 = −d_3, 21 ≈ −d_7 (another norm)
    found = antipodal_pairs(built)
    assert found.pairs.tolist() == [[3, 20], [7, 21]]
    assert float(found.cosines[0]) == pytest.approx(-1.0, abs=1e-12)
    cos_7 = float(_unit(built[7]) @ _unit(built[21]))
    assert float(found.cosines[1]) == pytest.approx(cos_7, rel=1e-12) and cos_7 < -0.99
    assert antipodal_pairs(d).pairs.shape == (0, 2)  # random directions in 30 dims: none below −0.9


def test_antipodal_pairs_blockwise_equals_the_full_gram(monkeypatch):
    d = torch.cat([_random_atoms(40, 3, 2)])  # in 3 dims many pairs are nearly opposite
    gram = _unit(d) @ _unit(d).T
    i, j = torch.triu(gram <= -0.8, diagonal=1).nonzero(as_tuple=True)
    monkeypatch.setattr(structure_module, "_BLOCK_ENTRIES", 7 * 40)  # 7 rows per block
    found = antipodal_pairs(d, cosine=-0.8)
    assert found.pairs.tolist() == torch.stack([i, j], 1).tolist() and len(i) > 5
    torch.testing.assert_close(found.cosines, gram[i, j])


# --- dense latents ----------------------------------------------------------------------------------------------


def test_dense_latents_counts_exactly():
    gen = torch.Generator().manual_seed(0)
    z = (torch.rand(200, 8, generator=gen) < 0.1).float()
    z[:140, 2] = 1.0  # latent 2 fires on at least 70 % of the samples
    z[:101, 5] = 0.5  # latent 5 on at least 50.5 %
    frequency = (z != 0).double().mean(0)
    result = dense_latents(z, 0.5, rows_per_chunk=9)
    torch.testing.assert_close(result.frequency, frequency)
    assert result.latents.tolist() == (frequency > 0.5).nonzero().squeeze(1).tolist() == [2, 5]
    sparse = dense_latents(z.to_sparse(), 0.5)
    assert sparse.latents.tolist() == [2, 5]
    encoded = dense_latents(lambda rows: z[rows[:, 0].long()], 0.5, y=torch.arange(200.0)[:, None], rows_per_chunk=9)
    assert encoded.latents.tolist() == [2, 5]


# --- splitting --------------------------------------------------------------------------------------------------


def test_a_duplicated_atom_is_split_in_two():
    true = _random_atoms(15, 40, 3)
    gen = torch.Generator().manual_seed(4)
    copies = _unit(true[[6, 6]] + 0.05 * torch.randn(2, 40, generator=gen, dtype=torch.float64))
    learned = torch.cat([true[:6], true[7:], copies, -2.0 * true[9:10]])  # atom 9 also appears flipped
    result = splitting(learned, true)
    expected = torch.ones(15, dtype=torch.long)
    expected[6] = 2
    expected[9] = 2
    assert result.counts.tolist() == expected.tolist()
    assert result.split.tolist() == [6, 9]
    # the learned atoms of true atom 6 are the two perturbed copies
    assert result.pairs[result.pairs[:, 0] == 6, 1].tolist() == [14, 15]
    assert bool((result.cosines >= 0.7).all())
    one = splitting(true, true)
    assert one.counts.tolist() == [1] * 15 and one.split.numel() == 0
    assert one.summary()["covered_features"] == 15


# --- absorption -------------------------------------------------------------------------------------------------


def _reference_absorption(learned, true, parent, z, z_true, silent, tau, share=None, y=None):
    """Sample by sample, straight from the definition (float64, no vectorisation)."""
    lu, tu = _unit(learned), _unit(true)
    out = {}
    for parent_j in sorted({int(v) for v in parent.tolist() if v >= 0}):
        cos = lu @ tu[parent_j]
        main = int(cos.argmax())
        for child in (parent == parent_j).nonzero().squeeze(1).tolist():
            hits = total = 0
            for n in range(z.shape[0]):
                if z_true[n, child] == 0:
                    continue
                total += 1
                if abs(float(z[n, main])) > silent:
                    continue
                absorbers = [
                    a
                    for a in range(learned.shape[0])
                    if a != main and abs(float(z[n, a])) > silent and float(cos[a]) >= tau
                ]
                if not absorbers:
                    continue
                if share is not None:
                    own = float(y[n] @ tu[parent_j])
                    best = max(float(z[n, a] * (learned[a] @ tu[parent_j])) for a in absorbers)
                    if not (own > 0 and best >= share * own):
                        continue
                hits += 1
            out[(parent_j, child)] = (hits, total)
    return out


def test_absorption_is_zero_for_the_true_dictionary_with_fista_codes(hierarchical):
    h = hierarchical
    codes = fista(h.y, h.dictionary, 0.01, nonneg=True, max_iter=3000).codes
    # FISTA recovers every parent that is on (so no sample can be absorbed)
    on = h.codes[:, h.parents] > 0
    assert bool((codes[:, h.parents][on] > 1e-3).all())
    result = absorption(h.dictionary, h.dictionary, h.parent, codes, h.codes)
    assert result.parents.tolist() == h.parents
    assert result.main_latents.tolist() == h.parents  # each parent's latent is its own atom
    torch.testing.assert_close(result.main_cosines, torch.ones(3, dtype=torch.float64))
    assert result.overall == 0.0 and result.mean_over_parents == 0.0
    assert result.pair_rate.tolist() == [0.0] * 9
    assert int(result.parent_samples.sum()) == int((h.codes[:, h.parents] > 0).sum())


def _absorbing(h, absorbed_children):
    """Thm 3.10's pattern: each absorbed child's learned atom is normalise(child + parent), and the parent's
    latent is silent on every sample where that child is active (the child's latent fires instead)."""
    learned = h.dictionary.clone()
    codes = h.codes.clone()
    for child in absorbed_children:
        parent_j = int(h.parent[child])
        learned[child] = _unit(h.dictionary[child] + h.dictionary[parent_j])
        on = h.codes[:, child] > 0
        codes[on, child] = h.codes[on, child] * (h.dictionary[child] + h.dictionary[parent_j]).norm()
        codes[on, parent_j] = 0.0
    return learned, codes


def test_absorption_is_one_for_a_fully_absorbing_dictionary(hierarchical):
    h = hierarchical
    children = [c for kids in h.children.values() for c in kids]
    learned, codes = _absorbing(h, children)
    result = absorption(learned, h.dictionary, h.parent, codes, h.codes)
    assert result.main_latents.tolist() == h.parents
    assert result.overall == 1.0 and result.mean_over_parents == 1.0
    assert result.pair_rate.tolist() == [1.0] * 9
    assert result.pairs.tolist() == [[int(h.parent[c]), c] for c in children]


def test_absorption_of_one_child_per_parent_is_per_child(hierarchical):
    h = hierarchical
    first = [kids[0] for kids in h.children.values()]
    learned, codes = _absorbing(h, first)
    result = absorption(learned, h.dictionary, h.parent, codes, h.codes, rows_per_chunk=17)
    assert result.pair_rate.view(3, 3)[:, 0].tolist() == [1.0] * 3
    assert result.pair_rate.view(3, 3)[:, 1:].flatten().tolist() == [0.0] * 6
    share = [(h.codes[:, kids[0]] > 0).sum() / (h.codes[:, p] > 0).sum() for p, kids in h.children.items()]
    torch.testing.assert_close(result.parent_rate, torch.stack(share).double())
    total = sum(int((h.codes[:, kids[0]] > 0).sum()) for kids in h.children.values())
    assert result.overall == pytest.approx(total / int((h.codes[:, h.parents] > 0).sum()))


@pytest.mark.parametrize("share", [None, 0.4, 0.9])
def test_absorption_equals_the_sample_by_sample_definition(hierarchical, share):
    h = hierarchical
    gen = torch.Generator().manual_seed(8)
    learned, codes = _absorbing(h, [kids[0] for kids in h.children.values()] + [h.children[1][2]])
    learned = torch.cat(
        [learned, _unit(h.dictionary[[0, 2]] + 0.25 * torch.randn(2, 40, generator=gen, dtype=torch.float64))]
    )
    codes = torch.cat(
        [
            codes,
            torch.rand(codes.shape[0], 2, generator=gen, dtype=torch.float64)
            * (torch.rand(codes.shape[0], 2, generator=gen) < 0.3),
        ],
        dim=1,
    )
    codes[torch.rand(codes.shape, generator=gen) < 0.1] = 0.0  # some main latents drop out on their own
    expected = _reference_absorption(learned, h.dictionary, h.parent, codes, h.codes, 1e-6, 0.3, share, h.y)
    as_sparse = SparseCodes(*_sparse(h.codes), h.codes.shape[1])
    for rows in (5, None):
        result = absorption(
            learned,
            h.dictionary,
            h.parent,
            codes.to_sparse(),
            as_sparse,
            y=h.y,
            projection_share=share,
            rows_per_chunk=rows,
        )
        for (parent_j, child), rate, samples in zip(
            result.pairs.tolist(), result.pair_rate.tolist(), result.pair_samples.tolist(), strict=True
        ):
            hits, total = expected[(parent_j, child)]
            assert samples == total
            assert rate == pytest.approx(hits / total) if total else math.isnan(rate)
    assert sum(h for h, _ in expected.values()) > 0


def _sparse(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    k = int((z != 0).sum(1).max())
    _, indices = z.abs().topk(k, dim=1)
    return indices, torch.gather(z, 1, indices)


def test_absorption_bad_input():
    true = _random_atoms(4, 5, 0)
    z = torch.rand(6, 4)
    with pytest.raises(ValueError, match=r"parent must be a \(4,\) integer tensor"):
        absorption(true, true, torch.tensor([0.0, 1, 2, 3]), z, z)
    with pytest.raises(ValueError, match="every latent is a root"):
        absorption(true, true, torch.full((4,), -1), z, z)
    with pytest.raises(ValueError, match="cannot be its own parent"):
        absorption(true, true, torch.tensor([-1, 1, 0, 0]), z, z)
    with pytest.raises(ValueError, match="projection_share needs the observations y"):
        absorption(true, true, torch.tensor([-1, 0, 0, 0]), z, z, projection_share=0.4)
    with pytest.raises(ValueError, match="true_codes must have 4 columns"):
        absorption(true, true, torch.tensor([-1, 0, 0, 0]), z, z[:, :3])
    with pytest.raises(ValueError, match=r"cosine must be a number in \[0.0, 1.0\]"):
        splitting(true, true, cosine=1.5)
    with pytest.raises(ValueError, match="cosine must be < 0"):
        antipodal_pairs(true, cosine=0.0)
    with pytest.raises(ValueError, match=r"fraction must be a number in \[0, 1\)"):
        dense_latents(z, 1.0)
