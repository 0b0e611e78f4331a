"""``resnas train``: one network trained, reported and exported for timm."""

from __future__ import annotations

from pathlib import Path

import click
from accelerate import PartialState

from ..data import DATASETS, load_data
from ..export import export
from ..recipe import dataset_recipe
from ..threads import set_threads
from ..train import CHECKPOINT, ResumeError, checkpoint_epoch, resumed_budget, train
from ..zoo import resolve_model
from . import hints
from .common import Interrupted, UserError
from .display import TrainDisplay, print_train, say
from .options import SEED, threads_option

__all__ = ["train_cmd"]


@click.command("train")
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
@threads_option
def train_cmd(model_name: str, dataset: str, data_dir: str | None, epochs: int | None, batch_size: int | None,
              lr: float | None, schedule: str | None, schedule_epochs: int | None, warmup_iters: int | None,
              output: str, resume: bool, seed: int, image_size: int, download: bool, mixed_precision: str | None,
              compile_: bool, threads: int | None) -> None:
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
    try:
        epochs, schedule_epochs = resumed_budget(output, epochs, schedule_epochs, resume)
    except ResumeError as e:
        hint = f"; train a {e.epochs}-epoch run with: {hints.fresh_train(e.epochs, output)}" if e.epochs else ""
        raise UserError(f"{e}{hint}") from None
    epochs = epochs or DATASETS[dataset].epochs
    overrides = dict(batch_size=batch_size, lr=lr, schedule=schedule, schedule_epochs=schedule_epochs,
                     warmup_iters=warmup_iters)
    try:
        recipe = dataset_recipe(dataset, **{k: v for k, v in overrides.items() if v is not None})
        data = load_data(dataset, data_dir, download=download, image_size=image_size)
        net = resolve_model(model_name, num_classes=data.num_classes, in_chans=data.input_size[0])
    except ValueError as e:
        raise UserError(str(e)) from None
    main = PartialState().is_main_process  # under accelerate launch, one process reports and writes
    chosen = set_threads(threads)
    if main:
        say(chosen.line())
    try:
        with TrainDisplay(enabled=main) as display:
            result = train(net, data, epochs, recipe, seed=seed, checkpoint_dir=output, mixed_precision=mixed_precision,
                           torch_compile=compile_, test=True, on_epoch=display.on_epoch, on_step=display.on_step)
    except ValueError as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:
        held = checkpoint_epoch(Path(output) / CHECKPOINT)
        raise Interrupted(hints.train_interrupted(held, epochs, output)) from None
    if not main:
        raise click.exceptions.Exit(0 if result.ok else 1)
    print_train(result, data)
    if not result.ok:
        raise click.exceptions.Exit(1)
    export(result.model, output, **data.pretrained_cfg())
    say(f"saved: timm.create_model('local-dir:{output}', pretrained=True)")
