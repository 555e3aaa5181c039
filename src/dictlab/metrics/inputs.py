"""Turning what callers pass to a metric (tensors, numpy arrays, SparseCodes, labels) into checked tensors."""

from __future__ import annotations

import numpy as np
import torch

from dictlab.data import SparseCodes
from dictlab.validation import check_matrix

ArrayLike = torch.Tensor | np.ndarray


def as_matrix(name: str, x: ArrayLike, *, rows: int | None = None, cols: int | None = None) -> torch.Tensor:
    """A finite 2-D floating tensor from a tensor or numpy array (integer/bool input becomes float32)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, torch.Tensor) and not x.is_floating_point() and not x.is_complex():
        x = x.to(torch.get_default_dtype())
    return check_matrix(name, x, rows=rows, cols=cols)


def as_dense_codes(name: str, codes: SparseCodes | ArrayLike, *, rows: int | None = None) -> torch.Tensor:
    """(N, p) dense codes from a dense matrix or from ``SparseCodes`` (densified: meant for p up to ~10,000)."""
    if isinstance(codes, SparseCodes):
        codes = codes.to_dense()
    return as_matrix(name, codes, rows=rows)


def as_binary_labels(name: str, labels: ArrayLike, n: int) -> np.ndarray:
    """(n,) int64 numpy labels in {0, 1} from bool or 0/1 tensors and arrays (sklearn works on numpy)."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(
            f"{name} must be a 1-D array of {n} labels (one per row of the codes), got shape {labels.shape}"
        )
    if labels.dtype != bool and not np.all(np.isin(labels, (0, 1))):
        raise ValueError(f"{name} must be binary (bool or 0/1), got values {np.unique(labels)[:5]}")
    return labels.astype(np.int64)
