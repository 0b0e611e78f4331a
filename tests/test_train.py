"""The trainer: the paper's recipe, convergence on digits, divergence, OOM, stopping, checkpoints, 2 processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from resnas.cli import main
from resnas.data import load_data
from resnas.recipe import Recipe
from resnas.train import CHECKPOINT, EpochReport, ResumeError, StopTraining, make_scheduler, resumed_budget, train

TINY = "depth=8,widths=8-16-32"


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def _lrs(recipe, steps_per_epoch, epochs, n):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    sched = make_scheduler(opt, recipe, steps_per_epoch, epochs)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_paper_recipe_warms_up_for_400_iterations_then_divides_by_10_at_half_and_three_quarters():
    lrs = _lrs(Recipe(), steps_per_epoch=100, epochs=10, n=1000)
    assert lrs[0] == lrs[399] == pytest.approx(0.01)
    assert lrs[400] == lrs[499] == pytest.approx(0.1)
    assert lrs[500] == pytest.approx(0.01) and lrs[749] == pytest.approx(0.01)
    assert lrs[750] == pytest.approx(0.001) and lrs[999] == pytest.approx(0.001)


def test_schedule_is_defined_on_the_max_budget_not_the_epochs_run():
    short = _lrs(Recipe.digits(schedule_epochs=8), steps_per_epoch=10, epochs=2, n=20)
    long = _lrs(Recipe.digits(schedule_epochs=8), steps_per_epoch=10, epochs=8, n=20)
    assert short == long == [0.1] * 20


def test_imagenet_and_cosine_recipes():
    lrs = _lrs(Recipe.imagenet(), steps_per_epoch=1, epochs=90, n=90)
    assert Recipe.imagenet().batch_size == 256
    assert lrs[29] == pytest.approx(0.1) and lrs[30] == pytest.approx(0.01) and lrs[60] == pytest.approx(0.001)
    cos = _lrs(Recipe.digits(schedule="cosine"), steps_per_epoch=10, epochs=10, n=100)
    assert cos[0] == pytest.approx(0.1) and cos[50] == pytest.approx(0.05) and cos[99] < 1e-4


@pytest.mark.parametrize("bad, match", [(dict(schedule="linear"), "allowed: step, cosine"),
                                        (dict(lr=0), "lr"), (dict(milestones=(0.75, 0.5)), "milestones"),
                                        (dict(batch_size=0), "batch_size")])
def test_recipe_rejects_bad_knobs(bad, match):
    with pytest.raises(ValueError, match=match):
        Recipe(**bad)


@pytest.mark.slow
def test_small_preact_net_reaches_95_percent_on_digits(digits):  # its time: benchmarks, not a timed test
    reports = []
    result = train("depth=8,widths=16-32-64", digits, epochs=15, recipe=Recipe.digits(), on_epoch=reports.append)
    assert result.status == "ok" and result.epochs == 15
    assert 1 - result.val_error[-1] >= 0.95
    assert result.seconds >= sum(result.epoch_seconds) > 0
    assert [r.epoch for r in reports] == list(range(1, 16)) and isinstance(reports[0], EpochReport)
    assert result.train_loss[-1] < result.train_loss[0]
    assert result.params == 77_562 and result.macs > 0 and "in_chans=1" in result.spec


def test_lr_100_diverges_without_raising(digits):
    result = train(TINY, digits, epochs=5, recipe=Recipe.digits(lr=100.0))
    assert result.status == "diverged"
    assert "train loss" in result.reason and result.epochs < 5
    assert len(result.val_error) == result.epochs


def test_same_seed_same_losses_on_cpu(digits):
    a = train(TINY, digits, epochs=2, recipe=Recipe.digits(), seed=3)
    b = train(TINY, digits, epochs=2, recipe=Recipe.digits(), seed=3)
    c = train(TINY, digits, epochs=2, recipe=Recipe.digits(), seed=4)
    assert a.train_loss == b.train_loss and a.val_error == b.val_error
    assert a.train_loss != c.train_loss


def test_resume_from_checkpoint_equals_the_uninterrupted_run(digits, tmp_path):
    recipe = Recipe.digits(schedule_epochs=3)
    whole = train(TINY, digits, epochs=3, recipe=recipe, checkpoint_dir=tmp_path / "whole")
    part = train(TINY, digits, epochs=2, recipe=recipe, checkpoint_dir=tmp_path / "part")
    assert part.epochs == 2
    resumed = train(TINY, digits, epochs=3, recipe=recipe, checkpoint_dir=tmp_path / "part")
    assert resumed.train_loss == whole.train_loss and resumed.val_error == whole.val_error
    for (k, w), r in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(w, r), k


def test_checkpoint_of_another_run_is_refused(digits, tmp_path):
    train(TINY, digits, epochs=1, recipe=Recipe.digits(schedule_epochs=2), checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT).exists() and not (tmp_path / (CHECKPOINT + ".tmp")).exists()
    with pytest.raises(ValueError, match="belongs to another run .*recipe"):
        train(TINY, digits, epochs=2, recipe=Recipe.digits(schedule_epochs=2, lr=0.05), checkpoint_dir=tmp_path)


def test_resume_rules_hold_in_the_python_api(digits, tmp_path):
    steps = []
    train(TINY, digits, epochs=1, recipe=Recipe.digits(schedule_epochs=2), checkpoint_dir=tmp_path,
          on_step=lambda done, total: steps.append((done, total)))
    assert [d for d, _ in steps] == list(range(1, steps[-1][1] + 1))  # every iteration of the run, in turn
    with pytest.raises(ResumeError, match="holds a checkpoint; pass --resume"):
        train(TINY, digits, epochs=2, recipe=Recipe.digits(schedule_epochs=2), checkpoint_dir=tmp_path, resume=False)
    with pytest.raises(ResumeError, match="goes past the run's 2-epoch schedule") as past:
        resumed_budget(tmp_path, 3, None, resume=True)
    assert past.value.epochs == 3
    with pytest.raises(ResumeError, match="on a 2-epoch schedule; another schedule is another run"):
        resumed_budget(tmp_path, None, 4, resume=True)
    assert resumed_budget(tmp_path, None, None, resume=True) == (2, 2)  # to the end of its own schedule
    assert resumed_budget(tmp_path / "new", 5, None, resume=False) == (5, None)  # nothing there: as asked


def test_on_epoch_can_prune_or_stop(digits):
    def prune(report):
        raise StopTraining(f"pruned at epoch {report.epoch}", status="pruned")

    pruned = train(TINY, digits, epochs=4, recipe=Recipe.digits(), on_epoch=prune)
    assert (pruned.status, pruned.reason, pruned.epochs) == ("pruned", "pruned at epoch 1", 1)
    stopped = train(TINY, digits, epochs=4, recipe=Recipe.digits(), on_epoch=lambda r: r.epoch == 2)
    assert stopped.status == "stopped" and stopped.epochs == 2


class _Hungry(nn.Module):
    """A network that asks for more GPU memory than there is once it trains (as a too-large candidate does)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        if self.training:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        return self.fc(x.flatten(1))


