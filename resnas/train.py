"""Trains one candidate with Accelerate and reports each epoch through a plain callback.

The same code runs on the CPU, one GPU, and several processes under ``accelerate launch``. A
candidate that diverges (the paper's "fail" rows of Table 1) or runs out of GPU memory ends with a
status instead of an exception, so a search can go on::

    >>> from resnas.data import load_data
    >>> result = train("depth=8,widths=8-16-32", load_data("digits"), epochs=1, recipe=Recipe.digits())
    >>> result.status, len(result.val_error)
    ('ok', 1)

``on_epoch(report)`` may end training early (a search pruning a candidate): return True, or raise
``StopTraining(reason, status="pruned")``. Either ends the run with that status and no exception.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from safetensors import safe_open
from safetensors.torch import save_file
from torch.optim.lr_scheduler import ChainedScheduler, ConstantLR, CosineAnnealingLR, MultiStepLR

from .data import Data
from .errors import first_line
from .files import CHECKSUM, follow_umask, tensor_sha256
from .network import build, count_macs, count_params
from .recipe import Recipe
from .spec import ArchSpec
from .status import TRAINED

__all__ = ["CHECKPOINT", "STATUSES", "CheckpointError", "CheckpointWriteError", "Diverged", "EpochReport",
           "ResumeError", "StopTraining", "TrainResult", "checkpoint_epoch", "checkpoint_history", "default_precision",
           "evaluate", "make_scheduler", "resumed_budget", "train", "train_epoch"]

STATUSES = tuple(s.value for s in TRAINED)  # how a run ends: resnas.status
CHECK_EVERY = 20  # steps between divergence checks: each check waits for the GPU
CHECKPOINT = "checkpoint.safetensors"


@dataclass(frozen=True)
class EpochReport:
    """What ``on_epoch`` sees after each epoch (the same on every process)."""

    epoch: int  # 1-based
    epochs: int
    train_loss: float  # mean over the epoch's iterations and processes
    val_error: float
    val_loss: float
    lr: float  # the rate the epoch's first iteration trained at
    seconds: float  # training and validation


class StopTraining(Exception):
    """Raised by ``on_epoch`` to end training now; the result gets ``status`` and ``reason``."""

    def __init__(self, reason: str = "stopped by on_epoch", status: str = "stopped"):
        super().__init__(reason)
        self.reason, self.status = reason, status


@dataclass
class TrainResult:
    """The outcome of one training run; ``status`` is one of STATUSES."""

    status: str
    reason: str
    epochs: int  # completed
    train_loss: list[float]
    val_error: list[float]
    val_loss: list[float]
    epoch_seconds: list[float]
    seconds: float
    params: int
    macs: int
    spec: str | None = None
    test_error: float | None = None
    model: nn.Module | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}


class Diverged(Exception):
    """Raised by train_epoch on a NaN, inf or too large loss; train() turns it into status 'diverged'."""


class CheckpointError(ValueError):
    """An epoch checkpoint that cannot be resumed (damaged, another run's) or written (a full disk): one line
    naming the file, which is left as it was."""


class CheckpointWriteError(CheckpointError):
    """An epoch checkpoint that could not be written (a full disk): every next candidate would fail alike."""


def default_precision() -> str:
    """bf16 autocast where the GPU supports it, full precision elsewhere."""
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int, epochs: int):
    """The recipe's learning-rate schedule, stepped once per iteration, over ``schedule_epochs``.

    >>> opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> sched = make_scheduler(opt, Recipe(warmup_iters=2), steps_per_epoch=2, epochs=4)
    >>> lrs = []
    >>> for _ in range(8):
    ...     lrs.append(round(opt.param_groups[0]["lr"], 6)); opt.step(); sched.step()
    >>> lrs
    [0.01, 0.01, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    """
    total = (recipe.schedule_epochs or epochs) * steps_per_epoch
    if recipe.schedule == "step":
        main = MultiStepLR(optimizer, [round(m * total) for m in recipe.milestones], gamma=recipe.gamma)
    else:
        main = CosineAnnealingLR(optimizer, T_max=total)
    if recipe.warmup_iters == 0:
        return ChainedScheduler([main])
    warmup = ConstantLR(optimizer, factor=recipe.warmup_lr / recipe.lr, total_iters=recipe.warmup_iters)
    return ChainedScheduler([warmup, main])


def train(model: ArchSpec | str | nn.Module, data: Data, epochs: int, recipe: Recipe | None = None, *,
          seed: int = 0, on_epoch: Callable[[EpochReport], bool | None] | None = None,
          checkpoint_dir: str | os.PathLike | None = None, mixed_precision: str | None = None,
          channels_last: bool | None = None, torch_compile: bool = False, test: bool = False,
          on_step: Callable[[int, int], None] | None = None, resume: bool | None = None) -> TrainResult:
    """Train ``model`` (a spec, its string, or a module) on ``data`` for ``epochs`` epochs.

    A spec is built for the data's channels and classes. With ``checkpoint_dir`` the state is saved
    after every epoch and a run finding a checkpoint there resumes from it. ``test`` also reports
    the error on the test split at the end. ``on_step(done, total)`` follows the training iterations (of
    epochs x steps per epoch); ``on_epoch`` and ``on_step`` are called on every process. ``resume`` applies
    :func:`resumed_budget`'s rules to ``checkpoint_dir`` (None: a checkpoint there is continued silently).
    ``mixed_precision`` defaults to bf16 where the GPU has it, ``channels_last`` to on with CUDA.
    """
    recipe = recipe or Recipe()
    if resume is not None and checkpoint_dir is not None:
        resumed_budget(checkpoint_dir, epochs, recipe.schedule_epochs, resume)
    _check_budget(epochs, recipe)
    accelerator = Accelerator(mixed_precision=mixed_precision or default_precision(),
                              dataloader_config=DataLoaderConfiguration(non_blocking=True))
    set_seed(seed)  # the same seed on every process: ranks draw the same numbers, so one RNG state resumes all
    model, spec = _model(model, data)
    params, macs = count_params(model), count_macs(model, data.input_size)
    if accelerator.device.type == "cuda" if channels_last is None else channels_last:
        model = model.to(memory_format=torch.channels_last)  # NHWC: what tensor cores want for convs
    run = dict(spec=spec, recipe=dataclasses.asdict(recipe), seed=seed, data=data.name,
               schedule_epochs=recipe.schedule_epochs or epochs)
    history = dict(train_loss=[], val_error=[], val_loss=[], epoch_seconds=[])
    start = time.perf_counter()
    try:
        status, reason, test_error = _fit(accelerator, model, data, epochs, recipe, run, history, on_epoch,
                                          checkpoint_dir, torch_compile, test, on_step)
        # no rank leaves before every rank has read the checkpoint: a caller may delete it next (the objective
        # does), and a rank resumed with nothing left to train reaches that with no collective on its way
        accelerator.wait_for_everyone()
    except torch.cuda.OutOfMemoryError as e:
        status, reason, test_error, model = "oom", first_line(e), None, None
    result = TrainResult(status, reason, len(history["train_loss"]), seconds=time.perf_counter() - start,
                         params=params, macs=macs, spec=spec, test_error=test_error, model=model, **history)
    accelerator.free_memory()  # and gc.collect(); outside the except block: its traceback no longer pins tensors
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def _fit(accelerator, model: nn.Module, data: Data, epochs: int, recipe: Recipe, run: dict, history: dict,
         on_epoch, checkpoint_dir, torch_compile: bool, test: bool, on_step) -> tuple[str, str, float | None]:
    """The training proper; fills ``history`` in place and returns (status, reason, test error)."""
    raw_model = model
    raw_optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                    weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)
    generator = torch.Generator().manual_seed(run["seed"])  # the training order; saved in checkpoints
    train_loader = data.loader("train", recipe.batch_size, device=accelerator.device, generator=generator)
    val_loader = data.loader("val", 2 * recipe.batch_size, device=accelerator.device)
    model, optimizer, train_loader, val_loader = accelerator.prepare(
        torch.compile(model) if torch_compile else model, raw_optimizer, train_loader, val_loader)
    if len(train_loader) == 0:
        raise ValueError(f"batch_size: {recipe.batch_size} exceeds the {len(data.train)} training images "
                         f"({accelerator.num_processes} processes)")
    # The scheduler stays outside prepare: it is stepped once per iteration on every process.
    scheduler = make_scheduler(raw_optimizer, recipe, len(train_loader), epochs)
    path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    if path is not None and path.exists():
        history.update(load_checkpoint(path, raw_model, raw_optimizer, scheduler, generator, run))

    steps, total = len(train_loader), epochs * len(train_loader)
    try:
        for epoch in range(len(history["train_loss"]), epochs):
            t0 = time.perf_counter()
            step = _step_counter(on_step, epoch * steps, total)
            lr = scheduler.get_last_lr()[0]  # the rate this epoch trains at (steps may lower it at its end)
            loss = train_epoch(accelerator, model, train_loader, optimizer, scheduler, recipe.max_loss, step)
            val_error, val_loss = evaluate(accelerator, model, val_loader)
            report = EpochReport(epoch + 1, epochs, loss, val_error, val_loss, lr,
                                 time.perf_counter() - t0)
            history["train_loss"].append(loss)
            history["val_error"].append(val_error)
            history["val_loss"].append(val_loss)
            history["epoch_seconds"].append(report.seconds)
            if path is not None:
                save_checkpoint(path, accelerator, raw_model, raw_optimizer, scheduler, generator, run, history)
            stop = _agreed_stop(accelerator, _ask(on_epoch, report))
            if stop is not None:
                return stop.status, stop.reason, None
    except Diverged as e:
        return "diverged", str(e), None
    if not test or data.test is None:
        return "ok", f"trained {epochs} epochs", None
    test_loader = accelerator.prepare(data.loader("test", 2 * recipe.batch_size, device=accelerator.device))
    return "ok", f"trained {epochs} epochs", evaluate(accelerator, model, test_loader)[0]


def _check_budget(epochs: int, recipe: Recipe) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: {epochs!r} must be a positive integer")
    if recipe.schedule_epochs is not None and epochs > recipe.schedule_epochs:
        raise ValueError(f"epochs: {epochs} exceeds schedule_epochs={recipe.schedule_epochs}, "
                         "the budget the schedule is defined on")


def _model(model: ArchSpec | str | nn.Module, data: Data) -> tuple[nn.Module, str | None]:
    if isinstance(model, nn.Module):
        spec = getattr(model, "spec", None)
        return model, None if spec is None else str(spec)
    spec = ArchSpec.parse(model) if isinstance(model, str) else model
    spec = spec.replace(in_chans=data.input_size[0], num_classes=data.num_classes)
    return build(spec), str(spec)


def train_epoch(accelerator, model: nn.Module, loader, optimizer, scheduler, max_loss: float,
                on_step: Callable[[], None] = lambda: None) -> float:
    """One pass over ``loader``; the mean train loss over processes.

    Raises Diverged within CHECK_EVERY steps of a loss that is NaN, inf or above ``max_loss``.
    """
    model.train()
    total = torch.zeros((), device=accelerator.device)
    peak = torch.zeros((), device=accelerator.device)  # NaN-propagating max since the last check
    steps = 0
    for steps, (x, y) in enumerate(loader, start=1):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        total += loss.detach()
        peak = torch.maximum(peak, loss.detach())
        if steps % CHECK_EVERY == 0:
            _check(accelerator, peak, max_loss, steps)
        on_step()
    _check(accelerator, peak, max_loss, steps)
    return accelerator.reduce(total, "mean").item() / max(steps, 1)


def _check(accelerator, peak: torch.Tensor, max_loss: float, step: int) -> None:
    worst = accelerator.gather(peak.float().reshape(1))
    bad = worst[~torch.isfinite(worst) | (worst > max_loss)]
    if len(bad):
        raise Diverged(f"train loss {bad[0].item():.4g} at step {step} of the epoch (limit {max_loss:g})")
    peak.zero_()


@torch.no_grad()
def evaluate(accelerator, model: nn.Module, loader) -> tuple[float, float]:
    """Error rate and mean loss over the whole split, gathered from all processes."""
    model.eval()
    wrong = torch.zeros((), device=accelerator.device)
    loss_sum = torch.zeros((), device=accelerator.device)
    count = 0
    for x, y in loader:
        logits = model(x)
        losses = F.cross_entropy(logits.float(), y, reduction="none")
        pred, y, losses = accelerator.gather_for_metrics((logits.argmax(1), y, losses))
        wrong += (pred != y).sum()
        loss_sum += losses.sum()
        count += len(y)
    return wrong.item() / count, loss_sum.item() / count


def _ask(on_epoch, report: EpochReport) -> StopTraining | None:
    if on_epoch is None:
        return None
    try:
        stop = on_epoch(report)
    except StopTraining as e:
        return e
    return StopTraining(f"on_epoch stopped training after epoch {report.epoch}") if stop else None


def _agreed_stop(accelerator, stop: StopTraining | None) -> StopTraining | None:
    """Every process stops when one does, or the others would wait forever in the next collective."""
    if stop is not None and stop.status not in STATUSES:
        raise ValueError(f"StopTraining status: {stop.status!r} is unknown; allowed: {', '.join(STATUSES)}")
    anyone = accelerator.gather(torch.tensor([stop is not None], device=accelerator.device)).any().item()
    return stop or (StopTraining("stopped by on_epoch on another process") if anyone else None)


def _step_counter(on_step, done: int, total: int) -> Callable[[], None]:
    """``train_epoch``'s per-step hook: tells ``on_step`` the iterations done of ``total``."""
    if on_step is None:
        return lambda: None
    count = iter(range(done + 1, total + 1))
    return lambda: on_step(next(count, total), total)


# ---- checkpoints: tensors in safetensors, everything else as JSON in its header ---------------------------
def save_checkpoint(path: Path, accelerator, model: nn.Module, optimizer, scheduler, generator: torch.Generator,
                    run: dict, history: dict) -> None:
    """Write the whole training state atomically (temp file + os.replace); main process only writes."""
    if accelerator.is_main_process:
        state = dict(run=run, epoch=len(history["train_loss"]), history=history, model=model.state_dict(),
                     optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), rng=_rng_state(generator))
        tensors: dict[str, torch.Tensor] = {}
        header = json.dumps(_encode(state, "", tensors))
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(tensors, tmp, metadata={"resnas": header, CHECKSUM: tensor_sha256(tensors, header)})
            follow_umask(tmp)
            os.replace(tmp, path)
        except Exception as e:  # OSError, or safetensors' own error for a write that failed (a full disk)
            tmp.unlink(missing_ok=True)
            why = (str(e).splitlines() or [type(e).__name__])[0]
            raise CheckpointWriteError(f"checkpoint: cannot write {path} ({why}); {_free_mib(path.parent)} MiB free on "
                                  "its disk") from None
    accelerator.wait_for_everyone()


def _free_mib(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:,.1f}"
    except OSError:
        return "?"


def checkpoint_epoch(path: Path) -> int | None:
    """The epochs a checkpoint holds, or None when there is none (or it is unreadable)."""
    history = checkpoint_history(path)
    return None if history is None else len(history["train_loss"])


def checkpoint_history(path: Path) -> dict[str, list[float]] | None:
    """The per-epoch history a checkpoint holds (train_loss, val_error, val_loss, epoch_seconds), or None."""
    try:
        header, tensors = _read_checkpoint(path)
        return _decode(header["history"], tensors)
    except (OSError, ValueError, KeyError):
        return None


def _read_checkpoint(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    try:
        with safe_open(path, framework="pt") as f:
            text, expected = f.metadata()["resnas"], f.metadata().get(CHECKSUM)
            header = json.loads(text)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except OSError:
        raise
    except Exception as e:  # safetensors' own error type, bad JSON, missing header
        raise CheckpointError(f"checkpoint: {path} is unreadable (corrupt or truncated: {type(e).__name__}); "
                              "remove it to start over") from None
    if expected is not None and tensor_sha256(tensors, text) != expected:  # none: written before checksums
        raise CheckpointError(f"checkpoint: {path} is damaged (checksum mismatch: its data changed after it "
                              "was written); remove it to start over")
    return header, tensors


def load_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, generator: torch.Generator,
                    run: dict) -> dict:
    """Restore the state saved by save_checkpoint into the given objects; returns the history."""
    header, tensors = _read_checkpoint(path)
    state = _decode(header, tensors)
    saved, wanted = _comparable(state["run"]), _comparable(run)
    if saved != wanted:
        diff = sorted(k for k in wanted if saved.get(k) != wanted[k])
        if "schedule_epochs" in diff:  # the lr steps at fractions of it: another budget is another run
            diff[diff.index("schedule_epochs")] = (f"schedule_epochs: it was trained on a {saved['schedule_epochs']}-"
                                                   f"epoch schedule, this run is on {wanted['schedule_epochs']}")
        raise CheckpointError(f"checkpoint: {path} belongs to another run (differs in {', '.join(diff)}); "
                              "remove it or use another directory")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"], generator)
    return state["history"]


def _comparable(run: dict) -> dict:
    """A run as checkpoints compare it: a schedule budget given (``Recipe.schedule_epochs``) or defaulted to
    the epochs is the same budget, so a resumed run may name it either way."""
    run = json.loads(json.dumps(run))
    if isinstance(run.get("recipe"), dict) and "schedule_epochs" in run:
        run["recipe"]["schedule_epochs"] = run["schedule_epochs"]
    return run


def checkpoint_run(path: Path) -> dict | None:
    """What a checkpoint's run was (spec, recipe, seed, data, schedule_epochs), or None when it is unreadable."""
    try:
        return _read_checkpoint(path)[0]["run"]
    except (OSError, ValueError, KeyError):
        return None


class ResumeError(ValueError):
    """A checkpoint folder a run may not start or continue in; ``epochs`` is set when the run asked for more
    epochs than its schedule (a longer run is another run: a caller may say how to start it)."""

    def __init__(self, message: str, epochs: int | None = None):
        super().__init__(message)
        self.epochs = epochs


def resumed_budget(checkpoint_dir: str | os.PathLike, epochs: int | None, schedule_epochs: int | None,
                   resume: bool) -> tuple[int | None, int | None]:
    """The (epochs, schedule_epochs) a run in ``checkpoint_dir`` trains: without ``resume`` a folder holding a
    checkpoint is refused; with it, the run there continues on the schedule it started on, to its end unless
    ``epochs`` stops it sooner. The lr steps at fractions of that schedule, so a run trained to its end has
    already decayed its lr: more epochs would not make it a longer run, and are refused."""
    folder = str(checkpoint_dir)
    path = Path(folder) / CHECKPOINT
    if path.exists() and not resume:
        raise ResumeError(f"output: {folder} holds a checkpoint; pass --resume to continue it or choose another "
                          "--output")
    if not resume:
        return epochs, schedule_epochs
    if not path.exists():
        raise ResumeError(f"resume: {folder} holds no checkpoint to continue; without --resume it trains a fresh run")
    if (run := checkpoint_run(path)) is None:  # damaged: loading it says how, in one line
        return epochs, schedule_epochs
    schedule, held = int(run["schedule_epochs"]), checkpoint_epoch(path) or 0
    if schedule_epochs is not None and schedule_epochs != schedule:
        raise ResumeError(f"schedule-epochs: the run in {folder} is on a {schedule}-epoch schedule; another "
                          "schedule is another run: give another --output")
    epochs = epochs or schedule
    if epochs > schedule:
        raise ResumeError(f"epochs: --epochs {epochs} goes past the run's {schedule}-epoch schedule (its lr has "
                          f"decayed; a run started with --schedule-epochs {epochs} extends to {epochs})", epochs)
    if epochs < held:
        raise ResumeError(f"epochs: the run in {folder} has trained {held} epochs already; --resume continues it "
                          f"with --epochs {held} to {schedule}")
    return epochs, schedule


def _rng_state(generator: torch.Generator) -> dict:
    state = dict(torch=torch.get_rng_state(), loader=generator.get_state(), python=random.getstate())
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["loader"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _encode(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able form of a state dict; tensors go to ``tensors`` under their path."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        if isinstance(obj, Counter) or not all(isinstance(k, str) for k in obj):  # JSON keys must be strings
            return {"__items__": [[k, _encode(v, f"{path}/{k}", tensors)] for k, v in obj.items()],
                    "__counter__": isinstance(obj, Counter)}
        return {k: _encode(v, f"{path}/{k}", tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    return obj


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__float__" in obj:
            return float(obj["__float__"])
        if "__items__" in obj:
            items = {k: _decode(v, tensors) for k, v in obj["__items__"]}
            return Counter(items) if obj["__counter__"] else items
        return {k: _decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj
