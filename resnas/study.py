"""Optuna studies over a search space: storage, sampler, pruner, the objective and its trial records.

    >>> from resnas.space import load_space
    >>> from resnas.study import Search, run_search
    >>> search = Search(load_space("default"), storage="sqlite:///resnas.db", trials=4)   # doctest: +SKIP
    >>> study = run_search(search)                                                         # doctest: +SKIP

Each trial keeps, as user attributes the dashboard shows: the spec string, the ``timm.create_model``
call that rebuilds it, params, MACs, per-epoch train loss / validation error / seconds, the device,
its training seed (``design_seed``), and its status and reason (ok, pruned, diverged, oom, failed).
Completed candidates that rank among the best keep their weights as Optuna artifacts beside the
database; ``export`` retrains any other with its recorded seed, which gives the same weights on the CPU.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import math
import os
import shutil
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import torch
from optuna.artifacts import FileSystemArtifactStore, download_artifact, upload_artifact
from optuna.trial import TrialState

from .data import load_data
from .export import export
from .network import build
from .probe import probe
from .record import (ARTIFACT_FILES, INTERRUPTED, Status, StudyRecord, TrialRecord, duplicate_reason, error_reason,
                     probe_reason, pruned_reason, status_of, trained)
from .space import Space, load_space
from .train import CHECKPOINT, RECIPES, Recipe, StopTraining, checkpoint_epoch, train

DEFAULT_STORAGE = "sqlite:///resnas.db"
JOURNAL = "journal:///"  # journal:///study.log: Optuna's JournalStorage on a file, like sqlite:/// paths
WEIGHTS_TOP_K = 3  # completed trials whose weights are kept as artifacts
PROBE_BATCH = 32  # images in the batch every candidate is probed on
SEED_STRIDE = 1_000_003  # sampler seeds of workers started together lie this far apart


class StudyError(ValueError):
    """A storage or study that cannot be used (one line, exit code 2 in the CLI)."""


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
    def storage_url(self) -> str:
        return self.storage or os.environ.get("RESNAS_STORAGE") or DEFAULT_STORAGE


# ---- storage, sampler, pruner -------------------------------------------------------------------
def mask_url(url: str) -> str:
    """The storage URL with its password replaced by ***, for every line a user sees."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def open_storage(url: str, heartbeat: int | None = None) -> optuna.storages.BaseStorage:
    """An Optuna storage that several workers (and a dashboard) can share.

    ``journal:///study.log`` is Optuna's JournalStorage on a file (file locks, no server, no
    heartbeat). SQLite runs in WAL mode with a 60 s busy timeout, so readers never block the writer
    and writers queue instead of failing with "database is locked". RDB storages (SQLite, PostgreSQL, MySQL) get
    a heartbeat: a worker killed mid-trial leaves a stale trial, which the next worker marks FAIL and
    retries with the same parameters (it then resumes from the candidate's epoch checkpoint).
    """
    db = local_file(url)
    if db is not None and (not db.parent.exists() or not os.access(db.parent, os.W_OK)):
        raise StudyError(f"storage: cannot write {db} (folder missing or not writable)")
    try:
        if url.startswith(JOURNAL):  # no heartbeat: a killed worker's trial stays RUNNING
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            return JournalStorage(JournalFileBackend(str(db)))
        if not url.startswith(("sqlite", "postgresql", "mysql")):
            return optuna.storages.get_storage(url)
        if url.startswith("sqlite"):
            engine_kwargs = {"connect_args": {"timeout": 60}}
        else:  # fail within 10 s on an unreachable server
            engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
        if url.startswith("postgresql"):  # as SQLite below: a commit does not wait for the disk (~10 -> 3 ms);
            # a server crash may lose the last commits (under a second), never consistency
            engine_kwargs["connect_args"]["options"] = "-c synchronous_commit=off"
        with _quiet():
            retry = None if heartbeat is None else optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat,
                                                 grace_period=None if heartbeat is None else 2 * heartbeat,
                                                 heartbeat_stale_trial_callback=retry)
        if url.startswith("sqlite"):
            with storage.engine.connect() as connection:  # WAL is a property of the file: set once, kept
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")
            # per connection: in WAL mode a commit then skips its fsync (about 8 -> 3 ms per trial attribute);
            # the file stays consistent, a power cut may lose the last commits
            sqlalchemy.event.listen(storage.engine, "connect",
                                    lambda dbapi, _: dbapi.execute("PRAGMA synchronous=NORMAL"))
            storage.engine.dispose()  # pooled connections opened before the listener
        return storage
    except Exception as e:
        raise StudyError(f"storage: cannot open {mask_url(url)}: {_first_line(e)}") from None


@contextlib.contextmanager
def _quiet():
    """Optuna marks its heartbeat, retry and TPE ``group`` features experimental; resnas relies on them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def make_sampler(space: Space, seed: int) -> optuna.samplers.BaseSampler:
    """The space's Optuna sampler: multivariate TPE, NSGA-II (two objectives) or random (grids, enqueued)."""
    if space.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if space.sampler in ("random", "grid"):  # a grid's points are enqueued; the sampler only fills gaps
        return optuna.samplers.RandomSampler(seed=seed)
    # multivariate + group: TPE models the conditional parameters of each shortcut kind jointly
    with _quiet():
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


def search_seed(search: Search) -> int:
    """The run's seed: ``--seed``, else the space's."""
    return search.seed if search.seed is not None else search.space.seed


def design_seed(seed: int, spec) -> int:
    """The training seed of a design in a search seeded ``seed``: every place that trains a candidate
    (the objective, every rank of a distributed run, ``export`` retraining one) trains it with this seed,
    so a retried trial resumes the same run and a retraining reproduces the trial's weights."""
    return (seed + zlib.crc32(str(spec).encode())) % 2**31


def open_study(search: Search) -> optuna.Study:
    """Create the study, or resume it; a study made from another space is refused, never overwritten."""
    space, seed = search.space, search_seed(search)
    storage = open_storage(search.storage_url, search.heartbeat)
    try:
        study = optuna.create_study(storage=storage, study_name=search.name, load_if_exists=True,
                                    directions=space.directions, pruner=make_pruner(search))
        joined = len(study.get_trials(deepcopy=False))
    except Exception as e:
        raise StudyError(f"study {search.name}: {_first_line(e)}") from None
    # a process that resumes the study, or searches it beside others, must not redraw their candidates
    study.sampler = make_sampler(space, seed + SEED_STRIDE * search.worker + joined)
    made = StudyRecord.from_study(study)
    if made.space is None:
        for key, value in study_record(search).to_user_attrs().items():
            study.set_user_attr(key, value)
        with _quiet():  # the dashboard's axes say val_error, not "Objective 0"
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
                       recipe=dict(search.space.recipe), seed=search_seed(search))


def prepare(study: optuna.Study, space: Space, points: list[dict[str, Any]] | None = None) -> None:
    """Before a run: fail stale trials (their retries are enqueued), retry interrupted ones, fill the grid
    (``points`` of it when given: ``resnas reproduce --rows``)."""
    with _quiet():
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


def checkpoint_dir(search: Search, spec, run: int) -> Path:
    """Where a candidate's epoch checkpoints live: beside the artifacts, keyed by study, design and the
    trial that first ran it (its retries resume there)."""
    key = hashlib.sha1(f"{search.name}\n{spec}\n{search.max_epochs}\n{run}".encode()).hexdigest()[:20]
    return artifact_root(search.storage_url) / "checkpoints" / key


def local_file(url: str) -> Path | None:
    """The file of an SQLite or journal storage URL (``sqlite:///a.db``, ``journal:////abs/b.log``)."""
    for prefix in ("sqlite:///", JOURNAL):
        if url.startswith(prefix):
            return Path(url[len(prefix):])
    return None


