"""``resnas reproduce``: the paper's Table 1 or 2 trained, and set beside the paper's numbers."""

from __future__ import annotations

import time

import click

from ..reproduce import (
    PAPER_EPOCHS,
    QUICK_DEPTH_SCALE,
    QUICK_EPOCHS,
    QUICK_WIDTH_SCALE,
    ReproduceError,
    Reproduction,
    TableRun,
    agreement,
    table_rows,
)
from ..study import quiet_logs
from ..threads import set_threads
from . import hints
from .common import Interrupted, UserError
from .display import ReproduceDisplay, console, print_reproduced, say, tell
from .options import SEED, threads_option
from .stored import USER_ERRORS

__all__ = ["reproduce"]


@click.command()
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
@threads_option
def reproduce(table: str, repeats: int, dataset: str, data_dir: str | None, quick: bool, depth_scale: float | None,
              width_scale: float | None, epochs: int | None, rows: str | None, storage: str | None,
              study_prefix: str | None, seed: int, output: str, threads: int | None) -> None:
    """Train the paper's Table 1 or Table 2 as grid studies and set the result beside the paper's.

    Every row is trained --repeats times in one study (resumed when it exists); the measured
    error is the median validation error. "fail" is the paper's: above 20%; every row also shows its
    probe ratio |dE/dx_1| / |dE/dx_L| at initialization. Any departure from the paper's protocol
    (data set, depth, epochs, repeats) is printed and written with the table.

    Before training it prints an estimate of the time, from one real epoch timed on this machine (or,
    resumed, from the runs the study finished);
    the table so far is written after every run and on Ctrl-C, and the same command again continues.

    \b
    Examples:
      resnas reproduce table1 --quick
      resnas reproduce table2 --dataset cifar10 --data-dir ./data --repeats 5 --storage sqlite:///t2.db
    """
    quiet_logs()  # as search: the display reports each trial; Ctrl-C is one line
    try:
        numbers = tuple(int(r) for r in rows.split(",") if r.strip()) if rows else ()
    except ValueError:
        raise UserError(f"rows: {rows!r} is not a list of row numbers such as 1,3,5") from None
    table_run, display = None, ReproduceDisplay(live=console.is_terminal)
    chosen = set_threads(threads)  # before the estimate, which times training steps with them
    try:
        job = Reproduction(table, repeats=repeats, dataset=dataset, data_dir=data_dir,
                           depth_scale=depth_scale or (QUICK_DEPTH_SCALE if quick else 1.0),
                           width_scale=width_scale or (QUICK_WIDTH_SCALE if quick else 1.0),
                           epochs=epochs or (QUICK_EPOCHS if quick else PAPER_EPOCHS), rows=numbers,
                           storage=storage, study_prefix=study_prefix, seed=seed, output=output,
                           threads=chosen.count)
        for note in job.reduced:
            console.print(f"[bold yellow]not the paper's setting:[/] {note}", highlight=False)
        table_run = TableRun(job, on_epoch=display.on_epoch, on_run=display.on_run)
        estimate = table_run.estimate()
        tell(chosen.line())
        tell(estimate.line())
        start = time.perf_counter()
        with display.showing(estimate, table_run.seconds):
            result = table_run.run()
        seconds = time.perf_counter() - start
    except KeyboardInterrupt:
        if table_run is not None and table_run.study is not None:  # a resumed study holds runs already
            table_run.write()
        raise Interrupted(hints.reproduce_interrupted(table_run)) from None
    except (*USER_ERRORS, ReproduceError) as e:
        raise UserError(str(e)) from None
    print_reproduced(job, table_rows(result), agreement(result), seconds)
    md, csv_path = table_run.written
    say(f"wrote {md} and {csv_path}")
