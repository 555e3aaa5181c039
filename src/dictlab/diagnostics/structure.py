"""The structures SAE dictionaries show: antipodal pairs, dense latents, split features, absorbed parents.

All on unit-normalised atoms (norms floored at 1e-8, so a zero atom has cosine 0 with everything), atoms as
rows. Cosine matrices are formed in blocks of rows (~16M entries each), so p = 16,000 atoms never need a
p × p matrix; codes stream over samples in row chunks (``dictlab.diagnostics.codes``).

* ``antipodal_pairs`` — atoms pointing in opposite directions (cos ≤ −0.9). With non-negative codes a
  direction and its opposite need two latents; the seed's dense antipodal features are such pairs that
  are also dense (``dense_latents``).
* ``dense_latents`` — latents active on more than a fraction of the samples.
* ``splitting`` — per true feature, the learned atoms within |cos| ≥ 0.7 of it; ≥ 2 is a split feature.
* ``absorption`` — against a hierarchy of true features (a parent is active iff one of its children is,
  Def. 3.9 of seed 004), how often the parent's own latent is silent while a child's latent carries the
  parent's direction (Thm 3.10: absorption is a partial minimum of the objective).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from dictlab.data import SparseCodes
from dictlab.diagnostics.codes import CodesLike, as_offset, code_chunks, default_rows
from dictlab.metrics.inputs import ArrayLike, as_matrix
from dictlab.validation import check_positive

NORM_FLOOR = 1e-8
# Cosine rows formed per block: bounds the transient (block, p) matrix to ~16M entries at any p.
_BLOCK_ENTRIES = 1 << 24


def _unit(name: str, atoms: ArrayLike, cols: int | None = None) -> torch.Tensor:
    a = as_matrix(name, atoms, cols=cols)
    if a.shape[0] == 0:
        raise ValueError(f"{name} must have at least one atom (row), got shape {tuple(a.shape)}")
    return a / torch.linalg.vector_norm(a, dim=1, keepdim=True).clamp_min(NORM_FLOOR)


def _check_cosine(name: str, value: float, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


# --- antipodal pairs ------------------------------------------------------------------------------------------


class AntipodalPairs(NamedTuple):
    """pairs : (P, 2) int64 atom indices i < j, in lexicographic order; cosines : (P,) their cosines (≤ the
    threshold), in the dictionary's dtype."""

    pairs: torch.Tensor
    cosines: torch.Tensor


