"""The ``resnas`` command line: parses, calls, prints."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
import timm
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

# Only what every command needs is imported here (click, rich, and the zoo that `import resnas` pays for
# anyway): `resnas --help` and an argument error stay at the cost of `import resnas`. Optuna, scipy and
# the search layer are imported by the commands that use them.
from . import zoo
from .data import DATASETS
from .network import count_macs, count_params

console = Console()
err_console = Console(stderr=True)


class UserError(click.ClickException):
    """Bad input from the user: one line on stderr, exit code 2 (never a traceback, nor usage lines)."""

    exit_code = 2

    def show(self, file=None) -> None:
        line = " ".join(self.format_message().split())  # one line, whatever a library put in its message
        err_console.print(f"error: {line if len(line) <= MAX_LINE else line[:MAX_LINE - 3] + '...'}",
                          highlight=False, soft_wrap=True)


MAX_LINE = 400  # characters of an error line at most: a message that quotes a huge value stays readable


SEED = click.IntRange(0, 2**32 - 1)  # what numpy's and Optuna's samplers accept
def search_errors() -> tuple[type[Exception], ...]:
    from .data import DataError
    from .export import ExportError
    from .space import SpaceError
    from .storage import StudyError
    return SpaceError, StudyError, DataError, ExportError


def resolve_model(name_or_spec: str, **kwargs):
    """A registered timm name (``preact_resnet164``) or an ArchSpec string (``depth=20,act=preact``).

    With the paper's initialization (``zero_init_last=False``): ``resnas train`` follows the paper's
    protocol, as ``resnas.build``, the search and ``resnas reproduce`` do.
    """
    kwargs.setdefault("zero_init_last", False)
    try:
        spec = zoo.spec_of(name_or_spec)
        if name_or_spec in zoo.ZOO:
            return timm.create_model(name_or_spec, **kwargs)
        return timm.create_model("resnas_spec", spec=str(spec), **kwargs)
    except ValueError as e:
        raise UserError(str(e)) from None


@click.group(context_settings=dict(help_option_names=["-h", "--help"]))
@click.version_option(package_name="resnas")
def cli() -> None:
    """Search the residual-unit designs of He et al. 2016 on your data.

    \b
    Example:
      resnas summary preact_resnet164
    """


@cli.command()
def models() -> None:
    """List the registered networks.

    \b
    Example:
      resnas models
    """
    table = Table("name", "spec", "params", title="resnas models (timm.create_model(name))")
    table.columns[1].overflow = "fold"
    for name, spec in zoo.ZOO.items():
        table.add_row(name, str(spec), f"{count_params(zoo.ResNet(spec)):,}")
    console.print(table)


@cli.command()
@click.argument("model")
@click.option("--num-classes", type=click.IntRange(min=0), help="Override the number of classes.")
@click.option("--in-chans", type=click.IntRange(min=1), help="Override the input channels.")
@click.option("--input-size", type=click.IntRange(min=1), help="Input height = width (default: the layout's).")
def summary(model: str, num_classes: int | None, in_chans: int | None, input_size: int | None) -> None:
    """Parameters, MACs and stage shapes of MODEL (a registered name or a spec string).

    \b
    Examples:
      resnas summary preact_resnet164
      resnas summary "depth=20,unit=basic,act=original,shortcut=exclusive_gate,gate_bias=-6"
    """
    net = resolve_model(model, num_classes=num_classes, in_chans=in_chans)
    c, h, w = net.pretrained_cfg["input_size"]
    size = (c, input_size or h, input_size or w)
    table = Table("", "value", title=f"resnas summary: {model}", show_header=False)
    table.columns[1].overflow = "fold"
    table.add_row("spec", str(net.spec))
    table.add_row("timm", f"timm.create_model('resnas_spec', spec='{net.spec}')")
    table.add_row("depth", str(net.spec.depth))
    table.add_row("params", f"{count_params(net):,}")
    table.add_row("MACs / image", f"{count_macs(net, size) / 1e6:,.1f}M at {size[1]}x{size[2]}")
    with torch.no_grad():
        feats = net.eval().forward_intermediates(torch.zeros(1, *size), intermediates_only=True)
    for info, f in zip(net.feature_info, feats):
        table.add_row(info["module"], f"{tuple(f.shape[1:])} (reduction {info['reduction']})")
    console.print(table)


@cli.command()
@click.option("--model", "model_name", required=True, help="A registered name (preact_resnet164) or a spec string.")
@click.option("--dataset", type=click.Choice(list(DATASETS)), default="digits", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the data set is (or is downloaded to).")
@click.option("--epochs", type=click.IntRange(min=1),
              help="Epochs to train [default: 30 digits, 164 CIFAR, 90 ImageNet].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Per-process batch [default: the recipe's].")
@click.option("--lr", type=float, help="Learning rate after the warm-up [default: 0.1].")
@click.option("--schedule", type=click.Choice(["step", "cosine"]), help="lr /10 at 50% and 75% (step) or cosine.")
@click.option("--schedule-epochs", type=click.IntRange(min=1),
              help="Budget the schedule is defined on [default: --epochs].")
@click.option("--warmup-iters", type=click.IntRange(min=0), help="Iterations at lr 0.01 first [default: the recipe's].")
@click.option("--output", type=click.Path(file_okay=False), default="resnas-model", show_default=True,
              help="Folder for the timm local-dir export and the checkpoint.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --output.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--image-size", type=click.IntRange(min=8), default=224, show_default=True, help="For imagenet / folder.")
@click.option("--download/--no-download", default=True, show_default=True, help="Download CIFAR when missing.")
@click.option("--mixed-precision", type=click.Choice(["no", "bf16", "fp16"]),
              help="[default: bf16 on a GPU that has it]")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the network.")
def train(model_name: str, dataset: str, data_dir: str | None, epochs: int | None, batch_size: int | None,
          lr: float | None, schedule: str | None, schedule_epochs: int | None, warmup_iters: int | None, output: str,
          resume: bool, seed: int, image_size: int, download: bool, mixed_precision: str | None,
          compile_: bool) -> None:
    """Train one network, print its val/test error, export it for timm.

    The recipe is the paper's (SGD 0.9, wd 1e-4, lr 0.1, lr /10 at 50% and 75% of the epochs; a
    warm-up at lr 0.01 for 400 iterations on CIFAR; lr /10 at epochs 30 and 60 and batch 256 on
    ImageNet); every option above overrides it. --output becomes a folder that
    timm.create_model('local-dir:OUTPUT', pretrained=True) loads.

    \b
    Examples:
      resnas train --model "depth=20,act=preact" --dataset digits --epochs 30 --output digits-r20
      resnas train --model preact_resnet164 --dataset cifar10 --data-dir ~/data --output r164
    """
    from accelerate import PartialState

    from . import data as data_mod
    from . import export as export_mod
    from . import train as train_mod
    checkpoint = Path(output) / train_mod.CHECKPOINT
    if checkpoint.exists() and not resume:
        raise UserError(f"output: {output} holds a checkpoint; pass --resume to continue it or choose another --output")
    overrides = dict(batch_size=batch_size, lr=lr, schedule=schedule, schedule_epochs=schedule_epochs,
                     warmup_iters=warmup_iters)
    try:
        recipe = train_mod.dataset_recipe(dataset, **{k: v for k, v in overrides.items() if v is not None})
        data = data_mod.load_data(dataset, data_dir, download=download, image_size=image_size)
    except ValueError as e:
        raise UserError(str(e)) from None
    net = resolve_model(model_name, num_classes=data.num_classes, in_chans=data.input_size[0])
    try:
        result = train_mod.train(net, data, epochs or DATASETS[dataset].epochs, recipe, seed=seed,
                                 checkpoint_dir=output, mixed_precision=mixed_precision, torch_compile=compile_,
                                 test=True, progress=True)
    except ValueError as e:
        raise UserError(str(e)) from None
    if not PartialState().is_main_process:  # under accelerate launch, one process reports and writes
        raise click.exceptions.Exit(0 if result.ok else 1)
    _report(result, data)
    if not result.ok:
        raise click.exceptions.Exit(1)
    export_mod.export(result.model, output, **data.pretrained_cfg())
    console.print(f"saved: timm.create_model('local-dir:{output}', pretrained=True)", highlight=False, soft_wrap=True)


def _report(result, data) -> None:
    table = Table("", "value", title=f"resnas train: {data.name}", show_header=False)
    table.columns[1].overflow = "fold"
    table.add_row("spec", str(result.spec))
    table.add_row("status", f"{result.status} ({result.reason})")
    table.add_row("params", f"{result.params:,}")
    table.add_row("MACs / image", f"{result.macs / 1e6:,.2f}M")
    if result.val_error:
        table.add_row("val error", f"{result.val_error[-1]:.2%} (epoch {result.epochs})")
    if result.test_error is not None:
        table.add_row("test error", f"{result.test_error:.2%}")
    table.add_row("time", f"{result.seconds:.1f}s")
    console.print(table)


# ---- search ---------------------------------------------------------------------------------------
class SearchDisplay:
    """Live view of a search: a trials bar, the current trial's epochs, and the best so far."""

    def __init__(self, total: int | None, epochs: int, live: bool, budget_epochs: int | None = None):
        self.live, self.epochs, self.best, self.seen = live, epochs, None, set()
        self.budget, self.spent, self.fidelity_shown = budget_epochs, 0, False
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[note]}"), console=console,
                                 disable=not live)
        # with --budget-epochs the bar counts candidate-epochs spent of the budget, else trials
        self.trials = self.progress.add_task("epochs" if budget_epochs else "trials",
                                             total=budget_epochs or total, note="")
        self.current = self.progress.add_task("trial -", total=epochs, note="")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def on_epoch(self, number: int, report) -> None:
        self.progress.update(self.current, description=f"trial {number}", completed=report.epoch,
                             note=f"val error {report.val_error:.4f}")

    def poll(self, study) -> None:
        """Worker processes train; the parent follows the study in the storage (and its fidelity check)."""
        from .search import finished_trials, recorded_fidelity
        for t in finished_trials(study):
            if t.number not in self.seen:
                self.seen.add(t.number)
                self.on_trial(study, t)
        if not self.fidelity_shown and (result := recorded_fidelity(study)) is not None:
            self.on_fidelity(result)

    def on_trial(self, study, trial) -> None:
        from .record import TrialRecord, epochs_spent, status_of
        error = trial.values[0] if trial.values else None
        if error is not None and (self.best is None or error < self.best[0]):
            self.best = (error, trial.number)
        status = status_of(trial)
        best = f"best {self.best[0]:.4f} (trial {self.best[1]})" if self.best else ""
        self.spent += epochs_spent(trial)
        if self.budget:
            best = f"{max(0, self.budget - self.spent)} epochs left; {best}"
        self.progress.update(self.trials, advance=epochs_spent(trial) if self.budget else 1, note=best)
        self.progress.reset(self.current, total=self.epochs, description="trial -")
        if not self.live:
            shown = f"{error:.4f}" if error is not None else "-"
            record = TrialRecord.from_trial(trial)
            spec = record.spec or ""
            if record.repeat:  # a confirmation run: another seed of a design the search ranked high
                status = f"{status} (confirms trial {record.confirms}, seed {record.repeat + 1})"
            budget = f" [{self.spent}/{self.budget} epochs]" if self.budget else ""
            console.print(f"trial {trial.number}: {status} val_error {shown}{budget} {spec}",
                          highlight=False, soft_wrap=True)

    def on_fidelity(self, result) -> None:
        self.fidelity_shown = True
        console.print(result.line(), highlight=False, soft_wrap=True)


