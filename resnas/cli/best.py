"""``resnas best`` and ``resnas export``: a study's designs ranked, and a trial's network for timm."""

from __future__ import annotations

import json

import click

from ..designs import ranked_designs
from ..kept import WEIGHTS_TOP_K
from ..ranking import TIE_TEST_SHORT
from ..record import TrialRecord, study_space
from ..results import (
    design_row,
    export_trial,
    kept_test_errors,
    mean_sd,
    tie_label,
    tie_statement,
    verdict_fields,
    verdict_lines,
)
from .common import UserError
from .display import print_best, say, si, tell, test_cell
from .options import storage_option, study_option
from .stored import USER_ERRORS, loaded_study

__all__ = ["best", "export", "show_best"]


@click.command()
@storage_option
@study_option
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--test", "test", is_flag=True,
              help="Also the error on the held-out test split of each design's kept weights (the search never "
                   "looks at it).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data for --test (digits needs none).")
def best(storage: str | None, study_name: str | None, top: int, as_json: bool, test: bool,
         data_dir: str | None) -> None:
    """The best designs of a study, ranked.

    Errors print in percent, mean ± sd over a design's seeds (2.66 ± 0.80%), with the fields its specs
    differ in; --json gives the full specs and the errors as fractions (0.0266), as Optuna stores them.

    \b
    Examples:
      resnas best --top 5
      resnas best --test
      resnas best --storage sqlite:///resnas.db --study default --json
    """
    study, url = loaded_study(storage, study_name)
    designs, tests = ranked_designs(study)[:top], None  # ranked once: each tie is a t-test
    if test:
        try:
            tests = kept_test_errors(study, url, designs, data_dir)
        except USER_ERRORS as e:
            raise UserError(str(e)) from None
    if not as_json:
        show_best(study, top, tests, designs)
        return
    trials = study.get_trials(deepcopy=False)
    rows = []
    for i, d in enumerate(designs, start=1):
        t = trials[d.trials[0]]
        r = TrialRecord.from_trial(t)
        rows.append(dict(rank=i, trial=t.number, values=t.values, **design_row(d), timm=r.timm, params=r.params,
                         macs=r.macs, epochs=r.epochs, params_suggested=t.params))
        if tests is not None:  # a fraction, as val errors are here; the run whose kept weights it is of
            tested, error = tests[i - 1] or (None, None)
            rows[-1].update(test_error=error, test_trial=tested)
    click.echo(json.dumps(dict(study=study.study_name, directions=[d.name.lower() for d in study.directions],
                               trials=rows, **verdict_fields(study)), indent=2))


def show_best(study, top: int, tests: list | None = None, designs: list | None = None) -> None:
    """The study's designs, best first: mean val error +- sd over n seeds, and whether tied with the best;
    under them, the race's verdict."""
    # tests (best --test): per shown design, (trial, test error) of its kept weights, or None: "-", footnoted
    trials = study.get_trials(deepcopy=False)
    designs = ranked_designs(study)[:top] if designs is None else designs
    header = ["trial", "val error", *(["test error"] if tests else []), "n", "vs best", "params", "MACs", "epochs"]
    rows = []
    for rank, d in enumerate(designs, start=1):
        r = TrialRecord.from_trial(trials[d.trials[0]])
        rows.append([str(d.trials[0]), mean_sd(d), *([test_cell(tests[rank - 1])] if tests else []), str(d.n),
                     tie_label(d, rank), si(r.params or 0), si(r.macs or 0), str(r.epochs or "")])
    space = study_space(study)
    print_best(study, space, designs, rows, header, WEIGHTS_TOP_K, tests, tie_statement(study, designs, TIE_TEST_SHORT))
    for line in verdict_lines(study, space):  # the race's verdict (resnas.racing), under the table
        tell(line)  # wrapped at words: the terminal would cut a word


@click.command()
@storage_option
@study_option
@click.option("--trial", "number", type=click.IntRange(min=0), help="Trial number [default: the best].")
@click.option("--output", type=click.Path(file_okay=False), required=True, help="Folder to write (timm local-dir).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data, when the trial must be retrained.")
def export(storage: str | None, study_name: str | None, number: int | None, output: str,
           data_dir: str | None) -> None:
    """Write a trial's network as a timm local-dir folder (config.json + model.safetensors).

    Uses the weights the trial kept as artifacts; a trial without them is retrained (said so) with the
    seed the search trained it with, which gives its weights again on the CPU.

    \b
    Example:
      resnas export --output best-net
      python -c "import timm, resnas; timm.create_model('local-dir:best-net', pretrained=True)"
    """
    study, url = loaded_study(storage, study_name)
    try:
        folder, how = export_trial(study, url, number, output, data_dir, say=say)
    except USER_ERRORS as e:
        raise UserError(str(e)) from None
    say(f"wrote {folder} ({how}); load it with timm.create_model('local-dir:{folder}', pretrained=True)")
