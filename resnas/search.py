"""The search: a space's Optuna study, its sampler and pruner, and the runners that fill it.

    >>> from resnas.space import load_space
    >>> from resnas.search import Search, run_search
    >>> search = Search(load_space("default"), storage="sqlite:///resnas.db", trials=4)   # doctest: +SKIP
    >>> study = run_search(search)                                                         # doctest: +SKIP

Three runners: :func:`run_search` (trials in this process), :func:`run_workers` (one process per
device on one study) and :func:`run_distributed` (under ``accelerate launch``, every rank trains each
trial); :func:`run` picks one. ``export_trial`` writes a trial as a timm local-dir folder from its
kept weights, or retrains it with its recorded seed, which gives the same weights on the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import multiprocessing as mp
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
import torch.distributed as dist
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env
from optuna.artifacts import download_artifact
from optuna.trial import TrialState
from optuna_integration import TorchDistributedTrial

from .data import load_data
from .export import export
from .objective import Objective, design_seed, ranked_trials, search_recipe
from .record import ARTIFACT_FILES, INTERRUPTED, Status, StudyRecord, TrialRecord, status_of
from .space import Space, load_space
from .storage import DEFAULT_STORAGE, StudyError, artifact_store, first_line, open_storage, quiet, weights_kept
from .train import train

__all__ = ["Search", "enqueue_grid", "enqueue_retries", "export_trial", "make_pruner", "make_sampler",
           "open_study", "prepare", "ranked_trials", "run", "run_distributed", "run_search", "run_workers",
           "distributed", "finished_trials", "quiet_logs", "sample_specs", "trial_budget", "write_note"]

SEED_STRIDE = 1_000_003  # sampler seeds of workers started together lie this far apart


@dataclass
class Search:
    """One ``resnas search``: a space, where its study lives, and the budget of this run."""

    space: Space
    storage: str | None = None
    study_name: str | None = None
    dataset: str | None = None
    data_dir: str | None = None
    trials: int | None = None
    timeout: float | None = None
    epochs: int | None = None  # overrides the space's epochs.max
    seed: int | None = None
    device: str | None = None
    callbacks: list = field(default_factory=list)  # optuna study callbacks (the CLI's display)
    on_epoch: Any = None  # on_epoch(trial_number, EpochReport), for a live display
    heartbeat: int | None = 60  # seconds; a trial silent for twice this is stale (RDB storages)
    probe_max_gain: float | None = None  # prune before training when the probe's |gain| exceeds this
    worker: int = 0  # this process's index among those started together on one study (sampler seeds)
    grid: list[dict[str, Any]] | None = None  # the grid points this run covers [default: the space's whole grid]

    @property
    def name(self) -> str:
        return self.study_name or self.space.name

    @property
    def max_epochs(self) -> int:
        return self.epochs or self.space.max_epochs

    @property
    def min_epochs(self) -> int:
        return min(self.space.min_epochs, self.max_epochs)

    @property
    def run_seed(self) -> int:
        """The run's seed: ``--seed``, else the space's."""
        return self.seed if self.seed is not None else self.space.seed

    @property
    def storage_url(self) -> str:
        return self.storage or os.environ.get("RESNAS_STORAGE") or DEFAULT_STORAGE


def make_sampler(space: Space, seed: int) -> optuna.samplers.BaseSampler:
    """The space's Optuna sampler: multivariate TPE, NSGA-II (two objectives) or random (grids, enqueued)."""
    if space.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if space.sampler in ("random", "grid"):  # a grid's points are enqueued; the sampler only fills gaps
        return optuna.samplers.RandomSampler(seed=seed)
    # multivariate + group: TPE models the conditional parameters of each shortcut kind jointly
    with quiet():
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=min(10, max(3, (space.trials or 30) // 3)))


def make_pruner(search: Search) -> optuna.pruners.BasePruner:
    """The space's pruner, with epochs as the resource: Hyperband (reduction factor 3), median or none."""
    kind = search.space.pruner
    if kind == "hyperband":  # epochs are the resource
        return optuna.pruners.HyperbandPruner(min_resource=search.min_epochs, max_resource=search.max_epochs,
                                              reduction_factor=3)
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=search.min_epochs)
    return optuna.pruners.NopPruner()


def open_study(search: Search) -> optuna.Study:
    """Create the study, or resume it; a study made from another space is refused, never overwritten."""
    space, seed = search.space, search.run_seed
    storage = open_storage(search.storage_url, search.heartbeat)
    try:
        study = optuna.create_study(storage=storage, study_name=search.name, load_if_exists=True,
                                    directions=space.directions, pruner=make_pruner(search))
        joined = len(study.get_trials(deepcopy=False))
    except Exception as e:
        raise StudyError(f"study {search.name}: {first_line(e)}") from None
    # a process that resumes the study, or searches it beside others, must not redraw their candidates
    study.sampler = make_sampler(space, seed + SEED_STRIDE * search.worker + joined)
    made = StudyRecord.from_study(study)
    if made.space is None:
        for key, value in study_record(search).to_user_attrs().items():
            study.set_user_attr(key, value)
        with quiet():  # the dashboard's axes say val_error, not "Objective 0"
            study.set_metric_names(list(space.objectives))
    elif made.space != space.name or made.dataset != dataset_of(search):
        raise StudyError(f"study {search.name}: made from space {made.space} on {made.dataset}; "
                         f"give --study NEW_NAME to search {space.name} on {dataset_of(search)}")
    return study


def dataset_of(search: Search) -> str:
    return search.dataset or search.space.dataset


def study_record(search: Search) -> StudyRecord:
    return StudyRecord(space=search.space.name, space_file=search.space.source, dataset=dataset_of(search),
                       objectives=list(search.space.objectives), max_epochs=search.max_epochs,
                       recipe=dict(search.space.recipe), seed=search.run_seed)


def prepare(study: optuna.Study, space: Space, points: list[dict[str, Any]] | None = None) -> None:
    """Before a run: fail stale trials (their retries are enqueued), retry interrupted ones, fill the grid
    (``points`` of it when given: ``resnas reproduce --rows``)."""
    with quiet():
        optuna.storages.fail_stale_trials(study)
    enqueue_retries(study)
    if space.sampler == "grid":
        enqueue_grid(study, space, points)


def enqueue_grid(study: optuna.Study, space: Space, points: list[dict[str, Any]] | None = None) -> int:
    """Enqueue the grid points (all, or ``points``) no trial has taken yet; a point whose trial failed is
    tried again. A waiting trial has no params yet: its point is the one it was enqueued with."""
    taken = [t.system_attrs.get("fixed_params", t.params) for t in study.get_trials(deepcopy=False)
             if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)]
    missing = [p for p in (space.grid_points() if points is None else points) if p not in taken]
    for params in missing:
        study.enqueue_trial(params, skip_if_exists=False)
    return len(missing)


