"""The runners that fill a search's study: in this process, one worker process per device, or under
``accelerate launch`` (every rank trains each trial together); :func:`run` picks one (minutes; not a
doctest)::

    from resnas.config import Search
    from resnas.space import load_space
    study = run(Search(load_space("default"), trials=4), Progress())

What reports progress (a display) is handed to the runner as a :class:`Progress`, never stored on the
:class:`~resnas.config.Search`: worker processes report through the study, which ``Progress.poll`` follows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import torch
import torch.distributed as dist
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env
from optuna.trial import TrialState
from optuna_integration import TorchDistributedTrial

from . import interrupt
from .budget import Budget, Target, budget
from .config import Search, SearchError
from .data import load_data
from .errors import first_line
from .fidelity import FidelityCheck
from .kept import keep_top_weights
from .objective import Objective, Surplus, end_if_surplus
from .racing import race_round
from .ranks import in_launch
from .results import write_note
from .storage import StudyError, artifact_store, disk_note, local_file, mask_url, quiet
from .study import FINISHED, enqueue_repeats, enqueued_only, open_study, prepare, quiet_logs
from .threads import Threads, choose_threads, set_threads

__all__ = ["Progress", "devices", "run", "run_distributed", "run_search", "run_workers", "threads"]


@dataclass(frozen=True)
class Progress:
    """What a run reports to (a display); every hook optional. Worker processes report nothing themselves:
    the parent's ``poll(study)`` follows the study about every second."""

    callbacks: tuple = ()  # optuna study callbacks: callback(study, frozen_trial) after every trial
    on_epoch: Callable | None = None  # on_epoch(trial_number, EpochReport)
    on_fidelity: Callable | None = None  # on_fidelity(Fidelity), when the fidelity check is made
    on_budget: Callable | None = None  # on_budget(Budget), once the run knows what it adds to the study
    poll: Callable | None = None  # poll(study), while worker processes run


def devices(names: str | None, workers: int | None) -> list[str]:
    """The devices of ``--devices cuda:0,cuda:1`` or ``--workers N`` (N GPUs when there are, else N CPU
    processes): one worker process each; [] runs trials in this process."""
    if names:
        found = [d.strip() for d in names.split(",") if d.strip()]
        count = torch.cuda.device_count()
        for d in found:
            if d != "cpu" and not (d.startswith("cuda:") and d[5:].isdigit() and int(d[5:]) < count):
                allowed = ", ".join(["cpu"] + [f"cuda:{i}" for i in range(count)])
                raise SearchError(f"devices: {d!r} is not a device here; allowed: {allowed}")
        if workers is not None and workers != len(found):
            raise SearchError(f"workers: {workers} does not match the {len(found)} devices given")
        return found
    if workers is None:
        return []
    count = torch.cuda.device_count()
    return [f"cuda:{i % count}" for i in range(workers)] if count else ["cpu"] * workers


def run(search: Search, progress: Progress | None = None, devices: list[str] | None = None) -> optuna.Study | None:
    """The runner the environment asks for: distributed under ``accelerate launch`` / ``torchrun``
    (WORLD_SIZE > 1; None on the processes other than the main one), else one worker process per
    device when ``devices`` are given, else trials in this process."""
    if in_launch():
        return run_distributed(search, progress)
    if devices:
        return run_workers(search, devices, progress)
    return run_search(search, progress)


def threads(requested: int | None, devices: list[str] | None = None) -> Threads:
    """The torch threads of each training process a run on ``devices`` starts (``resnas.threads``;
    ``requested``: --threads): its ``line()`` is what the CLI prints."""
    return choose_threads(requested, workers=len(devices) if devices else None)


def run_search(search: Search, progress: Progress | None = None, enqueue: bool = True,
               share: Budget | None = None) -> optuna.Study:
    """Open (or resume) the study, run trials in this process until the study holds its target (``budget``;
    a worker: its ``share`` of the parent's), then race the best designs to a verdict (``search.confirm``)."""
    set_threads(search.threads)  # a worker's were chosen by its parent (_for_worker)
    data = load_data(search.dataset_name, search.data_dir)
    with _storage_writable(search.storage_url), interrupt.deferred():  # Ctrl-C: after a step or a trial
        return _run_search(search, progress or Progress(), data, enqueue, share)


