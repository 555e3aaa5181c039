"""What the diagnostics accept as codes, and how they stream over samples in row chunks.

Codes of N samples over p latents may be given as

* a dense (N, p) tensor or numpy array (for small problems),
* a ``torch.sparse_coo`` tensor (coalesced here) or a CSR tensor (N, p), with no repeated (row, latent) entry,
* ``dictlab.data.SparseCodes`` (exactly k stored entries per sample), or
* a callable ``encode(y_chunk) -> codes_chunk`` returning any of the above for a (n, m) chunk of observations
  — a model's ``encode`` — so that codes are produced chunk by chunk and never all held at once.

Every diagnostic walks the samples in chunks of rows and sees each chunk's codes as a ``CodeChunk``: the
non-zero entries in row-major order (local row, latent, value). The work of a chunk is then proportional to
its non-zeros (N·L0 over all chunks, L0 the mean active latents per sample), never to N·p, except where a
diagnostic needs the (chunk, p) gradient block itself (``kkt_violation``). An explicitly stored zero counts as
inactive everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from dictlab.data import SparseCodes
from dictlab.metrics.inputs import ArrayLike, as_matrix
from dictlab.validation import check_int_range

Encoder = Callable[[torch.Tensor], "torch.Tensor | SparseCodes | np.ndarray"]
CodesLike = torch.Tensor | np.ndarray | SparseCodes | Encoder

# Default rows per chunk: bounds a chunk's (rows, max(p, m)) blocks — an encoder's dense output, the
# observations — at ~4M entries; ``kkt_violation`` uses ~16M for its (rows, p) gradient block.
BLOCK_ENTRIES = 1 << 22


def default_rows(width: int, entries: int = BLOCK_ENTRIES) -> int:
    """Rows per chunk so that a (rows, width) block holds about ``entries`` entries (at least 1 row)."""
    return max(1, entries // max(1, width))


@dataclass(frozen=True)
class CodeChunk:
    """The codes of rows ``start:stop`` as their non-zero entries, row-major: entry i is latent ``col[i]`` of
    local row ``row[i]`` (0 ≤ row < n) with value ``val[i]`` ≠ 0. ``num_latents`` is p."""

    start: int
    stop: int
    row: torch.Tensor
    col: torch.Tensor
    val: torch.Tensor
    num_latents: int

    @property
    def n(self) -> int:
        return self.stop - self.start

    def offsets(self) -> torch.Tensor:
        """(n,) index of each row's first entry (CSR row pointers without the last)."""
        counts = torch.bincount(self.row, minlength=self.n)
        return torch.cumsum(counts, 0) - counts

    def decode(self, dictionary: torch.Tensor) -> torch.Tensor:
        """(n, m) = Z_chunk D, without forming Z_chunk: an embedding bag over the non-zeros (cost nnz·m)."""
        return torch.nn.functional.embedding_bag(
            self.col, dictionary, offsets=self.offsets(), per_sample_weights=self.val.to(dictionary.dtype), mode="sum"
        )

    def add_transposed_product_(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``out += Z_chunkᵀ x`` for out (p, w) and x (n, w), as a sparse-dense product (cost nnz·w)."""
        zt = torch.sparse_coo_tensor(
            torch.stack([self.col, self.row]),
            self.val.to(out.dtype),
            (self.num_latents, self.n),
            check_invariants=False,
        )
        return out.addmm_(zt, x.to(out.dtype))

    def dense(self) -> torch.Tensor:
        """The (n, p) dense block (only for blocks a diagnostic forms anyway)."""
        out = self.val.new_zeros(self.n, self.num_latents)
        out[self.row, self.col] = self.val
        return out

    def scaled(self, scale: torch.Tensor) -> CodeChunk:
        """The same entries with values multiplied by ``scale[latent]`` ((p,) tensor)."""
        return CodeChunk(self.start, self.stop, self.row, self.col, self.val * scale[self.col], self.num_latents)


def _from_dense(z: torch.Tensor, start: int, stop: int, p: int) -> CodeChunk:
    row, col = z.nonzero(as_tuple=True)
    return CodeChunk(start, stop, row, col, z[row, col], p)


def _from_rows(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, start: int, stop: int, p: int) -> CodeChunk:
    """Rows start:stop of CSR arrays (crow (N+1,), col, val), explicit zeros dropped."""
    a, b = int(crow[start]), int(crow[stop])
    counts = crow[start + 1 : stop + 1] - crow[start:stop]
    row = torch.repeat_interleave(torch.arange(stop - start, device=col.device), counts)
    c, v = col[a:b], val[a:b]
    keep = v != 0
    return CodeChunk(start, stop, row[keep], c[keep], v[keep], p)


def _from_sparse_codes(codes: SparseCodes, start: int, stop: int, p: int) -> CodeChunk:
    idx, val = codes.indices[start:stop], codes.values[start:stop]
    row = torch.arange(stop - start, device=idx.device).repeat_interleave(idx.shape[1])
    idx, val = idx.reshape(-1), val.reshape(-1)
    keep = val != 0
    return CodeChunk(start, stop, row[keep], idx[keep], val[keep], p)


class _Source:
    """Checked codes of N samples over p latents that hand out ``CodeChunk``s of any row range."""

    def __init__(self, name: str, codes: CodesLike, n_rows: int, p: int | None, y: torch.Tensor | None) -> None:
        self.name, self.n_rows, self.y = name, n_rows, y
        self.encoder: Encoder | None = None
        self.dense: torch.Tensor | None = None
        self.csr: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.sparse_codes: SparseCodes | None = None
        if isinstance(codes, SparseCodes):
            self.p = _check_sparse_codes(name, codes, n_rows, p)
            self.sparse_codes = codes
        elif isinstance(codes, torch.Tensor) and codes.layout != torch.strided:
            self.csr, self.p = _csr_parts(name, codes, n_rows, p)
        elif isinstance(codes, (torch.Tensor, np.ndarray)):
            self.dense = as_matrix(name, codes, rows=n_rows, cols=p)
            self.p = self.dense.shape[1]
        elif callable(codes):
            if y is None:
                raise ValueError(f"{name} is an encoder (a callable); pass the observations y it encodes")
            self.encoder = codes
            self.p = p if p is not None else -1  # learned from the first chunk
        else:
            raise ValueError(
                f"{name} must be a dense or sparse (N, p) tensor, SparseCodes or a callable encode(y_chunk), "
                f"got {type(codes).__name__}"
            )

    def default_rows(self, width: int) -> int:
        """Rows per chunk bounding the chunk's widest block (see ``code_chunks``) at ~4M entries."""
        if self.sparse_codes is not None:
            per_row = self.sparse_codes.k
        elif self.csr is not None:
            per_row = -(-self.csr[1].numel() // max(1, self.n_rows))
        else:  # dense codes, or an encoder that may return them: (rows, p) blocks
            per_row = max(self.p, 1)
        return default_rows(max(width, per_row))

    def chunk(self, start: int, stop: int) -> CodeChunk:
        if self.sparse_codes is not None:
            return _from_sparse_codes(self.sparse_codes, start, stop, self.p)
        if self.csr is not None:
            return _from_rows(*self.csr, start, stop, self.p)
        if self.dense is not None:
            return _from_dense(self.dense[start:stop], start, stop, self.p)
        assert self.encoder is not None and self.y is not None
        out = self.encoder(self.y[start:stop])
        what = f"{self.name} (the encoder's output for rows {start}:{stop})"
        if not isinstance(out, (torch.Tensor, np.ndarray, SparseCodes)):
            raise ValueError(f"{what} must be a dense or sparse tensor or SparseCodes, got {type(out).__name__}")
        inner = _Source(what, out, stop - start, None if self.p < 0 else self.p, None)
        if self.p < 0:
            self.p = inner.p
        piece = inner.chunk(0, stop - start)
        return CodeChunk(start, stop, piece.row, piece.col, piece.val, self.p)


def _check_sparse_codes(name: str, codes: SparseCodes, n_rows: int, p: int | None) -> int:
    if len(codes) != n_rows:
        raise ValueError(f"{name} must have {n_rows} rows (one per sample), got {len(codes)}")
    if p is not None and codes.num_latents != p:
        raise ValueError(f"{name} must have {p} latents (one per atom), got num_latents={codes.num_latents}")
    if not codes.values.is_floating_point() or not bool(torch.isfinite(codes.values).all()):
        raise ValueError(f"{name} values must be finite floating-point numbers")
    if codes.indices.numel() and (int(codes.indices.min()) < 0 or int(codes.indices.max()) >= codes.num_latents):
        raise ValueError(f"{name} indices must lie in [0, {codes.num_latents})")
    return codes.num_latents


def _csr_parts(
    name: str, codes: torch.Tensor, n_rows: int, p: int | None
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], int]:
    """(crow, col, val) of a sparse (N, p) tensor of any layout, rows in order."""
    if codes.ndim != 2 or codes.shape[0] != n_rows or (p is not None and codes.shape[1] != p):
        want = f"({n_rows}, {p if p is not None else 'p'})"
        raise ValueError(f"{name} must have shape {want}, got {tuple(codes.shape)}")
    if codes.layout == torch.sparse_csr:
        crow, col, val = codes.crow_indices(), codes.col_indices(), codes.values()
    else:
        coo = (codes if codes.layout == torch.sparse_coo else codes.to_sparse()).coalesce()
        indices, val = coo.indices(), coo.values()
        crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=val.device)
        crow[1:] = torch.cumsum(torch.bincount(indices[0], minlength=n_rows), 0)
        col = indices[1]
    if not val.is_floating_point() or not bool(torch.isfinite(val).all()):
        raise ValueError(f"{name} values must be finite floating-point numbers")
    return (crow.to(torch.int64), col.to(torch.int64), val), codes.shape[1]