def enqueue_retries(study: optuna.Study) -> int:
    """Enqueue again, once, the candidates a Ctrl-C interrupted (heartbeat-stale trials are retried by
    Optuna's RetryHeartbeatStaleTrialCallback); each resumes from its epoch checkpoint."""
    trials = study.get_trials(deepcopy=False)
    records = {t.number: TrialRecord.from_trial(t) for t in trials}
    retried = {r.retry_of for r in records.values()}
    todo = [t for t in trials if t.state == TrialState.FAIL and records[t.number].reason == INTERRUPTED
            and t.number not in retried]
    for t in todo:
        first = records[t.number].checkpoint_of
        retry = TrialRecord(retry_of=t.number, checkpoint_of=t.number if first is None else first)
        study.enqueue_trial(t.params, user_attrs=retry.to_user_attrs("retry_of", "checkpoint_of"),
                            skip_if_exists=False)
    return len(todo)


# ---- running ------------------------------------------------------------------------------------
def trial_budget(study: optuna.Study, search: Search) -> int | None:
    """Trials to run now: --trials or the space's; for a grid, the enqueued rest of it (or --trials of it)."""
    if search.space.sampler != "grid":
        return search.trials if search.trials is not None else search.space.trials
    waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    return waiting if search.trials is None else min(search.trials, waiting)


def run_search(search: Search, enqueue: bool = True) -> optuna.Study:
    """Open (or resume) the study and run ``search.trials`` more trials in this process."""
    data = load_data(dataset_of(search), search.data_dir)
    study = open_study(search)
    space = search.space
    if enqueue:
        prepare(study, space, search.grid)
    n_trials = trial_budget(study, search)
    if n_trials == 0:
        return study
    objective = Objective(search, data, artifact_store(search.storage_url))
    with _frozen_heap():
        study.optimize(objective, n_trials=n_trials, timeout=search.timeout, catch=(Exception,),
                       callbacks=search.callbacks)
    write_note(study, space)
    return study


