"""The ``resnas`` command line: parses, calls, prints."""

from __future__ import annotations

import json
import shlex
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
        # markup=False: a message's [brackets] (pip install "resnas[postgres]") are text, not rich markup
        err_console.print(f"error: {line if len(line) <= MAX_LINE else line[:MAX_LINE - 3] + '...'}",
                          highlight=False, soft_wrap=True, markup=False)


MAX_LINE = 400  # characters of an error line at most: a message that quotes a huge value stays readable


class Interrupted(Exception):
    """Ctrl-C in a long command: what it kept and the exact command that continues (``main`` prints it, exit
    130). Not a KeyboardInterrupt, which click would turn into a bare Abort."""


def _argv() -> list[str]:
    """This command's arguments, as ``main`` was given them."""
    obj = click.get_current_context().find_root().obj
    return list(obj["argv"]) if isinstance(obj, dict) and "argv" in obj else sys.argv[1:]


def _command(args: list[str]) -> str:
    """The shell command that runs ``args`` (under ``accelerate launch`` when this runs under it)."""
    from .runners import distributed
    return shlex.join(["accelerate", "launch", "-m", "resnas", *args] if distributed() else ["resnas", *args])


def _replace_option(args: list[str], name: str, new: list[str]) -> list[str]:
    """``args`` with option ``name`` (``--name V`` or ``--name=V``) replaced by ``new`` (appended if absent)."""
    out, i = [], 0
    while i < len(args):
        if args[i] == name:
            i += 2
        elif args[i].startswith(name + "="):
            i += 1
        else:
            out.append(args[i])
            i += 1
    return [*out, *new]


SEED = click.IntRange(0, 2**32 - 1)  # what numpy's and Optuna's samplers accept


def search_errors() -> tuple[type[Exception], ...]:
    """The search layers' errors, each shown as one line with exit code 2 (imported only when caught)."""
    from .config import SearchError
    from .data import DataError
    from .export import ExportError
    from .space import SpaceError
    from .storage import StudyError
    return SpaceError, StudyError, DataError, ExportError, SearchError


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
    table.add_row("spec", SpecText(str(net.spec)))
    table.add_row("timm", SpecText(f"timm.create_model('resnas_spec', spec='{net.spec}')"))
    table.add_row("depth", str(net.spec.depth))
    table.add_row("params", f"{count_params(net):,}")
    table.add_row("MACs / image", f"{count_macs(net, size) / 1e6:,.1f}M at {size[1]}x{size[2]}")
    with torch.no_grad():
        feats = net.eval().forward_intermediates(torch.zeros(1, *size), intermediates_only=True)
    for i, (info, f) in enumerate(zip(net.feature_info, feats)):
        table.add_row(_stage_label(net.spec, i, len(feats)),
                      f"{tuple(f.shape[1:])}, reduction {info['reduction']}, timm {info['module']}")
    console.print(table)


FINAL_NORMS = {"bn_relu": "BN-ReLU", "bn": "BN", "relu": "ReLU"}  # after the last unit of pre-activation nets


