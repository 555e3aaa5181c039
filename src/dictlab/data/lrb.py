"""The Linear Representation Bench of seed 004 (Appendix C): sparse non-negative features on unit directions
of bounded interference.

The paper's data, in its symbols: n ground-truth features x ∈ R₊ⁿ, a feature matrix W_p (n_p × n) with unit
columns and max_{i≠j} ⟨w_i, w_j⟩ ≤ M (C.1, Eqs. 26–28), features active independently with probability 1 − S
and magnitudes c_min + Exp(β) (C.2, Eqs. 29–30), observations x_p = W_p x (C.3, Eq. 31). Table 3's defaults:
n = 1000, n_p = 768, N = 100,000, S = 0.99, M = 0.1. In dictlab's atoms-as-rows convention the dictionary is
``D = W_p.T`` (n, n_p), the codes are x and ``Y = Z @ D``.

Options beyond Appendix C, for the paper's other models (Sec. 2.4):

* ``target_dim`` n_r — transcoder data: a second feature matrix W_r (n_r × n) built the same way from its own
  random stream; every split has ``target = x @ W_r.T`` and the dataset's ``target_dictionary`` is W_r.T.
* ``num_sources`` s ≥ 2 — crosscoder data: observations ``[x_p⁽¹⁾; …; x_p⁽ˢ⁾]``, each source its own W_p⁽ˢ⁾ of
  width n_p drawn independently; ``dictionary`` is (n, s·n_p), the blocks side by side, ``sources = (n_p,)*s``.
* ``ood_groups`` g ≥ 2 — a compositional ID/OOD split: the latents form g equal contiguous groups
  (group j is ``j·n/g … (j+1)·n/g − 1``). A ``train`` or ``id`` sample draws its group uniformly and activates
  each feature of that group with probability ``min(1, g·(1 − S))`` — the expected count stays n(1 − S) — and
  no other feature. An ``ood`` sample activates each of the n features with probability 1 − S and is redrawn
  until its active features touch at least two groups (the Bernoulli(1 − S) mask conditioned on that). Two
  features of different groups are never active together in training, so every OOD sample holds such a pair.

Splits: ``train`` (N samples), ``id`` (``eval_samples`` more of the training distribution) and, with
``ood_groups``, ``ood`` (``eval_samples``). The number of active features varies from sample to sample, so
the data have no fixed k; ``SparseCodes`` pad every row of a split to the split's largest active count with
entries of value 0 on distinct latents (*active* is ``value != 0``, as for ``Hierarchy``).

Randomness: every matrix and the codes come from their own stream, a hash of (seed, stream name), so adding
targets or sources leaves the observations of the first source unchanged.
"""

from __future__ import annotations

import hashlib
import math

import torch
from pydantic import Field, model_validator

from dictlab.data.dataset import TRAIN, DataSizes, GeneratorConfig, GroundTruthDataset, Split
from dictlab.data.dictionaries import random_unit_dictionary
from dictlab.data.generators import make_from_fields, register_generator
from dictlab.data.sampling import sample_distinct
from dictlab.data.sparse_codes import SparseCodes, observe
from dictlab.validation import check_int_range, check_positive

# the least probability that an OOD draw touches two groups; below it the rejection sampler would crawl
MIN_OOD_ACCEPTANCE = 0.01
# a failed construction stops after this many steps without a new lowest max interference
INTERFERENCE_PATIENCE = 100
TOPK_CHUNK_ELEMENTS = 1 << 22