def _run_search(search: Search, progress: Progress, data, enqueue: bool, share: Budget | None) -> optuna.Study:
    study = open_study(search)
    if enqueue:
        prepare(study, search)
    plan = share or _announce(budget(study, search), progress)
    objective = Objective(search, data, artifact_store(search.storage_url), on_epoch=progress.on_epoch)
    objective.queue_only = objective.queue_only or plan.queue
    fidelity, target = FidelityCheck(search, progress.on_fidelity), Target(plan)
    fidelity.apply(study)
    started = time.monotonic()
    with _frozen_heap():
        if not plan.done:  # no n_trials: trials that do not count (a waiting confirmation run) add none
            with enqueued_only(study, objective.queue_only):
                study.optimize(objective, timeout=search.timeout, catch=(Exception,),
                               callbacks=[fidelity, target, *progress.callbacks, _take_ctrl_c])

        def run_queue(n: int) -> bool:
            left = None if search.timeout is None else search.timeout - (time.monotonic() - started)
            if left is not None and left <= 0:
                return False
            objective.queue_only = True  # the race runs its enqueued runs, nothing the sampler draws
            before = _finished(study)
            with enqueued_only(study):
                study.optimize(objective, n_trials=n, timeout=left, catch=(Exception,),
                               callbacks=[*progress.callbacks, _take_ctrl_c])
            return _finished(study) > before

        _after_budget(study, search, run_queue)
    keep_top_weights(study, objective.store, search.storage_url)  # exactly the top k, as raced
    if objective.disk_full:
        raise StudyError(f"search stopped: disk full? {objective.disk_full}")
    write_note(study, search.space)
    return study


def _after_budget(study: optuna.Study, search: Search, run_queue: Callable[[int], bool]) -> None:
    """The fixed repeats (``search.repeats``), else the race round by round (resnas.racing), each round's
    enqueued runs trained by ``run_queue(n)``, which says whether any finished (else the race waits for a
    later run: a timeout, runs that fail)."""
    if n := enqueue_repeats(study, search):
        run_queue(n)
    while (n := race_round(study, search)) and run_queue(n):
        pass


def _take_ctrl_c(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    interrupt.check()  # the trial is recorded: stopping here leaves the study whole


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


@contextlib.contextmanager
def _storage_writable(url: str):
    """A storage that cannot be written any more (a full disk) ends the run in one line; the trial it could
    not record is left RUNNING, for the next run to find its worker dead and retry it (resnas.workers)."""
    try:
        yield
    except (optuna.exceptions.StorageInternalError, OSError, AssertionError) as e:
        # Optuna's "Should not reach." assertion stands in front of the storage error that tell() raised
        cause = e.__context__ if isinstance(e, AssertionError) else e
        if cause is None:
            raise
        raise StudyError(f"storage: cannot write {mask_url(url)}: {first_line(cause)}"
                         f"{disk_note(local_file(url), cause)}") from None


def _announce(plan: Budget, progress: Progress) -> Budget:
    if progress.on_budget is not None:
        progress.on_budget(plan)
    return plan


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


def run_workers(search: Search, devices: list[str], progress: Progress | None = None) -> optuna.Study:
    """One worker process per device (``cuda:0``, ``cuda:1``, ... or ``cpu`` several times) on one study.

    The study is created and a grid enqueued here, once; the run's budget (the trials the study lacks, or
    the epochs) is shared out among the workers, which also share the study's target, then the race's
    rounds run, each shared out alike. ``progress.poll(study)`` is called about every second while they run (the CLI's
    display); the workers report nothing themselves.
    """
    progress = progress or Progress()
    load_data(search.dataset_name, search.data_dir)  # fail here, once, on missing data
    study = open_study(search)
    prepare(study, search)
    plan = _announce(budget(study, search), progress)
    if not plan.done:
        _launch(search, devices, plan, progress.poll, study)

    def run_queue(n: int) -> bool:
        before = _finished(study)
        _launch(search, devices, Budget(None, queue=True), progress.poll, study)
        return _finished(study) > before

    _after_budget(study, search, run_queue)
    keep_top_weights(study, artifact_store(search.storage_url), search.storage_url)  # workers that finished at once
    write_note(study, search.space)
    return study


def _launch(search: Search, devices: list[str], plan: Budget, poll, study) -> None:
    """Run ``plan`` shared out among one process per device; wait."""
    def share(total: int | None, i: int) -> int | None:
        return None if total is None else total // len(devices) + (i < total % len(devices))

    count = threads(search.threads, devices).count
    ctx = _context()
    queue = plan.queue or search.space.sampler == "grid"  # every worker takes waiting trials until none waits
    workers = []
    for i, device in enumerate(devices):
        part = dataclasses.replace(plan, trials=None if queue else share(plan.trials, i),
                                   epochs=share(plan.epochs, i))
        if not part.done:
            workers.append(ctx.Process(target=_worker, args=(_for_worker(search, device, count), part, device),
                                       daemon=True))
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers):
        for w in workers:
            w.join(timeout=1.0 / len(workers))
        if poll is not None:
            poll(study)