def _stage_label(spec, i: int, n: int) -> str:
    """Feature ``i`` of ``n`` as the paper names it: the stem, then stage 1, 2, ... (the last one after the
    pre-activation nets' final BN-ReLU, which timm calls ``norm``)."""
    from .spec import PLACEMENTS
    if i == 0:
        return "stem"
    final = FINAL_NORMS.get(PLACEMENTS[spec.act].final)
    return f"stage {i}" + (f" + final {final}" if i == n - 1 and final else "")


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
@click.option("--resume", is_flag=True,
              help="Continue the run in --output on its own schedule: to its end, or to --epochs within it.")
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

    A checkpoint in --output after every epoch: after Ctrl-C, the same command with --resume continues
    it. The lr schedule is defined on --schedule-epochs (default: --epochs), so a finished run cannot
    honestly be trained longer (its lr has decayed); to extend runs later, start them with
    --schedule-epochs N and resume with --epochs up to N.

    \b
    Examples:
      resnas train --model "depth=20,act=preact" --dataset digits --epochs 30 --output digits-r20
      resnas train --model preact_resnet164 --dataset cifar10 --data-dir ~/data --output r164
    """
    from accelerate import PartialState

    from . import data as data_mod
    from . import export as export_mod
    from . import train as train_mod
    from .recipe import dataset_recipe
    checkpoint = Path(output) / train_mod.CHECKPOINT
    if checkpoint.exists() and not resume:
        raise UserError(f"output: {output} holds a checkpoint; pass --resume to continue it or choose another --output")
    if resume and (run := train_mod.checkpoint_run(checkpoint)) is not None:
        epochs, schedule_epochs = _resumed_budget(run, train_mod.checkpoint_epoch(checkpoint) or 0, epochs,
                                                  schedule_epochs, output)
    epochs = epochs or DATASETS[dataset].epochs
    overrides = dict(batch_size=batch_size, lr=lr, schedule=schedule, schedule_epochs=schedule_epochs,
                     warmup_iters=warmup_iters)
    try:
        recipe = dataset_recipe(dataset, **{k: v for k, v in overrides.items() if v is not None})
        data = data_mod.load_data(dataset, data_dir, download=download, image_size=image_size)
    except ValueError as e:
        raise UserError(str(e)) from None
    net = resolve_model(model_name, num_classes=data.num_classes, in_chans=data.input_size[0])
    try:
        result = train_mod.train(net, data, epochs, recipe, seed=seed,
                                 checkpoint_dir=output, mixed_precision=mixed_precision, torch_compile=compile_,
                                 test=True, progress=True)
    except ValueError as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:
        held, args = train_mod.checkpoint_epoch(checkpoint), _argv()
        if not held:
            raise Interrupted(f"training stopped before its first epoch ended, nothing kept; start it again with: "
                              f"{_command(args)}") from None
        resumed = args if "--resume" in args else [*args, "--resume"]
        raise Interrupted(f"training stopped after epoch {held} of {epochs}; the checkpoint in {output} holds it; "
                          f"continue with: {_command(resumed)}") from None
    if not PartialState().is_main_process:  # under accelerate launch, one process reports and writes
        raise click.exceptions.Exit(0 if result.ok else 1)
    _report(result, data)
    if not result.ok:
        raise click.exceptions.Exit(1)
    export_mod.export(result.model, output, **data.pretrained_cfg())
    console.print(f"saved: timm.create_model('local-dir:{output}', pretrained=True)", highlight=False, soft_wrap=True)


def _resumed_budget(run: dict, held: int, epochs: int | None, schedule_epochs: int | None,
                    output: str) -> tuple[int, int]:
    """--resume continues a run on the schedule it started on, to its end unless --epochs stops it sooner.
    The lr steps at fractions of that schedule, so a run trained to its end has already decayed its lr:
    more epochs would not make it a longer run, and are refused, naming the command that trains one."""
    schedule = int(run["schedule_epochs"])
    if schedule_epochs is not None and schedule_epochs != schedule:
        raise UserError(f"schedule-epochs: the run in {output} is on a {schedule}-epoch schedule; another "
                        "schedule is another run: give another --output")
    epochs = epochs or schedule
    if epochs > schedule:
        fresh = [a for a in _replace_option(_argv(), "--epochs", ["--epochs", str(epochs)]) if a != "--resume"]
        fresh = _replace_option(fresh, "--output", ["--output", f"{output.rstrip('/')}-{epochs}"])
        raise UserError(f"epochs: --epochs {epochs} goes past the run's {schedule}-epoch schedule (its lr has decayed; "
                        f"a run started with --schedule-epochs {epochs} extends to {epochs}); train a {epochs}-epoch "
                        f"run with: {_command(fresh)}")
    if epochs < held:
        raise UserError(f"epochs: the run in {output} has trained {held} epochs already; --resume continues it "
                        f"with --epochs {held} to {schedule}")
    return epochs, schedule


def _report(result, data) -> None:
    table = Table("", "value", title=f"resnas train: {data.name}", show_header=False)
    table.add_row("spec", SpecText(str(result.spec)))  # the whole spec, wrapped at its commas
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
class SpecText:
    """A spec that wraps after its commas, never inside a field (rich wraps text only at spaces)."""

    def __init__(self, spec: str, note: str = ""):
        fields = spec.split(",")
        self.fields = [f + "," for f in fields[:-1]] + fields[-1:] + ([f" {note}"] if note else [])

    def __rich_measure__(self, console, options):
        from rich.measure import Measurement
        return Measurement(max(map(len, self.fields)), sum(map(len, self.fields)))

    def __rich_console__(self, console, options):
        from rich.text import Text
        lines = [""]
        for f in self.fields:
            if lines[-1] and len(lines[-1]) + len(f) > options.max_width:
                lines.append("")
            lines[-1] += f if lines[-1] else f.lstrip()
        yield Text("\n".join(lines), no_wrap=True, overflow="ellipsis")  # a field wider than the column: cut


def percent(error: float | None) -> str:
    """An error as the paper's tables give it: 3.12%."""
    return "-" if error is None else f"{error:.2%}"


