"""What a learner logs along its fit: one ``TrainingHistory`` type for every learner."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field


@dataclass
class TrainingHistory:
    """Entries logged along training, one dict of floats per entry, each with the key ``step``.

    unit : what ``step`` counts — ``"optimiser step"`` (SAEs, Softplus-Adam, LISTA) or ``"round"``
        (alternating learners such as DL-FISTA).
    records : the entries in order; their other keys are the learner's quantities (``mse``, ``l0``, a loss
        term per name, and with a ground-truth dictionary ``mean_cosine``, ``frac_close`` …).
    """

    unit: str = "optimiser step"
    records: list[dict[str, float]] = field(default_factory=list)

    def log(self, step: float, values: dict[str, float]) -> dict[str, float]:
        """Append the entry ``{"step": step, **values}`` and return it."""
        entry = {"step": float(step), **{key: float(value) for key, value in values.items()}}
        self.records.append(entry)
        return entry

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, float]]:
        return iter(self.records)

    def __getitem__(self, i: int) -> dict[str, float]:
        return self.records[i]

    def series(self, name: str) -> list[float]:
        """One logged quantity over the entries (KeyError if an entry lacks it)."""
        return [record[name] for record in self.records]

    def steps(self) -> Sequence[float]:
        return self.series("step")
