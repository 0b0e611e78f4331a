"""``resnas search``: a search of a space's designs, followed live, then its best designs and what comes next."""

from __future__ import annotations

import shlex

import click

from ..budget import exhausted_line, split_line
from ..config import Search
from ..data import DATASETS
from ..errors import did_you_mean
from ..fidelity import recorded_fidelity, unchecked_line
from ..race import MARGIN, RaceRules
from ..ranks import in_launch
from ..runners import Progress, run
from ..runners import devices as resolve_devices
from ..runners import threads as run_threads
from ..space import load_space
from ..storage import DEFAULT_STORAGE, mask_url, shares_storage
from ..study import quiet_logs
from . import hints
from .best import show_best
from .common import Interrupted, UserError
from .display import SearchDisplay, console, say
from .options import SEED, storage_option, study_option, threads_option
from .stored import USER_ERRORS

__all__ = ["search"]


@click.command()
@click.option("--space", "space_name", default="default", show_default=True, help="A built-in space or a YAML file.")
@click.option("--dataset", help="Data set [default: the space's]: digits, cifar10, cifar100, imagenet, folder.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the data set is (or is downloaded to).")
@storage_option
@study_option
@click.option("--trials", type=click.IntRange(min=1),
              help="Target: run until the study holds N search trials (complete, pruned or failed; race runs, "
                   "redraws of a trained design and the trials a retry redoes do not count; a space with fewer "
                   "designs ends when each is trained), so the same command resumes an interrupted "
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
                   "(the race's first look reserved first: its designs x 3 seeds x --epochs; the race goes on "
                   "within N).")
@click.option("--confirm", type=click.IntRange(min=0), default=3, show_default=True,
              help="After the search, the best K designs and the baseline race to a verdict, one more seed per "
                   "design a round (0: no race).")
@click.option("--margin", type=click.FloatRange(min=0), default=MARGIN * 100, show_default=True,
              help="The race ends tied when the designs left are shown within this many points of error (0: never).")
@click.option("--max-seeds", type=click.IntRange(min=2), default=RaceRules.max_seeds, show_default=True,
              help="The race's seeds per design at most; the same command with more continues the race.")
@click.option("--baseline", default="paper", show_default=True,
              help="In the race besides: paper (full pre-activation, identity shortcut, the leader's other "
                   "choices, when the space has it), none, or a spec string.")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="Rows of the final table.")
@threads_option
def search(space_name: str, dataset: str | None, data_dir: str | None, storage: str | None, study_name: str | None,
           trials: int | None, more: int | None, timeout: float | None, epochs: int | None, seed: int | None,
           devices: str | None, workers: int | None, heartbeat: int, probe_max_gain: float | None,
           probe_max_deviation: float | None, budget_epochs: int | None, confirm: int, margin: float,
           max_seeds: int, baseline: str, top: int, threads: int | None) -> None:
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
    quiet_logs()  # the display reports each trial and its reason
    try:
        space = load_space(space_name)
        if dataset is not None and dataset not in DATASETS:
            raise UserError(f"dataset: {dataset!r} is unknown; allowed: {', '.join(DATASETS)}"
                            f"{did_you_mean(dataset, DATASETS)}")
        device_list = resolve_devices(devices, workers)
        chosen = None if in_launch() else run_threads(threads, device_list)  # a launch: its OMP_NUM_THREADS
        job = Search(space, storage=storage, study_name=study_name, dataset=dataset, data_dir=data_dir,
                     trials=trials, more=more, timeout=timeout, epochs=epochs, seed=seed,
                     threads=chosen.count if chosen else threads,
                     heartbeat=heartbeat, probe_max_gain=probe_max_gain, probe_max_deviation=probe_max_deviation,
                     budget_epochs=budget_epochs, confirm=confirm, margin=margin / 100, max_seeds=max_seeds,
                     baseline=baseline)
        live = console.is_terminal and not in_launch()
        if chosen:
            say(chosen.line())
        plan = []  # the run's Budget, once known: the bar's total, and the target a Ctrl-C message names
        with SearchDisplay(None, job.max_epochs, live=live, budget_epochs=budget_epochs, space=space) as display:
            progress = Progress(callbacks=(display.on_trial,), on_epoch=display.on_epoch,  # workers: through poll
                                on_fidelity=display.on_fidelity, on_budget=lambda b: _on_budget(job, b, display, plan),
                                poll=lambda s: _poll(display, s))
            try:  # distributed under accelerate launch / torchrun
                study = run(job, progress, device_list)
            except KeyboardInterrupt:
                again = hints.search_again(plan[0] if plan else None)
                raise Interrupted("the running trial is recorded as failed (interrupted) and is retried from its "
                                  f"last epoch; continue with: {again}") from None
        if study is None:  # a distributed run's process other than the main one
            return
    except USER_ERRORS as e:
        raise UserError(str(e)) from None
    said = plan and plan[0].every_design  # its budget line said so before the run
    for line in filter(None, (None if said else exhausted_line(study, job), unchecked_line(study, job))):
        console.print(line, highlight=False)
    show_best(study, top)
    _print_next(study, job.storage_url)


def _poll(display: SearchDisplay, study) -> None:
    """Worker processes train; the parent follows the study in the storage (and its fidelity check)."""
    display.poll(study, recorded_fidelity(study) if not display.fidelity_shown else None)


def _on_budget(job: Search, budget, display: SearchDisplay, known: list) -> None:
    known.append(budget)
    display.progress.console.print(split_line(job, budget), highlight=False)  # above the live bar
    display.on_budget(budget)


def _print_next(study, url: str) -> None:
    """The commands that come next, with --storage and --study where the defaults would not find the study."""
    where = "" if url == DEFAULT_STORAGE else f" --storage {shlex.quote(mask_url(url))}"
    if shares_storage(study):
        where += f" --study {shlex.quote(study.study_name)}"
    console.print("next: the ranking (--json: full specs), the best net for timm, the dashboard:", highlight=False)
    for command in (f"resnas best{where}", f"resnas export{where} --output best-net",
                    f"resnas dashboard{where.split(' --study')[0]}"):
        say(f"  {command}")  # never broken: copied as it is