class SearchDisplay:
    """What a search shows: a row per finished trial (printed above the live bar in a terminal, as plain
    lines in a log), and in a terminal a trials bar with the best so far and the current trial's epochs."""

    def __init__(self, total: int | None, epochs: int, live: bool, budget_epochs: int | None = None,
                 space=None):
        self.live, self.epochs, self.space, self.best, self.seen = live, epochs, space, None, set()
        self.budget, self.spent, self.fidelity_shown, self.header_shown = budget_epochs, 0, False, False
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
        self.progress.remove_task(self.current)  # the trials bar stays, not a stale bar of the last trial
        self.progress.__exit__(*exc)

    def on_epoch(self, number: int, report) -> None:
        self.progress.update(self.current, description=f"trial {number}", completed=report.epoch,
                             note=f"val error {percent(report.val_error)}")

    def poll(self, study) -> None:
        """Worker processes train; the parent follows the study in the storage (and its fidelity check)."""
        from .fidelity import recorded_fidelity
        from .study import finished_trials
        for t in finished_trials(study):
            if t.number not in self.seen:
                self.seen.add(t.number)
                self.on_trial(study, t)
        if not self.fidelity_shown and (result := recorded_fidelity(study)) is not None:
            self.on_fidelity(result)

    def on_trial(self, study, trial) -> None:
        from .record import epochs_spent
        error = trial.values[0] if trial.values else None
        # only a completed trial competes: a pruned one's error is of an earlier epoch
        if trial.state.name == "COMPLETE" and error is not None and (self.best is None or error < self.best[0]):
            self.best = (error, trial.number)
        best = f"best {percent(self.best[0])} (trial {self.best[1]})" if self.best else ""
        self.spent += epochs_spent(trial)
        if self.budget:
            best = f"{max(0, self.budget - self.spent)} epochs left; {best}"
        self.progress.update(self.trials, advance=epochs_spent(trial) if self.budget else 1, note=best)
        self.progress.reset(self.current, total=self.epochs, description="trial -")
        self.progress.console.print(self._row(trial))

    def _row(self, trial) -> Table:
        """The trial, its status, the epoch it reached, its error at that epoch, its compact spec, a note."""
        from .record import Status, TrialRecord, status_of
        from .space import compact_spec
        record, status = TrialRecord.from_trial(trial), status_of(trial)
        error = record.val_error[-1] if record.val_error else trial.values[0] if trial.values else None
        note = ""
        if record.repeat:  # a confirmation run: another seed of a design the search ranked high
            note = f"(confirms trial {record.confirms}, seed {record.repeat + 1})"
        elif status == Status.DUPLICATE and record.duplicate_of is not None:  # its error is its twin's
            note = f"(trial {record.duplicate_of}'s design: not retrained)"
        elif status not in (Status.OK, Status.PRUNED) and record.reason:
            note = f"({record.reason if len(record.reason) <= 60 else record.reason[:57] + '...'})"
        if self.budget:
            note += f" [{self.spent}/{self.budget} epochs]"
        row = Table.grid(padding=(0, 1))
        for justify, width in (("right", 5), ("left", 9), ("right", max(5, 2 * len(str(self.epochs)) + 1)),
                               ("right", 9)):
            row.add_column(justify=justify, width=width, no_wrap=True)
        row.add_column()
        if not self.header_shown:  # once, above the first row
            self.header_shown = True
            row.add_row("trial", "status", "epoch", "val error", "spec")
        epoch = "-" if status == Status.DUPLICATE else f"{len(record.val_error)}/{self.epochs}"
        row.add_row(str(trial.number), str(status), epoch, percent(error),
                    SpecText(compact_spec(record.spec, self.space) if record.spec else "-", note.strip()))
        return row

    def on_fidelity(self, result) -> None:
        self.fidelity_shown = True
        self.progress.console.print(result.line(), highlight=False)


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
    from .space import DEFAULT_TRIALS, builtin_spaces, load_space
    table = Table("space", "sampler", "points / trials", "description", title="resnas search spaces")
    table.columns[3].overflow = "fold"
    for name in builtin_spaces():
        space = load_space(name)
        if space.sampler == "grid":
            size = f"{len(space.grid_points())} points"
        else:  # what `resnas search --space NAME` runs without --trials
            size = f"{space.trials} trials" if space.trials else f"{DEFAULT_TRIALS} trials (default)"
        table.add_row(name, space.sampler, size, space.description)
    console.print(table)