def _storage_option(f):
    return click.option("--storage", envvar="RESNAS_STORAGE", show_envvar=True,
                        help="Optuna storage: sqlite:///FILE.db, journal:///FILE.log, postgresql://..., "
                             "grpc://HOST:PORT (a resnas storage-proxy) [default: sqlite:///resnas.db].")(f)


def _study_option(f):
    return click.option("--study", "study_name", help="Study name [default: the space's name].")(f)


@cli.command()
def spaces() -> None:
    """List the built-in search spaces.

    \b
    Example:
      resnas spaces
    """
    from .space import builtin_spaces, load_space
    table = Table("space", "sampler", "points / trials", "description", title="resnas search spaces")
    table.columns[3].overflow = "fold"
    for name in builtin_spaces():
        space = load_space(name)
        size = f"{len(space.grid_points())} points" if space.sampler == "grid" else f"{space.trials or '-'} trials"
        table.add_row(name, space.sampler, size, space.description)
    console.print(table)


@cli.command()
@click.option("--space", "space_name", default="default", show_default=True, help="A built-in space or a YAML file.")
@click.option("--dataset", help="Data set [default: the space's]: digits, cifar10, cifar100, imagenet, folder.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the data set is (or is downloaded to).")
@_storage_option
@_study_option
@click.option("--trials", type=click.IntRange(min=0), help="Trials to run now [default: the space's, or the grid].")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Stop starting trials after SEC seconds.")
@click.option("--epochs", type=click.IntRange(min=1), help="Maximum epochs per candidate [default: the space's].")
@click.option("--seed", type=SEED, help="Sampler and training seed [default: the space's].")
@click.option("--devices", help="One worker process per device: cuda:0,cuda:1,... (or cpu,cpu).")
@click.option("--workers", type=click.IntRange(min=1), help="N worker processes on the CPU (or on N GPUs).")
@click.option("--heartbeat", type=click.IntRange(min=1), default=60, show_default=True,
              help="Seconds between a trial's heartbeats; silent for twice that, it is failed and retried.")
