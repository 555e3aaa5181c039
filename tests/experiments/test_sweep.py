"""The sweep runner: resumes after SIGKILL without losing or duplicating a run, survives a failing run,
stops cleanly on Ctrl-C, rejects bad specs before running anything, keeps learned models when asked."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from dictlab.data import make_compositional
from dictlab.experiments.runs import Record, RunSpec
from dictlab.experiments.store import ResultStore
from dictlab.experiments.sweep import RunFailed, SweepInterrupted, check_specs, plan_batches, run_sweep
from dictlab.experiments.tasks import TASKS, register_task
from dictlab.models.io import load_model

DATA = {"num_latents": 24, "k": 3, "n_samples": 400}


def method_spec(seed: int, method: str = "fista_oracle", experiment: str = "unit", **overrides: object) -> RunSpec:
    return RunSpec(
        experiment=experiment, task="method", data=DATA, seed=seed, params={"method": method, "overrides": overrides}
    )


# Test tasks live in this process only (the local executor), registered once per session.
FLAKY_CALLS: dict[int, int] = {}


def _flaky_task(data, spec, context):
    """Raises on the first call for seeds listed in params['fail_seeds'] (or always if params['always'])."""
    FLAKY_CALLS[spec.seed] = FLAKY_CALLS.get(spec.seed, 0) + 1
    if spec.params.get("always") or (spec.seed in spec.params.get("fail_seeds", []) and FLAKY_CALLS[spec.seed] == 1):
        raise RuntimeError(f"boom at seed {spec.seed}")
    return [Record("flaky", {"seed_twice": 2.0 * spec.seed, "y_mean": float(data.train.y.mean())})]


def _interrupting_task(data, spec, context):
    if spec.seed == spec.params["interrupt_at"]:
        raise KeyboardInterrupt
    return [Record("ok", {"seed": float(spec.seed)})]


for _name, _fn in (("test.flaky", _flaky_task), ("test.interrupt", _interrupting_task)):
    if _name not in TASKS:
        register_task(_name)(_fn)


@pytest.fixture
def store(tmp_path):
    with ResultStore(tmp_path / "dictlab-runs" / "results.sqlite") as opened:
        yield opened


SWEEP_SCRIPT = textwrap.dedent(
    """
    import sys
    from dictlab.experiments.store import ResultStore
    from dictlab.experiments.sweep import run_sweep
    from dictlab.experiments.tasks import RunSpec

    data = {"num_latents": 24, "k": 3, "n_samples": 400}
    specs = [RunSpec(experiment="kill", task="method", data=data, seed=s, params={"method": m, "overrides": o})
             for s in range(4) for m, o in (("fista_oracle", {}), ("sae_topk", {"n_steps": 30}))]
    if __name__ == "__main__":
        run_sweep(specs, ResultStore(sys.argv[1]), progress=False)
    """
)


def _snapshot(path) -> dict[str, tuple[str, str | None, int, int]]:
    """run_id -> (status, finished_at, attempts, number of records), read by a separate connection."""
    db = sqlite3.connect(path, timeout=30)
    try:
        return {
            run_id: (status, finished, attempts, n)
            for run_id, status, finished, attempts, n in db.execute(
                "SELECT run_id, status, finished_at, attempts, "
                "(SELECT COUNT(*) FROM records r WHERE r.run_id = runs.run_id) "
                "FROM runs"
            )
        }
    finally:
        db.close()


def test_sigkill_midway_then_the_same_sweep_completes_every_run_exactly_once(tmp_path):
    script = tmp_path / "sweep_script.py"
    script.write_text(SWEEP_SCRIPT)
    path = tmp_path / "dictlab-runs" / "results.sqlite"
    process = subprocess.Popen([sys.executable, str(script), str(path)])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if path.exists() and sum(s[0] == "done" for s in _snapshot(path).values()) >= 2:
                    break
            except sqlite3.OperationalError:  # the file exists but its schema is not committed yet
                pass
            time.sleep(0.05)
        assert process.poll() is None, "the sweep ended before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL

    before = _snapshot(path)
    # Atomicity at the instant of the kill: a done run has its one record, any other run none.
    assert all((n == 1) == (status == "done") for status, _, _, n in before.values()), before
    done_before = {run_id: s for run_id, s in before.items() if s[0] == "done"}
    assert 2 <= len(done_before) < 8
    assert {s[0] for s in before.values()} <= {"done", "running"}

    namespace: dict[str, object] = {"__name__": "resumed"}
    exec(SWEEP_SCRIPT, namespace)  # the same specs, built by the same code
    specs = namespace["specs"]
    with ResultStore(path) as store:
        summary = run_sweep(specs, store, progress=False)
        assert store.integrity_check() == "ok"
        records = store.records()
    assert (summary.total, summary.skipped_done, summary.failed) == (8, len(done_before), 0)
    assert summary.ran == 8 - len(done_before)

    after = _snapshot(path)
    assert set(after) == {s.config_hash() for s in specs}
    assert all(status == "done" and n == 1 for status, _, _, n in after.values())
    assert sorted(r["run_id"] for r in records) == sorted(after)  # no duplicate records
    for run_id, (_, finished, attempts, _) in done_before.items():
        assert after[run_id][1] == finished and after[run_id][2] == attempts  # untouched by the resume
    for run_id, (status, _, attempts, _) in before.items():
        if status == "running":  # cut off by the kill: run again, as a second attempt
            assert after[run_id][2] == attempts + 1
    oracle = [r for r in records if r["label"] == "fista_oracle"]
    assert len(oracle) == 4 and all(r["mcc_ood"] > 0.9 for r in oracle)


def test_a_failing_run_is_stored_with_its_traceback_and_retried_next_time(store):
    FLAKY_CALLS.clear()
    specs = [
        RunSpec(experiment="flaky", task="test.flaky", data=DATA, seed=s, params={"fail_seeds": [1]}) for s in range(3)
    ]
    first = run_sweep(specs, store, progress=False)
    assert (first.total, first.ran, first.failed, first.skipped_done) == (3, 2, 1, 0)
    [failed] = store.runs(status="failed")
    assert failed.seed == 1 and "Traceback" in failed.error and "RuntimeError: boom at seed 1" in failed.error
    assert [r["seed_twice"] for r in store.records()] == [0.0, 4.0]

    second = run_sweep(specs, store, progress=False)
    assert (second.ran, second.failed, second.skipped_done) == (1, 0, 2)
    assert FLAKY_CALLS == {0: 1, 1: 2, 2: 1}  # done runs were not run again
    [retried] = [r for r in store.runs(label="flaky", task="test.flaky") if r.seed == 1]
    assert retried.status == "done" and retried.attempts == 2 and retried.error is None
    expected_mean = float(make_compositional(**DATA, seed=1).train.y.mean())
    assert [r["y_mean"] for r in store.records() if r["seed"] == 1] == [expected_mean]  # data made from the spec


def test_fail_fast_stops_at_the_first_failure(store):
    specs = [
        RunSpec(experiment="ff", task="test.flaky", data=DATA, seed=s, params={"always": s == 1}) for s in range(4)
    ]
    with pytest.raises(RunFailed, match="boom at seed 1") as caught:
        run_sweep(specs, store, progress=False, fail_fast=True)
    assert caught.value.summary.not_run == 2
    assert sorted((r.seed, r.status) for r in store.runs()) == [(0, "done"), (1, "failed")]


def test_ctrl_c_keeps_finished_runs_and_leaves_the_cut_one_running(store):
    specs = [
        RunSpec(experiment="int", task="test.interrupt", data=DATA, seed=s, params={"interrupt_at": 1})
        for s in range(3)
    ]
    with pytest.raises(SweepInterrupted) as caught:
        run_sweep(specs, store, progress=False)
    assert isinstance(caught.value, KeyboardInterrupt)
    assert (caught.value.summary.ran, caught.value.summary.not_run) == (1, 2)
    assert sorted((r.seed, r.status) for r in store.runs()) == [(0, "done"), (1, "running")]
    assert store.pending(specs) == specs[1:]


def test_duplicate_specs_run_once(store):
    specs = [method_spec(0), method_spec(0), method_spec(1), method_spec(0)]
    summary = run_sweep(specs, store, progress=False)
    assert (summary.total, summary.ran) == (2, 2)
    assert len(store.records()) == 2 and len(store.runs()) == 2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (method_spec(0, "sae_nope"), "unknown method 'sae_nope'; allowed: "),
        (method_spec(0, "fista_oracle", lam=-1.0), "method fista_oracle: lam=-1.0"),
        (method_spec(0, "sae_topk", learning_rate=1.0), "unknown parameter\\(s\\) learning_rate; allowed:"),
        (
            RunSpec(experiment="e", task="method", data=DATA, seed=0, params={"method": "pca", "recipee": "study"}),
            "params.recipee",
        ),
        (RunSpec(experiment="e", task="no_such_task", data=DATA, seed=0), "unknown task 'no_such_task'; allowed: "),
    ],
)
def test_a_bad_spec_stops_the_sweep_before_any_run(store, bad, message):
    with pytest.raises(ValueError, match=message):
        run_sweep([method_spec(0), bad], store, progress=False)
    assert store.runs() == []


def test_check_specs_names_the_run_and_deduplicates():
    with pytest.raises(ValueError, match=r"run unit/method seed=3 .*sae_nope"):
        check_specs([method_spec(3, "sae_nope")])
    assert check_specs([method_spec(0), method_spec(0), method_spec(1)]) == [method_spec(0), method_spec(1)]


def test_artifacts_hold_the_learned_model_under_the_run_id(store):
    spec = method_spec(2)
    run_sweep([spec], store, progress=False, artifacts=True)
    folder = store.artifacts_dir / spec.config_hash() / "fista_oracle"
    model = load_model(folder)
    torch.testing.assert_close(model.dictionary, make_compositional(**DATA, seed=2).dictionary, rtol=0, atol=0)
    assert not any(p.name.endswith(".partial") for p in store.artifacts_dir.iterdir())
    assert [r.status for r in store.runs()] == ["done"]


def _batch_methods(runs) -> list[list[str]]:
    return [[run.method for run in batch] for batch in plan_batches(runs)]


def test_plan_batches_keep_runs_that_share_a_fit_together():
    differ = [
        method_spec(0, "dl_fista", max_rounds=5),
        method_spec(0),
        method_spec(0, "dl_lista", max_rounds=6),
        method_spec(0, "sae_topk"),
    ]
    assert _batch_methods(differ) == [["dl_fista"], ["fista_oracle"], ["dl_lista"], ["sae_topk"]]  # two DL-FISTA fits
    same = [
        method_spec(0, "dl_fista", max_rounds=5),
        method_spec(0),
        method_spec(0, "dl_lista", max_rounds=5, epochs=1),
        method_spec(0, "sae_topk"),
    ]
    assert _batch_methods(same) == [["dl_fista", "dl_lista"], ["fista_oracle"], ["sae_topk"]]
    # the same fit on another seed or other data is another fit
    other_seed = [method_spec(0, "dl_fista", max_rounds=5), method_spec(1, "dl_lista", max_rounds=5)]
    assert _batch_methods(other_seed) == [["dl_fista"], ["dl_lista"]]
    other_data = [
        method_spec(0, "dl_fista", max_rounds=5),
        RunSpec(
            experiment="unit",
            task="method",
            data={**DATA, "k": 4},
            seed=0,
            params={"method": "dl_lista", "overrides": {"max_rounds": 5}},
        ),
    ]
    assert _batch_methods(other_data) == [["dl_fista"], ["dl_lista"]]


def test_plan_batches_merge_every_batch_a_run_links():
    runs = [method_spec(0, "fista_oracle", lam=lam) for lam in (0.1, 0.2, 0.3, 0.4, 0.5)]
    keys = dict(
        zip((run.run_id for run in runs), map(frozenset, ({"x"}, {"y"}, set(), {"x", "y"}, {"z"})), strict=True)
    )
    batches = plan_batches(runs, keys)
    assert [[runs.index(run) for run in batch] for batch in batches] == [[0, 1, 3], [2], [4]]  # 3 links 0's and 1's


def test_a_sweep_fits_a_shared_fit_once(store, monkeypatch):
    from dictlab.learners.dl_fista import DLFista

    fits = []
    original = DLFista.fit
    monkeypatch.setattr(DLFista, "fit", lambda self, y, context=None: fits.append(1) or original(self, y, context))
    runs = [
        method_spec(0, "dl_fista", max_rounds=4),
        method_spec(0),
        method_spec(0, "dl_lista", max_rounds=4, epochs=1),
    ]
    summary = run_sweep(runs, store, progress=False)
    assert (summary.ran, summary.failed) == (3, 0) and len(fits) == 1
    rows = {row["label"]: row for row in store.records()}
    assert rows["dl_lista"]["dict_mean_cosine"] == rows["dl_fista"]["dict_mean_cosine"]  # the very same dictionary


@pytest.mark.slow
def test_two_processes_give_the_one_process_results(tmp_path):
    runs = [
        method_spec(seed, method, **overrides)
        for seed in (0, 1)
        for method, overrides in (
            ("fista_oracle", {}),
            ("dl_fista", {"max_rounds": 6}),
            ("linear_probe", {}),
            ("dl_lista", {"max_rounds": 6, "epochs": 1}),
        )
    ]
    results = {}
    for jobs in (1, 2):
        with ResultStore(tmp_path / f"jobs{jobs}.sqlite") as store:
            summary = run_sweep(runs, store, jobs=jobs, threads=1, progress=False)
            assert (summary.ran, summary.failed) == (len(runs), 0)
            results[jobs] = {
                (row["seed"], row["label"]): {k: v for k, v in row.items() if not k.endswith("_s")}
                for row in store.records()
            }
    assert results[1].keys() == results[2].keys() and len(results[1]) == len(runs)
    for key, metrics in results[1].items():
        assert results[2][key] == pytest.approx(metrics, abs=1e-9), key  # one thread each: the same rounding
