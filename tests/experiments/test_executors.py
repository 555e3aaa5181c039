"""Executors: a process pool and a real local Ray cluster give the same numbers as running in-process."""

from __future__ import annotations

import importlib.util

import pytest

from dictlab.experiments.executors import EXECUTORS, LocalExecutor, ProcessExecutor, RayExecutor, make_executor
from dictlab.experiments.runs import Record, RunSpec
from dictlab.experiments.store import ResultStore
from dictlab.experiments.sweep import run_sweep
from dictlab.experiments.tasks import TASKS, register_task

FIND_SPEC = importlib.util.find_spec
DATA = {"num_latents": 24, "k": 3, "n_samples": 400}
SPECS = [
    RunSpec(experiment="exec", task="method", data=DATA, seed=0, params={"method": "fista_oracle"}),
    RunSpec(experiment="exec", task="method", data=DATA, seed=1, params={"method": "fista_oracle"}),
    RunSpec(
        experiment="exec", task="method", data=DATA, seed=0, params={"method": "sae_topk", "overrides": {"n_steps": 30}}
    ),
]


if "test.threads" not in TASKS:

    @register_task("test.threads")
    def _threads_task(data, spec, context):
        import torch

        return [Record("threads", {"torch_threads": float(torch.get_num_threads())})]


def _metrics(store: ResultStore) -> dict[tuple[str, str], dict[str, float]]:
    """Every record's numbers except wall-clock timings, by (run id, label)."""
    return {
        (row["run_id"], row["label"]): {k: v for k, v in row.items() if not k.endswith("_s")} for row in store.records()
    }


@pytest.fixture(scope="module")
def local_metrics(tmp_path_factory):
    with ResultStore(tmp_path_factory.mktemp("local") / "r.sqlite") as store:
        # one torch thread, as the workers use: the same float rounding, so bit-equal numbers on any machine
        summary = run_sweep(SPECS, store, threads=1, progress=False)
        assert (summary.ran, summary.failed) == (3, 0)
        return _metrics(store)


@pytest.mark.slow
def test_process_pool_gives_the_local_numbers(tmp_path, local_metrics):
    with ResultStore(tmp_path / "r.sqlite") as store:
        summary = run_sweep(SPECS, store, jobs=2, executor="process", progress=False)
        assert (summary.total, summary.ran, summary.failed) == (3, 3, 0)
        assert {r.status for r in store.runs()} == {"done"}
        assert _metrics(store) == local_metrics  # same seeds, same numbers, bit for bit
        assert all(r.versions["torch"] for r in store.runs())


@pytest.mark.slow
def test_ray_cluster_gives_the_local_numbers(tmp_path, local_metrics):
    ray = pytest.importorskip("ray", reason="the Ray executor needs the optional package ray (pip install ray)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with ResultStore(tmp_path / "r.sqlite") as store:
            summary = run_sweep(SPECS, store, executor="ray", progress=False, artifacts=True)
            assert (summary.total, summary.ran, summary.failed) == (3, 3, 0)
            assert _metrics(store) == local_metrics
            # Artifacts travel back as bytes: the driver writes them beside the store.
            for spec in SPECS:
                model_file = store.artifacts_dir / spec.config_hash() / spec.params["method"] / "model.safetensors"
                assert model_file.is_file()
        assert ray.is_initialized()  # a cluster the sweep did not start is left running for its owner
    finally:
        ray.shutdown()


def test_make_executor_picks_and_validates():
    assert isinstance(make_executor(None), LocalExecutor)
    assert isinstance(make_executor(None, jobs=3), ProcessExecutor)
    assert make_executor("process").jobs >= 1
    assert EXECUTORS.names() == ["local", "process", "ray"]
    with pytest.raises(ValueError, match="executor 'local' runs one run at a time, got jobs=2"):
        make_executor("local", jobs=2)
    with pytest.raises(ValueError, match="unknown executor 'dask'; allowed: local, process, ray"):
        make_executor("dask")
    with pytest.raises(ValueError, match="jobs must be an integer >= 1, got 0"):
        make_executor("process", jobs=0)
    with pytest.raises(ValueError, match="address is only for executor 'ray'"):
        make_executor("process", jobs=2, address="auto")


def test_ray_executor_is_chosen_by_address_or_says_what_to_install(monkeypatch):
    if importlib.util.find_spec("ray") is not None:
        assert isinstance(make_executor(None, address="ray://head:10001"), RayExecutor)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else FIND_SPEC(name, *a))
    with pytest.raises(ValueError, match="executor 'ray' needs Ray: pip install ray"):
        make_executor("ray")


def test_local_threads_apply_during_the_sweep_and_are_restored(tmp_path):
    import torch

    before = torch.get_num_threads()
    wanted = 1 if before > 1 else 2
    spec = RunSpec(experiment="threads", task="test.threads", data=DATA, seed=0)
    with ResultStore(tmp_path / "r.sqlite") as store:
        run_sweep([spec], store, threads=wanted, progress=False)
        assert [row["torch_threads"] for row in store.records()] == [wanted]
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be an integer >= 1 or None, got 0"):
        make_executor("process", threads=0)