@click.option("--probe-max-gain", type=click.FloatRange(min=0),
              help="Prune a candidate before training when its probe |gain| (log10 gradient ratio) exceeds X.")
@click.option("--probe-max-deviation", type=click.FloatRange(min=0),
              help="Prune a candidate before training when its probe gain lies more than D decades from that of "
                   "its reference net (identity, full pre-activation, same depth); 0.5 on Table 1 (BENCHMARKS.md).")
@click.option("--budget-epochs", type=click.IntRange(min=1),
              help="Stop after N candidate-epochs (confirmation included) instead of a number of trials.")
@click.option("--confirm", type=click.IntRange(min=0), default=3, show_default=True,
              help="Train the best K designs again with more seeds after the search (0: skip).")
@click.option("--confirm-seeds", type=click.IntRange(min=1), default=2, show_default=True,
              help="Extra seeds per confirmed design.")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="Rows of the final table.")
@click.option("--worker-index", type=click.IntRange(min=0), default=0, envvar="RESNAS_WORKER_INDEX", hidden=True,
              help="Accepted for older scripts: candidates now follow trial numbers, so workers "
                   "started together draw different ones without an index.")
def search(space_name: str, dataset: str | None, data_dir: str | None, storage: str | None, study_name: str | None,
           trials: int | None, timeout: float | None, epochs: int | None, seed: int | None, devices: str | None,
           workers: int | None, heartbeat: int, probe_max_gain: float | None, probe_max_deviation: float | None,
           budget_epochs: int | None,
           confirm: int, confirm_seeds: int, top: int, worker_index: int) -> None:
    """Search the space's residual-unit designs on a data set with Optuna.

    Resumes the study when it exists. With no arguments: the `default` space on digits, a few
    minutes on a CPU. Under `accelerate launch -m resnas search ...` every process trains each trial
    together while the first drives Optuna.

    \b
    Examples:
      resnas search
      resnas search --space paper_table2 --dataset cifar10 --data-dir ./data --devices cuda:0,cuda:1
      resnas search --space full --storage postgresql://user@db-host/resnas --workers 4
    """
    from .search import Search, distributed, quiet_logs, run
    from .space import load_space
    from .storage import mask_url
    quiet_logs()  # the display reports each trial and its reason

    try:
        space = load_space(space_name)
        if dataset is not None and dataset not in DATASETS:
            raise UserError(f"dataset: {dataset!r} is unknown; allowed: {', '.join(DATASETS)}")
        device_list = _devices(devices, workers)
        job = Search(space, storage=storage, study_name=study_name, dataset=dataset, data_dir=data_dir,
                     trials=trials, timeout=timeout, epochs=epochs, seed=seed, heartbeat=heartbeat,
                     probe_max_gain=probe_max_gain, probe_max_deviation=probe_max_deviation,
                     budget_epochs=budget_epochs,
                     confirm=confirm, repeats=confirm_seeds)
        if budget_epochs is not None and trials is not None:
            raise UserError("budget-epochs: give --budget-epochs or --trials, not both")
        if job.search_epochs is not None and job.search_epochs <= 0:
            raise UserError(f"budget-epochs: {budget_epochs} leaves nothing for the search after the confirmation's "
                            f"{job.confirm_epochs} ({confirm} designs x {confirm_seeds} seeds x {job.max_epochs} "
                            "epochs); raise it, or lower --confirm")
        total = trials if device_list else len(space.grid_points()) if space.sampler == "grid" else \
            (trials or space.trials)
        live = console.is_terminal and not distributed()
        with SearchDisplay(total, job.max_epochs, live=live, budget_epochs=budget_epochs) as display:
            job.callbacks, job.on_epoch = [display.on_trial], display.on_epoch  # workers report through poll
            job.on_fidelity = display.on_fidelity
            study = run(job, device_list, poll=display.poll)  # distributed under accelerate launch / torchrun
        if study is None:  # a distributed run's process other than the main one
            return
    except search_errors() as e:
        raise UserError(str(e)) from None
    _print_best(study, top)
    console.print(f"dashboard: resnas dashboard --storage '{mask_url(job.storage_url)}'", highlight=False,
                  soft_wrap=True)


