"""A study's results: designs as rows, the race's verdict in lines, the study's note, export of a trial (with its
model card), test errors of kept weights.

    >>> from resnas.ranking import Design
    >>> mean_sd(Design("depth=8", [0.0312, 0.0296], [0, 5]))
    '3.04 ± 0.11%'
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import optuna
from accelerate import Accelerator
from optuna.trial import TrialState

from .card import write_card
from .data import load_data
from .designs import ranked_designs, stored_verdict
from .export import export
from .export import load as load_export
from .fidelity import recorded_fidelity
from .files import follow_umask
from .kept import download_kept, kept_run
from .race import race_test
from .ranking import TIE_TEST
from .recipe import design_seed, search_recipe
from .record import StudyRecord, TrialRecord, status_of, study_space
from .space import Space, compact_spec, load_space
from .status import Status
from .storage import StudyError, artifact_store
from .train import evaluate, train

__all__ = ["design_row", "export_trial", "kept_test_errors", "mean_sd", "retraining_line", "tie_label",
           "tie_statement", "verdict_fields", "verdict_lines", "write_note"]


def design_row(design) -> dict[str, Any]:
    """A ranked design as plain values: mean +- sd over n seeds and whether it is tied with the best."""
    return dict(spec=design.spec, mean=round(design.mean, 6), sd=None if design.sd is None else round(design.sd, 6),
                n=design.n, tied_with_best=design.tied, errors=design.errors, trials=design.trials)


def mean_sd(design) -> str:
    """A design's error over its seeds in percent, as the paper's tables give it: 2.66 ± 0.80%, or 3.12%."""
    mean = 100 * design.mean
    return f"{mean:.2f}%" if design.sd is None else f"{mean:.2f} ± {100 * design.sd:.2f}%"


def tie_label(design, rank: int) -> str:
    """``best``, ``tied`` (not significantly worse than the best), ``worse``, or ``-`` (one seed: untested)."""
    return "best" if rank == 1 else "-" if design.tied is None else "tied" if design.tied else "worse"


def tie_statement(study: optuna.Study, designs: list, test: str = TIE_TEST) -> str | None:
    """What "tied" and "worse" mean in a ranking of ``designs`` (None: nothing was tested): the race's tests
    where a race ran, else resnas.ranking's ``test`` of the fixed repeats."""
    tied = sum(bool(d.tied) for d in designs[1:])
    if stored_verdict(study)[0] is not None:
        worse = sum(d.tied is False for d in designs)
        return (f"Tied with the best: {tied} design(s) still in the race; worse: {worse} it found worse "
                "(the race's tests, below); the designs it did not race are untested.")
    if not designs or not designs[0].confirmed:
        return None
    return f"Tied with the best: {tied} design(s) ({test}); n = 1: not confirmed, untested."


_ENDED = {"one remains": "one design remains", "equivalent": "the designs left are equivalent within {margin} points",
          "max seeds": "at its maximum of {max_seeds} seeds per design", "epochs": "--budget-epochs is spent",
          "racing": "not over yet (interrupted): the same command continues it"}


_WORTH_SEEDS = 100  # seeds per design past which the cost of separating a tie is not offered as a command


