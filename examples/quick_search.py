"""A search from Python: load a space, run an Optuna study over it, rebuild the best design with timm.

    python examples/quick_search.py                           # `default` on digits: 16 trials, a few minutes on a CPU
    python examples/quick_search.py --trials 2 --epochs 1 --storage sqlite:///quick.db   # seconds
    python examples/quick_search.py --space examples/custom_space.yaml

The study lives in --storage (any Optuna URL; the CLI's default is sqlite:///resnas.db) and is named after
the space, so running the script again adds trials to the same study; `resnas best --storage ...` and
`resnas dashboard --storage ...` read it too. The best design is the one `resnas best` ranks first: mean
error over its seeds (the race's), never the luckiest single run. examples/export_reload.py turns it into weights.
"""

from __future__ import annotations

import argparse

import optuna
import timm
import torch

import resnas  # noqa: F401  (importing resnas registers its networks with timm)
from resnas.config import Search
from resnas.data import load_data
from resnas.designs import ranked_designs
from resnas.record import StudyRecord, TrialRecord, status_of
from resnas.runners import Progress, run_search
from resnas.space import load_space


def print_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """An Optuna study callback: one line per finished trial."""
    value = f"{trial.values[0]:.4f}" if trial.values else "-"
    spec = TrialRecord.from_trial(trial).spec
    print(f"trial {trial.number}: {status_of(trial)}, val_error {value}, {spec}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="default", help="a built-in space (resnas spaces) or a YAML file")
    parser.add_argument("--trials", type=int, help="trials to run now [default: the space's]")
    parser.add_argument("--epochs", type=int, help="maximum epochs per candidate [default: the space's]")
    parser.add_argument("--storage", default="sqlite:///resnas.db", help="Optuna storage URL")
    parser.add_argument("--study", help="study name [default: the space's name]")
    parser.add_argument("--seed", type=int, help="sampler and training seed [default: the space's]")
    parser.add_argument("--confirm", type=int, default=3, help="best designs racing the paper's unit to a verdict [3]")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # print_trial reports each trial instead

    space = load_space(args.space)
    print(f"space {space.name} ({space.sampler} + {space.pruner}, dataset {space.dataset}): {space.description}")
    search = Search(space, storage=args.storage, study_name=args.study, trials=args.trials, epochs=args.epochs,
                    seed=args.seed, confirm=args.confirm)
    # an optuna.Study: study.trials_dataframe(), optuna.visualization, ...
    study = run_search(search, Progress(callbacks=(print_trial,)))

    # designs best first, as `resnas best` ranks them: mean error over seeds (not study.best_trial, one lucky seed)
    ranked = ranked_designs(study)
    if not ranked:
        raise SystemExit("no completed trial yet; run more trials")
    best = ranked[0]
    trial = study.trials[best.trials[0]]  # its search trial (repeat 0)
    record = TrialRecord.from_trial(trial)  # the trial's user attributes, typed
    spread = "" if best.sd is None else f" +- {best.sd:.4f}"
    print(f"best design (trial {trial.number}): val_error {best.mean:.4f}{spread} over {best.n} seed(s), "
          f"{record.epochs} epochs each")
    print(f"spec: {record.spec}")
    print(f"rebuild: {record.timm}")

    # The design as a timm model (untrained; the trial's weights: examples/export_reload.py or `resnas export`).
    model = timm.create_model("resnas_spec", spec=record.spec).eval()
    params = sum(p.numel() for p in model.parameters())
    data = load_data(StudyRecord.from_study(study).dataset)
    x, _ = next(iter(data.loader("val", batch_size=8)))
    with torch.no_grad():
        logits = model(x)
    print(f"params: {params} (recorded {record.params}); logits {tuple(logits.shape)} "
          f"for a batch of {tuple(x.shape)}")


if __name__ == "__main__":
    main()
