"""How far a dictionary and its codes are from a stationary point of the non-negative L1 dictionary objective.

The objective (seed 003, after Gribonval & Schnass 2010, for the non-negative joint problem vanilla SAEs
approximate), atoms as rows — the papers' ``y = A z`` has ``A = D.T``, so atom d_j is A's column j:

    F(Z, D) = ½‖Y − Z D − offset‖²_F + λ‖Z‖₁,   Z ≥ 0,   ‖d_j‖ = 1 for every atom j.

**Codes** (``kkt_violation``). For a fixed D, z_n is optimal iff, with the gradient c_n = (y_n − offset − z_n D) Dᵀ
(p,) (the correlations of the residual with the atoms): c_nj = λ where z_nj > 0 and c_nj ≤ λ where z_nj = 0
(signed codes: c_nj = λ·sign z_nj where z_nj ≠ 0, |c_nj| ≤ λ elsewhere).

**Atom directions** (``stationarity``). With the residuals R = Y − Z D − offset (N, m), ∂F/∂d_j = −Rᵀz_j =: −g_j,
the residuals atom j is active on, summed with its codes as weights. On the sphere ‖d_j‖ = 1 the Lagrange
condition is g_j = μ_j d_j: the tangential part (I − d_j d_jᵀ) g_j vanishes. If the codes are optimal for D as
well, μ_j = d_j·g_j = Σ_n z_nj (r_n·d_j) = λ Σ_n z_nj > 0, so at a joint stationary point

    d_j = Σ_n z_nj r_n / (λ Σ_n z_nj)

— each atom is the code-weighted mean of the residuals it is active on, over λ (seed 003: "each optimal atom
aligns with a weighted sum of the data points it activates on"; writing r_n + z_nj d_j, the sample with the
other atoms' share removed, gives the same condition). The measured quantity, ‖(I − d̂_j d̂_jᵀ) g_j‖ / ‖g_j‖ =
sin∠(d_j, g_j), is 0 there and 1 for an atom orthogonal to its pull. It does not depend on how the scale is
split between codes and atoms (z_j s, d_j / s leave R fixed and scale g_j by s), so SAE decoders with any
norms are measured as they are. The multiplier d̂_j·g_j / Σ_n |z_nj| = Σ_n |z_nj| c_nj sign z_nj / Σ_n |z_nj| is
the code-weighted mean gradient over the atom's active entries: λ for every atom whenever the codes are Lasso-
optimal, stationary atoms or not — a check of the codes, per atom, and for an SAE the λ its codes act as if
they were optimal for (``kkt_violation``'s estimate is the unweighted median over all active entries).

Codes without an L1 term (TopK, OMP: least squares on their support) have r_n ⟂ d_j wherever z_nj ≠ 0, so
d_j·g_j = 0: the multiplier is 0, the angle is ≈ 90° by construction and the residual ≈ 1 says nothing. There
(λ = 0) stationarity needs g_j = 0 itself, which ``pull_coherence`` = ‖g_j‖ / Σ_n |z_nj| ‖r_n‖ ∈ [0, 1]
measures: 0 when the residuals the atom sees cancel, 1 when they all point one way.

Both stream over the samples in row chunks (``dictlab.diagnostics.codes``): G = RᵀZ is accumulated from each
chunk's non-zeros (cost N·L0·m, not N·p·m); only ``kkt_violation`` forms the (chunk, p) gradient block, as it
must (cost N·p·m).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from dictlab.diagnostics.codes import CodeChunk, CodesLike, as_offset, code_chunks, default_rows
from dictlab.metrics.inputs import ArrayLike, as_matrix
from dictlab.validation import check_positive

NORM_FLOOR = 1e-8
QUANTILES = {"q05": 0.05, "q25": 0.25, "median": 0.5, "q75": 0.75, "q95": 0.95, "max": 1.0}
# Entries of the (rows, p) gradient block of ``kkt_violation`` per chunk (~64 MB in float32).
KKT_BLOCK_ENTRIES = 1 << 24
# Gathered (entries, m) rows per step when λ is estimated from the active entries alone.
_GATHER_ENTRIES = 1 << 22


def quantile_summary(values: torch.Tensor) -> dict[str, float]:
    """{q05, q25, median, q75, q95, max, mean} of the finite entries (NaN for each when there are none)."""
    finite = values[torch.isfinite(values)].to(torch.float64)
    if finite.numel() == 0:
        return {**dict.fromkeys(QUANTILES, math.nan), "mean": math.nan}
    ordered = finite.sort().values
    last = ordered.numel() - 1
    # linear interpolation between order statistics, as torch.quantile (which refuses > 16M entries)
    out = {}
    for name, q in QUANTILES.items():
        position = q * last
        low = math.floor(position)
        high = min(low + 1, last)
        out[name] = float(ordered[low] + (position - low) * (ordered[high] - ordered[low]))
    out["mean"] = float(finite.mean())
    return out


def _problem(
    y: ArrayLike, dictionary: ArrayLike, offset: ArrayLike | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.dtype]:
    """Checked y (N, m), dictionary (p, m), offset (m,) or None, and the working dtype (both inputs promoted)."""
    y_t = as_matrix("y", y)
    d = as_matrix("dictionary", dictionary, cols=y_t.shape[1])
    if y_t.shape[0] == 0:
        raise ValueError("y must have at least one sample (row)")
    work = torch.promote_types(y_t.dtype, d.dtype)
    off = as_offset(offset, y_t.shape[1], work, d.device)
    return y_t, d.to(work), off, work


def _residual(y: torch.Tensor, chunk: CodeChunk, d: torch.Tensor, offset: torch.Tensor | None) -> torch.Tensor:
    """(n, m) residuals y − offset − Z D of the chunk's rows, in the dictionary's dtype and device."""
    r = y[chunk.start : chunk.stop].to(dtype=d.dtype, device=d.device) - chunk.decode(d)
    return r if offset is None else r.sub_(offset)


def _split_pull(pull: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per atom, d̂_j·g_j and ‖g_j − (d̂_j·g_j) d̂_j‖ (float64), in blocks of atoms so that the float64 unit
    atoms and the tangential parts exist only a block at a time (not three more (p, m) float64 matrices)."""
    along = torch.empty(pull.shape[0], dtype=torch.float64, device=pull.device)
    tangential = torch.empty_like(along)
    step = default_rows(pull.shape[1])
    for start in range(0, pull.shape[0], step):
        rows = slice(start, start + step)
        atoms = d[rows].to(torch.float64)
        unit = atoms / torch.linalg.vector_norm(atoms, dim=1, keepdim=True).clamp_min(NORM_FLOOR)  # never in place
        g = pull[rows]
        along[rows] = (g * unit).sum(dim=1)
        tangential[rows] = torch.linalg.vector_norm(g - along[rows, None] * unit, dim=1)
    return along, tangential