def antipodal_pairs(dictionary: ArrayLike, cosine: float = -0.9) -> AntipodalPairs:
    """Every pair of atoms of D (p, m) with cos(d_i, d_j) ≤ ``cosine`` (in [−1, 0)), i < j.

    Blockwise over the upper triangle of the Gram matrix of the unit atoms (p²m/2 multiply-adds, ~16M
    entries at a time), in the dictionary's dtype.
    """
    unit = _unit("dictionary", dictionary)
    threshold = _check_cosine("cosine", cosine, -1.0, 0.0)
    if threshold == 0.0:
        raise ValueError("cosine must be < 0 (antipodal atoms have negative cosine), got 0")
    p = unit.shape[0]
    block = max(1, _BLOCK_ENTRIES // p)
    found_i, found_j, found_c = [], [], []
    for start in range(0, p, block):
        stop = min(start + block, p)
        gram = unit[start:stop] @ unit[start:].T  # (rows, p − start): columns start.. of the upper triangle
        i, j = (gram <= threshold).nonzero(as_tuple=True)
        upper = j > i  # the block's own rows sit on the diagonal; threshold < 0 excludes it anyway
        i, j = i[upper], j[upper]
        found_i.append(i + start)
        found_j.append(j + start)
        found_c.append(gram[i, j])
    pairs = torch.stack([torch.cat(found_i), torch.cat(found_j)], dim=1)
    return AntipodalPairs(pairs, torch.cat(found_c))


# --- dense latents --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DenseLatents:
    """latents : (q,) int64, the latents active on more than ``fraction`` of the samples, ascending.
    frequency : (p,) float64, the fraction of samples on which each latent is non-zero."""

    latents: torch.Tensor
    frequency: torch.Tensor
    fraction: float


def dense_latents(
    codes: CodesLike,
    fraction: float = 0.5,
    *,
    y: ArrayLike | None = None,
    num_latents: int | None = None,
    rows_per_chunk: int | None = None,
) -> DenseLatents:
    """The latents that fire (z ≠ 0) on more than ``fraction`` ∈ [0, 1) of the samples.

    ``codes`` as everywhere in ``dictlab.diagnostics``; an encoder needs the observations ``y`` it encodes.
    Streams over row chunks; memory p counters.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be a number in [0, 1), got {fraction!r}")
    y_t = None if y is None else as_matrix("y", y)
    n = _n_rows(codes, y_t)
    count: torch.Tensor | None = None
    for chunk in code_chunks(codes, n, num_latents=num_latents, y=y_t, rows_per_chunk=rows_per_chunk):
        add = torch.bincount(chunk.col, minlength=chunk.num_latents)
        count = add if count is None else count + add
    assert count is not None
    frequency = count.to(torch.float64) / n
    return DenseLatents((frequency > fraction).nonzero().squeeze(1), frequency, float(fraction))


def _n_rows(codes: CodesLike, y: torch.Tensor | None) -> int:
    if y is not None:
        n = y.shape[0]
    elif isinstance(codes, (torch.Tensor, np.ndarray)):
        n = int(codes.shape[0])
    elif isinstance(codes, SparseCodes):
        n = len(codes)
    else:
        raise ValueError("codes is an encoder (a callable); pass the observations y it encodes")
    if n == 0:
        raise ValueError("codes must have at least one sample (row)")
    return n


# --- splitting ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Splitting:
    """counts : (p_true,) int64, learned atoms with |cos| ≥ ``cosine`` to each true atom.
    split : (s,) int64, the true features with counts ≥ 2 (split features), ascending.
    pairs : (K, 2) int64 (true atom, learned atom) of every such |cos|, in lexicographic order;
    cosines : (K,) their |cos|."""

    counts: torch.Tensor
    split: torch.Tensor
    pairs: torch.Tensor
    cosines: torch.Tensor
    cosine: float

    def summary(self) -> dict[str, Any]:
        counts = self.counts
        return {
            "cosine": self.cosine,
            "split_features": int(self.split.numel()),
            "covered_features": int((counts >= 1).sum()),
            "true_features": int(counts.numel()),
            "max_atoms_per_feature": int(counts.max()) if counts.numel() else 0,
        }


def splitting(learned: ArrayLike, true: ArrayLike, cosine: float = 0.7) -> Splitting:
    """How many learned atoms (q, m) lie within |cos| ≥ ``cosine`` ∈ (0, 1] of each true atom (p_true, m).

    A true feature with two or more such atoms is split (the learned dictionary spends several latents on
    one direction, e.g. a feature and its sub-cases). Blockwise over the true atoms (~16M cosines at a time).
    """
    true_u = _unit("true", true)
    learned_u = _unit("learned", learned, cols=true_u.shape[1])
    threshold = _check_cosine("cosine", cosine, 0.0, 1.0)
    if threshold == 0.0:
        raise ValueError("cosine must be > 0 (every atom has |cos| >= 0 with every other), got 0")
    work = torch.promote_types(true_u.dtype, learned_u.dtype)
    true_u, learned_u = true_u.to(work), learned_u.to(device=true_u.device, dtype=work)
    p, q = true_u.shape[0], learned_u.shape[0]
    block = max(1, _BLOCK_ENTRIES // q)
    found_t, found_l, found_c = [], [], []
    for start in range(0, p, block):
        cos = (true_u[start : start + block] @ learned_u.T).abs_()
        t, l_ = (cos >= threshold).nonzero(as_tuple=True)
        found_t.append(t + start)
        found_l.append(l_)
        found_c.append(cos[t, l_])
    pairs = torch.stack([torch.cat(found_t), torch.cat(found_l)], dim=1)
    counts = torch.bincount(pairs[:, 0], minlength=p)
    return Splitting(counts, (counts >= 2).nonzero().squeeze(1), pairs, torch.cat(found_c).to(torch.float64), threshold)


# --- absorption -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AbsorptionResult:
    """Result of ``absorption``; rates are NaN where no sample has the child (or any child) active.

    parents : (P,) int64 true latents that are some latent's parent, ascending.
    main_latents : (P,) int64 the learned latent of each parent (largest decoder cosine with its true atom);
    main_cosines : (P,) float64 that cosine.
    parent_rate : (P,) absorbed samples / samples with some child of the parent active; parent_samples (P,).
    pairs : (K, 2) int64 (parent, child) for every child; pair_rate (K,), pair_samples (K,) likewise per child.
    overall : absorbed / child-active samples pooled over parents; mean_over_parents : the mean of
    parent_rate over parents with samples (SAEBench's average over letters).
    """

    parents: torch.Tensor
    main_latents: torch.Tensor
    main_cosines: torch.Tensor
    parent_rate: torch.Tensor
    parent_samples: torch.Tensor
    pairs: torch.Tensor
    pair_rate: torch.Tensor
    pair_samples: torch.Tensor
    overall: float
    mean_over_parents: float
    settings: dict[str, float | None] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "overall": self.overall,
            "mean_over_parents": self.mean_over_parents,
            "parents": int(self.parents.numel()),
            "child_active_samples": int(self.parent_samples.sum()),
            **self.settings,
        }


def _check_parent(parent: ArrayLike, p_true: int) -> torch.Tensor:
    parent_t = torch.as_tensor(parent)
    if parent_t.shape != (p_true,) or parent_t.is_floating_point() or parent_t.dtype == torch.bool:
        raise ValueError(
            f"parent must be a ({p_true},) integer tensor (one entry per true latent), got "
            f"{tuple(parent_t.shape)} {parent_t.dtype}"
        )
    parent_t = parent_t.to(torch.int64)
    if p_true and (int(parent_t.min()) < -1 or int(parent_t.max()) >= p_true):
        raise ValueError(f"parent entries must be -1 (a root) or a latent index in [0, {p_true})")
    if bool((parent_t == torch.arange(p_true)).any()):
        raise ValueError("parent: a latent cannot be its own parent")
    return parent_t


def absorption(
    learned: ArrayLike,
    true: ArrayLike,
    parent: ArrayLike,
    codes: CodesLike,
    true_codes: CodesLike,
    *,
    y: ArrayLike | None = None,
    offset: ArrayLike | None = None,
    silent: float = 1e-6,
    absorbing_cosine: float = 0.3,
    projection_share: float | None = None,
    rows_per_chunk: int | None = None,
) -> AbsorptionResult:
    """Feature absorption against a ground-truth hierarchy: how often a parent's latent is absorbed.

    ``learned`` (q, m) decoder atoms with ``codes`` (N, q); ``true`` (p_true, m) atoms with ``true_codes``
    (N, p_true); ``parent`` (p_true,) int64, the parent of each true latent (−1: a root). By Def. 3.9 of
    seed 004 a parent P is active exactly when one of its children is.

    For each parent P, its latent is the learned atom with the largest cosine to P's true atom (from the
    decoder, as SAEBench's main latents are found by the probe direction). On a sample where child c is
    active, the sample is *absorbed* when

    1. P's latent is silent: |code| ≤ ``silent`` (absolute; SAEBench: 1e-8), and
    2. another latent that is active (|code| > ``silent``) has a decoder atom with cosine ≥
       ``absorbing_cosine`` to P's true atom: it carries the parent's direction. 0.3 is far above chance for
       random directions when m is large (std 1/√m: 0.036 at m = 768) but only ~1.5σ at m = 40; the
       absorbing atom of Thm 3.10, normalise(child + parent), has cosine ≈ 0.71.
    3. optionally (``projection_share``, SAEBench's full absorption uses 0.4), the largest such latent's
       contribution to the parent direction, z_a·⟨d_a, p̂⟩, is at least that share of the sample's own
       projection ⟨y − offset, p̂⟩ > 0 (needs ``y``).

    This is SAEBench's full-absorption criterion (Chanin et al. 2025) with the true parent atom in place of
    the linear probe, the decoder-cosine main latent in place of the k-sparse-probe ones, and any aligned
    active latent in place of the single top-projecting one. Rates: absorbed / child-active samples per
    (parent, child) and per parent, and pooled. Streams over row chunks; memory (rows, P).
    """
    true_u = _unit("true", true)
    learned_t = as_matrix("learned", learned, cols=true_u.shape[1])
    learned_u = _unit("learned", learned_t)
    work = torch.promote_types(true_u.dtype, learned_u.dtype)
    true_u, learned_u = true_u.to(work), learned_u.to(device=true_u.device, dtype=work)
    p_true, q = true_u.shape[0], learned_u.shape[0]
    parent_t = _check_parent(parent, p_true).to(true_u.device)
    check_positive("silent", silent, allow_zero=True)
    tau = _check_cosine("absorbing_cosine", absorbing_cosine, -1.0, 1.0)
    share = None if projection_share is None else _check_cosine("projection_share", projection_share, 0.0, 1.0)
    y_t = None if y is None else as_matrix("y", y, cols=true_u.shape[1])
    if share is not None and y_t is None:
        raise ValueError("projection_share needs the observations y (the sample's projection on the parent atom)")
    n = _n_rows(true_codes, y_t)

    parents = torch.unique(parent_t[parent_t >= 0])
    n_p = parents.numel()
    if n_p == 0:
        raise ValueError("parent: every latent is a root (-1); absorption needs a parent with children")
    parent_index = torch.full((p_true,), -1, dtype=torch.int64, device=true_u.device)
    parent_index[parents] = torch.arange(n_p, device=true_u.device)
    children = (parent_t >= 0).nonzero().squeeze(1)  # every child, ascending: the pair order
    pair_index = torch.full((p_true,), -1, dtype=torch.int64, device=true_u.device)
    pair_index[children] = torch.arange(children.numel(), device=true_u.device)

    cos = learned_u @ true_u[parents].T  # (q, P) signed cosines of learned atoms with the parent atoms
    main_cosines, main = cos.max(dim=0)
    is_main = torch.zeros(q, n_p, dtype=torch.bool, device=cos.device)
    is_main[main, torch.arange(n_p, device=cos.device)] = True
    absorbs = (cos >= tau) & ~is_main
    projection = learned_t.to(device=cos.device, dtype=work) @ true_u[parents].T  # ⟨d_a, p̂⟩ (q, P)
    off = as_offset(offset, true_u.shape[1], work, cos.device)

    pair_hits = torch.zeros(children.numel(), dtype=torch.int64, device=cos.device)
    pair_samples = torch.zeros_like(pair_hits)
    parent_hits = torch.zeros(n_p, dtype=torch.int64, device=cos.device)
    parent_samples = torch.zeros_like(parent_hits)
    rows = rows_per_chunk if rows_per_chunk is not None else default_rows(max(q, p_true, n_p * 64))
    learned_chunks = code_chunks(codes, n, num_latents=q, y=y_t, rows_per_chunk=rows, name="codes")
    true_chunks = code_chunks(true_codes, n, num_latents=p_true, y=y_t, rows_per_chunk=rows, name="true_codes")
    for chunk, truth in zip(learned_chunks, true_chunks, strict=True):
        size = chunk.n
        active = chunk.val.abs() > silent
        row, col, val = chunk.row[active], chunk.col[active], chunk.val[active].to(work)
        main_on = torch.zeros(size, n_p, dtype=torch.bool, device=cos.device)
        e, k = is_main[col].nonzero(as_tuple=True)
        main_on[row[e], k] = True
        absorbed = torch.zeros(size, n_p, dtype=torch.bool, device=cos.device)
        e, k = absorbs[col].nonzero(as_tuple=True)  # (active entry, parent) pairs whose atom carries the parent
        absorbed[row[e], k] = True
        if share is not None:
            assert y_t is not None
            carried = torch.full((size * n_p,), -math.inf, dtype=work, device=cos.device)
            carried.scatter_reduce_(0, row[e] * n_p + k, val[e] * projection[col[e], k], "amax")
            x = y_t[chunk.start : chunk.stop].to(dtype=work, device=cos.device)
            own = (x if off is None else x - off) @ true_u[parents].T  # ⟨y − offset, p̂⟩ (rows, P)
            absorbed &= (own > 0) & (carried.view(size, n_p) >= share * own)
        absorbed &= ~main_on

        keep = (truth.val != 0) & (parent_t[truth.col] >= 0)
        t_row, t_col = truth.row[keep], truth.col[keep]
        t_parent = parent_index[parent_t[t_col]]
        hit = absorbed[t_row, t_parent]
        pair_samples += torch.bincount(pair_index[t_col], minlength=children.numel())
        pair_hits.index_add_(0, pair_index[t_col], hit.to(torch.int64))
        parent_on = torch.zeros(size, n_p, dtype=torch.bool, device=cos.device)
        parent_on[t_row, t_parent] = True
        parent_samples += parent_on.sum(dim=0)
        parent_hits += (parent_on & absorbed).sum(dim=0)

    def rate(hits: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        out = hits.to(torch.float64) / samples.to(torch.float64)
        return torch.where(samples > 0, out, math.nan)

    parent_rate = rate(parent_hits, parent_samples)
    with_samples = parent_samples > 0
    total = int(parent_samples.sum())
    return AbsorptionResult(
        parents=parents,
        main_latents=main,
        main_cosines=main_cosines.to(torch.float64),
        parent_rate=parent_rate,
        parent_samples=parent_samples,
        pairs=torch.stack([parent_t[children], children], dim=1),
        pair_rate=rate(pair_hits, pair_samples),
        pair_samples=pair_samples,
        overall=int(parent_hits.sum()) / total if total else math.nan,
        mean_over_parents=float(parent_rate[with_samples].mean()) if bool(with_samples.any()) else math.nan,
        settings={"silent": float(silent), "absorbing_cosine": tau, "projection_share": share},
    )
