"""Input checks at the public boundary: each raises ValueError with a sentence a user can act on."""

from __future__ import annotations

import math

import torch


def check_matrix(name: str, x: torch.Tensor, *, cols: int | None = None, rows: int | None = None) -> torch.Tensor:
    """Check that ``x`` is a finite 2-D floating tensor, optionally with the given number of rows/columns."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if cols is not None and x.shape[1] != cols:
        raise ValueError(f"{name} must have {cols} columns, got shape {tuple(x.shape)}")
    if rows is not None and x.shape[0] != rows:
        raise ValueError(f"{name} must have {rows} rows, got shape {tuple(x.shape)}")
    # A finite sum proves every entry finite at the cost of one reduction; scan only when it is not.
    if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf; clean the input first")
    return x


def check_positive(name: str, value: float, *, allow_zero: bool = False, allow_inf: bool = False) -> float:
    """``value`` if it is a finite number > 0 (≥ 0 with ``allow_zero``; +inf too with ``allow_inf``);
    ValueError naming it otherwise."""
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")
    if math.isinf(value) and not (allow_inf and value > 0):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    if not (value >= 0 if allow_zero else value > 0):
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def check_int_range(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` if it is an integer (not a bool) in [low, high]; ValueError naming it otherwise."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return value