def run_distributed(search: Search, progress: Progress | None = None) -> optuna.Study | None:
    """Under ``accelerate launch``: every process trains each trial together, the main one drives Optuna.

    Suggestions, reports and pruning decisions go through ``optuna_integration.TorchDistributedTrial``,
    so all ranks build the same candidate and stop it at the same epoch. Returns the study on the main
    process and None on the others.
    """
    # joins the process group accelerate launch set up (on CPUs PartialState needs to be told so)
    progress = progress or Progress()
    set_threads(search.threads)  # accelerate launch sets OMP_NUM_THREADS for its ranks: that, or --threads
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    data = load_data(search.dataset_name, search.data_dir)
    store = artifact_store(search.storage_url) if state.is_main_process else None
    objective = Objective(search, data, store, distributed=True, on_epoch=progress.on_epoch)
    study, plan = None, Budget(0)
    if state.is_main_process:  # the main process decides when to stop; the others follow (_drive)
        study = open_study(search)
        prepare(study, search)
        plan = _announce(budget(study, search), progress)
    fidelity = FidelityCheck(search, progress.on_fidelity)
    with _frozen_heap():
        if state.is_main_process:
            fidelity.apply(study)
        _drive(study, objective, Target(plan), [fidelity, *progress.callbacks])
        objective.queue_only = True  # the repeats, then the race's rounds: until each round's queue is empty
        main = state.is_main_process
        n = (enqueue_repeats(study, search) or race_round(study, search)) if main else 0
        while _broadcast(bool(n)):  # the main process decides; the others follow
            before = _finished(study) if main else 0
            _drive(study, objective, Target(Budget(None)), list(progress.callbacks))
            n = race_round(study, search) if main and _finished(study) > before else 0
    if state.is_main_process:
        keep_top_weights(study, store, search.storage_url)
        write_note(study, search.space)
    dist.barrier()
    dist.destroy_process_group()  # gloo's threads live on: the process ends without finalization (resnas.ranks)
    return study


def _drive(study: optuna.Study | None, objective: Objective, target: Target, callbacks: list) -> None:
    """Trials together on every rank until the main process (``study`` not None) reaches its ``target``
    (or the queue runs empty); the main process decides, every rank follows."""
    while _broadcast(study is None or not target.reached):
        trial = _ask(study, objective.queue_only) if study is not None else None
        if not _broadcast(study is None or trial is not None):
            break  # the queue ran empty
        try:
            if _broadcast(study is not None and _surplus(trial)):
                raise Surplus("a copy of another trial's job")  # every rank skips it; the main one recorded why
            with quiet():  # its ExperimentalWarning, once per trial and process
                distributed_trial = TorchDistributedTrial(trial)
            values, trial_state = objective(distributed_trial, real_trial=trial), TrialState.COMPLETE
        except optuna.TrialPruned:
            values, trial_state = None, TrialState.PRUNED
        except Exception:  # recorded by the objective; the search goes on
            values, trial_state = None, TrialState.FAIL
        if study is not None:
            frozen = study.tell(trial, values, state=trial_state)
            target.add(study, frozen)
            for callback in callbacks:
                callback(study, frozen)
        dist.barrier()


def _ask(study: optuna.Study, queue_only: bool) -> optuna.Trial | None:
    """A new trial; None when only enqueued ones may run and none waits."""
    with enqueued_only(study, queue_only):
        return study.ask()
    return None


def _surplus(trial: optuna.Trial) -> bool:
    try:
        end_if_surplus(trial)
        return False
    except Surplus:
        return True


def _broadcast(value):
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _for_worker(search: Search, device: str, count: int) -> Search:
    """The search one worker process runs, on its device with its share of the threads; the race is the
    parent's, after every worker has finished."""
    return dataclasses.replace(search, storage=search.storage_url, study_name=search.name, confirm=0, device=device,
                               threads=count)


def _context():
    """forkserver where the platform has it, preloaded with this module: torch, optuna and resnas are imported
    once, in the server, instead of in every worker (spawn); never fork: CUDA and forked processes do not mix."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def _worker(search: Search, share: Budget, device: str) -> None:
    if device.startswith("cuda"):
        os.environ["CUDA_VISIBLE_DEVICES"] = device.partition(":")[2] or "0"
    else:
        os.environ["ACCELERATE_USE_CPU"] = "1"
    quiet_logs()
    run_search(search, enqueue=False, share=share)