def test_out_of_memory_ends_with_status_oom(digits):
    result = train(_Hungry(), digits, epochs=2, recipe=Recipe.digits())
    assert result.status == "oom" and "out of memory" in result.reason
    assert result.model is None and result.epochs == 0


def test_test_error_is_reported_only_when_asked(digits):
    assert train(TINY, digits, epochs=1, recipe=Recipe.digits()).test_error is None
    result = train(TINY, digits, epochs=1, recipe=Recipe.digits(), test=True)
    assert 0 <= result.test_error <= 1
    assert json.dumps(result.to_dict())


def test_image_folder_trains_through_worker_loaders(image_folder):
    data = load_data("folder", image_folder, image_size=16, workers=1)
    result = train("depth=8,widths=4-8-16", data, epochs=2, recipe=Recipe.imagenet(batch_size=4), test=True)
    assert result.status == "ok" and result.epochs == 2
    assert "num_classes=2" in result.spec and result.macs > 0
    assert len(result.val_error) == 2 and 0 <= result.test_error <= 1


TWO_RANKS = """
import json, sys
from accelerate import PartialState
from resnas.data import load_data
from resnas.recipe import Recipe
from resnas.train import train
result = train("depth=8,widths=8-16-32", load_data("digits"), epochs=2, recipe=Recipe.digits(batch_size=64))
state = PartialState()
out = dict(result.to_dict(), rank=state.process_index, world=state.num_processes,
           kind=str(state.distributed_type))
open(f"{sys.argv[1]}/rank{state.process_index}.json", "w").write(json.dumps(out))
"""