def _devices(devices: str | None, workers: int | None) -> list[str]:
    """--devices cuda:0,cuda:1 or --workers N (N GPUs when there are, else N CPU processes)."""
    if devices:
        names = [d.strip() for d in devices.split(",") if d.strip()]
        count = torch.cuda.device_count()
        for d in names:
            if d != "cpu" and not (d.startswith("cuda:") and d[5:].isdigit() and int(d[5:]) < count):
                allowed = ", ".join(["cpu"] + [f"cuda:{i}" for i in range(count)])
                raise UserError(f"devices: {d!r} is not a device here; allowed: {allowed}")
        if workers is not None and workers != len(names):
            raise UserError(f"workers: {workers} does not match the {len(names)} devices given")
        return names
    if workers is None:
        return []
    count = torch.cuda.device_count()
    return [f"cuda:{i % count}" for i in range(workers)] if count else ["cpu"] * workers


def _print_best(study, top: int) -> None:
    """The study's designs, best first: mean val error +- sd over n seeds, and whether tied with the best."""
    from .record import TrialRecord
    from .search import mean_sd, ranked_designs, tie_label
    table = Table("rank", "trial", "val error", "n", "vs best", "params", "MACs", "epochs", "spec",
                  title=f"best of {study.study_name}")
    table.columns[-1].overflow = "fold"
    trials = study.get_trials(deepcopy=False)
    designs = ranked_designs(study)
    for rank, d in enumerate(designs[:top], start=1):
        r = TrialRecord.from_trial(trials[d.trials[0]])
        table.add_row(str(rank), str(d.trials[0]), mean_sd(d), str(d.n), tie_label(d, rank), f"{r.params or 0:,}",
                      _si(r.macs or 0), "" if r.epochs is None else str(r.epochs), d.spec)
    console.print(table)
    if designs and designs[0].confirmed:
        tied = sum(bool(d.tied) for d in designs[1:])
        console.print(f"{tied} design(s) tied with the best (not significantly worse: one-sided Welch t-test, "
                      "alpha 0.05); n = 1: not confirmed.", highlight=False, soft_wrap=True)


def _si(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"


def _existing_storage(storage: str | None) -> str:
    from .storage import StudyError, existing_storage
    try:
        return existing_storage(storage)
    except StudyError as e:
        raise UserError(str(e)) from None


def _load_study(storage: str | None, study_name: str | None):
    from .storage import StudyError, load_study
    try:
        return load_study(storage, study_name)
    except StudyError as e:
        raise UserError(str(e)) from None


@cli.command()
@_storage_option
@_study_option
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def best(storage: str | None, study_name: str | None, top: int, as_json: bool) -> None:
    """The best designs of a study, ranked.

    \b
    Examples:
      resnas best --top 5
      resnas best --storage sqlite:///resnas.db --study default --json
    """
    from .record import TrialRecord
    from .search import design_row, ranked_designs
    study, _ = _load_study(storage, study_name)
    if not as_json:
        _print_best(study, top)
        return
    trials = study.get_trials(deepcopy=False)
    rows = []
    for i, d in enumerate(ranked_designs(study)[:top], start=1):
        t = trials[d.trials[0]]
        r = TrialRecord.from_trial(t)
        rows.append(dict(rank=i, trial=t.number, values=t.values, **design_row(d), timm=r.timm, params=r.params,
                         macs=r.macs, epochs=r.epochs, params_suggested=t.params))
    click.echo(json.dumps(dict(study=study.study_name, directions=[d.name.lower() for d in study.directions],
                               trials=rows), indent=2))


@cli.command("export")
@_storage_option
@_study_option
@click.option("--trial", "number", type=click.IntRange(min=0), help="Trial number [default: the best].")
@click.option("--output", type=click.Path(file_okay=False), required=True, help="Folder to write (timm local-dir).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data, when the trial must be retrained.")
def export_cmd(storage: str | None, study_name: str | None, number: int | None, output: str,
               data_dir: str | None) -> None:
    """Write a trial's network as a timm local-dir folder (config.json + model.safetensors).

    Uses the weights the trial kept as artifacts; a trial without them is retrained (said so) with the
    seed the search trained it with, which gives its weights again on the CPU.

    \b
    Example:
      resnas export --output best-net
      python -c "import timm, resnas; timm.create_model('local-dir:best-net', pretrained=True)"
    """
    from .search import export_trial
    study, url = _load_study(storage, study_name)
    try:
        folder, how = export_trial(study, url, number, output, data_dir)
    except search_errors() as e:
        raise UserError(str(e)) from None
    console.print(f"wrote {folder} ({how}); load it with timm.create_model('local-dir:{folder}', pretrained=True)",
                  highlight=False, soft_wrap=True)


@cli.command()
@_storage_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback unless you say).")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
def dashboard(storage: str | None, host: str, port: int) -> None:
    """Serve the Optuna dashboard for a storage and its artifacts.

    \b
    Example:
      resnas dashboard --storage sqlite:///resnas.db --port 8080
    """
    from .storage import DASHBOARD, StudyError, dashboard_server, mask_url, open_storage
    url = _existing_storage(storage)
    try:
        open_storage(url)  # optuna-dashboard opens an RDB URL itself, with a traceback if it cannot: first ours
        serve = dashboard_server(url)
    except StudyError as e:
        raise UserError(str(e)) from None
    console.print(f"{DASHBOARD} on http://{host}:{port} for {mask_url(serve.url)}", highlight=False, soft_wrap=True)
    serve(host=host, port=port)


