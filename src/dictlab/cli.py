"""The ``dictlab`` command: ``run``, ``demo``, ``sweep``, ``runs``, ``report``, ``methods``, ``generators``,
``presets``, ``phase-diagram``, ``diagnose``.

``run`` and ``demo`` are one-point sweeps: their runs go into a results store (a new temporary one unless
``--store`` names one), through the same runner as ``sweep``, so every run can be reported, exported and
resumed. Every bad argument stops with one line on stderr — ``dictlab run: error: <what> …; allowed: …`` — and
exit status 2, before any training starts and before any file is written.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from dictlab import __version__
from dictlab.experiments.runs import last_line

DEFAULT_STORE = "dictlab-runs/results.sqlite"
COMMANDS = ("run", "demo", "sweep", "runs", "report", "methods", "generators", "presets", "phase-diagram", "diagnose")
# Shorthand flags of `dictlab run` for data fields most generators share: (flag, field, type, help).
DATA_FLAGS = (
    ("--num-latents", "num_latents", int, "number of ground-truth latents p"),
    ("--k", "k", int, "active latents per sample"),
    ("--n-samples", "n_samples", int, "ID samples, split train/id; OOD gets half"),
    ("--input-dim", "input_dim", int, "observation dimension m (compositional default: the compressed-sensing bound)"),
    ("--noise-std", "noise_std", float, "additive Gaussian observation noise"),
)
DEMO: dict[str, Any] = {"num_latents": 100, "k": 10, "n_samples": 5000, "seeds": "0,1,2"}
# Left out of the demo for time: K-SVD needs ~150 rounds here (~35 s per seed on one thread, more than the rest).
DEMO_SKIPS = ("ksvd",)


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's default prints the whole usage block first
        raise CliError(message)


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


# --- argument parsing helpers ---------------------------------------------------------------------------


def parse_seeds(text: str) -> list[int]:
    """'0,1,2', '0-2' or '3' → a list of distinct non-negative seeds, in order."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                low, high = part.split("-", 1)
                seeds.extend(range(int(low), int(high) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise CliError(
            f"--seeds: cannot read {text!r}; allowed: comma-separated integers or a range like 0-2"
        ) from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise CliError(f"--seeds: {text!r} must give distinct non-negative integers, e.g. 0,1,2 or 0-2")
    return seeds


def parse_methods(text: str) -> list[str]:
    """'all' or comma-separated method names → the names, each checked, none twice, at least one."""
    from dictlab.methods import METHODS

    if text.strip() == "all":
        return METHODS.names()
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise CliError(f"--methods: {text!r} names no method; allowed: all, {', '.join(METHODS.names())}")
    for name in names:
        if name not in METHODS:
            raise CliError(f"--methods: unknown method {name!r}; allowed: all, {', '.join(METHODS.names())}")
    if len(set(names)) != len(names):
        raise CliError(f"--methods: {text!r} names a method twice")
    return names


def parse_overrides(items: Sequence[str], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """['sae_topk.lr=1e-3', …] → {'sae_topk': {'lr': 0.001}}; the method must be one that runs."""
    from dictlab.experiments.spec import parse_value
    from dictlab.methods import METHODS

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, field = key.partition(".")
        if not sep or not dot or not method or not field:
            raise CliError(f"--set: cannot read {item!r}; allowed form: METHOD.FIELD=VALUE, e.g. sae_topk.lr=1e-3")
        if method not in METHODS:
            raise CliError(f"--set {item}: unknown method {method!r}; allowed: {', '.join(METHODS.names())}")
        if method not in methods:
            raise CliError(
                f"--set {item}: {method} is not among the methods run ({', '.join(methods)}); add it to --methods"
            )
        try:
            out.setdefault(method, {})[field] = parse_value(value)
        except ValueError as err:
            raise CliError(f"--set {item}: {err}") from None
    return out


def parse_assignments(items: Sequence[str], flag: str) -> dict[str, Any]:
    """['num_latents=1000', …] → {'num_latents': 1000} (values are JSON where they parse, else text)."""
    from dictlab.experiments.spec import parse_value

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"{flag}: cannot read {item!r}; allowed form: FIELD=VALUE, e.g. num_latents=1000")
        try:
            out[key.strip()] = parse_value(value)
        except ValueError as err:
            raise CliError(f"{flag} {item}: {err}") from None
    return out


def resolve_device(name: str) -> str:
    import torch

    if name == "cpu":
        return name
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CliError(f"--device: {name!r} requested but CUDA is not available here; allowed: cpu")
        return name
    raise CliError(f"--device: unknown device {name!r}; allowed: cpu, cuda, cuda:N")


def resolve_jobs(jobs: str) -> int:
    """``--jobs``: 'auto' (the cores this process may use) or an integer ≥ 1."""
    if jobs == "auto":
        from dictlab.experiments.executors import usable_cores

        return usable_cores()
    try:
        value = int(jobs)
    except ValueError:
        raise CliError(f"--jobs: cannot read {jobs!r}; allowed: auto or an integer >= 1") from None
    if value < 1:
        raise CliError(f"--jobs: must be >= 1, got {value}")
    return value


def check_threads(threads: int) -> int:
    if threads < 1:
        raise CliError(f"--threads: must be >= 1, got {threads}")
    return threads


def check_output_file(path: Path, flag: str) -> None:
    """Refuse, before any work, an output path that cannot be written (a folder, under a file, no permission)."""
    from dictlab.experiments.store import StoreError, check_writable_file

    try:
        check_writable_file(path)
    except StoreError as err:
        raise CliError(f"{flag}: {err}") from None


def open_store(path: str | Path, flag: str = "--store", *, readonly: bool = False) -> Any:
    from dictlab.experiments.store import ResultStore, StoreError

    try:
        return ResultStore(path, readonly=readonly)
    except StoreError as err:
        raise CliError(f"{flag}: {err}") from None


# --- run and demo: one-point sweeps ------------------------------------------------------------------------


def _data_table(args: argparse.Namespace) -> dict[str, Any]:
    """The data of ``dictlab run``: ``--generator``, then ``--data`` assignments, then the shorthand flags;
    validated against the generator's config, a bad value named by the flag that gave it."""
    from pydantic import ValidationError

    from dictlab.config import describe_validation_error
    from dictlab.data import GENERATORS

    try:
        generator = GENERATORS[args.generator]
    except ValueError as err:
        raise CliError(f"--generator: {err}") from None
    fields = parse_assignments(args.data, "--data")
    flags = {field: f"--data {field}" for field in fields}
    for option, field, _, _ in DATA_FLAGS:
        value = getattr(args, field)
        if value is not None:
            fields[field] = value
            flags[field] = option
    config_class = generator.config_class
    try:
        config = config_class.model_validate(fields)
    except ValidationError as err:
        loc = err.errors()[0]["loc"]
        flag = flags.get(str(loc[0])) if loc else None
        detail = describe_validation_error(err, allowed=list(config_class.model_fields))
        if flag is not None:
            detail = detail.removeprefix(str(loc[0]))
            detail = f"{flag}{detail}" if detail.startswith(("=", ":")) else f"{flag}: {detail}"
        raise CliError(f"{args.generator} data: {detail}" if flag is None else detail) from None
    return config.to_spec()


def _point_spec(args: argparse.Namespace, data: dict[str, Any], methods: list[str]) -> Any:
    from dictlab.experiments.spec import ExperimentSpec, validate_spec

    raw = {
        "name": args.experiment,
        "task": "method",
        "methods": methods,
        "seeds": parse_seeds(args.seeds),
        "recipe": args.recipe,
        "study_metrics": args.study_metrics,
        "data": data,
        "method_params": parse_overrides(args.set, methods),
    }
    try:
        spec: ExperimentSpec = validate_spec(raw, source="dictlab run")
        return spec, spec.expand()
    except ValueError as err:
        raise CliError(_first_line(err)) from None


def run_point(args: argparse.Namespace, data: dict[str, Any], methods: list[str]) -> int:
    """Validate everything, then run the point's (method, seed) runs into the store, print, export."""
    from dictlab.experiments.summary import summarise
    from dictlab.experiments.sweep import SweepInterrupted, check_specs, run_sweep
    from dictlab.report_table import print_summary, progress_printer

    threads = check_threads(args.threads)
    jobs = resolve_jobs(args.jobs)
    device = resolve_device(args.device)
    spec, runs = _point_spec(args, data, methods)
    try:
        runs = check_specs(runs)  # every run is validated before the first one starts
    except ValueError as err:
        raise CliError(_first_line(err)) from None
    if args.out is not None:
        check_output_file(args.out, "--out")
    store_path = (
        Path(args.store) if args.store is not None else Path(tempfile.mkdtemp(prefix="dictlab-run-")) / "results.sqlite"
    )
    started = time.perf_counter()
    jobs = min(jobs, len(runs))
    with open_store(store_path) as store:
        print(
            f"dictlab {args.command}: {_count(len(methods), 'method')} × {_count(len(spec.seeds), 'seed')} on "
            f"{_describe_data(data)}; "
            f"{_count(jobs, 'process')} × {_count(threads, 'thread')}; "
            f"store {store_path}",
            flush=True,
        )
        try:
            summary = run_sweep(
                runs,
                store,
                jobs=jobs,
                threads=threads,
                progress=False,
                device=device,
                run_progress=jobs == 1 and not args.quiet and sys.stderr.isatty(),
                on_outcome=progress_printer(len(runs), quiet=args.quiet),
            )
        except SweepInterrupted as stop:
            raise _Interrupted(
                f"interrupted; {stop.summary}; resume with: {_resume_command(args, store_path)}"
            ) from None
        order = {run.run_id: i for i, run in enumerate(runs)}  # the spec's order: methods × seeds
        rows = sorted(
            (r for r in store.records(experiment=spec.name) if r["run_id"] in order), key=lambda r: order[r["run_id"]]
        )
        stored = sorted(
            (r for r in store.runs(experiment=spec.name) if r.run_id in order), key=lambda r: order[r.run_id]
        )
    results = summarise(rows)
    print_summary(results, methods, title=_title(data, spec.seeds, spec.recipe), study_metrics=spec.study_metrics)
    wall = time.perf_counter() - started
    if args.out is not None:
        _write_json(args.out, spec, data, device, wall, str(store_path), stored, rows, results)
        print(f"results written to {args.out}")
    failed = [run for run in stored if run.status != "done"]
    for run in failed:
        error = last_line(run.error, "no error recorded")
        print(f"run {run.run_id} ({run.method} seed={run.seed}) {run.status}: {error}", file=sys.stderr)
    print(
        f"{len(runs)} runs ({summary.skipped_done} already in the store) in {wall:.1f} s; report: "
        f"dictlab report --store {store_path}"
    )
    return 1 if failed else 0


class _Interrupted(Exception):
    """Ctrl-C or SIGTERM during a run or sweep: the message says what was kept and how to resume."""


def _resume_command(args: argparse.Namespace, store_path: Path) -> str:
    argv = list(args.argv)
    if args.store is None:
        argv += ["--store", str(store_path)]
    return "dictlab " + " ".join(argv)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith('s') else 's'}"


def _describe_data(data: dict[str, Any]) -> str:
    keys = ("num_latents", "k", "input_dim", "n_samples")
    shown = " ".join(f"{k}={data[k]}" for k in keys if k in data)
    return f"{data['generator']} ({shown})" if shown else str(data["generator"])


def _title(data: dict[str, Any], seeds: list[int], recipe: str) -> str:
    return f"{_describe_data(data)}  seeds={','.join(map(str, seeds))}  recipe={recipe}"


def _write_json(
    path: Path,
    spec: Any,
    data: dict[str, Any],
    device: str,
    wall: float,
    store: str,
    runs: list[Any],
    rows: list[dict[str, Any]],
    summary: dict[str, Any],
) -> None:
    """The point as strict JSON (an undefined metric is null): settings, every run, mean ± std per method."""
    from dictlab.experiments.summary import measurements

    by_run = {row["run_id"]: row for row in rows}
    report = {
        "dictlab_version": __version__,
        "experiment": spec.name,
        "data": data,
        "methods": spec.methods,
        "seeds": spec.seeds,
        "recipe": spec.recipe,
        "overrides": spec.method_params,
        "device": device,
        "wall_s": wall,
        "store": store,
        "runs": [
            {
                "run_id": run.run_id,
                "method": run.method,
                "seed": run.seed,
                "status": run.status,
                "overrides": run.spec.get("params", {}).get("overrides", {}),
                "metrics": measurements(by_run.get(run.run_id, {})),
                "timings": run.timings,
                **({"error": last_line(run.error, "no error recorded")} if run.status != "done" else {}),
            }
            for run in runs
        ],
        "summary": {label: {k: v.as_dict() for k, v in stats.items()} for label, stats in summary.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, allow_nan=False))


def fitting_methods(data: dict[str, Any], names: list[str]) -> list[str]:
    """``names`` without the methods these data cannot feed (a transcoder without targets, a crosscoder on one
    source), saying which were left out."""
    from dictlab.data import data_config
    from dictlab.methods import METHODS

    sizes = data_config(data).sizes()
    kept = [name for name in names if METHODS[name].fits(sizes)]
    left = [name for name in names if name not in kept]
    if left:
        print(f"not run on these data (they need targets or several sources): {', '.join(left)}")
    return kept


def _cmd_run(args: argparse.Namespace) -> int:
    data = _data_table(args)
    names = parse_methods(args.methods)
    return run_point(args, data, fitting_methods(data, names) if args.methods.strip() == "all" else names)


def _cmd_demo(args: argparse.Namespace) -> int:
    from dictlab.data import data_spec
    from dictlab.methods import METHODS

    print(
        "dictlab demo: every method on y = A z with k-sparse z; trained on ID data, tested on OOD "
        "combinations of latents never seen together in training."
    )
    data = data_spec({"num_latents": DEMO["num_latents"], "k": DEMO["k"], "n_samples": DEMO["n_samples"]})
    args.set, args.recipe, args.study_metrics = [], "dictlab", False
    skipped = [name for name in DEMO_SKIPS if name in METHODS]
    if skipped:
        print(f"not in the demo (slow): {', '.join(skipped)} — run them with dictlab run --methods {','.join(skipped)}")
    return run_point(args, data, fitting_methods(data, [name for name in METHODS.names() if name not in skipped]))


# --- the other commands ---------------------------------------------------------------------------------


def _cmd_methods(args: argparse.Namespace) -> int:
    from dictlab.methods import METHODS

    width = max(len(name) for name in METHODS.names())
    for name in METHODS.names():
        method = METHODS[name]
        tags = [t for t, on in (("supervised", method.supervised), ("oracle", method.oracle)) if on]
        suffix = f"  [{', '.join(tags)}]" if tags else ""
        print(f"{name:<{width}}  {method.description}{suffix}")
    return 0


def _cmd_generators(args: argparse.Namespace) -> int:
    from dictlab.data import GENERATORS

    for name in GENERATORS.names():
        generator = GENERATORS[name]
        print(f"{name}: {generator.description}")
        for field, info in generator.config_class.model_fields.items():
            print(f"  {field} = {json.dumps(info.default)}  {info.description or ''}")
    return 0


def _load_experiment(args: argparse.Namespace) -> Any:
    from dictlab.experiments.spec import apply_overrides, load_preset, load_spec

    if (args.spec is None) == (args.preset is None):
        raise CliError("give exactly one of SPEC.toml and --preset NAME (see `dictlab presets`)")
    try:
        spec = load_spec(args.spec) if args.spec is not None else load_preset(args.preset)
        if args.quick:
            spec = spec.with_quick()
        return apply_overrides(spec, args.set) if args.set else spec
    except ValueError as err:
        raise CliError(_first_line(err)) from None


def _cmd_sweep(args: argparse.Namespace) -> int:
    from dictlab.experiments.sweep import RunFailed, SweepInterrupted, check_specs, run_sweep

    threads = check_threads(args.threads)
    jobs: int | None = resolve_jobs(args.jobs)
    spec = _load_experiment(args)
    try:
        runs = check_specs(spec.expand())  # every run is validated before the first one starts
    except ValueError as err:
        raise CliError(_first_line(err)) from None
    if args.dry_run:
        for run in runs:
            print(f"{run.run_id}  {run.describe()}")
        print(f"{len(runs)} runs in experiment {spec.name}")
        return 0
    if args.jobs == "auto" and (args.executor == "local" or args.executor == "ray" or args.address is not None):
        jobs = 1 if args.executor == "local" else None  # ray: as many as the cluster has CPUs
    started = time.perf_counter()
    with open_store(args.store) as store:
        try:
            summary = run_sweep(
                runs,
                store,
                jobs=jobs,
                executor=args.executor,
                address=args.address,
                threads=threads,
                artifacts=args.artifacts,
                progress=not args.quiet,
                fail_fast=args.fail_fast,
            )
        except SweepInterrupted as stop:
            raise _Interrupted(f"interrupted; {stop.summary}; run the same command to resume") from None
        except RunFailed as err:
            print(f"dictlab sweep: stopped at a failed run (--fail-fast): {_first_line(err)}", file=sys.stderr)
            return 1
        except ValueError as err:
            raise CliError(_first_line(err)) from None
    print(
        f"experiment {spec.name}: {summary.total} runs — {summary.skipped_done} already done, {summary.ran} ran, "
        f"{summary.failed} failed — {time.perf_counter() - started:.1f} s; store {args.store}"
    )
    return 1 if summary.failed else 0


def _cmd_runs(args: argparse.Namespace) -> int:
    if args.export is not None:
        check_output_file(args.export, "--export")
    with open_store(args.store, readonly=True) as store:
        if args.export is not None:
            try:
                path = store.export(args.export, experiment=args.experiment, label=args.label)
            except ValueError as err:
                raise CliError(f"--export: {_first_line(err)}") from None
            print(f"records written to {path}")
            return 0
        runs = store.runs(experiment=args.experiment, status=args.status, label=args.label)
        for run in runs:
            data = run.spec.get("data", {})
            print(
                f"{run.run_id}  {run.status:<7} {run.experiment:<20} {run.task:<28} {run.method or '-':<14} "
                f"seed={run.seed}  {data.get('generator', '?')} p={data.get('num_latents')} k={data.get('k')} "
                f"N={data.get('n_samples')}  {run.finished_at or ''}"
            )
        print(f"{len(runs)} runs")
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    from dictlab.experiments.spec import load_preset, preset_names

    for name in preset_names():
        spec = load_preset(name)
        print(
            f"{name:<20} {len(spec.expand()):>5} runs ({len(spec.with_quick().expand())} with --quick)  "
            f"{spec.description}"
        )
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from dictlab.report import build_report

    if args.out.exists() and not args.out.is_dir():
        raise CliError(f"--out: {args.out} is a file; the report is a folder (index.html and figures/)")
    check_output_file(args.out / "index.html", "--out")
    with open_store(args.store, readonly=True) as store:
        try:
            page = build_report(store, args.out, experiment=args.experiment)
        except ValueError as err:
            raise CliError(_first_line(err)) from None
    print(f"report written to {page}")
    return 0


# --- phase-diagram: coders with the true dictionary against the ℓ1 phase transition ----------------------------


def parse_solvers(text: str) -> list[str]:
    """'fista,omp' → distinct registered phase-diagram solver names, in order."""
    from dictlab.theory import PHASE_SOLVERS

    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    allowed = ", ".join(PHASE_SOLVERS.names())
    if not names:
        raise CliError(f"--solvers: {text!r} names no solver; allowed: {allowed}")
    for name in names:
        if name not in PHASE_SOLVERS:
            raise CliError(f"--solvers: unknown solver {name!r}; allowed: {allowed}")
    return names


def _cmd_phase_diagram(args: argparse.Namespace) -> int:
    solvers = parse_solvers(args.solvers)
    for flag, value, low in (
        ("--p", args.p, 2),
        ("--trials", args.trials, 1),
        ("--grid", args.grid, 1),
        ("--seed", args.seed, 0),
    ):
        if value < low:
            raise CliError(f"{flag}: must be >= {low}, got {value}")
    if not args.tol > 0 or args.tol == float("inf"):
        raise CliError(f"--tol: must be a finite number > 0, got {args.tol}")
    check_threads(args.threads)
    if args.out.exists() and not args.out.is_dir():
        raise CliError(f"--out: {args.out} is a file; the phase diagram is a folder (phase_diagram.png and .json)")
    png, js = args.out / "phase_diagram.png", args.out / "phase_diagram.json"
    check_output_file(png, "--out")
    check_output_file(js, "--out")

    import torch

    from dictlab.report.figures import render
    from dictlab.report.phase import diagram_figure, draw_phase
    from dictlab.theory import default_grid, phase_diagram

    nonneg = not args.signed
    grid = default_grid(args.grid)
    codes = "signed" if args.signed else "non-negative"
    print(
        f"phase diagrams: p={args.p}, {args.grid}x{args.grid} grid over (delta, rho), {args.trials} trials per cell, "
        f"{codes} codes, seed {args.seed}"
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        diagrams = []
        for name in solvers:
            diagram = phase_diagram(
                name, p=args.p, deltas=grid, rhos=grid, trials=args.trials, nonneg=nonneg, seed=args.seed, tol=args.tol
            )
            diagrams.append(diagram)
            _, censored = diagram.contour()
            note = f", {int(censored.sum())} columns censored at the grid edge" if bool(censored.any()) else ""
            distance = diagram.contour_distance()
            print(
                f"  {name:<6} mean |delta rho| of its 50% contour from the l1 curve: {distance:.3f} "
                f"({diagram.seconds:.1f} s{note})"
            )
    finally:
        torch.set_num_threads(threads)
    args.out.mkdir(parents=True, exist_ok=True)
    png.write_bytes(render(draw_phase(diagram_figure(diagrams)), ("png",))["png"])
    payload = {"dictlab_version": __version__, "diagrams": [d.to_json() for d in diagrams]}
    js.write_text(json.dumps(payload, indent=1, allow_nan=False))
    print(f"wrote {png} and {js}")
    return 0


# --- diagnose: why a learned dictionary looks the way it does ----------------------------------------------------


def _diagnose_table(rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """One line per dictionary: stationarity residual, KKT violation, antipodal pairs, dense, split, absorbed."""

    def number(value: Any, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        f"{'dictionary':<15} {'atoms':>6} {'dead':>5} {'resid med':>9} {'resid q95':>9} {'lam-atoms':>9} "
        f"{'lam-hat':>8} {'KKT med':>8} {'KKT q95':>8} {'antipodal':>9} {'dense':>6} {'split':>6} {'absorbed':>8}"
    ]
    for label, row in rows:
        station, kkt = row["stationarity"], row["kkt"]
        residual, sample_max = station["residual"], kkt.get("sample_max", {})
        split, absorbed = row["splitting"], row["absorption"]
        lam = kkt.get("lam", kkt.get("lam_estimate"))
        lines.append(
            f"{label:<15} {row['atoms']:>6} {row['dead_atoms']:>5} {number(residual['median']):>9} "
            f"{number(residual['q95']):>9} {number(station['multiplier_median'], 4):>9} {number(lam, 4):>8} "
            f"{number(sample_max.get('median')):>8} {number(sample_max.get('q95')):>8} "
            f"{row['antipodal_pairs']['count']:>9} {row['dense_latents']['count']:>6} "
            f"{'-' if split is None else split['split_features']:>6} "
            f"{'-' if absorbed is None else number(absorbed['overall']):>8}"
        )
    return lines


DIAGNOSE_LEGEND = (
    "resid: per atom, sin of the angle between the atom and the code-weighted sum of the residuals it is active on "
    "(0 at a stationary point of 1/2|Y - ZD|^2 + lam|Z|_1, Z >= 0, unit atoms), over live atoms; lam-atoms: the "
    "median over atoms of the code-weighted mean gradient d.g/sum(z) (= lam when the codes are Lasso-optimal; ~0 for "
    "least-squares codes such as TopK's, whose resid is then ~1 by construction: see pull_coherence in the JSON); "
    "lam-hat: the one lam that fits the codes best (median gradient "
    "over active entries; KKT - when it is <= 0); KKT: per sample, the largest violation of the Lasso conditions "
    "for that lam, in units of lam (unit-norm atoms); antipodal: atom pairs with cos <= -0.9; "
    "dense: latents active on > 50% of samples; split: true features with >= 2 atoms at |cos| >= 0.7; absorbed: "
    "share of child-active samples whose parent's latent is silent while an active latent has cos >= 0.3 with the "
    "parent (needs the data's hierarchy)."
)


def _cmd_diagnose(args: argparse.Namespace) -> int:
    if args.seed < 0:
        raise CliError(f"--seed: must be >= 0, got {args.seed}")
    check_threads(args.threads)
    check_output_file(args.out, "--out")
    table = _data_table(args)

    import torch

    from dictlab.data import make_dataset, random_unit_dictionary
    from dictlab.diagnostics import diagnose, sparse_codes
    from dictlab.models import SparseCodingModel, load_model
    from dictlab.models.base import derived_generator

    try:
        model = load_model(args.model_dir)
    except ValueError as err:
        raise CliError(f"MODEL_DIR: {_first_line(err)}") from None
    try:
        data = make_dataset(table, seed=args.seed)
    except ValueError as err:
        raise CliError(_first_line(err)) from None
    p, d_in = model.dictionary.shape
    if d_in != data.input_dim:
        raise CliError(
            f"MODEL_DIR: the model takes inputs of dimension {d_in}, the {data.generator} data have input_dim="
            f"{data.input_dim}; give the data the model was trained on (--data input_dim=... and the other fields)"
        )
    try:
        split = data[args.split]
    except ValueError as err:
        raise CliError(f"--split: {_first_line(err)}") from None
    hierarchy = getattr(data, "hierarchy", None)
    parent = getattr(hierarchy, "parent", None)
    random_dictionary = random_unit_dictionary(
        p, d_in, derived_generator(args.seed, "diagnose.random"), dtype=data.dictionary.dtype
    )
    subjects = [
        ("model", model),
        ("true + FISTA", SparseCodingModel(data.dictionary)),
        ("random + FISTA", SparseCodingModel(random_dictionary)),
    ]
    print(
        f"dictlab diagnose: {args.model_dir} ({model.kind}, {p} atoms) on {_describe_data(table)}, split "
        f"{args.split} ({len(split)} samples), seed {args.seed}; reference rows: the true dictionary and a random "
        f"one ({p} atoms), each with FISTA codes (lam=0.1, 100 iterations)"
    )
    rows = []
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with torch.no_grad():
            for label, subject in subjects:
                codes = sparse_codes(subject.encode, len(split), y=split.y, num_latents=subject.dictionary.shape[0])
                row = diagnose(
                    split.y,
                    codes,
                    subject.dictionary,
                    offset=subject.offset,
                    true_dictionary=data.dictionary,
                    true_codes=split.codes,
                    parent=parent,
                )
                rows.append((label, row))
    finally:
        torch.set_num_threads(threads)
    for line in _diagnose_table(rows):
        print(line)
    print(DIAGNOSE_LEGEND)
    report = {
        "dictlab_version": __version__,
        "model": str(args.model_dir),
        "model_kind": model.kind,
        "data": table,
        "seed": args.seed,
        "split": args.split,
        "samples": len(split),
        "hierarchy": parent is not None,
        "wall_s": time.perf_counter() - started,
        "rows": dict(rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, allow_nan=False))
    print(f"wrote {args.out}")
    return 0


# --- the parser --------------------------------------------------------------------------------------------


def _add_execution(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--jobs",
        default="auto",
        help="worker processes (default auto: one per usable core); runs sharing a fit stay in one process",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per run (default 1: results then do not depend on the machine's core count, and runs do "
        "not stall when other programs share the cores)",
    )


def _add_point_options(parser: argparse.ArgumentParser, *, seeds: str) -> None:
    parser.add_argument("--seeds", default=seeds, help=f"seeds, e.g. 0,1,2 or 0-4 (default {seeds})")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    _add_execution(parser)
    parser.add_argument(
        "--store", default=None, help="results store to add the runs to and resume from (default: a new temporary one)"
    )
    parser.add_argument("--experiment", default="run", help="experiment name of the runs in the store (default run)")
    parser.add_argument("--quiet", action="store_true", help="no per-run progress lines")


def build_parser() -> _Parser:
    parser = _Parser(prog="dictlab", description="dictlab: sparse dictionary learning with ground truth.")
    parser.add_argument("--version", action="version", version=f"dictlab {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="train and evaluate methods on one data configuration over seeds",
        description="Generate the data (compositional by default: ID train / id splits and an OOD split), fit each "
        "method on the train split, and report MCC, probe accuracy and best-feature AUC on ID and OOD, with "
        "timings. The runs go into a results store, so they can be reported (dictlab report) and resumed.",
    )
    run.add_argument("--generator", default="compositional", help="data generator (see `dictlab generators`)")
    run.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a field of the generator's config, e.g. --data num_ood=40 (repeatable)",
    )
    for flag, field, kind, text in DATA_FLAGS:
        names = ["--num-latents", "-p"] if flag == "--num-latents" else [flag]
        run.add_argument(*names, dest=field, type=kind, default=None, help=f"{text} (default: the generator's)")
    run.add_argument("--methods", default="all", help="comma-separated method names or 'all' (see `dictlab methods`)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="METHOD.FIELD=VALUE",
        help="override a hyperparameter of a method that runs, e.g. --set sae_topk.lr=1e-3 (repeatable)",
    )
    run.add_argument(
        "--recipe",
        choices=["dictlab", "study"],
        default="dictlab",
        help="hyperparameter defaults: dictlab's fast ones or the study's own (default dictlab)",
    )
    run.add_argument("--study-metrics", action="store_true", help="also report the study's own MCC definitions")
    _add_point_options(run, seeds="0,1,2")
    run.add_argument(
        "--out", type=Path, default=Path("results.json"), help="JSON file for the results (default results.json)"
    )
    run.set_defaults(handler=_cmd_run)

    demo = sub.add_parser(
        "demo",
        help="all methods but K-SVD at num_latents=100, three seeds (about 1 min on 2 cores)",
        description="All methods but the slow K-SVD at num_latents=100, k=10, n_samples=5000, seeds 0-2, into a store.",
    )
    _add_point_options(demo, seeds=DEMO["seeds"])
    demo.add_argument(
        "--out", type=Path, default=Path("demo-results.json"), help="JSON file (default demo-results.json)"
    )
    demo.set_defaults(handler=_cmd_demo)

    methods = sub.add_parser("methods", help="list the methods", description="List every registered method.")
    methods.set_defaults(handler=_cmd_methods)
    generators = sub.add_parser(
        "generators",
        help="list the data generators and their fields",
        description="List every registered data generator with its fields and defaults.",
    )
    generators.set_defaults(handler=_cmd_generators)

    sweep = sub.add_parser(
        "sweep",
        help="run an experiment (a TOML spec or a preset) into the results store; resumable",
        description="Expand an experiment spec into runs (grid × methods × seeds), run those not yet done, and "
        "commit each to the SQLite store as it finishes. Interrupted sweeps resume with the same command.",
    )
    sweep.add_argument("spec", nargs="?", type=Path, default=None, help="experiment spec (TOML)")
    sweep.add_argument("--preset", default=None, help="a spec shipped with dictlab (see `dictlab presets`)")
    sweep.add_argument("--quick", action="store_true", help="the spec's reduced sweep (its [quick] table)")
    sweep.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a spec field by dotted path, e.g. --set data.n_samples=1000 --set seeds=[0]",
    )
    sweep.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite results store (default {DEFAULT_STORE})")
    _add_execution(sweep)
    sweep.add_argument(
        "--executor",
        choices=["local", "process", "ray"],
        default=None,
        help="where runs execute (default: local for one job, process for more, ray with --address)",
    )
    sweep.add_argument("--address", default=None, help="Ray cluster address (with --executor ray; default: start one)")
    sweep.add_argument("--artifacts", action="store_true", help="keep learned models (safetensors) beside the store")
    sweep.add_argument("--fail-fast", action="store_true", help="stop at the first failed run")
    sweep.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(handler=_cmd_sweep)

    runs = sub.add_parser(
        "runs",
        help="list or export stored runs",
        description="List runs in the store, or export "
        "their records (one row per record, one column per metric) to CSV or Parquet. Read-only.",
    )
    runs.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite results store (default {DEFAULT_STORE})")
    runs.add_argument("--experiment", default=None, help="only this experiment")
    runs.add_argument(
        "--status", choices=["running", "done", "failed"], default=None, help="only runs with this status"
    )
    runs.add_argument("--label", default=None, help="only runs with a record of this label (e.g. a method)")
    runs.add_argument("--export", type=Path, default=None, help="write records to FILE.csv or FILE.parquet instead")
    runs.set_defaults(handler=_cmd_runs)

    presets = sub.add_parser("presets", help="list the experiment presets", description="List the shipped specs.")
    presets.set_defaults(handler=_cmd_presets)

    report = sub.add_parser(
        "report",
        help="figures and an HTML page from the results store",
        description="Turn stored runs into PNG/SVG figures, tables and one self-contained HTML "
        "page. Reads the store without writing to it.",
    )
    report.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite results store (default {DEFAULT_STORE})")
    report.add_argument("--experiment", default=None, help="only this experiment (default: all)")
    report.add_argument(
        "--out", type=Path, default=Path("dictlab-report"), help="output folder (default dictlab-report)"
    )
    report.set_defaults(handler=_cmd_report)

    phase = sub.add_parser(
        "phase-diagram",
        help="Donoho-Tanner phase diagrams of sparse coders given the true dictionary",
        description="For a grid over delta = m/p and rho = k/m: a random Gaussian dictionary per cell, random k-sparse "
        "codes, and the share each solver recovers (after least squares on its support), drawn against the "
        "theoretical l1 phase transition. Writes DIR/phase_diagram.png and DIR/phase_diagram.json.",
    )
    phase.add_argument("--solvers", default="fista,omp,mp", help="comma-separated: fista, omp, mp (default all three)")
    phase.add_argument("--p", type=int, default=100, help="latents p (default 100)")
    phase.add_argument("--trials", type=int, default=20, help="codes per grid cell (default 20)")
    phase.add_argument(
        "--grid", type=int, default=10, help="cells per axis: (i + 1/2)/grid for delta and rho (default 10)"
    )
    phase.add_argument("--seed", type=int, default=0, help="seed of every cell's draws (default 0)")
    phase.add_argument("--signed", action="store_true", help="signed codes (default: non-negative, FISTA with z >= 0)")
    phase.add_argument("--tol", type=float, default=1e-3, help="relative error counted as recovered (default 1e-3)")
    phase.add_argument("--threads", type=int, default=1, help="torch threads (default 1: many small operations)")
    phase.add_argument("--out", type=Path, default=Path("phase-diagram"), help="output folder (default phase-diagram)")
    phase.set_defaults(handler=_cmd_phase_diagram)

    diagnose = sub.add_parser(
        "diagnose",
        help="diagnostics of a saved model's dictionary on generated data, against honest baselines",
        description="Load a saved model, generate the data (as `dictlab run` does), encode one split chunk by chunk "
        "and print, for the model and for two reference rows (the true dictionary and a random one, each with FISTA "
        "codes): the stationarity residual of every atom for the non-negative L1 objective, the violation of the "
        "Lasso optimality conditions by the codes (with the lam that fits them best), antipodal atom pairs, dense "
        "latents, split true features, and feature absorption where the data have a hierarchy. Writes every number "
        "(and the per-atom residuals) to a JSON file.",
    )
    diagnose.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="a saved model folder (dictlab or SAELens)")
    diagnose.add_argument("--generator", default="compositional", help="data generator (see `dictlab generators`)")
    diagnose.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a field of the generator's config, e.g. --data num_latents=1000 (repeatable)",
    )
    diagnose.add_argument("--seed", type=int, default=0, help="seed of the data (default 0)")
    diagnose.add_argument(
        "--split",
        default="train",
        help="the split to encode: train, id or ood for the compositional data (default train: the "
        "stationarity conditions are those of the training objective)",
    )
    diagnose.add_argument(
        "--out",
        type=Path,
        default=Path("diagnostics.json"),
        help="JSON file for the results (default diagnostics.json)",
    )
    diagnose.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: results then do not depend on the machine's core count; "
        "more speed up the (chunk, p) gradient blocks of large dictionaries on a quiet machine)",
    )
    diagnose.set_defaults(handler=_cmd_diagnose, **{field: None for _, field, _, _ in DATA_FLAGS})
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a run or sweep the way Ctrl-C does: finished runs kept, resume hint


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    prog = f"dictlab {command}" if command in COMMANDS else "dictlab"
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        args = parser.parse_args(argv)
        if getattr(args, "handler", None) is None:
            parser.print_help()
            return 2
        args.argv = argv
        return int(args.handler(args))
    except CliError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except _Interrupted as stop:
        print(f"{prog}: {stop}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the output went to a reader that stopped (`dictlab runs | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush is silent too
        return 141
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread() and os.name == "posix"


if __name__ == "__main__":
    raise SystemExit(main())
