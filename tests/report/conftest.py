"""A synthetic results store for the report tests: runs written through ``ResultStore.finish`` with records
whose metrics follow known formulas (no training), and a small HTML reader for the built page."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from dictlab.experiments.runs import Record, RunSpec
from dictlab.experiments.store import ResultStore

SEEDS = (0, 1, 2)
LATENTS = (20, 40, 80)
SWEEP_METHODS = {"fista_oracle": 0.9, "sae_topk": 0.4}
SAES = ("sae_topk", "sae_relu")
VERSIONS = {"dictlab": "test", "torch": "test"}


def data(num_latents: int = 20) -> dict[str, int]:
    return {"num_latents": num_latents, "k": 3, "n_samples": 200}


def sweep_value(method: str, p: int, seed: int) -> float:
    """The sweep's mcc_ood: a method's level, a trend in p and a seed effect (mean over seeds 0,1,2 = +0.02)."""
    return SWEEP_METHODS[method] + 0.0005 * p + 0.02 * seed


def frozen_value(arm: str, sae: str, seed: int) -> float:
    base = {"own": 0.3, "fista": 0.35}[arm] + (0.1 if sae == "sae_relu" else 0.0)
    return base + 0.01 * seed


def oracle_value(seed: int) -> float:
    return 0.95 + 0.01 * seed


def fill_store(path: Path) -> Path:
    """Four experiments (sweep, frozen-decoder bars, learning-dynamics curves, warm-start encoder curves plus
    points) with three seeds, and one failed run."""
    with ResultStore(path) as store:
        for p in LATENTS:
            for method in SWEEP_METHODS:
                for seed in SEEDS:
                    spec = RunSpec(
                        experiment="sweep",
                        task="method",
                        data=data(p),
                        seed=seed,
                        params={"method": method, "overrides": {}, "recipe": "dictlab"},
                    )
                    value = sweep_value(method, p, seed)
                    metrics = {
                        "mcc_ood": value,
                        "mcc_id": value + 0.05,
                        "mcc_chance_ood": 0.1 + 0.001 * seed,
                        "mcc_chance_id": 0.12,
                        "acc_ood": 0.6 + 0.01 * seed,
                        "auc_ood": 0.7,
                    }
                    store.finish(spec, [Record(method, metrics)], {"total_s": 1.0}, VERSIONS)
        failed = RunSpec(
            experiment="sweep",
            task="method",
            data=data(160),
            seed=0,
            params={"method": "sae_topk", "overrides": {}, "recipe": "dictlab"},
        )
        store.mark_running(failed)
        store.fail(failed, "Traceback (most recent call last):\nRuntimeError: synthetic failure", {}, VERSIONS)

        for sae in SAES:
            for seed in SEEDS:
                spec = RunSpec(
                    experiment="frozen",
                    task="surgery.frozen_decoder",
                    data=data(20),
                    seed=seed,
                    params={"method": sae, "recipe": "dictlab"},
                )
                records = [
                    Record(
                        sae, {"mcc_ood": frozen_value("own", sae, seed), "mcc_chance_ood": 0.1, "dict_mean_cosine": 0.5}
                    ),
                    Record(
                        f"fista+{sae}",
                        {"mcc_ood": frozen_value("fista", sae, seed), "mcc_chance_ood": 0.1, "dict_mean_cosine": 0.5},
                    ),
                    Record(
                        "fista_oracle", {"mcc_ood": oracle_value(seed), "mcc_chance_ood": 0.1, "dict_mean_cosine": 1.0}
                    ),
                ]
                store.finish(spec, records, {}, VERSIONS)

        for method, scale in (("sae_topk", 100), ("dl_fista", 10)):
            for seed in SEEDS:
                spec = RunSpec(
                    experiment="dynamics",
                    task="surgery.learning_dynamics",
                    data=data(20),
                    seed=seed,
                    params={"method": method, "recipe": "dictlab"},
                )
                records = [
                    Record(method, {"mean_cosine": 0.2 * i + 0.01 * seed, "mse_loss": 1.0 / i}, float(i * scale))
                    for i in (1, 2, 3, 4)
                ]
                store.finish(spec, records, {}, VERSIONS)

        for seed in SEEDS:
            spec = RunSpec(
                experiment="warmstart",
                task="surgery.warmstart_encoder",
                data=data(20),
                seed=seed,
                params={"method": "sae_topk", "recipe": "dictlab"},
            )
            records = [Record("warm+sae_topk", {"mcc_ood": 0.5 + 0.001 * n}, float(n)) for n in (0, 1, 10, 100)]
            records += [Record("cold+sae_topk", {"mcc_ood": 0.4 + 0.001 * n}, float(n)) for n in (1, 10, 100)]
            records += [
                Record("to_tolerance+sae_topk", {"iters_saved_ood": 30.0 + seed, "iters_cold_ood": 90.0}),
                Record("fista_oracle", {"mcc_ood": 0.97}, 100.0),
            ]
            store.finish(spec, records, {}, VERSIONS)
    return path


# Figures the page must show: experiment -> metrics with a figure.
EXPECTED_FIGURES = {
    "sweep": ("mcc_id", "mcc_ood", "acc_ood", "auc_ood"),
    "frozen": ("mcc_ood", "dict_mean_cosine"),
    "dynamics": ("mean_cosine", "mse_loss"),
    "warmstart": ("mcc_ood", "iters_saved_ood"),
}


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fill_store(tmp_path_factory.mktemp("store") / "results.sqlite")


class PageReader(HTMLParser):
    """Collects what the tests look at: tags with attributes, figure ids, and every table as rows of cell text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.figcaptions: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._caption: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "table":
            self._table = attributes.get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "figcaption":
            self._caption = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "figcaption" and self._caption is not None:
            self.figcaptions.append("".join(self._caption))
            self._caption = None

    def handle_data(self, text: str) -> None:
        if self._cell is not None:
            self._cell.append(text)
        if self._caption is not None:
            self._caption.append(text)


def read_page(path: Path) -> PageReader:
    reader = PageReader()
    reader.feed(path.read_text(encoding="utf-8"))
    return reader