@contextlib.contextmanager
def _frozen_heap():
    """Hide the objects alive now (torch, sympy, the data: ~500k) from the collector while trials run:
    the collection after every trial (resnas.train) then costs milliseconds, not 0.4 s."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_workers(search: Search, devices: list[str], poll=None) -> optuna.Study:
    """One worker process per device (``cuda:0``, ``cuda:1``, ... or ``cpu`` several times) on one study.

    The study is created and a grid enqueued here, once; the trials are shared out among the workers.
    ``poll(study)`` is called about every second while they run (the CLI's display).
    """
    load_data(dataset_of(search), search.data_dir)  # fail here, once, on missing data
    study = open_study(search)
    prepare(study, search.space, search.grid)
    total = trial_budget(study, search)
    total = total if total is not None else 10 * len(devices)
    shares = [total // len(devices) + (i < total % len(devices)) for i in range(len(devices))]
    threads = max(1, (os.cpu_count() or 1) // len(devices))
    ctx = mp.get_context("spawn")  # CUDA and forked processes do not mix
    first = search.worker * len(devices)  # indices stay distinct across machines that each run workers
    workers = [ctx.Process(target=_worker, args=(_for_worker(search, n, device, first + i), device, threads),
                           daemon=True) for i, (n, device) in enumerate(zip(shares, devices)) if n]
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers):
        for w in workers:
            w.join(timeout=1.0 / len(workers))
        if poll is not None:
            poll(study)
    write_note(study, search.space)
    return study


def run_distributed(search: Search) -> optuna.Study | None:
    """Under ``accelerate launch``: every process trains each trial together, the main one drives Optuna.

    Suggestions, reports and pruning decisions go through ``optuna_integration.TorchDistributedTrial``,
    so all ranks build the same candidate and stop it at the same epoch. Returns the study on the main
    process and None on the others.
    """
    # joins the process group accelerate launch set up (on CPUs PartialState needs to be told so)
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    data = load_data(dataset_of(search), search.data_dir)
    store = artifact_store(search.storage_url) if state.is_main_process else None
    study, objective, n_trials = None, Objective(search, data, store, distributed=True), 0
    if state.is_main_process:
        study = open_study(search)
        prepare(study, search.space, search.grid)
        n_trials = trial_budget(study, search)
        n_trials = n_trials if n_trials is not None else 10
    n_trials = _broadcast(n_trials)
    with _frozen_heap():
        for _ in range(n_trials):
            trial = study.ask() if state.is_main_process else None
            try:
                with quiet():  # its ExperimentalWarning, once per trial and process
                    distributed_trial = TorchDistributedTrial(trial)
                values, trial_state = objective(distributed_trial, real_trial=trial), TrialState.COMPLETE
            except optuna.TrialPruned:
                values, trial_state = None, TrialState.PRUNED
            except Exception:  # recorded by the objective; the search goes on
                values, trial_state = None, TrialState.FAIL
            if state.is_main_process:
                study.tell(trial, values, state=trial_state)
            dist.barrier()
    if state.is_main_process:
        write_note(study, search.space)
    dist.barrier()
    dist.destroy_process_group()  # left to interpreter teardown, gloo's threads can abort a rank at exit
    return study


def _broadcast(value: int) -> int:
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _for_worker(search: Search, trials: int, device: str, index: int) -> Search:
    """The search one worker process runs: every field but the display's hooks, which stay here."""
    return dataclasses.replace(search, storage=search.storage_url, study_name=search.name, trials=trials,
                               device=device, worker=index, callbacks=[], on_epoch=None)


def _worker(search: Search, device: str, threads: int) -> None:
    if device.startswith("cuda"):
        os.environ["CUDA_VISIBLE_DEVICES"] = device.partition(":")[2] or "0"
    else:
        os.environ["ACCELERATE_USE_CPU"] = "1"
        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    run_search(search, enqueue=False)


def write_note(study: optuna.Study, space: Space, top: int = 5) -> None:
    """The study's Markdown note in optuna-dashboard: the space and its best designs."""
    from optuna_dashboard import save_note  # deferred: a web server's dependencies, needed only here

    trials = study.get_trials(deepcopy=False)
    counts = {}
    for t in trials:
        status = str(status_of(t))
        counts[status] = counts.get(status, 0) + 1
    made = StudyRecord.from_study(study)
    lines = [f"# {space.name}", "", space.description, "",
             f"Data set **{made.dataset}**, up to {made.max_epochs} epochs "
             f"per candidate, sampler {space.sampler}, pruner {space.pruner}.", "",
             "Trials: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())), "",
             "| rank | trial | val error | params | spec |", "|---|---|---|---|---|"]
    for rank, t in enumerate(ranked_trials(study)[:top], start=1):
        record = TrialRecord.from_trial(t)
        lines.append(f"| {rank} | {t.number} | {t.values[0]:.4f} | {record.params or 0:,} | `{record.spec or ''}` |")
    best = ranked_trials(study)[:1]
    if best:
        lines += ["", "Rebuild the best design:", "", f"    {TrialRecord.from_trial(best[0]).timm or ''}"]
    save_note(study, "\n".join(lines) + "\n")


def export_trial(study: optuna.Study, url: str, number: int | None, output: str | os.PathLike,
                 data_dir: str | None = None) -> tuple[Path, str]:
    """Write trial ``number`` (default: the best) as a timm local-dir folder; says how it got the weights."""
    ranked = ranked_trials(study)
    if number is None:
        if not ranked:
            raise StudyError(f"study {study.study_name}: no completed trial to export")
        trial = ranked[0]
    else:
        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        if number not in trials:
            raise StudyError(f"trial: {number} is not in study {study.study_name} (0 .. {len(trials) - 1})")
        trial = trials[number]
        status = TrialRecord.from_trial(trial).status
        if trial.state != TrialState.COMPLETE or status != Status.OK:
            raise StudyError(f"trial: {number} did not complete ({trial.state.name if status is None else status})")
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise StudyError(f"output: {output} exists and is not empty; choose a new folder")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".resnas-export-", dir=output.parent))  # same disk: os.replace is atomic
    try:
        how = _fill_export(study, url, trial, tmp, data_dir)
        if output.exists():
            output.rmdir()
        os.replace(tmp, output)  # the folder appears whole or not at all
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return output, how