def code_chunks(
    codes: CodesLike,
    n_rows: int,
    *,
    num_latents: int | None = None,
    y: torch.Tensor | None = None,
    rows_per_chunk: int | None = None,
    width: int = 1,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    name: str = "codes",
) -> Iterator[CodeChunk]:
    """The codes of ``n_rows`` samples as consecutive ``CodeChunk``s of at most ``rows_per_chunk`` rows.

    ``num_latents`` (p) is checked when given (learned from the codes otherwise); an encoder is called on
    ``y[start:stop]``; values are cast to ``dtype`` and moved to ``device`` where given. Input is checked
    before the first chunk (an encoder's output chunk by chunk): a ValueError names ``name``.

    Default chunk: ~4M entries of the widest per-row block — ``width`` (what the caller forms per row, e.g. m
    for residuals), the codes' mean non-zeros per row, and for dense codes or an encoder's output p itself.
    """
    source = _Source(name, codes, n_rows, num_latents, y)
    step = rows_per_chunk if rows_per_chunk is not None else source.default_rows(width)
    check_int_range("rows_per_chunk", step, 1)
    for start in range(0, n_rows, step):
        piece = source.chunk(start, min(start + step, n_rows))
        if dtype is not None or device is not None:
            piece = CodeChunk(
                piece.start,
                piece.stop,
                piece.row.to(device),
                piece.col.to(device),
                piece.val.to(dtype=dtype, device=device),
                piece.num_latents,
            )
        yield piece


