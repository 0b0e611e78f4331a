"""What became of a trial, one enum: the stored ``status`` value is the member's string. Below the trainer,
which ends a run with one of ``TRAINED``, and the trial record, which stores any of them."""

from __future__ import annotations

import enum

__all__ = ["TRAINED", "Status"]


class Status(str, enum.Enum):
    """What became of a trial; the stored ``status`` value is the member's string."""

    RUNNING = "running"  # the candidate is being probed and trained; FAIL with it means its worker died
    OK = "ok"  # trained its full budget; the value is its final validation error
    PRUNED = "pruned"  # stopped early by the pruner (Hyperband, median) or by the probe before training
    DIVERGED = "diverged"  # the loss became NaN / inf; completed at chance error (the paper's "fail" rows)
    OOM = "oom"  # did not fit the device's memory; the trial is FAIL with the reason
    STOPPED = "stopped"  # the trainer's callback stopped it for another reason than pruning (resnas.train)
    FAILED = "failed"  # raised (the reason says what), or was interrupted by Ctrl-C (reason "interrupted")
    DUPLICATE = "duplicate"  # the same design as a completed trial: took its result, not retrained
    LOST = "lost"  # its worker died mid-trial (resnas.workers.reap); retried. Also read for FAIL trials still
    # "running" that earlier resnas versions left to Optuna's heartbeat check
    SURPLUS = "surplus"  # a second copy of an enqueued job (workers started together): ended at once, not trained

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__  # f"{Status.OK}" is "ok", as the stored value


TRAINED = (Status.OK, Status.DIVERGED, Status.OOM, Status.STOPPED, Status.PRUNED)  # how a training run can end