@cli.command("storage-proxy")
@_storage_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback unless you say).")
@click.option("--port", type=click.IntRange(1, 65535), default=13000, show_default=True)
def storage_proxy(storage: str | None, host: str, port: int) -> None:
    """Serve a storage to many workers (Optuna's gRPC storage proxy); they pass --storage grpc://HOST:PORT.

    This process then holds the database connections and a cache of finished trials, however many
    workers there are. Weights and checkpoints do not go through it: they stay in each worker's
    ./resnas-artifacts (a shared folder across machines). No authentication, no TLS: bind a private address.

    \b
    Example:
      resnas storage-proxy --storage postgresql://user@db-host/resnas --host 10.0.0.2 --port 13000
      resnas search --storage grpc://10.0.0.2:13000 --workers 4
    """
    from .storage import StudyError, mask_url, proxy_server
    try:
        serve = proxy_server(storage, host, port)
        console.print(f"storage-proxy on grpc://{host}:{port} for {mask_url(serve.url)} (Ctrl-C stops it)",
                      highlight=False, soft_wrap=True)
        serve()
    except StudyError as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:  # a server's normal end: not an interrupted trial (main's message)
        console.print("storage-proxy stopped", highlight=False)


# ---- probe and reproduce --------------------------------------------------------------------------
def _probe_specs(names: tuple[str, ...], space_name: str | None, samples: int, **fixed) -> list:
    """The specs to probe: names or spec strings, plus every grid point of a space (or a sample of it)."""
    from .search import sample_specs
    from .space import load_space
    specs = []
    try:
        for name in names:
            specs.append(zoo.spec_of(name).replace(**fixed))
        if space_name is not None:
            specs += sample_specs(load_space(space_name), samples, **fixed)
    except ValueError as e:
        raise UserError(str(e)) from None
    if not specs:
        raise UserError("probe: give one or more specs (or registered names), or --space NAME|FILE")
    return list({str(s): s for s in specs}.values())


@cli.command("probe")
@click.argument("specs", nargs=-1)
@click.option("--space", "space_name", help="Also probe every point of this space (a built-in name or a YAML file).")
@click.option("--samples", type=click.IntRange(min=1), default=20, show_default=True,
              help="Random draws from a space that is not a grid.")