def _two_ranks(source: str, folder: Path) -> list[dict]:
    """Run ``source`` under ``accelerate launch`` on 2 CPU processes; what each rank wrote to rank<i>.json."""
    script = folder / "two_ranks.py"
    script.write_text(source)
    launcher = Path(sys.executable).parent / "accelerate"
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    cmd = [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", "0",
           str(script), str(folder)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((folder / f"rank{i}.json").read_text()) for i in (0, 1)]


@pytest.mark.slow
def test_two_cpu_processes_under_accelerate_launch_agree_on_gathered_metrics(tmp_path):
    r0, r1 = _two_ranks(TWO_RANKS, tmp_path)
    assert (r0["world"], r1["rank"], r0["kind"]) == (2, 1, "DistributedType.MULTI_CPU")
    assert r0["status"] == "ok" and r0["epochs"] == 2
    for key in ("train_loss", "val_error", "val_loss"):
        assert r0[key] == r1[key], key
    # the val error is over all 288 validation images, gathered from both ranks
    assert all(abs(e * 288 - round(e * 288)) < 1e-6 for e in r0["val_error"])


# A run resumed with its whole budget in the checkpoint trains no epoch; the objective then deletes the checkpoint.
# Rank 1 is held back a second after prepare(): on main it then found the checkpoint gone, trained from scratch
# and its collectives met rank 0's next ones (a chaos run's restarted launch hung so in CI).
RESUMED_DONE = """
import json, shutil, sys, time
import torch.distributed as dist
import resnas.train as t
from resnas.data import load_data
from resnas.recipe import Recipe


class Slow(t.Accelerator):
    def prepare(self, *args):
        out = super().prepare(*args)
        if self.process_index == 1 and len(args) > 1:
            time.sleep(1)
        return out


folder, data, recipe = sys.argv[1], load_data("digits"), Recipe.digits(batch_size=64)
first = t.train("depth=8,widths=4-8-16", data, 2, recipe, checkpoint_dir=f"{folder}/ckpt")
t.Accelerator = Slow
again = t.train("depth=8,widths=4-8-16", data, 2, recipe, checkpoint_dir=f"{folder}/ckpt")
shutil.rmtree(f"{folder}/ckpt", ignore_errors=True)  # as the objective does, on every rank
box = [again.val_error]
dist.broadcast_object_list(box, src=0)  # the next collective: the rank 0's history
out = dict(first=first.val_error, again=again.val_error, rank0=box[0], epochs=again.epochs)
open(f"{folder}/rank{dist.get_rank()}.json", "w").write(json.dumps(out))
"""


@pytest.mark.slow
def test_a_launch_resumed_with_nothing_left_to_train_ends_together_on_every_rank(tmp_path):
    for rank, out in enumerate(_two_ranks(RESUMED_DONE, tmp_path)):
        # every rank resumed the whole history: no rank trained again
        assert out["again"] == out["first"] == out["rank0"] and out["epochs"] == 2, (rank, out)


def test_docstring_examples_run():
    import doctest

    import resnas.train

    assert doctest.testmod(resnas.train).failed == 0


def test_resume_with_nothing_to_resume_is_refused_before_training(tmp_path, capsys):
    with pytest.raises(ResumeError, match=f"resume: {tmp_path} holds no checkpoint to continue"):
        resumed_budget(tmp_path, 3, None, resume=True)
    assert main(["train", "--model", "depth=8,widths=4-8-16", "--epochs", "1", "--output", str(tmp_path / "new"),
                 "--resume"]) == 2  # issue 24: it trained a fresh run and said nothing
    err = capsys.readouterr().err
    assert err.startswith("error: resume: ") and "without --resume it trains a fresh run" in err
    assert not (tmp_path / "new").exists()


def test_an_epochs_lr_is_the_rate_it_trained_at_not_the_next_epochs(tmp_path):
    seen = []  # issue 24: the lr column showed the rate after the epoch's last step (the next epoch's)
    recipe = Recipe.digits(milestones=(0.5,), batch_size=256)  # lr / 10 exactly at the end of epoch 1 of 2
    train("depth=8,widths=4-8-16", load_data("digits"), 2, recipe, on_epoch=seen.append)
    assert [round(r.lr, 6) for r in seen] == [0.1, 0.01]
