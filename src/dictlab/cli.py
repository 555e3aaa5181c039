"""The ``dictlab`` command: ``run`` (methods × seeds on one data configuration), ``demo``, ``methods``.

Every bad argument stops with one line on stderr — ``dictlab run: error: <what> …; allowed: …`` — and
exit status 2, before any training starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from dictlab import __version__


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's default prints the whole usage block first
        raise CliError(message)


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
        raise CliError(f"--seeds: cannot read {text!r}; allowed: comma-separated integers or a range like 0-2") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise CliError(f"--seeds: {text!r} must give distinct non-negative integers, e.g. 0,1,2 or 0-2")
    return seeds


def parse_methods(text: str) -> list[str]:
    from dictlab.methods import METHODS

    if text.strip() == "all":
        return default_methods()
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in METHODS:
            raise CliError(f"--methods: unknown method {name!r}; allowed: all, {', '.join(METHODS.names())}")
    if len(set(names)) != len(names):
        raise CliError(f"--methods: {text!r} names a method twice")
    return names


def default_methods() -> list[str]:
    """The study's methods plus the baselines (every registered method)."""
    from dictlab.methods import METHODS

    return METHODS.names()


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """['sae_topk.lr=1e-3', …] → {'sae_topk': {'lr': 0.001}}."""
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
        out.setdefault(method, {})[field] = parse_value(value)
    return out