@dataclass(frozen=True)
class StationarityResult:
    """Result of ``stationarity``; per-atom tensors are (p,) float64.

    residual : ‖(I − d̂_j d̂_jᵀ) g_j‖ / ‖g_j‖ ∈ [0, 1] with g_j = Rᵀ z_j: 0 when the atom is aligned with the
        code-weighted sum of the residuals it is active on (the stationarity condition of its direction).
        NaN for a dead atom (z_j = 0 on every sample: no gradient, no condition); 0 for a used atom whose
        g_j is exactly 0.
    cosine : d̂_j·g_j / ‖g_j‖: +1 at a stationary point with λ > 0 (−1 would be an atom pointing away from its
        residuals); NaN where residual is NaN or g_j = 0.
    multiplier : d̂_j·g_j / Σ_n |z_nj|, the code-weighted mean gradient of the atom's active entries — λ for
        every atom when the codes are Lasso-optimal (whether or not the atoms are stationary); NaN for dead atoms.
    pull_coherence : ‖g_j‖ / Σ_n |z_nj| ‖r_n‖ ∈ [0, 1] — the stationarity measure of codes without an L1 term
        (multiplier ≈ 0), where the residual is ≈ 1 by construction; 0 where every r_n = 0; NaN for dead atoms.
        About 1/√(samples) for residuals in random directions (1 for an atom used once): compare atoms of
        similar usage.
    usage : fraction of samples on which z_nj ≠ 0.
    mass : Σ_n |z_nj| (codes as given).
    dead : z_j = 0 on every sample.
    pull : (p, m) float64, the rows g_j = Σ_n z_nj r_n (the negative gradient of F in d_j).
    quantiles : ``quantile_summary`` of the residual over the live atoms.
    """

    residual: torch.Tensor
    cosine: torch.Tensor
    multiplier: torch.Tensor
    pull_coherence: torch.Tensor
    usage: torch.Tensor
    mass: torch.Tensor
    dead: torch.Tensor
    n_samples: int
    quantiles: dict[str, float]
    pull: torch.Tensor = field(repr=False)

    def summary(self) -> dict[str, Any]:
        live = ~self.dead
        multiplier = self.multiplier[live]
        return {
            "atoms": int(self.dead.numel()),
            "dead_atoms": int(self.dead.sum()),
            "samples": self.n_samples,
            "residual": self.quantiles,
            "multiplier_median": float(multiplier.median()) if multiplier.numel() else math.nan,
            "pull_coherence": quantile_summary(self.pull_coherence[live]),
            "usage_mean": float(self.usage.mean()),
        }