def sparse_codes(
    codes: CodesLike,
    n_rows: int,
    *,
    num_latents: int | None = None,
    y: torch.Tensor | None = None,
    rows_per_chunk: int | None = None,
) -> torch.Tensor:
    """The codes as one coalesced ``torch.sparse_coo`` (N, p) tensor, built chunk by chunk (memory N·L0).

    The way to encode a split once and run every diagnostic on the result:
    ``sparse_codes(model.encode, len(y), y=y)``.
    """
    rows, cols, vals = [], [], []
    p = num_latents
    for piece in code_chunks(codes, n_rows, num_latents=num_latents, y=y, rows_per_chunk=rows_per_chunk):
        rows.append(piece.row + piece.start)
        cols.append(piece.col)
        vals.append(piece.val)
        p = piece.num_latents
    if p is None or p < 0:
        raise ValueError("codes: cannot tell the number of latents of an empty batch; pass num_latents")
    if not vals:
        return torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.int64), torch.zeros(0), (n_rows, p))
    indices = torch.stack([torch.cat(rows), torch.cat(cols)])
    return torch.sparse_coo_tensor(indices, torch.cat(vals), (n_rows, p), check_invariants=False).coalesce()


def as_offset(offset: ArrayLike | None, dim: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
    """A checked (m,) offset (an SAE's b_dec, subtracted from y in the residuals) in ``dtype``; None stays None."""
    if offset is None:
        return None
    off = offset if isinstance(offset, torch.Tensor) else torch.from_numpy(np.asarray(offset))
    if off.shape != (dim,) or not off.is_floating_point() or not bool(torch.isfinite(off).all()):
        raise ValueError(f"offset must be a finite floating-point ({dim},) vector, got shape {tuple(off.shape)}")
    return off.to(dtype=dtype, device=device)
