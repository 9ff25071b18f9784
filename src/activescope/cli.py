"""The `activescope` command line: a thin layer over Campaign, the report and the benchmarks.

Heavy modules (torch, RDKit, microscopy) are imported inside commands so `--help` stays fast.
Every ActivescopeError raised anywhere below a command becomes one line `error: <message>` on
stderr and exit code 2.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import click
import typer
from typer.core import TyperGroup

from .engine.errors import ActivescopeError, SpecError

if TYPE_CHECKING:
    from .engine.campaign import Campaign, CampaignSummary

DEFAULT_PRESET = "qm9-dipole"


_MICROSCOPY_CLI = ("activescope.microscopy.cli", ("microscopy", "cli.py"))
_INSTRUMENTS_CLI = ("activescope.instruments.cli", ("instruments", "cli.py"))
_CAUSAL_CLI = ("activescope.chem.causal.cli", ("chem", "causal", "cli.py"))
_LATENT_CLI = ("activescope.chem.latent.cli", ("chem", "latent", "cli.py"))


def _installed(location: tuple[str, tuple[str, ...]]) -> bool:
    """Whether an optional module's file ships with this installation (checked without importing)."""
    return resources.files("activescope").joinpath(*location[1]).is_file()


def _as_click(name: str, target: Any) -> click.Command:
    """A click command from a Typer sub-application or a plain typer command function."""
    if not isinstance(target, typer.Typer):
        single = typer.Typer()
        single.command(name)(target)
        target = single
    command = typer.main.get_command(target)
    command.name = name
    return command


class _LazyGroup(TyperGroup):
    """A group whose `lazy` subcommands live in optional, heavy modules (microscopy pulls in
    torch): help listings show a stub; the module is imported only when the subcommand runs."""

    lazy: dict[str, tuple[tuple[str, tuple[str, ...]], str, str]] = {}  # name -> (module, attribute, help)
    _running = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *(name for name, (where, _, _) in self.lazy.items() if _installed(where))]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.lazy or not _installed(self.lazy[name][0]):
            return super().get_command(ctx, name)
        (module, _), attribute, help_text = self.lazy[name]
        if not self._running:
            return click.Command(name, help=help_text)
        return _as_click(name, getattr(importlib.import_module(module), attribute))

    def invoke(self, ctx: click.Context) -> Any:
        self._running = True
        return super().invoke(ctx)


class _Root(_LazyGroup):
    """Root command group: user errors from any subcommand print one line and exit with code 2."""

    lazy = {
        "atoms": (_MICROSCOPY_CLI, "atoms_app", "Microscopy: simulate frames, train and run atom finders."),
        "twin": (_INSTRUMENTS_CLI, "twin_app", "Instruments: serve the digital twin (or any instrument) over HTTP."),
        "causal": (_CAUSAL_CLI, "causal_app", "Active causal learning on QM9: discover, select, intervene."),
        "latent": (_LATENT_CLI, "latent_app", "Learned representations of molecules: VAE latent vs DKL latent."),
    }

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ActivescopeError as err:
            typer.echo(f"error: {' '.join(str(err).split())}", err=True)
            ctx.exit(2)


class _Bench(_LazyGroup):
    lazy = {"atoms": (_MICROSCOPY_CLI, "bench_atoms", "Atom-finding benchmarks (F1, out-of-distribution, speed).")}


