"""Export the best design of a study as a timm local-dir folder, reload it with timm, and check it on digits.

    python examples/quick_search.py --storage sqlite:///quick.db            # a study to export from
    python examples/export_reload.py --storage sqlite:///quick.db --output best-net
    python examples/export_reload.py --storage sqlite:///new.db --output net --trials 2 --epochs 1   # seconds

When --storage holds no study yet, a small search (--space, --trials, --epochs) runs first. The same
export from the shell: `resnas export --storage sqlite:///quick.db --output best-net`. The folder holds
config.json (the spec and the input it was trained on) and model.safetensors; anyone with resnas installed
loads it with timm.create_model("local-dir:best-net", pretrained=True).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import optuna
import timm
import torch
from safetensors.torch import load_file

import resnas
from resnas.config import Search
from resnas.data import load_data
from resnas.designs import ranked_designs
from resnas.kept import kept_run
from resnas.record import StudyRecord
from resnas.results import export_trial
from resnas.runners import run_search
from resnas.space import load_space
from resnas.storage import StudyError, open_storage


@torch.no_grad()
def predict(model: torch.nn.Module, data, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and true classes of a whole split."""
    model.eval()
    preds, labels = zip(*((model(x).argmax(1), y) for x, y in data.loader(split, batch_size=256)))
    return torch.cat(preds), torch.cat(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="sqlite:///resnas.db", help="Optuna storage URL of the study")
    parser.add_argument("--study", help="study name [default: the only study in --storage, else the space's]")
    parser.add_argument("--output", default="best-net", help="folder to write (must be new or empty)")
    parser.add_argument("--trial", type=int, help="trial number [default: the best]")
    parser.add_argument("--space", default="default", help="space of the search run when there is no study")
    parser.add_argument("--trials", type=int, default=4, help="trials of that search")
    parser.add_argument("--epochs", type=int, help="maximum epochs of that search [default: the space's]")
    parser.add_argument("--max-seeds", type=int, default=10, help="seeds per design of its race at most [10]")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    storage = open_storage(args.storage)  # any URL resnas takes: sqlite:///, journal:///, postgresql://
    names = optuna.get_all_study_names(storage)
    name = args.study or (names[0] if len(names) == 1 else load_space(args.space).name)
    if name in names:
        study = optuna.load_study(study_name=name, storage=storage)
    else:
        print(f"no study {name!r} in {args.storage}: searching {args.space} for {args.trials} trials first")
        study = run_search(Search(load_space(args.space), storage=args.storage, study_name=name, trials=args.trials,
                                  epochs=args.epochs, max_seeds=args.max_seeds))

    # 1. Export: the trial's own weights (kept as Optuna artifacts beside the database), or a retraining.
    try:
        folder, how = export_trial(study, args.storage, args.trial, args.output)
    except StudyError as e:  # no completed trial, an unknown trial number, an output folder that is not empty
        raise SystemExit(f"error: {e}") from None
    if args.trial is not None:
        trial = study.trials[args.trial]
    else:  # the best design (mean over its seeds), through the run whose weights it kept, as export_trial does
        design = ranked_designs(study)[0]
        trial = kept_run(study, args.storage, design) or study.trials[design.trials[0]]
    print(f"exported trial {trial.number} to {folder} ({how}): {sorted(p.name for p in Path(folder).iterdir())}")

    # 2. Reload through timm: the architecture from config.json, the weights from model.safetensors.
    model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    print(f"reloaded {model.spec}")
    print(f"pretrained_cfg: input_size {model.pretrained_cfg['input_size']}, mean {model.pretrained_cfg['mean']}, "
          f"num_classes {model.num_classes}")

    # 3. Evaluate: on the validation split it gives exactly the error the study recorded for the trial.
    data = load_data(StudyRecord.from_study(study).dataset)
    pred, y = predict(model, data, "val")
    print(f"val error: {(pred != y).float().mean().item():.6f} reloaded, {trial.values[0]:.6f} recorded in the study")
    test_pred, test_y = predict(model, data, "test")
    print(f"test error: {(test_pred != test_y).float().mean().item():.4f} on {len(test_y)} held-out images")

    # 4. The same network rebuilt by hand from the exported spec and weights predicts the same classes.
    again = resnas.build(model.spec)
    again.load_state_dict(load_file(Path(folder) / "model.safetensors"))
    same = torch.equal(predict(again, data, "test")[0], test_pred)
    print(f"predictions match the exported weights: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