def _fill_export(study: optuna.Study, url: str, trial, folder: Path, data_dir: str | None) -> str:
    """The trial's own weights from its artifacts, or a retraining when it kept none."""
    record, made = TrialRecord.from_trial(trial), StudyRecord.from_study(study)
    if weights_kept(url, record):
        store = artifact_store(url)
        for name in ARTIFACT_FILES:
            download_artifact(artifact_store=store, artifact_id=record.artifacts[name], file_path=str(folder / name))
        return f"trial {trial.number}'s own weights"
    data = load_data(made.dataset or "digits", data_dir)
    epochs = int(made.max_epochs or record.epochs or 1)
    recipe = search_recipe(data.name, made.recipe or {}, epochs)
    result = train(record.spec, data, epochs, recipe, seed=_training_seed(study, trial))
    export(result.model, folder, **data.pretrained_cfg())
    return f"retrained for {epochs} epochs: trial {trial.number} kept no weights"


def _training_seed(study: optuna.Study, trial) -> int:
    """The seed the search trained ``trial`` with: its record; for trials that predate the record, the
    design seed of the study's seed, else of its space file's seed, else of 0 (``Space.seed``'s default)."""
    record, made = TrialRecord.from_trial(trial), StudyRecord.from_study(study)
    if record.seed is not None:
        return int(record.seed)
    seed = made.seed
    if seed is None:
        try:
            seed = load_space(made.space_file).seed
        except Exception:  # no space file recorded, or it is gone
            seed = 0
    return design_seed(int(seed), record.spec)


def run(search: Search, devices: list[str] | None = None, poll=None) -> optuna.Study | None:
    """The runner the environment asks for: distributed under ``accelerate launch`` / ``torchrun``
    (WORLD_SIZE > 1; None on the processes other than the main one), else one worker process per
    device when ``devices`` are given, else trials in this process."""
    if distributed():
        return run_distributed(search)
    if devices:
        return run_workers(search, devices, poll=poll)
    return run_search(search)


def sample_specs(space: Space, samples: int, **fixed) -> list:
    """A grid space's points, or up to ``samples`` distinct specs drawn at random from another space
    (through an in-memory study, seeded by the space's seed)."""
    if space.sampler == "grid":
        return space.specs(**fixed)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=space.seed))
    return list({str(s): s for s in (space.suggest(study.ask(), **fixed) for _ in range(samples))}.values())


def quiet_logs() -> None:
    """Optuna logs only errors: resnas's display reports each trial and its reason."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def distributed() -> bool:
    """Under ``accelerate launch`` / ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that completed, were pruned or failed (a display follows workers through them)."""
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