app = typer.Typer(
    cls=_Root,
    name="activescope",
    help="Bayesian active learning and autonomous experimentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
presets_app = typer.Typer(help="List the built-in campaign presets, or show one.", invoke_without_command=True)
bench_app = typer.Typer(
    cls=_Bench,
    help="Benchmark campaign strategies (the default) or atom finding (`bench atoms`).",
    invoke_without_command=True,
)
app.add_typer(presets_app, name="presets")
app.add_typer(bench_app, name="bench")


# -- presets ---------------------------------------------------------------------------------------


def _presets_dir():
    return resources.files("activescope").joinpath("presets")


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in _presets_dir().iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    """The YAML of a built-in preset."""
    if name not in preset_names():
        raise SpecError(f"unknown preset {name!r}; available: {', '.join(preset_names())}")
    return _presets_dir().joinpath(f"{name}.yaml").read_text()


@presets_app.callback()
def presets_list(ctx: typer.Context) -> None:
    """List the built-in presets (name and description)."""
    if ctx.invoked_subcommand is not None:
        return
    for name in preset_names():
        first = preset_text(name).splitlines()[0].lstrip("# ").strip()
        typer.echo(f"{name:24s} {first}{'  (default)' if name == DEFAULT_PRESET else ''}")


@presets_app.command("show")
def presets_show(name: str = typer.Argument(..., help="preset name (see `activescope presets`)")) -> None:
    """Print a preset's YAML (save it, edit it, then `activescope run my.yaml`)."""
    typer.echo(preset_text(name), nl=False)


# -- campaign commands -----------------------------------------------------------------------------


def _load(spec_path: Optional[Path], preset: Optional[str]):
    from .engine.spec import load_spec, parse_spec

    if spec_path is not None and preset is not None:
        raise SpecError("give either a SPEC file or --preset, not both")
    if spec_path is not None:
        return load_spec(spec_path)
    import yaml

    name = preset or DEFAULT_PRESET
    return parse_spec(yaml.safe_load(preset_text(name)), origin=f"preset {name}")


def _print_summary(summary: "CampaignSummary") -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    status = f"finished ({summary.stop_reason})" if summary.stop_reason else "awaiting results"
    if summary.paused and not summary.stop_reason:
        status = f"paused; continue with: activescope resume {summary.run_dir}"
    console.print(
        f"[bold]{summary.name}[/bold]: {summary.rounds} rounds, {summary.n_measured} measured, "
        f"{summary.n_failed} failed (budget {summary.budget}); {summary.goal} {summary.target}; {status}; "
        f"{summary.elapsed_s:.1f} s"
    )
    if summary.top1pct_recall is not None:
        console.print(f"top-100 recall: {summary.top100_recall:.3f}   top-1% recall: {summary.top1pct_recall:.3f}")
    if not summary.best.empty:
        table = Table(title=f"best {summary.target}")
        for column in summary.best.columns:
            table.add_column(str(column))
        for row in summary.best.itertuples(index=False):
            table.add_row(*(f"{v:.5g}" if isinstance(v, float) else str(v) for v in row))
        console.print(table)


def _finish(campaign: "Campaign", progress: bool, report: bool) -> None:
    """Run a campaign to its stop rule (or its next ask/tell batch), print where it stands and
    write the report; the run's lock is released on the way out, whatever happens."""
    with campaign:
        try:
            summary = campaign.run(progress=progress)
        except KeyboardInterrupt:
            typer.echo(f"interrupted; continue with: activescope resume {campaign.store.run_dir}", err=True)
            raise typer.Exit(130) from None
        _print_summary(summary)
        if campaign.oracle.interactive and campaign.store.open_round() is not None:
            path = campaign.suggest()
            typer.echo(f"suggestions: {path}")
            typer.echo(f"measure them, fill in `value`, then: activescope tell {campaign.store.run_dir} {path}")
        if report and summary.n_measured > 0:
            from .report import report_run

            path = report_run(campaign.store.run_dir, pool=campaign.pool, instrument=campaign.instrument)
            typer.echo(f"report: {path}")
        typer.echo(f"run directory: {campaign.store.run_dir}")


ProgressOption = typer.Option(True, "--progress/--no-progress", help="show a progress bar")
ReportOption = typer.Option(True, "--report/--no-report", help="write the HTML report at the end")


@app.command()
def run(
    spec: Optional[Path] = typer.Argument(None, help="campaign spec (YAML); default: the qm9-dipole preset"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", "-o", help="run directory (default runs/<name>-<time>)"),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="run a built-in preset instead of a file"),
    progress: bool = ProgressOption,
    report: bool = ReportOption,
) -> None:
    """Run a campaign until its stop rule (an existing run directory with the same spec resumes)."""
    from .engine.campaign import Campaign

    campaign_spec = _load(spec, preset)
    if run_dir is None:
        run_dir = Path("runs") / f"{campaign_spec.name}-{datetime.now():%Y%m%d-%H%M%S}"
    _finish(Campaign.create_or_open(run_dir, campaign_spec), progress, report)


@app.command()
def resume(
    run_dir: Path = typer.Argument(..., help="run directory"),
    spec: Optional[Path] = typer.Option(None, "--spec", help="refuse to resume unless the run used this spec"),
    progress: bool = ProgressOption,
    report: bool = ReportOption,
) -> None:
    """Continue a stopped or killed run: a pending batch is measured, nothing is repeated."""
    from .engine.campaign import Campaign
    from .engine.spec import load_spec

    campaign = Campaign.open(run_dir, load_spec(spec) if spec else None)
    if campaign.store.paused():
        campaign.store.set_paused(False)
        typer.echo("pause cleared")
    _finish(campaign, progress, report)


@app.command()
def suggest(run_dir: Path = typer.Argument(..., help="run directory")) -> None:
    """Write the next batch to artifacts/suggest_round_<k>.csv and print its path."""
    from .engine.campaign import Campaign

    typer.echo(Campaign.open(run_dir).suggest())


@app.command()
def tell(
    run_dir: Path = typer.Argument(..., help="run directory"),
    results: Path = typer.Argument(..., help="CSV with columns id, value (e.g. the filled-in suggestion file)"),
) -> None:
    """Record measured values for the pending batch, then write the next suggestion."""
    from .engine.campaign import Campaign

    with Campaign.open(run_dir) as campaign:
        recorded_before = len(campaign.store.measurements())
        awaited, next_path = campaign.tell_csv(results)
        summary = campaign.summary()
        told = summary.n_measured + summary.n_failed - recorded_before
        typer.echo(f"recorded {told} result(s) from {results}; {summary.n_measured} measured of budget {summary.budget}")
        if awaited:
            waiting = campaign.store.open_round()[1]
            more = " ..." if len(waiting) > 10 else ""
            typer.echo(f"{awaited} result(s) of this batch still awaited: {', '.join(waiting[:10])}{more}")
        elif next_path is not None:
            typer.echo(f"suggestions: {next_path}")
        elif summary.stop_reason:
            _print_summary(summary)


@app.command()
def steer(
    run_dir: Path = typer.Argument(..., help="run directory (the campaign may be running)"),
    next_ids: Optional[list[str]] = typer.Option(None, "--next", help="candidate id to measure next (repeat)"),
    acquisition: Optional[list[str]] = typer.Option(
        None, "--acquisition", help="acquisition option KEY=VALUE from the next round on, e.g. kind=max_variance (repeat)"
    ),
    pause: bool = typer.Option(False, "--pause", help="stop the running campaign after its current round"),
    unpause: bool = typer.Option(False, "--unpause", help="clear a pause (`activescope resume` also does)"),
) -> None:
    """Steer a campaign while it runs or between runs: next points, acquisition, pause.

    Every instruction is recorded in the run and replayed exactly on resume."""
    import yaml

    from .engine.steering import steer_run

    if pause and unpause:
        raise SpecError("give --pause or --unpause, not both")
    options = {}
    for item in acquisition or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--acquisition expects KEY=VALUE, got {item!r}")
        options[key.strip()] = yaml.safe_load(value)
    lines = steer_run(run_dir, next_ids or [], options or None, True if pause else False if unpause else None)
    if not lines:
        raise SpecError("nothing to do: give --next, --acquisition, --pause or --unpause")
    for line in lines:
        typer.echo(line)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="run directory")) -> None:
    """Write the run's self-contained HTML report and print its path."""
    from .engine.store import Store
    from .report import report_run

    Store.open(run_dir).close()
    typer.echo(report_run(run_dir))