class LRBConfig(GeneratorConfig):
    """Parameters of the Linear Representation Bench. Defaults are Table 3 of seed 004 (n = 1000, n_p = 768,
    N = 100,000, S = 0.99, M = 0.1). The paper gives no values for c_min, β, ε, λ or η; c_min = 0 and β = 1
    (magnitudes Exp(1)), ε = 0.01 and λ = 0.01 are dictlab's choices."""

    num_latents: int = Field(1000, ge=2, description="n: ground-truth features (dictionary atoms).")
    input_dim: int = Field(768, ge=1, description="n_p: width of the representation x_p = W_p x (of each source).")
    n_samples: int = Field(100_000, ge=1, description="N: training samples.")
    eval_samples: int = Field(10_000, ge=1, description="Samples of each scored split: id, and ood with ood_groups.")
    sparsity: float = Field(
        0.99, ge=0, lt=1, description="S: each feature is inactive with probability S, active with 1 − S."
    )
    min_activation: float = Field(0.0, ge=0, description="c_min: active magnitudes are c_min + Exp(β).")
    activation_scale: float = Field(1.0, gt=0, description="β: scale (mean) of the exponential part of a magnitude.")
    max_interference: float = Field(
        0.1, gt=0, lt=1, description="M: the bound max_{i≠j} ⟨w_i, w_j⟩ ≤ M on the unit feature directions (signed)."
    )
    interference_margin: float = Field(
        0.01, gt=0, description="ε: the construction penalises inner products above M − ε (Eq. 27)."
    )
    negative_weight: float = Field(
        0.01, ge=0, description="λ: weight of Σ max(0, ⟨w_i, w_j⟩)², which favours negative interference (Eq. 27)."
    )
    interference_lr: float = Field(
        0.05, gt=0, description="η: first step of the construction (the largest move of a feature direction)."
    )
    interference_max_steps: int = Field(1000, ge=1, description="Most gradient steps of the construction (Eq. 28).")
    target_dim: int | None = Field(
        None, ge=1, description="n_r: width of targets x_r = W_r x for transcoders (None: no targets)."
    )
    num_sources: int = Field(
        1, ge=1, description="s: observations concatenate s sources W_p⁽ˢ⁾ x of width n_p each (crosscoders)."
    )
    ood_groups: int = Field(
        0, ge=0, description="g: 0 (no OOD split) or g ≥ 2 contiguous latent groups; train/id stay in one group."
    )

    @model_validator(mode="after")
    def _check_groups(self) -> LRBConfig:
        g, n = self.ood_groups, self.num_latents
        if g == 0:
            return self
        if g == 1:
            raise ValueError("ood_groups=1: must be 0 (no OOD split) or >= 2 groups of latents")
        if g > n or n % g:
            raise ValueError(f"ood_groups={g} must divide num_latents={n} into equal groups (and be <= it)")
        acceptance = self.ood_acceptance
        if acceptance < MIN_OOD_ACCEPTANCE:
            raise ValueError(
                f"ood_groups={g} with sparsity={self.sparsity}: an OOD draw touches two groups with probability "
                f"{acceptance:.2g} < {MIN_OOD_ACCEPTANCE}; lower sparsity or use fewer groups"
            )
        return self

    @property
    def group_size(self) -> int:
        """n / g, the latents per group (n without groups)."""
        return self.num_latents // self.ood_groups if self.ood_groups else self.num_latents

    @property
    def ood_acceptance(self) -> float:
        """P(a Bernoulli(1 − S) mask over n features touches ≥ 2 of the g groups) = 1 − q^g − g(1 − q)q^(g−1),
        with q = S^(n/g) the probability that a group has no active feature."""
        g = self.ood_groups
        q = self.sparsity**self.group_size
        return 1.0 - q**g - g * (1.0 - q) * q ** (g - 1)

    @property
    def group_probability(self) -> float:
        """Activation probability of a feature of a train/id sample's group: min(1, g·(1 − S))."""
        return min(1.0, self.ood_groups * (1.0 - self.sparsity))

    def latent_groups(self) -> torch.Tensor | None:
        """(n,) int64: the group of every latent (j // (n/g)); None without ``ood_groups``."""
        if not self.ood_groups:
            return None
        return torch.arange(self.num_latents) // self.group_size

    @property
    def sources(self) -> tuple[int, ...] | None:
        """Widths of the blocks of y: (n_p,)·s with several sources, None with one."""
        return (self.input_dim,) * self.num_sources if self.num_sources > 1 else None

    def sizes(self) -> DataSizes:
        return DataSizes(
            self.num_latents,
            None,
            self.input_dim * self.num_sources,
            self.n_samples,
            self.target_dim,
            self.sources,
        )


class InterferenceUnreachable(ValueError):
    """``bounded_interference_features`` did not reach the bound: ``best`` is the lowest max interference it
    saw, after ``steps`` steps; ``stalled`` when it stopped early because no step lowered it any more."""

    def __init__(self, message: str, *, best: float, steps: int, stalled: bool) -> None:
        super().__init__(message)
        self.best, self.steps, self.stalled = best, steps, stalled


def _masked_gram(features: torch.Tensor) -> torch.Tensor:
    """G = D Dᵀ (n, n) with −∞ on the diagonal, so that max(G) and relu(G) see only pairs i ≠ j."""
    gram = features @ features.T
    return gram.fill_diagonal_(-math.inf)