def verdict_lines(study: optuna.Study, space: Space | None = None) -> list[str]:
    """The race's verdict in a few lines (none when no race ran): why it ended, the designs left, the
    baseline statement, and for each design tied with the leader the seeds per design that would separate
    it, with their cost in epochs and time (this study's mean epoch time)."""
    verdict, race = stored_verdict(study)
    if verdict is None:
        return []
    rules = verdict.rules
    why = _ENDED[verdict.status].format(margin=f"{rules.margin * 100:g}", max_seeds=rules.max_seeds)
    left = ", ".join(compact_spec(d, space) for d in verdict.remaining)
    lines = [f"race: {why}; {len(verdict.remaining)} of {len(verdict.seeds)} designs left after {verdict.look} "
             f"seeds each: {left}" + (f" (leader {compact_spec(verdict.leader, space)})" if len(verdict.remaining) > 1
                                      else "")]
    if verdict.baseline is not None:
        lines.append(verdict.baseline.text)
    elif race.get("note"):
        lines.append(race["note"])
    epochs, seconds = _epoch_cost(study)
    for design, n in verdict.seeds_needed.items():
        name = compact_spec(design, space)
        if n is None:
            lines.append(f"tied with the leader: {name}: no number of seeds would separate them (equal means)")
            continue
        if n > _WORTH_SEEDS:  # a gap within the noise: no command worth giving
            lines.append(f"tied with the leader: {name}: a gap this small would take {n} seeds per design to "
                         "separate (80% power): within this data's noise")
            continue
        more = (n - verdict.look) * len(verdict.remaining) * epochs
        time = f", about {_duration(more * seconds)}" if seconds else ""
        lines.append(f"tied with the leader: {name}: {n} seeds per design would separate it (80% power), "
                     f"{more} more epochs{time}: the same command with --max-seeds {n}")
    return lines


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def _epoch_cost(study: optuna.Study) -> tuple[int, float | None]:
    """The study's epochs per run (its maximum) and mean seconds per epoch (None: none recorded)."""
    times = [s for t in study.get_trials(deepcopy=False) for s in TrialRecord.from_trial(t).epoch_seconds]
    return int(StudyRecord.from_study(study).max_epochs or 1), (sum(times) / len(times) if times else None)


def verdict_fields(study: optuna.Study) -> dict[str, Any]:
    """The verdict for ``resnas best --json``: the stored verdict, the baseline, the baseline's error minus
    the winner's (the runner-up's when the baseline leads) with its 95% interval, and the seeds needed."""
    verdict, race = stored_verdict(study)
    statement = verdict.baseline if verdict is not None else None
    return dict(verdict=None if verdict is None else verdict.to_dict(), baseline=race.get("baseline"),
                baseline_note=race.get("note"), delta_vs_baseline=statement and statement.delta,
                delta_vs_baseline_interval=statement and [statement.low, statement.high],
                seeds_needed=None if verdict is None else verdict.seeds_needed)


