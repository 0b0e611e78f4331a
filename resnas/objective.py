"""One trial of a search, in named steps: suggest -> twin? -> probe -> train -> record -> keep weights.

The :class:`Objective` is what ``study.optimize`` calls; every setting comes through its constructor.
What a trial keeps is its :class:`~resnas.record.TrialRecord`: the spec string, the ``timm.create_model``
call that rebuilds it, params, MACs, per-epoch train loss / validation error / seconds, the device, its
training seed (``design_seed``), its status and reason. One run of each of the best designs
(resnas.kept) keeps its weights as Optuna artifacts beside the database.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from . import interrupt
from .config import Search
from .designs import as_completed
from .kept import keep_top_weights, keep_weights, ranks_top
from .network import build
from .probe import probe, reference
from .recipe import design_seed, search_recipe
from .record import (
    INTERRUPTED,
    TrialRecord,
    duplicate_reason,
    error_reason,
    probe_deviation_reason,
    probe_reason,
    pruned_reason,
    trained,
)
from .status import Status
from .storage import artifact_root
from .train import CHECKPOINT, CheckpointWriteError, StopTraining, checkpoint_history, train
from .workers import Heartbeat, surplus_reason

__all__ = ["CandidateFailed", "Objective", "PROBE_BATCH", "Surplus", "checkpoint_dir", "default_device",
           "end_if_surplus"]

PROBE_BATCH = 32  # images in the batch every candidate is probed on


def default_device() -> str:
    """Where this process trains and probes: its GPU when it has one (a worker sees only its own)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def checkpoint_dir(search: Search, spec, job: str) -> Path:
    """Where a candidate's epoch checkpoints live: beside the artifacts, keyed by study, design and job
    (resnas.workers): whichever trial runs the job next (a retry, a second copy) resumes there, and two
    trials that drew the same design at once keep apart."""
    key = hashlib.sha1(f"{search.name}\n{spec}\n{search.max_epochs}\n{job}".encode()).hexdigest()[:20]
    return artifact_root(search.storage_url) / "checkpoints" / key