@cli.command()
@click.option("--space", "space_name", default="default", show_default=True, help="A built-in space or a YAML file.")
@click.option("--dataset", help="Data set [default: the space's]: digits, cifar10, cifar100, imagenet, folder.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the data set is (or is downloaded to).")
@_storage_option
@_study_option
@click.option("--trials", type=click.IntRange(min=1),
              help="Target: run until the study holds N search trials (complete, pruned or failed; confirmation "
                   "runs and the trials a retry redoes do not count), so the same command resumes an interrupted "
                   "search [default: the space's trials:, else 10; a grid: its points].")
@click.option("--more", type=click.IntRange(min=1), help="Add N search trials to those the study holds.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
              help="Stop starting trials after SEC seconds (of this run).")
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
              help="Target instead of --trials: run until the study's candidates have trained N epochs "
                   "(the confirmation's share reserved first).")
@click.option("--confirm", type=click.IntRange(min=0), default=3, show_default=True,
              help="Train the best K designs again with more seeds after the search (0: skip).")
@click.option("--confirm-seeds", type=click.IntRange(min=1), default=2, show_default=True,
              help="Extra seeds per confirmed design.")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="Rows of the final table.")
@click.option("--worker-index", type=click.IntRange(min=0), default=0, envvar="RESNAS_WORKER_INDEX", hidden=True,
              help="Accepted for older scripts: candidates now follow trial numbers, so workers "
                   "started together draw different ones without an index.")
def search(space_name: str, dataset: str | None, data_dir: str | None, storage: str | None, study_name: str | None,
           trials: int | None, more: int | None, timeout: float | None, epochs: int | None, seed: int | None,
           devices: str | None,
           workers: int | None, heartbeat: int, probe_max_gain: float | None, probe_max_deviation: float | None,
           budget_epochs: int | None,
           confirm: int, confirm_seeds: int, top: int, worker_index: int) -> None:
    """Search the space's residual-unit designs on a data set with Optuna.

    Resumes the study when it exists: --trials (or --budget-epochs) is a target for the study, so the
    same command after Ctrl-C finishes the interrupted budget, and on a finished study runs nothing
    new (--more N adds N). With no arguments: the `default` space on digits, a few minutes on a CPU.
    Under `accelerate launch -m resnas search ...` every process trains each trial together while the
    first drives Optuna.

    \b
    Examples:
      resnas search
      resnas search --space paper_table2 --dataset cifar10 --data-dir ./data --devices cuda:0,cuda:1
      resnas search --space full --storage postgresql://user@db-host/resnas --workers 4
    """
    from .config import Search
    from .runners import Progress, distributed, run
    from .runners import devices as resolve_devices
    from .space import load_space
    from .study import quiet_logs
    quiet_logs()  # the display reports each trial and its reason

    try:
        space = load_space(space_name)
        if dataset is not None and dataset not in DATASETS:
            raise UserError(f"dataset: {dataset!r} is unknown; allowed: {', '.join(DATASETS)}")
        device_list = resolve_devices(devices, workers)
        job = Search(space, storage=storage, study_name=study_name, dataset=dataset, data_dir=data_dir,
                     trials=trials, more=more, timeout=timeout, epochs=epochs, seed=seed, heartbeat=heartbeat,
                     probe_max_gain=probe_max_gain, probe_max_deviation=probe_max_deviation,
                     budget_epochs=budget_epochs,
                     confirm=confirm, repeats=confirm_seeds)
        live = console.is_terminal and not distributed()
        plan = []  # the run's Budget, once known: the bar's total, and the target a Ctrl-C message names
        with SearchDisplay(None, job.max_epochs, live=live, budget_epochs=budget_epochs, space=space) as display:
            progress = Progress(callbacks=(display.on_trial,), on_epoch=display.on_epoch,  # workers: through poll
                                on_fidelity=display.on_fidelity, on_budget=lambda b: _on_budget(b, display, plan),
                                poll=display.poll)
            try:
                study = run(job, progress, device_list)  # distributed under accelerate launch / torchrun
            except KeyboardInterrupt:
                raise Interrupted("the running trial is recorded as failed (interrupted) and is retried from its "
                                  f"last epoch; continue with: {_search_command(plan)}") from None
        if study is None:  # a distributed run's process other than the main one
            return
    except search_errors() as e:
        raise UserError(str(e)) from None
    _print_best(study, top)
    _print_next(study, job.storage_url)