@app.command()
def featurize(
    smiles_file: Path = typer.Argument(..., help="CSV with a header and a SMILES column (millions of rows are fine)"),
    out: Path = typer.Option(..., "--out", "-o", help="folder of the sharded pool (data: {source: shards, path: ...})"),
    features: list[str] = typer.Option(["morgan"], "--features", "-f", help="morgan and/or rdkit2d (repeat)"),
    shard_rows: int = typer.Option(100_000, "--shard-rows", min=1, help="molecules per shard"),
    smiles_column: str = typer.Option("smiles", "--smiles-column"),
    id_column: Optional[str] = typer.Option(None, "--id-column", help="unique ids (default: row numbers)"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="worker processes (default: all cores)"),
    ray: bool = typer.Option(False, "--ray", help="one Ray task per shard (local Ray unless --ray-address)"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="existing Ray cluster (implies --ray)"),
) -> None:
    """Featurize a SMILES file into an on-disk sharded pool, in parallel; re-run after a kill to
    finish it (finished shards are kept)."""
    from .chem.sharded import featurize_file
    from .engine.shards import process_mapper

    mapper = process_mapper(workers)
    if ray or ray_address:
        from .scale.grid import ray_mapper

        mapper = ray_mapper(ray_address)
    pool = featurize_file(smiles_file, out, features, shard_rows, smiles_column, id_column, mapper)
    typer.echo(f"{len(pool):,} molecules x {pool.X.shape[1]} features in {pool.X.n_shards} shards: {out}")


# -- benchmarks and domain sub-applications --------------------------------------------------------


@bench_app.callback()
def bench(
    ctx: typer.Context,
    spec: Optional[Path] = typer.Option(None, "--spec", help="base campaign spec (default: the headline QM9 protocol)"),
    strategy: Optional[list[str]] = typer.Option(
        None, "--strategy", "-s", help="strategy to run (repeat; default: all)"
    ),
    seeds: int = typer.Option(3, "--seeds", min=1, help="seeds per strategy"),
    out: Path = typer.Option(Path("bench-out"), "--out", "-o", help="output directory"),
    target: Optional[str] = typer.Option(None, "--target", help="label column to optimise (default: the spec's)"),
    goal: Optional[str] = typer.Option(None, "--goal", help="maximize or minimize (default: the spec's)"),
    targets: Optional[str] = typer.Option(
        None, "--targets", help="multi-target grid: COLUMN[:goal],... or all-qm9 (the 12 QM9 targets)"
    ),
    ray: bool = typer.Option(False, "--ray", help="run every grid run as a Ray task (local Ray unless --ray-address)"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="existing Ray cluster (implies --ray)"),
) -> None:
    """Run the campaign strategy matrix and write results.csv, results.md and bench.png (per
    target, plus summary.md and summary.png, with --targets)."""
    if ctx.invoked_subcommand is not None:
        return
    from .bench import bench_main, serial_runner

    grid = None
    if targets == "all-qm9":
        from .chem.qm9 import QM9_GOALS

        grid = [f"{column}:{goal}" for column, goal in QM9_GOALS.items()]
    elif targets is not None:
        grid = [f"{item}:{goal}" if goal and ":" not in item else item for item in targets.split(",")]
    runner = serial_runner
    if ray or ray_address:
        from .scale.grid import ray_runner

        runner = ray_runner(ray_address)
    typer.echo(bench_main(spec, strategy or None, seeds, out, target, goal, grid, runner))