def artifact_root(url: str) -> Path:
    """Where weights and checkpoints live: ``resnas-artifacts/`` beside a storage file, else in the working dir."""
    db = local_file(url)
    return (db.parent if db is not None else Path(".")) / "resnas-artifacts"


def artifact_store(url: str):
    """A file-system artifact store beside an SQLite database or journal file (or in ./resnas-artifacts)."""
    root = artifact_root(url)
    root.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(root))


# ---- the objective ------------------------------------------------------------------------------
class Objective:
    """One trial in named steps: suggest -> twin? -> probe -> train -> record -> keep weights.

    ``store`` is the artifact store for the top-k weights (None: keep none, as on the ranks of a
    distributed run other than the main one); ``distributed``: every rank gets a TorchDistributedTrial.
    """

    def __init__(self, search: Search, data, store=None, distributed: bool = False):
        self.search, self.data, self.store, self.distributed = search, data, store, distributed
        self.recipe = search_recipe(data.name, search.space.recipe, search.max_epochs)
        self.seed = search_seed(search)
        self.probe_batch = None  # one validation batch, taken by the first probe

    def __call__(self, trial: optuna.Trial, real_trial: optuna.Trial | None = None):
        """``real_trial``: the Optuna trial behind a TorchDistributedTrial (main process only)."""
        try:
            return self._run(trial, real_trial)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:  # Ctrl-C: Optuna marks the trial FAIL; the next run retries it
            TrialRecord(status=Status.FAILED, reason=INTERRUPTED).save(trial, "status", "reason")
            raise
        except Exception as e:  # recorded with its reason; the search goes on (study.optimize catch)
            if TrialRecord.from_trial(trial).status in (None, Status.RUNNING):
                TrialRecord(status=Status.FAILED, reason=error_reason(e)).save(trial, "status", "reason")
            raise

    def _run(self, trial: optuna.Trial, real_trial: optuna.Trial | None):
        record = TrialRecord.from_trial(trial)  # a retry starts from the attributes it was given
        spec = self.suggest(trial, record)
        if not self.distributed and (twin := self._completed_twin(trial, str(spec))) is not None:
            return self.repeat(trial, record, twin)
        record.status = Status.RUNNING
        record.save(trial, "status")
        self.probe(trial, record, spec)
        result = self.train(trial, record, spec)
        error = self.record(trial, record, result)
        values = [error] + [float(getattr(result, o)) for o in self.search.space.objectives[1:]]
        owner = real_trial if real_trial is not None else trial
        if result.status == Status.OK and self.store is not None and isinstance(owner, optuna.Trial):
            self.keep_weights(owner, result.model, error)
        return values[0] if len(values) == 1 else tuple(values)

    def suggest(self, trial: optuna.Trial, record: TrialRecord):
        """The trial's candidate from the space, recorded with the timm call that rebuilds it."""
        data, space = self.data, self.search.space
        spec = space.suggest(trial, in_chans=data.input_size[0], num_classes=data.num_classes)
        if self.distributed:  # TorchDistributedTrial hands suggested floats over as float32; its params are exact
            spec = space.suggest(optuna.trial.FixedTrial(trial.params), in_chans=data.input_size[0],
                                 num_classes=data.num_classes)
        record.spec = str(spec)
        record.timm = f"timm.create_model('resnas_spec', spec='{spec}')"
        record.device = self.search.device or ("cuda" if torch.cuda.is_available() else "cpu")
        record.save(trial, "spec", "timm", "device")
        return spec

    @staticmethod
    def _completed_twin(trial: optuna.Trial, spec: str) -> optuna.trial.FrozenTrial | None:
        """A completed trial of the same design: training is seeded by the design, so it would be a rerun."""
        for done in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if done.user_attrs.get("spec") == spec and trained(done):
                return done
        return None

    def repeat(self, trial: optuna.Trial, record: TrialRecord, twin: optuna.trial.FrozenTrial):
        """Record the twin's result instead of training the design again (samplers redraw small spaces)."""
        record.duplicate_of, record.status = twin.number, Status.DUPLICATE
        record.reason, record.epochs = duplicate_reason(twin.number), 0
        record.save(trial, "duplicate_of", "status", "reason", "epochs")
        twin_record = TrialRecord.from_trial(twin)
        record.params, record.macs, record.probe_gain = twin_record.params, twin_record.macs, twin_record.probe_gain
        record.save(trial, "params", "macs", "probe_gain")  # those the twin has
        return twin.values[0] if len(twin.values) == 1 else tuple(twin.values)

    def probe(self, trial: optuna.Trial, record: TrialRecord, spec) -> None:
        """The gradient at initialization (resnas.probe, Eq. 5) on every trial; past ``probe_max_gain``
        the candidate is pruned before training: the paper's "fail" designs cost seconds."""
        if self.probe_batch is None:
            self.probe_batch = next(iter(self.data.loader("val", PROBE_BATCH)))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        torch.manual_seed(self.seed)
        result = probe(build(spec).to(device), *self.probe_batch, seed=self.seed)
        record.probe_gain, record.probe_slope = round(result.gain, 4), round(result.slope, 5)
        record.probe_shortcut_term = result.shortcut_term
        record.probe_grad_norms = [float(f"{g:.4g}") for g in result.grad_norms]
        record.save(trial, "probe_gain", "probe_slope", "probe_shortcut_term", "probe_grad_norms")
        limit = self.search.probe_max_gain
        if limit is not None and not abs(result.gain) <= limit:
            record.status, record.reason = Status.PRUNED, probe_reason(result.gain, limit)
            record.save(trial, "status", "reason")
            raise optuna.TrialPruned(record.reason)

    def train(self, trial: optuna.Trial, record: TrialRecord, spec):
        """Train the candidate from its epoch checkpoint (if a crash left one), reporting every epoch."""
        space = self.search.space
        single = len(space.objectives) == 1  # Optuna reports and prunes single-objective trials only

        def on_epoch(report):
            if single:
                trial.report(report.val_error, report.epoch)
            record.val_error.append(report.val_error)
            record.train_loss.append(report.train_loss)
            record.epoch_seconds.append(round(report.seconds, 3))
            record.save(trial, "val_error", "train_loss", "epoch_seconds")
            if self.search.on_epoch is not None:
                self.search.on_epoch(trial.number, report)
            last = report.epoch == self.search.max_epochs  # a fully trained candidate completes
            if single and not last and trial.should_prune():
                raise StopTraining(pruned_reason(space.pruner, report.epoch), status=Status.PRUNED.value)

        # the first trial of a retry chain (retries copy its user attrs): twins running at once keep apart
        if record.checkpoint_of is None:
            record.checkpoint_of = trial.number
        record.save(trial, "checkpoint_of")
        checkpoints = checkpoint_dir(self.search, spec, record.checkpoint_of)
        resumed = checkpoint_epoch(checkpoints / CHECKPOINT)
        if resumed:
            record.resumed_from_epoch = resumed
            record.save(trial, "resumed_from_epoch")
        # the seed follows the design, so a retried trial resumes the same run from its checkpoint;
        # recorded, so that export retrains exactly this run
        record.seed = design_seed(self.seed, spec)
        record.save(trial, "seed")
        result = train(spec, self.data, self.search.max_epochs, self.recipe, seed=record.seed, on_epoch=on_epoch,
                       checkpoint_dir=checkpoints)
        shutil.rmtree(checkpoints, ignore_errors=True)  # finished: only a crash leaves one to resume
        return result

    def record(self, trial: optuna.Trial, record: TrialRecord, result) -> float:
        """The training's outcome on the trial; its error (chance for a diverged candidate)."""
        record.status = Status(result.status)
        record.reason, record.params, record.macs, record.epochs = result.reason, result.params, result.macs, \
            result.epochs
        record.seconds = round(result.seconds, 3)
        record.save(trial, "status", "reason", "params", "macs", "epochs", "seconds")
        if result.status == Status.PRUNED:
            raise optuna.TrialPruned(result.reason)
        if result.status == Status.OOM:
            raise CandidateFailed(result.reason)  # status "oom" is already recorded
        # a diverged candidate is a result, not a crash: the paper's "fail" rows, at chance error
        return result.val_error[-1] if result.status == Status.OK else 1.0 - 1.0 / self.data.num_classes

    def keep_weights(self, trial: optuna.Trial, model, error: float) -> None:
        """Upload the weights of a trial that ranks among the best WEIGHTS_TOP_K."""
        if not self._ranks_top(trial, error):
            return
        with tempfile.TemporaryDirectory() as tmp:
            folder = export(model, tmp, **self.data.pretrained_cfg())
            for name in ARTIFACT_FILES:
                artifact_id = upload_artifact(artifact_store=self.store, file_path=str(folder / name),
                                              study_or_trial=trial)
                TrialRecord(artifacts={name: artifact_id}).save(trial, "artifacts")

    def _ranks_top(self, trial: optuna.Trial, error: float) -> bool:
        done = sorted(t.values[0] for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                      if trained(t))
        return len(done) < WEIGHTS_TOP_K or error < done[WEIGHTS_TOP_K - 1]