def _interference_weights(gram: torch.Tensor, threshold: float, negative_weight: float) -> torch.Tensor:
    """(n, n) A + λB with A = max(0, G − (M − ε)), B = max(0, G) off the diagonal (0 on it): ½ dL/dG_ij."""
    return (gram - threshold).clamp_min(0) + negative_weight * gram.clamp_min(0)


def interference_loss(
    features: torch.Tensor, max_interference: float, *, margin: float = 0.01, negative_weight: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor]:
    """The interference loss of Eq. 27 and its gradient, for features as rows of D (n, dim) (the paper's W_p = Dᵀ):

    ``L = Σ_{i≠j} max(0, G_ij − (M − ε))² + λ Σ_{i≠j} max(0, G_ij)²``, G = D Dᵀ;
    ``∂L/∂D = 4 (A + λB) D`` with A = max(0, G − (M − ε)), B = max(0, G), both zero on the diagonal
    (G is symmetric and each G_ij appears twice in the sum, and ∂G_ij/∂d_i = d_j).

    Returns (the scalar L, the (n, dim) gradient), in ``features``' dtype.
    """
    gram = _masked_gram(features)
    threshold = max_interference - margin
    loss = (gram - threshold).clamp_min(0).square().sum() + negative_weight * gram.clamp_min(0).square().sum()
    return loss, 4 * _interference_weights(gram, threshold, negative_weight) @ features