@click.option("--dataset", type=click.Choice(list(DATASETS)), default="digits", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the data set is.")
@click.option("--batch-size", type=click.IntRange(min=2), default=32, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Initialization seed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write log10 |dE/dx_l| per unit to this PNG.")
def probe_cmd(specs: tuple[str, ...], space_name: str | None, samples: int, dataset: str, data_dir: str | None,
              batch_size: int, seed: int, as_json: bool, plot: str | None) -> None:
    """Measure how the gradient crosses the units at initialization (the paper's Eq. 5).

    On one batch of real data, in training mode: the norm of dE/dx_l at every unit l, summed up as
    the gain log10(|dE/dx_1| / |dE/dx_L|) and its slope per unit, beside the shortcut-only term of
    Eq. 5 over the same span (units 1 .. L-1). The headline is "vs ref": the gain minus the gain of
    the reference, the identity-shortcut, full pre-activation net of the same depth and widths (the
    paper's design, which itself gains about 2 at 110 layers; 0 for the reference itself); variants
    are ranked by its size, closest first. With BN the failing shortcuts make the gradient explode
    toward the input (gain >> 0) rather than vanish.

    \b
    Examples:
      resnas probe original_resnet110 "depth=110,act=original,shortcut=scaling,scale=0.5" --plot probe.png
      resnas probe --space paper_table1 --json
    """
    from . import probe as probe_mod
    from .data import load_data
    if plot and not Path(plot).parent.is_dir():
        raise UserError(f"plot: folder {Path(plot).parent} does not exist")
    try:
        data = load_data(dataset, data_dir)
        x, y = next(iter(data.loader("val", batch_size)))
        todo = _probe_specs(specs, space_name, samples, in_chans=data.input_size[0], num_classes=data.num_classes)
        pairs = probe_mod.against_reference(todo, x, y, seed=seed)
    except search_errors() as e:
        raise UserError(str(e)) from None
    rows = probe_mod.rank_probes(pairs)
    if plot:
        probe_mod.plot([r for r, _ in pairs], plot, title=f"gradient at initialization, {dataset} batch {len(x)}")
    if as_json:
        click.echo(json.dumps(dict(dataset=dataset, batch_size=len(x), seed=seed, variants=rows), indent=2))
        return
    refs = list({d["reference"]: d["reference_gain"] for d in rows}.items())
    ref_no = {spec: i for i, (spec, _) in enumerate(refs, start=1)}
    # "vs ref": gain - gain of the row's ref; "Eq.5": the shortcut-only term over units 1 .. L-1
    columns = ["#", "variant", "vs ref", "gain", "ratio", "slope", "Eq.5"] + (["ref"] if len(refs) > 1 else [])
    table = Table(*columns, title=f"resnas probe on {dataset}: gain vs ref, closest first")
    table.columns[1].overflow, table.columns[1].min_width = "fold", 20
    for rank, (d, label) in enumerate(zip(rows, probe_mod.short_labels([d["spec"] for d in rows])), start=1):
        term = "-" if d["shortcut_term"] is None else f"{d['shortcut_term']:.3g}"
        own = " (ref)" if d["spec"] == d["reference"] else ""
        table.add_row(str(rank), label + own, f"{d['gain_vs_reference']:+.2f}", f"{d['gain']:.2f}",
                      f"{d['ratio']:.3g}", f"{d['slope']:.3f}", term,
                      *([str(ref_no[d["reference"]])] if len(refs) > 1 else []))
    console.print(table)
    console.print("ref: the identity-shortcut, full pre-activation net of the same depth and widths (the "
                  "paper's design); vs ref = gain - the ref's gain, 0 for the ref itself", highlight=False,
                  soft_wrap=True)
    for i, (spec, gain) in enumerate(refs, start=1):
        console.print(f"ref{f' {i}' if len(refs) > 1 else ''}: {spec}, gain {gain:.2f}", highlight=False,
                      soft_wrap=True)
    if plot:
        console.print(f"plot: {plot}", highlight=False, soft_wrap=True)


@cli.command()
@click.argument("table", type=click.Choice(["table1", "table2"]))
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
              help="Independent runs per row (the paper reports the median of 5).")
@click.option("--dataset", type=click.Choice(["digits", "cifar10", "cifar100", "imagenet", "folder"]),
              default="digits", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the data set is (or is downloaded to).")
@click.option("--quick", is_flag=True, help="Depths x1/3 (ResNet-38 for 110, ResNet-56 for 164) and 15 epochs.")
@click.option("--depth-scale", type=click.FloatRange(min=0, max=1, min_open=True),
              help="Units per stage x this [default: 1, or 1/3 with --quick].")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs per run [default: 164, or 15 with --quick].")
@click.option("--rows", help="Only these rows, 1-based: 1,3,5 [default: all].")
@_storage_option
@click.option("--study", "study_prefix", help="Prefix of the studies' names [default: the space's name].")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="The study's seed; repeat k of a row trains with the seed of (row, k).")
@click.option("--output", type=click.Path(file_okay=False), default="resnas-reproduce", show_default=True,
              help="Folder for TABLE.md and TABLE.csv.")
def reproduce(table: str, repeats: int, dataset: str, data_dir: str | None, quick: bool, depth_scale: float | None,
              epochs: int | None, rows: str | None, storage: str | None, study_prefix: str | None, seed: int,
              output: str) -> None:
    """Train the paper's Table 1 or Table 2 as grid studies and set the result beside the paper's.

    Every row is trained --repeats times in one study (resumed when it exists); the measured
    error is the median validation error. "fail" is the paper's: above 20%; every row also shows its
    probe ratio |dE/dx_1| / |dE/dx_L| at initialization. Any departure from the paper's protocol
    (data set, depth, epochs, repeats) is printed and written with the table.

    \b
    Examples:
      resnas reproduce table1 --quick --repeats 3
      resnas reproduce table2 --dataset cifar10 --data-dir ./data --repeats 5 --storage sqlite:///t2.db
    """
    from . import reproduce as rep
    from .search import quiet_logs
    quiet_logs()  # as search: the display reports each trial; Ctrl-C is one line
    try:
        numbers = tuple(int(r) for r in rows.split(",") if r.strip()) if rows else ()
    except ValueError:
        raise UserError(f"rows: {rows!r} is not a list of row numbers such as 1,3,5") from None
    try:
        job = rep.Reproduction(table, repeats=repeats, dataset=dataset, data_dir=data_dir,
                               depth_scale=depth_scale or (rep.QUICK_DEPTH_SCALE if quick else 1.0),
                               epochs=epochs or (rep.QUICK_EPOCHS if quick else rep.PAPER_EPOCHS), rows=numbers,
                               storage=storage, study_prefix=study_prefix, seed=seed)
        for note in job.reduced:
            console.print(f"[bold yellow]not the paper's setting:[/] {note}", highlight=False, soft_wrap=True)
        display = SearchDisplay(None, job.epochs, live=False)
        job.callbacks = [display.on_trial]
        start = time.perf_counter()
        result = rep.run(job)
        seconds = time.perf_counter() - start
        md, csv_path = rep.write(job, result, output, seconds)
    except (*search_errors(), rep.ReproduceError) as e:
        raise UserError(str(e)) from None
    _print_reproduced(job, result, seconds)
    console.print(f"wrote {md} and {csv_path}", highlight=False, soft_wrap=True)


def _print_reproduced(job, result, seconds: float) -> None:
    from . import reproduce as rep
    title = f"{job.table} reproduced: median of {job.repeats} on {job.dataset}, {job.epochs} epochs"
    table = Table("row", "variant", "paper %", "paper rank", "measured %", "measured rank", "probe ratio",
                  title=title)
    table.columns[1].overflow = "fold"
    for r in rep.table_rows(result):
        measured = r["measured_error"] + (" fail" if r["measured_fail"] else "")
        table.add_row(str(r["row"]), r["variant"], r["paper_error"], str(r["paper_rank"]), measured,
                      str(r["measured_rank"]), r["probe_ratio"])
    console.print(table)
    console.print(f"{rep.agreement(result)}; {seconds / 60:.1f} min", highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """The ``resnas`` console script: returns 0, 2 for bad input (one line on stderr), 130 on Ctrl-C."""
    try:
        cli.main(args=argv, prog_name="resnas", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:  # ours and click's (usage): one line, exit code 2
        UserError(e.format_message()).show()
        return UserError.exit_code
    except (click.Abort, KeyboardInterrupt):
        err_console.print("interrupted: the running trial is recorded as failed (interrupted); "
                          "run the same command again to continue", highlight=False, soft_wrap=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