def _print_next(study, url: str) -> None:
    """The commands that come next, with --storage and --study where the defaults would not find the study."""
    import optuna

    from .storage import DEFAULT_STORAGE, mask_url
    where = "" if url == DEFAULT_STORAGE else f" --storage {shlex.quote(mask_url(url))}"
    if len(optuna.get_all_study_names(study._storage)) > 1:  # the storage it was searched in, not reopened
        where += f" --study {shlex.quote(study.study_name)}"
    console.print("next: the ranking (--json: full specs), the best net for timm, the dashboard:", highlight=False)
    for command in (f"resnas best{where}", f"resnas export{where} --output best-net",
                    f"resnas dashboard{where.split(' --study')[0]}"):
        console.print(f"  {command}", highlight=False, soft_wrap=True)  # never broken: copied as it is


def _on_budget(plan, display, known: list) -> None:
    """What the run adds to the study: said in one line when the study already holds trials."""
    known.append(plan)
    if not display.budget and plan.trials is not None:
        display.progress.update(display.trials, total=plan.trials)
    if plan.held or plan.spent or plan.done:
        console.print(plan.line(), highlight=False, soft_wrap=True)


def _search_command(known: list) -> str:
    """The command that finishes this search: the same one, with --more N made the target it set."""
    args = _argv()
    plan = known[0] if known else None
    if plan is not None and plan.target is not None and any(a == "--more" or a.startswith("--more=") for a in args):
        args = _replace_option(args, "--more", ["--trials", str(plan.target)])
    return _command(args)


