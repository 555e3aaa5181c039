"""The base of every typed configuration, and the one way a bad configuration becomes a one-line error.

Pure Python (pydantic only): importable by the results store and anything else that must not load torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError


class Config(BaseModel):
    """Base of dictlab's hyperparameters, generator settings, specs and run identities.

    Unknown fields are errors (a typo never passes silently); values are checked strictly — ``true`` is not
    an integer, ``"1"`` is not a number, ``1.5`` is not a count (integers are accepted where a float is
    asked); numbers must be finite (``lam = inf`` is refused, not turned into all-zero codes); instances are
    frozen, so a config can be shared, hashed and used as a cache key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


C = TypeVar("C", bound=BaseModel)


def describe_validation_error(
    err: ValidationError, *, prefix: str = "", allowed: Iterable[str] | None = None, noun: str = "field"
) -> str:
    """One actionable line for the first error of a pydantic validation.

    ``<prefix><field>=<value>: <rule>``, or, for an unknown field when ``allowed`` is given,
    ``[<prefix><field>: ]unknown <noun> '<field>'; allowed: …``.
    """
    first = err.errors()[0]
    name = ".".join(str(part) for part in first["loc"])
    field = prefix + name if name else ""
    if first["type"] == "extra_forbidden" and allowed is not None:
        unknown = f"unknown {noun} {name!r}; allowed: {', '.join(allowed)}"
        return f"{field}: {unknown}" if prefix else unknown
    value = first.get("input")
    shown = "" if isinstance(value, dict) or not first["loc"] else f"={value!r}"
    message = first["msg"].removeprefix("Value error, ")
    return f"{field}{shown}: {message}" if field else message


def parse_config(cls: type[C], values: Any, *, where: str = "", prefix: str = "", noun: str = "field") -> C:
    """``cls`` validated from a mapping of ``values``; ValueError in one line otherwise.

    where : what is being configured, put first (``"method sae_topk"`` → ``method sae_topk: lr=-1: …``).
    prefix : prepended to field names (``"params."``); noun : what an unknown field is called (``parameter``).
    """
    lead = f"{where}: " if where else ""
    if not isinstance(values, Mapping):
        raise ValueError(
            f"{lead}{prefix.rstrip('.') or 'config'} must be a table of fields, got {type(values).__name__} {values!r}"
        )
    try:
        return cls.model_validate(dict(values))
    except ValidationError as err:
        detail = describe_validation_error(err, prefix=prefix, allowed=list(cls.model_fields), noun=noun)
        raise ValueError(f"{lead}{detail}") from None