def write_note(study: optuna.Study, space: Space, top: int = 5) -> None:
    """The study's Markdown note in optuna-dashboard (the space, the fidelity check, its best designs with
    mean +- sd over their seeds), and the ranking as the study attribute ``ranking`` (the dashboard shows it)."""
    from optuna_dashboard import save_note  # deferred: a web server's dependencies, needed only here

    trials = study.get_trials(deepcopy=False)
    counts = {}
    for t in trials:
        status = str(status_of(t))
        counts[status] = counts.get(status, 0) + 1
    made = StudyRecord.from_study(study)
    designs = ranked_designs(study)
    lines = [f"# {space.name}", "", space.description, "",
             f"Data set **{made.dataset}**, up to {made.max_epochs} epochs "
             f"per candidate, sampler {space.sampler}, pruner {space.pruner}.", "",
             "Trials: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())), ""]
    if (fidelity := recorded_fidelity(study)) is not None:
        lines += [fidelity.line(), ""]
    lines += ["| rank | trial | val error (mean ± sd) | n | vs best | params | spec |", "|---|---|---|---|---|---|---|"]
    for rank, d in enumerate(designs[:top], start=1):
        record = TrialRecord.from_trial(trials[d.trials[0]])
        lines.append(f"| {rank} | {d.trials[0]} | {mean_sd(d)} | {d.n} | {tie_label(d, rank)} "
                     f"| {record.params or 0:,} | `{d.spec}` |")
    if designs:
        lines += ["", tie_statement(study, designs) or "", "Rebuild the best design:", "",
                  f"    {TrialRecord.from_trial(trials[designs[0].trials[0]]).timm or ''}"]
        study.set_user_attr("ranking", [design_row(d) for d in designs[:top]])
    if verdict := verdict_lines(study, space):
        lines += ["", "## The race", "", *verdict, "", race_test(stored_verdict(study)[0].rules).replace("\n", " ")]
    save_note(study, "\n".join(lines) + "\n")


def export_trial(study: optuna.Study, url: str, number: int | None, output: str | os.PathLike,
                 data_dir: str | None = None, say=None) -> tuple[Path, str]:
    """Write trial ``number`` (default: the best) as a timm local-dir folder; says how it got the weights.
    ``say(line)`` is told before a trial that kept no weights is retrained, with the cost."""
    if number is None:
        designs = ranked_designs(study)
        if not designs:
            raise StudyError(f"study {study.study_name}: no completed trial to export")
        trial = _representative(study, url, designs[0])
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
    follow_umask(tmp)  # mkdtemp's 0700 would become the export's mode
    try:
        how = _fill_export(study, url, trial, tmp, data_dir, say)
        _write_card(study, trial, tmp)
        if output.exists():
            output.rmdir()
        os.replace(tmp, output)  # the folder appears whole or not at all
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return output, how


def _write_card(study: optuna.Study, trial, folder: Path) -> None:
    """The export's model card (resnas.card): the design's error over its seeds and the race's verdict."""
    space = study_space(study)
    spec = TrialRecord.from_trial(trial).spec
    design = next((d for d in ranked_designs(study) if d.spec == spec), None)
    error = f"{mean_sd(design)} over {design.n} seed(s)" if design else "not ranked"
    write_card(folder, study, trial, space, error, verdict_lines(study, space))


def _representative(study: optuna.Study, url: str, design) -> optuna.trial.FrozenTrial:
    """The run of a design that export writes: its run with kept weights, else its search trial."""
    return kept_run(study, url, design) or study.get_trials(deepcopy=False)[design.trials[0]]


def _fill_export(study: optuna.Study, url: str, trial, folder: Path, data_dir: str | None, say) -> str:
    """The trial's own weights from its artifacts, or a retraining when it kept none (``say`` says so first)."""
    if download_kept(study, url, artifact_store(url), trial, folder):
        return f"trial {trial.number}'s own weights"
    record, made = TrialRecord.from_trial(trial), StudyRecord.from_study(study)
    data = load_data(made.dataset or "digits", data_dir)
    epochs = int(made.max_epochs or record.epochs or 1)
    if say is not None:
        say(retraining_line(trial.number, epochs, record.epoch_seconds))
    recipe = search_recipe(data.name, made.recipe or {}, epochs)
    result = train(record.spec, data, epochs, recipe, seed=_training_seed(study, trial))
    export(result.model, folder, **data.pretrained_cfg())
    return f"retrained for {epochs} epochs: trial {trial.number} kept no weights"


def retraining_line(number: int, epochs: int, epoch_seconds: list[float]) -> str:
    """What export says before it retrains a trial, with the cost its recorded epoch times give."""
    if not epoch_seconds:
        return f"trial {number} kept no weights: retraining it, {epochs} epochs (no recorded epoch times)"
    seconds = epochs * sum(epoch_seconds) / len(epoch_seconds)
    about = f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}"
    return f"trial {number} kept no weights: retraining it, {epochs} epochs, about {about} s from its recorded " \
           "epoch times"


def kept_test_errors(study: optuna.Study, url: str, designs: list, data_dir: str | None = None) -> list:
    """For each design, ``(trial, test error)`` of the run whose kept weights export writes (loaded as export
    loads them, sha256 checked), or None when no run of it kept weights. Only this reads the test split."""
    made, found = StudyRecord.from_study(study), []
    runs = [kept_run(study, url, d) for d in designs]
    if not any(runs):
        return [None] * len(designs)
    data, store, accelerator = load_data(made.dataset or "digits", data_dir), artifact_store(url), Accelerator()
    for trial in runs:
        with tempfile.TemporaryDirectory() as tmp:
            found.append(None if trial is None or not download_kept(study, url, store, trial, Path(tmp)) else
                         (trial.number, _test_error(accelerator, load_export(tmp), data)))
    return found


def _test_error(accelerator: Accelerator, model, data, batch_size: int = 256) -> float:
    """The error over the whole test split, counted as training counts validation error (resnas.train)."""
    loader = accelerator.prepare(data.loader("test", batch_size, device=accelerator.device))
    return evaluate(accelerator, model.to(accelerator.device), loader)[0]


def _training_seed(study: optuna.Study, trial) -> int:
    """The seed the search trained ``trial`` with: its record; for trials that predate the record, the
    repeat-0 seed of the study's seed, else of its space file's seed, else of 0 (``Space.seed``'s default)."""
    record, made = TrialRecord.from_trial(trial), StudyRecord.from_study(study)
    if record.seed is not None:
        return int(record.seed)
    seed = made.seed
    if seed is None:
        try:
            seed = load_space(made.space_file).seed
        except Exception:  # no space file recorded, or it is gone
            seed = 0
    return design_seed(int(seed))