def _print_best(study, top: int, tests: list | None = None, designs: list | None = None) -> None:
    """The study's designs, best first: mean val error +- sd over n seeds, and whether tied with the best."""
    # tests (best --test): per shown design, (trial, test error) of its kept weights, or None: "-", footnoted
    from rich import box
    from rich.console import Group

    from .designs import ranked_designs
    from .record import TrialRecord
    from .results import mean_sd, tie_label
    from .space import compact_spec, fixed_fields
    space = _study_space(study)
    trials = study.get_trials(deepcopy=False)
    designs = ranked_designs(study)[:top] if designs is None else designs
    header = ["trial", "val error", *(["test error"] if tests else []), "n", "vs best", "params", "MACs", "epochs"]
    rows = []
    for rank, d in enumerate(designs, start=1):
        r = TrialRecord.from_trial(trials[d.trials[0]])
        rows.append([str(d.trials[0]), mean_sd(d), *([_test_cell(tests[rank - 1])] if tests else []), str(d.n),
                     tie_label(d, rank), _si(r.params or 0), _si(r.macs or 0), str(r.epochs or "")])
    widths = [max(map(len, column)) for column in zip(header, *rows)]
    # each design on two lines, its numbers and under them its spec: at 80 columns the spec has the width
    table = Table(title=f"best of {study.study_name}", box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("rank", justify="right")
    table.add_column(_aligned(header, widths))
    for rank, (d, row) in enumerate(zip(designs, rows), start=1):
        table.add_row(str(rank), Group(_aligned(row, widths), SpecText(compact_spec(d.spec, space))))
    console.print(table)
    if designs and (fixed := fixed_fields(designs[0].spec, space)):
        console.print(SpecText(f"every design: {fixed} (full specs: resnas best --json)"), highlight=False)
    if tests and None in tests:
        from .kept import WEIGHTS_TOP_K
        console.print(f"test error -: kept no weights (only the top {WEIGHTS_TOP_K} do); resnas export --trial N "
                      "retrains it", highlight=False)
    if designs and designs[0].confirmed:
        tied = sum(bool(d.tied) for d in designs[1:])
        console.print(f"{tied} design(s) tied with the best (not significantly worse: one-sided Welch t-test, "
                      "alpha 0.05); n = 1: not confirmed.", highlight=False)


def _aligned(cells: list[str], widths: list[int]) -> Table:
    """One line of cells at the given widths: the numbers of a design, aligned with the header's."""
    line = Table.grid(padding=(0, 2, 0, 0))
    for width in widths:
        line.add_column(width=width, no_wrap=True)
    line.add_row(*cells)
    return line


def _study_space(study):
    """The space a study was made from (its file, else the built-in of its name), or None when gone."""
    from .record import StudyRecord
    from .space import SpaceError, load_space
    made = StudyRecord.from_study(study)
    for source in filter(None, (made.space_file, made.space)):
        try:
            return load_space(source)
        except SpaceError:  # moved or broken since: the next source, else the specs in full
            continue
    return None


def _test_cell(test: tuple[int, float] | None) -> str:
    """The test error of a design's kept weights in percent; "-" when it kept none."""
    return "-" if test is None else percent(test[1])


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
@click.option("--test", "test", is_flag=True,
              help="Also the error on the held-out test split of each design's kept weights (the search never "
                   "looks at it).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data for --test (digits needs none).")
def best(storage: str | None, study_name: str | None, top: int, as_json: bool, test: bool,
         data_dir: str | None) -> None:
    """The best designs of a study, ranked.

    Errors print in percent, mean ± sd over a design's seeds (2.66 ± 0.80%), with the fields its specs
    differ in; --json gives the full specs and the errors as fractions (0.0266), as Optuna stores them.

    \b
    Examples:
      resnas best --top 5
      resnas best --test
      resnas best --storage sqlite:///resnas.db --study default --json
    """
    from .designs import ranked_designs
    from .record import TrialRecord
    from .results import design_row, kept_test_errors
    study, url = _load_study(storage, study_name)
    designs, tests = ranked_designs(study)[:top], None  # ranked once: each tie is a t-test
    if test:
        try:
            tests = kept_test_errors(study, url, designs, data_dir)
        except search_errors() as e:
            raise UserError(str(e)) from None
    if not as_json:
        _print_best(study, top, tests, designs)
        return
    trials = study.get_trials(deepcopy=False)
    rows = []
    for i, d in enumerate(designs, start=1):
        t = trials[d.trials[0]]
        r = TrialRecord.from_trial(t)
        rows.append(dict(rank=i, trial=t.number, values=t.values, **design_row(d), timm=r.timm, params=r.params,
                         macs=r.macs, epochs=r.epochs, params_suggested=t.params))
        if tests is not None:  # a fraction, as val errors are here; the run whose kept weights it is of
            tested, error = tests[i - 1] or (None, None)
            rows[-1].update(test_error=error, test_trial=tested)
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
    from .results import export_trial
    study, url = _load_study(storage, study_name)
    try:
        folder, how = export_trial(study, url, number, output, data_dir,
                                   say=lambda line: console.print(line, highlight=False, soft_wrap=True))
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
def _probe_specs(names: tuple[str, ...], space_name: str | None, samples: int, **fixed) -> dict:
    """The specs to probe by their strings, each with its label: the names or spec strings as typed, then
    every grid point of a space (or a sample of it), labelled by the tokens that set it apart."""
    from .probe import short_labels
    from .space import load_space
    from .study import sample_specs
    labelled = {}
    try:
        for name in names:
            spec = zoo.spec_of(name).replace(**fixed)
            labelled.setdefault(str(spec), (spec, name))
        if space_name is not None:
            drawn = sample_specs(load_space(space_name), samples, **fixed)
            for spec, label in zip(drawn, short_labels([str(s) for s in drawn])):
                labelled.setdefault(str(spec), (spec, label))
    except ValueError as e:
        raise UserError(str(e)) from None
    if not labelled:
        raise UserError("probe: give one or more specs (or registered names), or --space NAME|FILE")
    return labelled


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
@click.option("--plot", type=click.Path(dir_okay=False),
              help='Write log10 |dE/dx_l| per unit to this PNG (needs pip install "resnas[plot]").')
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
    if plot:
        try:
            probe_mod.pyplot()  # matplotlib is an extra: say so before computing anything
        except ImportError as e:
            raise UserError(str(e)) from None
    try:
        data = load_data(dataset, data_dir)
        x, y = next(iter(data.loader("val", batch_size)))
        todo = _probe_specs(specs, space_name, samples, in_chans=data.input_size[0], num_classes=data.num_classes)
        pairs = probe_mod.against_reference([spec for spec, _ in todo.values()], x, y, seed=seed)
    except search_errors() as e:
        raise UserError(str(e)) from None
    rows = probe_mod.rank_probes(pairs)
    label = {key: name for key, (_, name) in todo.items()}
    if plot:
        probe_mod.plot([r for r, _ in pairs], plot, title=f"gradient at initialization, {dataset} batch {len(x)}",
                       labels=[label[r.spec] for r, _ in pairs])
    if as_json:
        click.echo(json.dumps(dict(dataset=dataset, batch_size=len(x), seed=seed, variants=rows), indent=2))
        return
    refs = list({d["reference"]: d["reference_gain"] for d in rows}.items())
    ref_no = {spec: i for i, (spec, _) in enumerate(refs, start=1)}
    # "vs ref": gain - gain of the row's ref; "Eq.5": the shortcut-only term over units 1 .. L-1
    columns = ["#", "variant", "vs ref", "gain", "ratio", "slope", "Eq.5"] + (["ref"] if len(refs) > 1 else [])
    table = Table(*columns, title=f"resnas probe on {dataset}: gain vs ref, closest first")
    table.columns[1].min_width = 20
    for rank, d in enumerate(rows, start=1):
        term = "-" if d["shortcut_term"] is None else f"{d['shortcut_term']:.3g}"
        own = "(ref)" if d["spec"] == d["reference"] else ""  # the name as typed, wrapped after its commas
        table.add_row(str(rank), SpecText(label[d["spec"]], own), f"{d['gain_vs_reference']:+.2f}", f"{d['gain']:.2f}",
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
@click.option("--quick", is_flag=True, help="Digits-sized: depths x1/3 (ResNet-38 for 110, ResNet-56 for 164), widths "
              "x0.5, 15 epochs; under 10 min a table on 2 CPU cores (REPRODUCING.md).")
@click.option("--depth-scale", type=click.FloatRange(min=0, max=1, min_open=True),
              help="Units per stage x this [default: 1, or 1/3 with --quick].")
@click.option("--width-scale", type=click.FloatRange(min=0, max=1, min_open=True),
              help="Stage widths x this [default: 1, or 0.5 with --quick].")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs per run [default: 164, or 15 with --quick].")
@click.option("--rows", help="Only these rows, 1-based: 1,3,5 [default: all].")
@click.option("--storage", help="Optuna storage for the studies [default: sqlite:///OUTPUT/reproduce.db, its own, "
                                "so RESNAS_STORAGE and resnas.db are left alone].")
@click.option("--study", "study_prefix", help="Prefix of the studies' names [default: the space's name].")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="The study's seed; repeat k of a row trains with the seed of (row, k).")
@click.option("--output", type=click.Path(file_okay=False), default="resnas-reproduce", show_default=True,
              help="Folder for TABLE.md and TABLE.csv (written after every run) and, without --storage, the studies.")
def reproduce(table: str, repeats: int, dataset: str, data_dir: str | None, quick: bool, depth_scale: float | None,
              width_scale: float | None, epochs: int | None, rows: str | None, storage: str | None,
              study_prefix: str | None, seed: int, output: str) -> None:
    """Train the paper's Table 1 or Table 2 as grid studies and set the result beside the paper's.

    Every row is trained --repeats times in one study (resumed when it exists); the measured
    error is the median validation error. "fail" is the paper's: above 20%; every row also shows its
    probe ratio |dE/dx_1| / |dE/dx_L| at initialization. Any departure from the paper's protocol
    (data set, depth, epochs, repeats) is printed and written with the table.

    Before training it prints an estimate of the time, from training steps timed on this machine;
    the table so far is written after every run and on Ctrl-C, and the same command again continues.

    \b
    Examples:
      resnas reproduce table1 --quick
      resnas reproduce table2 --dataset cifar10 --data-dir ./data --repeats 5 --storage sqlite:///t2.db
    """
    from . import reproduce as rep
    from .study import quiet_logs
    quiet_logs()  # as search: the display reports each trial; Ctrl-C is one line
    try:
        numbers = tuple(int(r) for r in rows.split(",") if r.strip()) if rows else ()
    except ValueError:
        raise UserError(f"rows: {rows!r} is not a list of row numbers such as 1,3,5") from None
    table_run = None
    try:
        job = rep.Reproduction(table, repeats=repeats, dataset=dataset, data_dir=data_dir,
                               depth_scale=depth_scale or (rep.QUICK_DEPTH_SCALE if quick else 1.0),
                               width_scale=width_scale or (rep.QUICK_WIDTH_SCALE if quick else 1.0),
                               epochs=epochs or (rep.QUICK_EPOCHS if quick else rep.PAPER_EPOCHS), rows=numbers,
                               storage=storage, study_prefix=study_prefix, seed=seed, output=output)
        for note in job.reduced:
            console.print(f"[bold yellow]not the paper's setting:[/] {note}", highlight=False, soft_wrap=True)
        table_run = rep.TableRun(job)
        estimate = table_run.estimate()
        console.print(estimate.line(), highlight=False, soft_wrap=True)
        start = time.perf_counter()
        with _ReproduceDisplay(table_run, estimate, live=console.is_terminal) as display:
            table_run.on_epoch, table_run.on_run = display.on_epoch, display.on_run
            result = table_run.run()
        seconds = time.perf_counter() - start
    except KeyboardInterrupt:
        raise Interrupted(_reproduce_interrupted(table_run)) from None
    except (*search_errors(), rep.ReproduceError) as e:
        raise UserError(str(e)) from None
    _print_reproduced(job, result, seconds)
    md, csv_path = table_run.written
    console.print(f"wrote {md} and {csv_path}", highlight=False, soft_wrap=True)


def _reproduce_interrupted(table_run) -> str:
    """What Ctrl-C kept of a reproduction, and the exact command that continues it."""
    again = _command(_argv())
    if table_run is None or table_run.written is None:
        return f"nothing trained yet; start it again with: {again}"
    rows = table_run.rows()
    done, runs = sum(len(r.errors) for r in rows), sum(r.repeats for r in rows)
    md, csv_path = table_run.written
    return (f"{done} of {runs} runs done; the table so far is in {md} and {csv_path} (the rest marked "
            f"\"not run\"); the interrupted run resumes from its last epoch with: {again}")


class _ReproduceDisplay:
    """``resnas reproduce``'s progress: one line per finished run, and on a terminal a bar of the work done with
    the row and epoch in training and the time left (the measured estimate, scaled by how the runs so far
    compare with it)."""

    def __init__(self, table_run, estimate, live: bool):
        self.table_run, self.estimate = table_run, estimate
        self.done = estimate.runs - estimate.runs_left
        self.work, self.start = 0.0, time.perf_counter()  # estimated seconds of the epochs trained so far
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[runs]}"),
                                 TimeElapsedColumn(), TextColumn("{task.fields[left]}"), console=console,
                                 transient=True) if live else None
        self.task = None

    def __enter__(self):
        if self.progress is not None:
            self.progress.start()
            self.task = self.progress.add_task("starting", total=max(self.estimate.seconds, 1e-9),
                                               runs=self._runs(), left=self._left())
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _runs(self) -> str:
        return f"{self.done}/{self.estimate.runs} runs"

    def _left(self) -> str:
        from .reproduce import duration
        rest = max(0.0, self.estimate.seconds - self.work)
        elapsed = time.perf_counter() - self.start
        return f"about {duration(rest * elapsed / self.work if self.work else rest)} left"

    def on_epoch(self, row, report) -> None:
        self.work += self.table_run.seconds.get(row.number, 0.0)
        if self.progress is not None:
            self.progress.update(self.task, completed=self.work, runs=self._runs(), left=self._left(),
                                 description=f"row {row.number}, epoch {report.epoch}/{report.epochs}")

    def on_run(self, row, trial) -> None:
        from .record import TrialRecord
        self.done += 1
        record = TrialRecord.from_trial(trial)
        error = f"{trial.values[0]:.2%} val error" if trial.values else "pruned"
        repeat = f" (repeat {record.repeat + 1})" if record.repeat else ""
        console.print(f"run {self.done}/{self.estimate.runs}: row {row.number}{repeat} {row.label}: {error} after "
                      f"{record.epochs} epochs, {record.seconds or 0:.0f} s; {self._left()}",
                      highlight=False, soft_wrap=True)
        if self.progress is not None:
            self.progress.update(self.task, runs=self._runs(), left=self._left())


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
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        cli.main(args=args, prog_name="resnas", standalone_mode=False, obj={"argv": args})
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:  # ours and click's (usage): one line, exit code 2
        UserError(e.format_message()).show()
        return UserError.exit_code
    except Interrupted as e:  # a search or a training: what it kept, and the command that continues
        err_console.print(f"interrupted: {e}", highlight=False, soft_wrap=True)
        return 130
    except (click.Abort, KeyboardInterrupt):
        err_console.print(f"interrupted: {_command(args)} did not finish", highlight=False, soft_wrap=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
