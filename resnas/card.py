"""The model card of an exported design: ``README.md`` made with huggingface_hub's ``ModelCard`` (the format
timm's ``push_to_hub`` writes: ``library_name: timm``, tags, data set, metrics) stating the race's verdict,
the race (designs, seeds, tests), the epochs the study spent and what its full grid would have cost.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from huggingface_hub import ModelCard, ModelCardData

from .designs import stored_verdict
from .record import StudyRecord, TrialRecord, epochs_spent
from .space import Space, SpaceError

__all__ = ["CARD", "model_card", "write_card"]

CARD = "README.md"
TAGS = ["image-classification", "timm", "resnas", "residual-network", "architecture-search"]


def model_card(study: optuna.Study, trial: optuna.trial.FrozenTrial, space: Space | None, error: str,
               verdict_lines: list[str]) -> ModelCard:
    """The card of ``trial`` (the run export writes) of ``study``, made from ``space`` (None: unknown), with
    its design's ``error`` (mean +- sd over n seeds) and the race's verdict in lines (resnas.results)."""
    made, record = StudyRecord.from_study(study), TrialRecord.from_trial(trial)
    data = ModelCardData(library_name="timm", tags=TAGS, datasets=[made.dataset or "digits"], metrics=["error_rate"])
    spent = sum(epochs_spent(t) for t in study.get_trials(deepcopy=False))
    lines = [f"# {record.spec}", "", "A residual network whose unit resnas chose among the ablations of He et al. "
             "2016, [\"Identity Mappings in Deep Residual Networks\"](https://arxiv.org/abs/1603.05027): "
             f"study `{study.study_name}`, space `{made.space}`, data set `{made.dataset}`, up to "
             f"{made.max_epochs} epochs per run.", "",
             f"- validation error: {error} (this run, trial {trial.number}: {trial.values[0]:.4f})",
             f"- rebuild: `{record.timm}`; load: `timm.create_model('local-dir:FOLDER', pretrained=True)`",
             f"- epochs the study spent: {spent}; {_grid_cost(space, made.max_epochs)}", "", "## The verdict", ""]
    lines += [f"- {line}" for line in verdict_lines] or ["No race ran (`--confirm 0`)."]
    verdict, race = stored_verdict(study)
    if verdict is not None:
        lines += ["", f"The race: {len(race.get('designs', []))} designs, {verdict.look} seeds each at its last "
                  "look, repeat r of every design trained with the same seed (paired).", "",
                  *[f"> {line}" for line in verdict.to_dict()["test"].splitlines()]]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


def _grid_cost(space: Space | None, epochs: int | None) -> str:
    """What training every design of the space once at the full budget would have cost."""
    try:
        points = len(space.grid_points()) if space is not None else None
    except SpaceError:  # a range: no finite grid
        return "the space has ranges: no finite grid to compare with"
    if points is None:
        return "the space is unknown: no grid to compare with"
    return f"the full grid at one seed per design: {points} designs x {epochs} epochs = {points * (epochs or 0)}"


def write_card(folder: Path, *args, **kwargs) -> Path:
    """Write ``model_card(*args, **kwargs)`` as ``folder/README.md``."""
    path = Path(folder) / CARD
    model_card(*args, **kwargs).save(path)
    return path