def apply_threads(threads: int | None) -> None:
    """Set torch's intra-op threads. One thread per process is far faster when other processes compete
    for the cores: torch's parallel regions wait for every thread, and a descheduled thread stalls them."""
    if threads is None:
        return
    if threads < 1:
        raise CliError(f"--threads: must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def resolve_device(name: str) -> str:
    import torch

    if name == "cpu":
        return name
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CliError(f"--device: {name!r} requested but CUDA is not available here; allowed: cpu")
        return name
    raise CliError(f"--device: unknown device {name!r}; allowed: cpu, cuda, cuda:N")


# --- commands ---------------------------------------------------------------------------------------------


def _data_config(args: argparse.Namespace) -> Any:
    from dictlab.data import CompositionalConfig

    try:
        return CompositionalConfig(
            num_latents=args.num_latents,
            k=args.k,
            n_samples=args.n_samples,
            input_dim=args.input_dim,
            noise_std=args.noise_std,
        )
    except ValueError as err:
        raise CliError(_one_line(err)) from None


def _one_line(err: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(err, ValidationError):
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        name = f"--{loc.replace('_', '-')}" if loc else "data config"
        message = first["msg"].removeprefix("Value error, ")
        return f"{name}: {message}" if loc else message
    return str(err).splitlines()[0]


def run_experiment(
    config: Any,
    methods: list[str],
    seeds: list[int],
    *,
    overrides: dict[str, dict[str, Any]],
    recipe: str,
    study_metrics: bool,
    device: str,
    out: Path | None,
    quiet: bool,
    jobs: int = 1,
) -> dict[str, Any]:
    from dictlab.experiments import run_point, summarise
    from dictlab.report_table import print_summary, progress_printer

    started = time.perf_counter()
    printer = progress_printer(total=len(methods) * len(seeds), quiet=quiet)
    try:
        results = run_point(
            config, methods, seeds, overrides=overrides, recipe=recipe, study_metrics=study_metrics,
            device=device, on_result=printer, jobs=jobs,
        )
    except ValueError as err:
        raise CliError(str(err).splitlines()[0]) from None
    summary = summarise(results)
    report = {
        "dictlab_version": __version__,
        "data": {"generator": "compositional", **config.model_dump(), "input_dim": config.resolved_input_dim},
        "methods": methods,
        "seeds": seeds,
        "recipe": recipe,
        "overrides": overrides,
        "device": device,
        "wall_s": time.perf_counter() - started,
        "runs": [r.to_dict() for r in results],
        "summary": summary,
    }
    print_summary(summary, methods, title=_title(config, seeds, recipe), study_metrics=study_metrics)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
        print(f"results written to {out}  ({report['wall_s']:.1f} s)")
    return report


def _title(config: Any, seeds: list[int], recipe: str) -> str:
    return (
        f"num_latents={config.num_latents}  k={config.k}  input_dim={config.resolved_input_dim}  "
        f"n_samples={config.n_samples}  seeds={','.join(map(str, seeds))}  recipe={recipe}"
    )


def _cmd_run(args: argparse.Namespace) -> int:
    apply_threads(args.threads)
    if args.jobs < 1:
        raise CliError(f"--jobs: must be >= 1, got {args.jobs}")
    config = _data_config(args)
    methods = parse_methods(args.methods)
    run_experiment(
        config, methods, parse_seeds(args.seeds), overrides=parse_overrides(args.set), recipe=args.recipe,
        study_metrics=args.study_metrics, device=resolve_device(args.device), out=args.out, quiet=args.quiet,
        jobs=args.jobs,
    )
    return 0


DEMO = {"num_latents": 100, "k": 10, "n_samples": 5000, "seeds": "0,1,2"}


def _cmd_demo(args: argparse.Namespace) -> int:
    from dictlab.data import CompositionalConfig

    apply_threads(args.threads)
    config = CompositionalConfig(num_latents=DEMO["num_latents"], k=DEMO["k"], n_samples=DEMO["n_samples"])
    print(
        "dictlab demo: every method on y = A z with k-sparse z; trained on ID data, tested on OOD "
        "combinations of latents never seen together in training."
    )
    run_experiment(
        config, default_methods(), parse_seeds(args.seeds), overrides={}, recipe="dictlab", study_metrics=False,
        device=resolve_device(args.device), out=args.out, quiet=args.quiet,
    )
    return 0


def _cmd_methods(args: argparse.Namespace) -> int:
    from dictlab.methods import METHODS

    width = max(len(name) for name in METHODS.names())
    for name in METHODS.names():
        method = METHODS[name]
        tags = [t for t, on in (("supervised", method.supervised), ("oracle", method.oracle)) if on]
        suffix = f"  [{', '.join(tags)}]" if tags else ""
        print(f"{name:<{width}}  {method.description}{suffix}")
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
        raise CliError(str(err).splitlines()[0]) from None


def _cmd_sweep(args: argparse.Namespace) -> int:
    from dictlab.experiments.store import ResultStore
    from dictlab.experiments.sweep import RunFailed, SweepInterrupted, check_specs, run_sweep

    if args.jobs is not None and args.jobs < 1:
        raise CliError(f"--jobs: must be >= 1, got {args.jobs}")
    if args.threads is not None and args.threads < 1:
        raise CliError(f"--threads: must be >= 1, got {args.threads}")
    spec = _load_experiment(args)
    try:
        runs = check_specs(spec.expand())  # every run is validated before the first one starts
    except ValueError as err:
        raise CliError(str(err).splitlines()[0]) from None
    if args.dry_run:
        for run in runs:
            print(f"{run.config_hash()}  {run.describe()}")
        print(f"{len(runs)} runs in experiment {spec.name}")
        return 0
    started = time.perf_counter()
    with ResultStore(args.store) as store:
        try:
            summary = run_sweep(
                runs, store, jobs=args.jobs, executor=args.executor, address=args.address, threads=args.threads,
                artifacts=args.artifacts, progress=not args.quiet, fail_fast=args.fail_fast,
            )
        except SweepInterrupted as stop:
            print(f"dictlab sweep: interrupted; {stop.summary} — run the same command to resume", file=sys.stderr)
            return 130
        except RunFailed as err:
            print(f"dictlab sweep: stopped at a failed run (--fail-fast): {str(err).splitlines()[0]}", file=sys.stderr)
            return 1
        except ValueError as err:
            raise CliError(str(err).splitlines()[0]) from None
    print(
        f"experiment {spec.name}: {summary.total} runs — {summary.skipped_done} already done, {summary.ran} ran, "
        f"{summary.failed} failed — {time.perf_counter() - started:.1f} s; store {args.store}"
    )
    return 1 if summary.failed else 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from dictlab.experiments.store import ResultStore

    if not Path(args.store).exists():
        raise CliError(f"--store: {args.store} does not exist; run `dictlab sweep` first")
    with ResultStore(args.store) as store:
        if args.export is not None:
            try:
                path = store.export(args.export, experiment=args.experiment, label=args.label)
            except ValueError as err:
                raise CliError(f"--export: {str(err).splitlines()[0]}") from None
            print(f"records written to {path}")
            return 0
        runs = store.runs(experiment=args.experiment, status=args.status, label=args.label)
        for run in runs:
            what = run.method or run.spec.get("params", {}).get("sae") or "-"
            data = run.spec.get("data", {})
            print(
                f"{run.run_id}  {run.status:<7} {run.experiment:<20} {run.task:<28} {what:<14} seed={run.seed}  "
                f"p={data.get('num_latents')} k={data.get('k')} N={data.get('n_samples')}  {run.finished_at or ''}"
            )
        print(f"{len(runs)} runs")
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    from dictlab.experiments.spec import load_preset, preset_names

    for name in preset_names():
        spec = load_preset(name)
        print(f"{name:<20} {len(spec.expand()):>5} runs ({len(spec.with_quick().expand())} with --quick)  {spec.description}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from dictlab.report import build_report

    if not Path(args.store).exists():
        raise CliError(f"--store: {args.store} does not exist; run `dictlab sweep` first")
    try:
        page = build_report(args.store, args.out, experiment=args.experiment)
    except ValueError as err:
        raise CliError(str(err).splitlines()[0]) from None
    print(f"report written to {page}")
    return 0


DEFAULT_STORE = "dictlab-runs/results.sqlite"


def build_parser() -> _Parser:
    parser = _Parser(prog="dictlab", description="dictlab: sparse dictionary learning with ground truth.")
    parser.add_argument("--version", action="version", version=f"dictlab {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="train and evaluate methods on one data configuration over seeds",
        description="Generate the compositional data (ID train/val, OOD), fit each method on the train split, "
        "and report MCC, probe accuracy and best-feature AUC on ID and OOD, with timings.",
    )
    run.add_argument("--num-latents", "-p", type=int, default=100, help="number of ground-truth latents p (default 100)")
    run.add_argument("--k", type=int, default=10, help="active latents per sample (default 10)")
    run.add_argument("--n-samples", type=int, default=5000, help="ID samples, split train/val; OOD gets half (default 5000)")
    run.add_argument("--input-dim", type=int, default=None, help="observation dimension m (default: ceil(2k ln(p/k)))")
    run.add_argument("--noise-std", type=float, default=0.0, help="additive Gaussian observation noise (default 0)")
    run.add_argument("--seeds", default="0,1,2", help="seeds, e.g. 0,1,2 or 0-4 (default 0,1,2)")
    run.add_argument("--methods", default="all", help="comma-separated method names or 'all' (see `dictlab methods`)")
    run.add_argument(
        "--set", action="append", default=[], metavar="METHOD.FIELD=VALUE",
        help="override a hyperparameter, e.g. --set sae_topk.lr=1e-3 (repeatable)",
    )
    run.add_argument("--recipe", choices=["dictlab", "study"], default="dictlab",
                     help="hyperparameter defaults: dictlab's fast ones or the study's own (default dictlab)")
    run.add_argument("--study-metrics", action="store_true", help="also report the study's own MCC definitions")
    run.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice, one per core)")
    run.add_argument("--jobs", type=int, default=1,
                     help="worker processes (one torch thread each); methods sharing a fit stay together (default 1)")
    run.add_argument("--out", type=Path, default=Path("results.json"), help="JSON file for the results (default results.json)")
    run.add_argument("--quiet", action="store_true", help="no per-run progress lines")
    run.set_defaults(handler=_cmd_run)

    demo = sub.add_parser("demo", help="all methods at num_latents=100, three seeds (under a minute on a 2-core CPU)",
                          description="All methods at num_latents=100, k=10, n_samples=5000, seeds 0-2.")
    demo.add_argument("--seeds", default=DEMO["seeds"], help="seeds (default 0,1,2)")
    demo.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    demo.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    demo.add_argument("--out", type=Path, default=Path("demo-results.json"), help="JSON file (default demo-results.json)")
    demo.add_argument("--quiet", action="store_true", help="no per-run progress lines")
    demo.set_defaults(handler=_cmd_demo)

    methods = sub.add_parser("methods", help="list the methods", description="List every registered method.")
    methods.set_defaults(handler=_cmd_methods)

    sweep = sub.add_parser(
        "sweep",
        help="run an experiment (a TOML spec or a preset) into the results store; resumable",
        description="Expand an experiment spec into runs (grid × methods × seeds), run those not yet done, and "
        "commit each to the SQLite store as it finishes. Interrupted sweeps resume with the same command.",
    )
    sweep.add_argument("spec", nargs="?", type=Path, default=None, help="experiment spec (TOML)")
    sweep.add_argument("--preset", default=None, help="a spec shipped with dictlab (see `dictlab presets`)")
    sweep.add_argument("--quick", action="store_true", help="the spec's reduced sweep (its [quick] table)")
    sweep.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="override a spec field by dotted path, e.g. --set data.n_samples=1000 --set seeds=[0]")
    sweep.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite results store (default {DEFAULT_STORE})")
    sweep.add_argument("--jobs", type=int, default=None, help="runs at once (default: 1 locally, one per core with process)")
    sweep.add_argument("--executor", choices=["local", "process", "ray"], default=None,
                       help="where runs execute (default: local for one job, process for more, ray with --address)")
    sweep.add_argument("--address", default=None, help="Ray cluster address (with --executor ray; default: start one)")
    sweep.add_argument("--threads", type=int, default=None, help="torch threads per run (process/ray default 1)")
    sweep.add_argument("--artifacts", action="store_true", help="keep learned models (safetensors) beside the store")
    sweep.add_argument("--fail-fast", action="store_true", help="stop at the first failed run")
    sweep.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(handler=_cmd_sweep)

    runs = sub.add_parser("runs", help="list or export stored runs", description="List runs in the store, or export "
                          "their records (one row per record, one column per metric) to CSV or Parquet.")
    runs.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite results store (default {DEFAULT_STORE})")
    runs.add_argument("--experiment", default=None, help="only this experiment")
    runs.add_argument("--status", choices=["running", "done", "failed"], default=None, help="only runs with this status")
    runs.add_argument("--label", default=None, help="only runs with a record of this label (e.g. a method)")
    runs.add_argument("--export", type=Path, default=None, help="write records to FILE.csv or FILE.parquet instead")
    runs.set_defaults(handler=_cmd_runs)

    presets = sub.add_parser("presets", help="list the experiment presets", description="List the shipped specs.")
    presets.set_defaults(handler=_cmd_presets)

    report = sub.add_parser("report", help="figures and an HTML page from the results store",
                            description="Turn stored runs into PNG/SVG figures, tables and one self-contained HTML page.")
    report.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite results store (default {DEFAULT_STORE})")
    report.add_argument("--experiment", default=None, help="only this experiment (default: all)")
    report.add_argument("--out", type=Path, default=Path("dictlab-report"), help="output folder (default dictlab-report)")
    report.set_defaults(handler=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    commands = ("run", "demo", "methods", "sweep", "runs", "presets", "report")
    prog = f"dictlab {command}" if command in commands else "dictlab"
    try:
        args = parser.parse_args(argv)
        if getattr(args, "handler", None) is None:
            parser.print_help()
            return 2
        return int(args.handler(args))
    except CliError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