def bounded_interference_features(
    num_features: int,
    dim: int,
    max_interference: float,
    *,
    generator: torch.Generator,
    margin: float = 0.01,
    negative_weight: float = 0.01,
    lr: float = 0.05,
    max_steps: int = 1000,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Unit feature directions with max_{i≠j} ⟨d_i, d_j⟩ ≤ M (signed), by Appendix C.1 of seed 004.

    Gaussian directions normalised to unit norm (Eq. 26), then projected gradient descent on the interference
    loss (Eq. 27, ``interference_loss``) with every row renormalised after each step (Eq. 28), until the largest
    off-diagonal inner product is at most M — checked before every step, so directions that already meet the
    bound are returned as drawn.

    The step is adaptive (the paper gives no η): the gradient's component tangent to the sphere (the part the
    renormalisation keeps, to first order), divided by its largest row norm, times η, so no direction moves
    by more than about η radians; η starts at ``lr`` and grows ×1.1 after a step that lowered the max
    interference, halves after one that did not. Each step costs two (n, n, dim) products in float64.

    Parameters
    ----------
    num_features, dim : n directions in R^dim.
    max_interference : M in (0, 1).
    generator : the stream of the Gaussian start.
    margin, negative_weight : ε and λ of Eq. 27.
    lr, max_steps : the first η, and the most steps.
    dtype : of the result; the construction runs in float64, where the bound holds exactly (a float32 copy
        holds it to rounding, ≲ 1e-6).

    Returns
    -------
    (n, dim) tensor, features as rows (the paper's W_p is its transpose).

    Raises
    ------
    InterferenceUnreachable (a ValueError) when ``max_steps`` steps, or ``INTERFERENCE_PATIENCE`` steps without
    a new lowest max interference, end above M; it carries the lowest max interference seen.
    """
    check_int_range("num_features", num_features, 1)
    check_int_range("dim", dim, 1)
    check_int_range("max_steps", max_steps, 1)
    check_positive("max_interference", max_interference)
    if max_interference >= 1:
        raise ValueError(f"max_interference must be < 1, got {max_interference}")
    check_positive("margin", margin)
    check_positive("negative_weight", negative_weight, allow_zero=True)
    check_positive("lr", lr)
    features = random_unit_dictionary(num_features, dim, generator, torch.float64)
    threshold = max_interference - margin
    best, since_best, previous, step = math.inf, 0, math.inf, 0
    while True:
        gram = _masked_gram(features)
        worst = float(gram.max())
        if worst <= max_interference:
            return features.to(dtype)
        if worst < best:
            best, since_best = worst, 0
        else:
            since_best += 1
        if step == max_steps or since_best >= INTERFERENCE_PATIENCE:
            break
        lr = lr * 1.1 if worst < previous else lr / 2
        previous = worst
        gradient = _interference_weights(gram, threshold, negative_weight) @ features  # ∝ ∂L/∂D (the 4 is in lr)
        gradient -= (gradient * features).sum(dim=1, keepdim=True) * features
        scale = float(gradient.norm(dim=1).max())
        if scale == 0:  # every direction's gradient is radial (dim 1): no step can change anything
            break
        features = features - (lr / scale) * gradient
        features = features / features.norm(dim=1, keepdim=True)
        step += 1
    stalled = step < max_steps
    why = f"no step lowered it in the last {since_best}" if stalled else f"max_steps={max_steps} reached"
    raise InterferenceUnreachable(
        f"{num_features} unit directions in {dim} dimensions: the lowest max interference after {step} steps was "
        f"{best:.4g} > max_interference={max_interference} ({why})",
        best=best,
        steps=step,
        stalled=stalled,
    )


def _stream(seed: int, name: str) -> torch.Generator:
    """The generator of one named stream of the bench (a hash of (seed, name): streams are unrelated)."""
    digest = hashlib.sha256(f"lrb.{name}:{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def _features(config: LRBConfig, dim: int, stream: str, field: str, seed: int) -> torch.Tensor:
    """(n, dim) float64 directions of one feature matrix; the unreachable case as one line naming the fields."""
    n, m = config.num_latents, config.max_interference
    try:
        return bounded_interference_features(
            n,
            dim,
            m,
            generator=_stream(seed, stream),
            margin=config.interference_margin,
            negative_weight=config.negative_weight,
            lr=config.interference_lr,
            max_steps=config.interference_max_steps,
            dtype=torch.float64,
        )
    except InterferenceUnreachable as err:
        reason = "no step lowered it any more" if err.stalled else "interference_max_steps reached"
        raise ValueError(
            f"lrb: num_latents={n} unit features in {field}={dim} dimensions cannot be given max_interference={m}: "
            f"the lowest max interference after {err.steps} steps was {err.best:.4g} ({reason}); "
            f"raise {field} or max_interference, or lower num_latents"
            + ("" if err.stalled else ", or raise interference_max_steps")
        ) from None


def _ordered_subsets(num_rows: int, width: int, pool: int, generator: torch.Generator) -> torch.Tensor:
    """(num_rows, width) int64: per row ``width`` distinct integers of ``range(pool)`` in uniformly random order,
    so every prefix of a row is a uniformly random subset. Floyd's algorithm then a shuffle (O(rows·width²)) when
    width² ≤ pool, else the top ``width`` of i.i.d. uniform keys in row chunks (O(rows·pool) time, chunked memory).
    """
    if width * width <= pool:
        chosen = sample_distinct(num_rows, width, pool, generator)
        order = torch.rand(num_rows, width, generator=generator).argsort(dim=1)
        return chosen.gather(1, order)
    step = max(1, TOPK_CHUNK_ELEMENTS // pool)
    chunks = [
        torch.rand(min(step, num_rows - start), pool, generator=generator, dtype=torch.float64).topk(width, dim=1)[1]
        for start in range(0, num_rows, step)
    ]
    return torch.cat(chunks) if chunks else torch.empty(0, width, dtype=torch.int64)


def _bernoulli_supports(
    num_rows: int, pool: int, probability: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each of ``pool`` items active with ``probability``, independently per row: (indices (num_rows, w), counts
    (num_rows,)); a row's first ``count`` indices are its active items (a Binomial count, then a uniform subset of
    that size), the rest distinct padding; w = max(1, largest count)."""
    counts = torch.binomial(
        torch.full((num_rows,), float(pool), dtype=torch.float64),
        torch.full((num_rows,), probability, dtype=torch.float64),
        generator=generator,
    ).to(torch.int64)
    width = max(1, int(counts.max())) if num_rows else 1
    return _ordered_subsets(num_rows, width, pool, generator), counts


def _to_width(indices: torch.Tensor, width: int) -> torch.Tensor:
    """Rows of distinct indices cut or extended to ``width`` columns (at most the pool size); extensions are the
    smallest integers absent from the row: with the row sorted as a_0 < a_1 < …, b_i = a_i − i counts the absent
    integers below a_i, and the j-th absent one is j + #{i: b_i ≤ j}."""
    have = indices.shape[1]
    if have >= width:
        return indices[:, :width]
    below = indices.sort(dim=1).values - torch.arange(have)
    j = torch.arange(width - have).expand(len(indices), -1).contiguous()
    return torch.cat([indices, j + torch.searchsorted(below, j, right=True)], dim=1)


def _touches_two_groups(indices: torch.Tensor, counts: torch.Tensor, group_size: int, groups: int) -> torch.Tensor:
    """(rows,) bool: the active entries (the first ``counts``) lie in at least two groups."""
    active = torch.arange(indices.shape[1]) < counts[:, None]
    group = indices // group_size
    lowest = torch.where(active, group, groups).min(dim=1).values
    highest = torch.where(active, group, -1).max(dim=1).values
    return highest > lowest


def _supports(num_rows: int, config: LRBConfig, ood: bool, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """(indices (num_rows, w), counts) of one split: every feature Bernoulli(1 − S) without groups; with groups,
    one uniform group per row at min(1, g(1 − S)) (``ood`` False), or all features at 1 − S redrawn until they
    touch two groups (``ood`` True)."""
    n, g, size, p = config.num_latents, config.ood_groups, config.group_size, 1.0 - config.sparsity
    if g == 0:
        return _bernoulli_supports(num_rows, n, p, generator)
    if not ood:
        group = torch.randint(0, g, (num_rows,), generator=generator)
        local, counts = _bernoulli_supports(num_rows, size, config.group_probability, generator)
        return local + (group * size)[:, None], counts
    drawn: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    pending = torch.arange(num_rows)
    while pending.numel():
        indices, counts = _bernoulli_supports(len(pending), n, p, generator)
        keep = _touches_two_groups(indices, counts, size, g)
        drawn.append((pending[keep], indices[keep], counts[keep]))
        pending = pending[~keep]
    width = max(int(counts.max()) for _, _, counts in drawn if counts.numel())
    all_indices = torch.empty(num_rows, width, dtype=torch.int64)
    all_counts = torch.empty(num_rows, dtype=torch.int64)
    for rows, indices, counts in drawn:
        all_indices[rows] = _to_width(indices, width)
        all_counts[rows] = counts
    return all_indices, all_counts


def _sample_codes(
    num_rows: int, config: LRBConfig, ood: bool, generator: torch.Generator, dtype: torch.dtype
) -> SparseCodes:
    """Codes of one split (C.2): the supports of ``_supports``, active magnitudes c_min + Exp(β) by the inverse
    CDF c_min − β log(1 − U), padding entries 0."""
    indices, counts = _supports(num_rows, config, ood, generator)
    active = torch.arange(indices.shape[1]) < counts[:, None]
    uniform = torch.rand(indices.shape, generator=generator, dtype=torch.float64)
    values = (config.min_activation - config.activation_scale * torch.log1p(-uniform)) * active
    return SparseCodes(indices, values.to(dtype), config.num_latents)


@register_generator(
    "lrb",
    LRBConfig,
    "Linear Representation Bench (seed 004, App. C): Bernoulli(1 − S) features with c_min + Exp(β) magnitudes on "
    "unit directions of max interference M; transcoder targets, crosscoder sources and an OOD split as options",
)
def generate_lrb(config: LRBConfig, seed: int, dtype: torch.dtype) -> GroundTruthDataset:
    """The registered generator: the feature matrices (streams ``features.<source>`` and ``target``), then
    ``train`` (N), ``id`` (eval_samples) and, with ``ood_groups``, ``ood`` (eval_samples) from stream ``codes``.

    Cost: the construction, O(steps·n²·n_p) per matrix (2 steps at the defaults); the codes O(N·w·(n_p·s + n_r))
    time and O(N·(w + n_p·s + n_r)) memory, w the largest active count (never N × n)."""
    blocks = [
        _features(config, config.input_dim, f"features.{s}", "input_dim", seed) for s in range(config.num_sources)
    ]
    dictionary = torch.cat(blocks, dim=1).to(dtype)
    target_dictionary = None
    if config.target_dim is not None:
        target_dictionary = _features(config, config.target_dim, "target", "target_dim", seed).to(dtype)
    generator = _stream(seed, "codes")

    def split(num_rows: int, ood: bool) -> Split:
        codes = _sample_codes(num_rows, config, ood, generator, dtype)
        y = observe(codes, dictionary, 0.0, generator)
        return Split(y, codes, None, None if target_dictionary is None else codes.decode(target_dictionary))

    splits = {TRAIN: split(config.n_samples, False), "id": split(config.eval_samples, False)}
    if config.ood_groups:
        splits["ood"] = split(config.eval_samples, True)
    return GroundTruthDataset(
        config, seed, dictionary, splits, target_dictionary=target_dictionary, sources=config.sources
    )


def make_lrb(
    config: LRBConfig | None = None,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    **fields: object,
) -> GroundTruthDataset:
    """The Linear Representation Bench; ``make_lrb(num_latents=1400, max_interference=0.05, seed=0)`` is shorthand
    for a config (``fields`` update ``config`` when both are given). Splits ``train``, ``id`` (and ``ood``)."""
    return make_from_fields(LRBConfig, config, fields, seed=seed, dtype=dtype, device=device, where="make_lrb")