class CandidateFailed(RuntimeError):
    """A candidate that could not be trained (out of memory); the trial is recorded FAIL with its reason."""


def trial_status(trial: optuna.trial.FrozenTrial) -> str:
    """ok / pruned / diverged / oom / failed / duplicate (resnas.record.Status), or "lost" for a worker that died."""
    return status_of(trial)


def search_recipe(dataset: str, overrides: dict[str, Any], max_epochs: int) -> Recipe:
    """The data set's recipe with the space's overrides, its schedule defined on the maximum budget so
    that epoch k means the same learning rate for every candidate (Hyperband compares them there)."""
    base = RECIPES["digits" if dataset == "digits" else "imagenet" if dataset in ("imagenet", "folder") else "cifar"]
    changes = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return base(**{**changes, "schedule_epochs": max_epochs})


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
    import multiprocessing as mp

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
    import torch.distributed as dist
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env
    from optuna_integration import TorchDistributedTrial

    # joins the process group accelerate launch set up (on CPUs PartialState needs to be told so)
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    data = load_data(dataset_of(search), search.data_dir)
    study, objective, n_trials = None, Objective(search, data, None), 0
    objective.distributed = True
    if state.is_main_process:
        study = open_study(search)
        objective.store = artifact_store(search.storage_url)
        prepare(study, search.space, search.grid)
        n_trials = trial_budget(study, search)
        n_trials = n_trials if n_trials is not None else 10
    n_trials = _broadcast(n_trials)
    with _frozen_heap():
        for _ in range(n_trials):
            trial = study.ask() if state.is_main_process else None
            objective.real_trial = trial
            try:
                with _quiet():  # its ExperimentalWarning, once per trial and process
                    distributed_trial = TorchDistributedTrial(trial)
                values, trial_state = objective(distributed_trial), TrialState.COMPLETE
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
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _for_worker(search: Search, trials: int, device: str, index: int) -> Search:
    return Search(search.space, storage=search.storage_url, study_name=search.name, dataset=search.dataset,
                  data_dir=search.data_dir, trials=trials, timeout=search.timeout, epochs=search.epochs,
                  seed=search.seed, device=device, heartbeat=search.heartbeat,
                  probe_max_gain=search.probe_max_gain, worker=index, grid=search.grid)


def _worker(search: Search, device: str, threads: int) -> None:
    import torch

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


def ranked_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Completed trials, best first (single objective), or the Pareto front (two objectives); a design
    counts once (trials that repeated a completed design are left out)."""
    if len(study.directions) > 1:
        return sorted((t for t in study.best_trials if trained(t)), key=lambda t: t.values[0])
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values and math.isfinite(t.values[0]) and trained(t)]
    return sorted(done, key=lambda t: (t.values[0], t.number))


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
    if record.kept_weights:
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