def stationarity(
    y: ArrayLike,
    codes: CodesLike,
    dictionary: ArrayLike,
    *,
    offset: ArrayLike | None = None,
    rows_per_chunk: int | None = None,
) -> StationarityResult:
    """The stationarity residual of every atom's direction for Y (N, m), codes (N, p) and D (p, m).

    See the module docstring for the condition. ``codes``: a dense, sparse COO/CSR (N, p) tensor,
    ``SparseCodes``, or a callable ``encode(y_chunk)`` called on the raw rows of ``y`` (a model's ``encode``,
    which removes its own offset). ``offset`` (m,) is subtracted from y in the residuals (an SAE's b_dec).
    The codes may be signed (the condition on the direction is the same). Memory: the (p, m) float64 sum G
    and one chunk of rows; time N·L0·m. Accumulated in float64.
    """
    y_t, d, off, work = _problem(y, dictionary, offset)
    n, m = y_t.shape
    p = d.shape[0]
    pull = torch.zeros(p, m, dtype=torch.float64, device=d.device)
    mass = torch.zeros(p, dtype=torch.float64, device=d.device)
    spread = torch.zeros(p, dtype=torch.float64, device=d.device)  # Σ_n |z_nj| ‖r_n‖
    count = torch.zeros(p, dtype=torch.int64, device=d.device)
    chunks = code_chunks(
        codes, n, num_latents=p, y=y_t, rows_per_chunk=rows_per_chunk, width=m, dtype=work, device=d.device
    )
    for chunk in chunks:
        r = _residual(y_t, chunk, d, off)
        chunk.add_transposed_product_(pull, r)
        weight = chunk.val.abs().to(torch.float64)
        mass.index_add_(0, chunk.col, weight)
        spread.index_add_(0, chunk.col, weight * torch.linalg.vector_norm(r, dim=1).to(torch.float64)[chunk.row])
        count += torch.bincount(chunk.col, minlength=p)
    along, tangential = _split_pull(pull, d)
    pull_norm = torch.linalg.vector_norm(pull, dim=1)
    dead = count == 0
    nan = torch.full_like(along, math.nan)
    has_pull = pull_norm > 0
    residual = torch.where(dead, nan, torch.where(has_pull, tangential / pull_norm.clamp_min(1e-300), 0.0))
    cosine = torch.where(dead | ~has_pull, nan, along / pull_norm.clamp_min(1e-300))
    multiplier = torch.where(dead, nan, along / mass.clamp_min(1e-300))
    coherence = torch.where(dead, nan, torch.where(spread > 0, pull_norm / spread.clamp_min(1e-300), 0.0))
    return StationarityResult(
        residual=residual,
        cosine=cosine,
        multiplier=multiplier,
        pull_coherence=coherence.clamp_max(1.0),
        usage=count.to(torch.float64) / n,
        mass=mass,
        dead=dead,
        n_samples=n,
        quantiles=quantile_summary(residual[~dead]),
        pull=pull,
    )


@dataclass(frozen=True)
class KKTResult:
    """Result of ``kkt_violation``: violations of the Lasso conditions, divided by λ (so 0.1 = 10 % of λ).

    Per entry (n, j), with c = (y − offset − zD)Dᵀ: |c_nj − λ| where z_nj > 0, max(0, c_nj − λ) where z_nj = 0
    (signed: |c_nj − λ sign z_nj| and max(0, |c_nj| − λ)).

    lam : the λ used; lam_estimated : whether it was estimated (the median of c·sign z over the active entries).
    sample_max, sample_mean : (N,) float64, max and mean over the p entries of each sample.
    atom_max, atom_mean : (p,) float64, max and mean over the N samples of each atom.
    mean : over all N·p entries; active_mean / inactive_mean : over the active / inactive entries.
    n_active : the number of active entries (N·L0).
    quantiles : ``quantile_summary`` of sample_max.
    """

    lam: float
    lam_estimated: bool
    sample_max: torch.Tensor = field(repr=False)
    sample_mean: torch.Tensor = field(repr=False)
    atom_max: torch.Tensor = field(repr=False)
    atom_mean: torch.Tensor = field(repr=False)
    mean: float
    active_mean: float
    inactive_mean: float
    n_active: int
    quantiles: dict[str, float]

    def summary(self) -> dict[str, Any]:
        return {
            "lam": self.lam,
            "lam_estimated": self.lam_estimated,
            "mean": self.mean,
            "active_mean": self.active_mean,
            "inactive_mean": self.inactive_mean,
            "active_entries": self.n_active,
            "sample_max": self.quantiles,
            "atom_max": quantile_summary(self.atom_max),
        }