class Objective:
    """One trial in named steps: suggest -> twin? -> probe -> train -> record -> keep weights.

    ``store`` is the artifact store for the top-k weights (None: keep none, as on the ranks of a
    distributed run other than the main one); ``distributed``: every rank gets a TorchDistributedTrial;
    ``on_epoch(trial_number, EpochReport)`` follows training (a live display).
    """

    def __init__(self, search: Search, data, store=None, distributed: bool = False, on_epoch=None):
        self.search, self.data, self.store, self.distributed = search, data, store, distributed
        self.on_epoch = on_epoch
        self.recipe = search_recipe(data.name, search.space.recipe, search.max_epochs)
        self.seed = search.run_seed
        self.probe_batch = None  # one validation batch, taken by the first probe
        self.reference_gains: dict[str, float] = {}
        self.queue_only = search.space.sampler == "grid"  # only enqueued trials run (a grid; a confirmation):
        # the runners ask under study.enqueued_only
        self.disk_full: str | None = None  # why the search stopped: an epoch checkpoint did not fit

    def __call__(self, trial: optuna.Trial, real_trial: optuna.Trial | None = None):
        """``real_trial``: the Optuna trial behind a TorchDistributedTrial (main process only)."""
        owner = real_trial if real_trial is not None else trial
        if not self.distributed:  # a distributed run decides this on the main process first (runners)
            end_if_surplus(trial)
        try:
            if not isinstance(owner, optuna.Trial):  # the ranks of a distributed run but the main one
                return self._run(trial, real_trial)
            with Heartbeat(owner, self.search.heartbeat_seconds):
                return self._run(trial, real_trial)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:  # Ctrl-C: Optuna marks the trial FAIL; the next run retries it
            TrialRecord(status=Status.FAILED, reason=INTERRUPTED).save(trial, "status", "reason")
            raise
        except Exception as e:  # recorded with its reason; the search goes on (study.optimize catch)
            if TrialRecord.from_trial(trial).status in (None, Status.RUNNING):
                TrialRecord(status=Status.FAILED, reason=error_reason(e)).save(trial, "status", "reason")
            if isinstance(e, CheckpointWriteError) and isinstance(owner, optuna.Trial):
                self.disk_full = str(e)  # but not on a full disk: every next candidate would fail alike
                owner.study.stop()
            raise

    def _run(self, trial: optuna.Trial, real_trial: optuna.Trial | None):
        record = TrialRecord.from_trial(trial)  # a retry starts from the attributes it was given
        spec = self.suggest(trial, record)
        if not self.distributed and (twin := self._completed_twin(trial, str(spec), record.repeat or 0)) is not None:
            return self.repeat(trial, record, twin)
        record.status = Status.RUNNING
        record.save(trial, "status")
        self.probe(trial, record, spec)
        result = self.train(trial, record, spec)
        error = self.record(trial, record, result)
        values = [error] + [float(getattr(result, o)) for o in self.search.space.objectives[1:]]
        if result.status == Status.OK:
            self.keep(real_trial if real_trial is not None else trial, values, result.model)
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
        record.device = self.search.device or default_device()
        record.save(trial, "spec", "timm", "device")
        return spec

    @staticmethod
    def _completed_twin(trial: optuna.Trial, spec: str, repeat: int) -> optuna.trial.FrozenTrial | None:
        """A completed trial of the same design and repeat: training is seeded by both, so it would be a rerun."""
        for done in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if done.user_attrs.get("spec") == spec and (done.user_attrs.get("repeat") or 0) == repeat \
                    and trained(done):
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
        device = default_device()
        torch.manual_seed(self.seed)
        result = probe(build(spec).to(device), *self.probe_batch, seed=self.seed)
        record.probe_gain, record.probe_slope = round(result.gain, 4), round(result.slope, 5)
        record.probe_shortcut_term = result.shortcut_term
        record.probe_grad_norms = [float(f"{g:.4g}") for g in result.grad_norms]
        record.save(trial, "probe_gain", "probe_slope", "probe_shortcut_term", "probe_grad_norms")
        limit, deviation = self.search.probe_max_gain, self.search.probe_max_deviation
        reason = None
        if limit is not None and not abs(result.gain) <= limit:
            reason = probe_reason(result.gain, limit)
        elif deviation is not None:
            # two-sided: failing shortcuts gain too much, exclusive gates far too little (BENCHMARKS.md)
            record.probe_vs_reference = round(result.gain - self.reference_gain(spec, device), 4)
            record.save(trial, "probe_vs_reference")
            if not abs(record.probe_vs_reference) <= deviation:
                reason = probe_deviation_reason(record.probe_vs_reference, deviation)
        if reason is not None:
            record.status, record.reason = Status.PRUNED, reason
            record.save(trial, "status", "reason")
            raise optuna.TrialPruned(record.reason)

    def reference_gain(self, spec, device: str) -> float:
        """The probe gain of ``spec``'s reference net (identity, full pre-activation, same depth), probed
        as the candidates are (same batch and seed), once per reference."""
        ref = reference(spec)
        if str(ref) not in self.reference_gains:
            torch.manual_seed(self.seed)
            self.reference_gains[str(ref)] = probe(build(ref).to(device), *self.probe_batch, seed=self.seed).gain
        return self.reference_gains[str(ref)]

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
            if self.on_epoch is not None:
                self.on_epoch(trial.number, report)
            last = report.epoch == self.search.max_epochs  # a fully trained candidate completes
            # a race run (any repeat, 0 included) is trained to the full budget: it measures the design's spread
            if single and not last and record.repeat is None and trial.should_prune():
                raise StopTraining(pruned_reason(space.pruner, report.epoch), status=Status.PRUNED.value)

        # a drawn trial's job is its own number; retries (and copies of an enqueued job) carry theirs
        if record.checkpoint_of is None:
            record.checkpoint_of = trial.number
        record.job = record.job or f"trial:{trial.number}"
        record.save(trial, "checkpoint_of", "job")
        checkpoints = checkpoint_dir(self.search, spec, record.job)
        # a retry's history is whole: the epochs its checkpoint holds, then its own; reported, so that the
        # pruner and the fidelity check see them
        history = checkpoint_history(checkpoints / CHECKPOINT)
        if history and history["train_loss"]:
            record.resumed_from_epoch = len(history["train_loss"])
            record.val_error, record.train_loss = list(history["val_error"]), list(history["train_loss"])
            record.epoch_seconds = [round(s, 3) for s in history["epoch_seconds"]]
            record.save(trial, "resumed_from_epoch", "val_error", "train_loss", "epoch_seconds")
            for epoch, error in enumerate(record.val_error, start=1):
                if single:
                    trial.report(error, epoch)
        # the seed follows the repeat, so a retried trial resumes the same run from its checkpoint;
        # recorded, so that export retrains exactly this run
        record.seed = design_seed(self.seed, record.repeat or 0)
        record.save(trial, "seed")
        result = train(spec, self.data, self.search.max_epochs, self.recipe, seed=record.seed, on_epoch=on_epoch,
                       checkpoint_dir=checkpoints, on_step=lambda done, total: interrupt.check())
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

    def keep(self, owner, values: list[float], model) -> None:
        """Keep the weights of a trial whose design ranks among the top k (resnas.kept), then only the top k's;
        the process that owns the Optuna trial does (the main one of a distributed run)."""
        if self.store is None or not isinstance(owner, optuna.Trial):
            return
        url, finishing = self.search.storage_url, as_completed(owner, values)
        if ranks_top(owner.study, finishing, url):
            keep_weights(owner, self.store, model, **self.data.pretrained_cfg())
            keep_top_weights(owner.study, self.store, url, finishing)


class Surplus(RuntimeError):
    """A trial that must not train: a second copy of an enqueued job (resnas.workers); recorded FAIL, status surplus."""


def end_if_surplus(trial) -> None:
    """End a surplus trial before it draws or trains anything (status ``surplus`` with the reason)."""
    reason = surplus_reason(trial.study, trial)
    if reason is not None:
        TrialRecord(status=Status.SURPLUS, reason=reason).save(trial, "status", "reason")
        raise Surplus(reason)


class CandidateFailed(RuntimeError):
    """A candidate that could not be trained (out of memory); the trial is recorded FAIL with its reason."""