def _active_gradients(r: torch.Tensor, chunk: CodeChunk, d: torch.Tensor) -> torch.Tensor:
    """c_nj = r_n·d_j on the chunk's active entries only (cost nnz·m), the gathered atoms bounded at ~4M entries.

    Rows padded to the chunk's largest count and batched (d[support] (rows, kmax, m) times r (rows, m, 1): one
    gather of the atoms, not of the residuals too) unless padding would more than double the work."""
    nnz, n, m = chunk.col.numel(), chunk.n, d.shape[1]
    if nnz == 0:
        return r.new_zeros(0)
    counts = torch.bincount(chunk.row, minlength=n)
    kmax = int(counts.max())
    if kmax * n > 2 * nnz:
        step = max(1, _GATHER_ENTRIES // m)
        return torch.cat(
            [(r[chunk.row[i : i + step]] * d[chunk.col[i : i + step]]).sum(dim=1) for i in range(0, nnz, step)]
        )
    position = torch.arange(nnz, device=r.device) - (torch.cumsum(counts, 0) - counts)[chunk.row]
    support = torch.zeros(n, kmax, dtype=torch.int64, device=r.device)
    support[chunk.row, position] = chunk.col
    out = r.new_empty(n, kmax)
    step = max(1, _GATHER_ENTRIES // (kmax * m))
    for i in range(0, n, step):
        out[i : i + step] = torch.bmm(d[support[i : i + step]], r[i : i + step, :, None]).squeeze(2)
    return out[chunk.row, position]


def kkt_violation(
    y: ArrayLike,
    codes: CodesLike,
    dictionary: ArrayLike,
    lam: float | None = None,
    nonneg: bool = True,
    *,
    offset: ArrayLike | None = None,
    unit_atoms: bool = False,
    rows_per_chunk: int | None = None,
) -> KKTResult:
    """How far the codes (N, p) are from the Lasso optimality conditions for D (p, m); see ``KKTResult``.

    ``lam=None`` estimates λ as the median of c_nj·sign z_nj over the active entries (the lower median for an
    even count). SAEs have no λ, so this asks: is there one λ that makes these codes optimal for this
    dictionary? At an exact Lasso solution every active entry has c = λ and the estimate is λ itself. An
    estimate ≤ 0 (the residual points away from the atoms in use: codes too large) means no λ > 0 does;
    that is a ValueError saying so. The estimate needs the codes twice: an encoder is then called once and
    its codes kept (memory N·L0).

    ``unit_atoms=True`` measures the problem with unit-norm atoms — the seed's objective: atoms are divided by
    their norms and the codes multiplied by them (Z D unchanged). For an SAE whose L1 penalty weights each
    latent by its decoder norm, this is the Lasso it trains on. Default: D as given.

    ``nonneg``: the conditions of z ≥ 0 (negative codes are then a ValueError) or of signed codes. Streams over
    row chunks; each forms the (chunk, p) gradient block (cost N·p·m in all; memory rows·p).
    """
    y_t, d, off, work = _problem(y, dictionary, offset)
    n, p = y_t.shape[0], d.shape[0]
    if lam is not None:
        check_positive("lam", lam)
    scale = None
    if unit_atoms:
        scale = torch.linalg.vector_norm(d, dim=1).clamp_min(NORM_FLOOR)
        d = d / scale[:, None]
    rows = rows_per_chunk if rows_per_chunk is not None else default_rows(p, KKT_BLOCK_ENTRIES)

    def stream() -> Iterator[CodeChunk]:
        for chunk in code_chunks(codes, n, num_latents=p, y=y_t, rows_per_chunk=rows, dtype=work, device=d.device):
            if nonneg and chunk.val.numel() and float(chunk.val.min()) < 0:
                raise ValueError(
                    f"codes: nonneg=True but rows {chunk.start}:{chunk.stop} have negative codes; pass nonneg=False"
                )
            yield chunk if scale is None else chunk.scaled(scale)

    chunks: Callable[[], Iterator[CodeChunk]] = stream
    estimated = lam is None
    if lam is None:
        if callable(codes) and not isinstance(codes, torch.Tensor):
            kept = list(stream())
            chunks = lambda: iter(kept)  # noqa: E731
        lam = _median_active_gradient(y_t, chunks(), d, off, nonneg)
        if not lam > 0:
            raise ValueError(
                f"lam: the estimated λ (median gradient over the active entries) is {lam:.4g} <= 0: the residuals "
                "point away from the atoms in use (or are orthogonal to them: least-squares codes), so no λ > 0 makes "
                "these codes optimal; pass lam to measure against one"
            )
    sample_max = torch.empty(n, dtype=torch.float64, device=d.device)
    sample_sum = torch.empty(n, dtype=torch.float64, device=d.device)
    atom_max = torch.zeros(p, dtype=work, device=d.device)
    atom_sum = torch.zeros(p, dtype=torch.float64, device=d.device)
    active_sum, n_active = 0.0, 0
    d_t = d.T.contiguous()
    minus_lam = torch.full((1, p), -lam, dtype=work, device=d.device)
    ones_p = torch.ones(p, dtype=work, device=d.device)
    for chunk in chunks():
        r = _residual(y_t, chunk, d, off)
        if nonneg:  # block = c − λ with c = r Dᵀ (one fused product), then max(0, ·) where z = 0
            block = torch.addmm(minus_lam, r, d_t)
            v_active = block[chunk.row, chunk.col].abs_()
            block.relu_()
        else:  # |c − λ sign z| where z ≠ 0, max(0, |c| − λ) elsewhere
            block = torch.mm(r, d_t)
            v_active = (block[chunk.row, chunk.col] - lam * torch.sign(chunk.val)).abs_()
            block.abs_().sub_(lam).relu_()
        block[chunk.row, chunk.col] = v_active
        sample_max[chunk.start : chunk.stop] = block.amax(dim=1)
        sample_sum[chunk.start : chunk.stop] = block @ ones_p  # BLAS row sums
        torch.maximum(atom_max, block.amax(dim=0), out=atom_max)
        atom_sum += (block.new_ones(chunk.n) @ block).to(torch.float64)  # BLAS column sums
        active_sum += float(v_active.sum(dtype=torch.float64))
        n_active += int(v_active.numel())
    total = float(atom_sum.sum())
    n_inactive = n * p - n_active
    sample_max /= lam
    return KKTResult(
        lam=float(lam),
        lam_estimated=estimated,
        sample_max=sample_max,
        sample_mean=sample_sum / (p * lam),
        atom_max=atom_max.to(torch.float64) / lam,
        atom_mean=atom_sum / (n * lam),
        mean=total / (n * p * lam),
        active_mean=active_sum / (n_active * lam) if n_active else math.nan,
        inactive_mean=(total - active_sum) / (n_inactive * lam) if n_inactive else math.nan,
        n_active=n_active,
        quantiles=quantile_summary(sample_max),
    )


def _median_active_gradient(
    y: torch.Tensor, chunks: Iterator[CodeChunk], d: torch.Tensor, offset: torch.Tensor | None, nonneg: bool
) -> float:
    """The median of c_nj·sign z_nj over the active entries (computed on those entries only, cost N·L0·m)."""
    values = []
    for chunk in chunks:
        c = _active_gradients(_residual(y, chunk, d, offset), chunk, d)
        values.append(c if nonneg else c * torch.sign(chunk.val))
    active = torch.cat(values) if values else torch.zeros(0)
    if active.numel() == 0:
        raise ValueError("lam: cannot estimate λ, the codes have no active entry; pass lam")
    return float(active.median())


def estimate_lam(
    y: ArrayLike,
    codes: CodesLike,
    dictionary: ArrayLike,
    nonneg: bool = True,
    *,
    offset: ArrayLike | None = None,
    unit_atoms: bool = False,
    rows_per_chunk: int | None = None,
) -> float:
    """The λ of ``kkt_violation(lam=None)``: the (lower) median of c_nj·sign z_nj over the active entries, with
    c = (y − offset − zD)Dᵀ — which may be ≤ 0 (then no λ > 0 makes the codes optimal; about 0 for least-squares
    codes such as TopK's). Costs N·L0·m (no (chunk, p) block). ValueError when no entry is active."""
    y_t, d, off, work = _problem(y, dictionary, offset)
    scale = torch.linalg.vector_norm(d, dim=1).clamp_min(NORM_FLOOR) if unit_atoms else None
    if scale is not None:
        d = d / scale[:, None]
    m = y_t.shape[1]
    chunks = (
        chunk if scale is None else chunk.scaled(scale)
        for chunk in code_chunks(
            codes,
            y_t.shape[0],
            num_latents=d.shape[0],
            y=y_t,
            rows_per_chunk=rows_per_chunk,
            width=m,
            dtype=work,
            device=d.device,
        )
    )
    return _median_active_gradient(y_t, chunks, d, off, nonneg)
