"""What `resnas search` and `resnas best` print (issue 15, items 3-5): one row per finished trial with its
epoch, compact specs that fit 80 columns without folding a field, error in percent, the next commands."""

import io
import json
import re

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from rich.console import Console

from resnas.cli import display
from resnas.cli.best import show_best
from resnas.space import builtin_spaces, compact_spec, load_space
from resnas.spec import _keys as spec_keys

DEFAULT = load_space("default")
LONG = "layout=cifar,depth=14,unit=basic,act=relu_preact,shortcut=scaling,scale=0.925596638292661,widths=8-16-32,in_chans=1"
# a float of more than 4 significant digits, as "0.925596638292661" or "0.03125"
LONG_FLOAT = re.compile(r"\d*\.\d+")


def _digits(number: str) -> int:
    return len(number.replace(".", "").lstrip("0"))


@pytest.mark.parametrize("spec, shown", [
    (LONG, "depth=14,act=relu_preact,shortcut=scaling,scale=0.9256,f_scale=1"),  # fixed and data fields left out
    ("depth=8,act=original,shortcut=exclusive_gate,gate_bias=-4.0,widths=8-16-32,in_chans=1",
     "depth=8,act=original,shortcut=exclusive_gate,gate_bias=-4"),  # at the space's step of 1
    ("depth=8,act=preact,shortcut=scaling,scale=0.5,f_scale=0.5,widths=8-16-32,in_chans=1",
     "depth=8,act=preact,shortcut=scaling,scale=0.5,f_scale=0.5"),
    ("depth=8,act=preact,shortcut=identity,widths=8-16-32,in_chans=1", "depth=8,act=preact,shortcut=identity"),
])
def test_compact_spec_keeps_what_the_space_varies(spec, shown):
    assert compact_spec(spec, DEFAULT) == shown


def test_compact_spec_of_a_grid_drops_its_single_choices():
    table1 = load_space("paper_table1")  # depth 110 and act original are the same in every row
    assert compact_spec("depth=110,act=original,shortcut=scaling,scale=0.5,f_scale=0.5", table1) == \
        "shortcut=scaling,scale=0.5,f_scale=0.5"
    assert compact_spec("depth=110,act=original,shortcut=exclusive_gate,gate_bias=-6", table1) == \
        "shortcut=exclusive_gate,gate_bias=-6"


def test_compact_spec_without_its_space_rounds_floats_only():
    assert compact_spec(LONG) == "layout=cifar,depth=14,unit=basic,act=relu_preact,shortcut=scaling,scale=0.9256," \
                                 "widths=8-16-32"
    assert compact_spec("not a spec") == "not a spec"  # a record written by something else: shown as it is


@pytest.mark.parametrize("name", list(builtin_spaces()))
def test_compact_specs_of_every_builtin_space_stay_specs(name):
    space = load_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        spec = space.suggest(study.ask())
        text = compact_spec(spec, space)
        assert all(_digits(f) <= 4 for f in LONG_FLOAT.findall(text)), text
        assert "in_chans" not in text and "layout" not in text


def _console(width: int = 80) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)


def _trial(number: int, state, status: str, errors: list[float], spec: str, **attrs):
    value = errors[-1] if errors else None
    trial = create_trial(state=state, value=value if state != TrialState.FAIL else None,
                         params={"x": number}, distributions={"x": CategoricalDistribution(list(range(100)))},
                         intermediate_values=dict(enumerate(errors, start=1)),
                         user_attrs=dict(status=status, val_error=errors, spec=spec, epochs=len(errors),
                                         params=44226, macs=415_000, **attrs))
    trial.number = number
    return trial


def _rows(printed: str) -> dict[int, str]:
    """Each trial's row, its wrapped lines joined: trial number -> text."""
    rows: dict[int, str] = {}
    lines = printed.splitlines()  # after the header (a search prints its threads line above it)
    for line in lines[1 + next(i for i, line in enumerate(lines) if line.split()[:2] == ["trial", "status"]):]:
        if re.match(r"\s*\d+ ", line):
            rows[int(line.split()[0])] = line.strip()
        else:
            rows[max(rows)] += line.strip()
    return rows


def test_each_finished_trial_is_one_row_with_its_epoch(monkeypatch):
    monkeypatch.setattr(display, "console", _console())
    shown = display.SearchDisplay(24, 9, live=False, space=DEFAULT)
    study = optuna.create_study()
    pruned = _trial(0, TrialState.PRUNED, "pruned", [0.7734], LONG, reason="pruned by successive_halving at epoch 1")
    done = _trial(1, TrialState.COMPLETE, "ok", [0.5, 0.1, 0.03125] + [0.03125] * 6,
                  LONG.replace("scale=0.925596638292661", "scale=0.5"))
    failed = _trial(2, TrialState.FAIL, "oom", [], LONG, reason="out of memory on cuda:0")
    for t in (pruned, done, failed):
        study.add_trial(t)
        shown.on_trial(study, t)
    printed = display.console.file.getvalue()
    assert printed.splitlines()[0].split() == ["trial", "status", "epoch", "val", "error", "spec"]
    assert all(len(line) <= 80 for line in printed.splitlines()), printed
    rows = _rows(printed)
    assert re.fullmatch(r"0 +pruned +1/9 +77\.34% +depth=14,act=relu_preact,shortcut=scaling,scale=0\.9256,f_scale=1",
                        rows[0]), printed  # the epoch it was pruned at, beside that epoch's error
    assert re.fullmatch(r"1 +ok +9/9 +3\.12% +depth=14,act=relu_preact,shortcut=scaling,scale=0\.5,f_scale=1", rows[1])
    assert re.fullmatch(r"2 +oom +0/9 +- +depth=14,.*f_scale=1 \(out of memory on cuda:0\)", rows[2]), printed
    assert (shown.best.trials, shown.best.mean) == ([1], 0.03125)  # a pruned trial's epoch-1 error is no candidate


def test_in_a_terminal_rows_print_above_the_bar_and_no_trial_bar_is_left(monkeypatch):
    monkeypatch.setattr(display, "console", Console(file=io.StringIO(), width=80, force_terminal=True,
                                                color_system=None))
    report = type("EpochReport", (), dict(epoch=1, val_error=0.5))()
    study = optuna.create_study()
    study.add_trial(_trial(0, TrialState.COMPLETE, "ok", [0.5, 0.0312], LONG))
    with display.SearchDisplay(3, 9, live=True, space=DEFAULT) as shown:
        shown.on_epoch(0, report)
        shown.on_trial(study, study.trials[0])
        shown.on_epoch(1, report)  # trial 1 is training when the search ends
    printed = display.console.file.getvalue()
    *before, last = printed.split("\x1b[2K")  # the live view's frames: the last is what stays on the screen
    assert re.search(r"0 +ok +2/9 +3\.12% +depth=14", "".join(before))  # the row, printed above the bars
    assert "trials" in last and "1/3" in last and "best 3.12% (trial 0, 1 seed)" in last
    assert "trial 1" not in last and "trial -" not in last and "50.00%" not in last  # no stale per-trial bar


def test_the_bar_names_the_ranked_design_not_the_luckiest_run(tmp_path, monkeypatch):
    """Issue 23 item 5: `best 1.74% (trial 24)` while `resnas best` ranked another design first at 2.66 ± 0.80%."""
    monkeypatch.setattr(display, "console", Console(file=io.StringIO(), width=100, force_terminal=True,
                                                color_system=None))
    study = _study_with_designs(tmp_path)  # trial 0's design: 2.66 ± 0.80% over 3 seeds
    lucky = _trial(len(study.trials), TrialState.COMPLETE, "ok", [0.5, 0.0174], LONG)  # one seed, luckier
    study.add_trial(lucky)
    with display.SearchDisplay(len(study.trials), 9, live=True, space=DEFAULT) as shown:
        for t in study.trials:
            shown.on_trial(study, t)
    last = display.console.file.getvalue().split("\x1b[2K")[-1]
    assert "best 2.66 ± 0.80% (trial 0, 3 seeds)" in last, last
    assert "1.74" not in last
    first = show_best_first(tmp_path, study)
    assert first.startswith("1") and "2.66 ± 0.80%" in first  # the design `resnas best` ranks first


def show_best_first(tmp_path, study) -> str:
    """The first row of `resnas best`'s table for ``study``."""
    console = _console(120)
    display.console, saved = console, display.console
    try:
        show_best(study, top=3)
    finally:
        display.console = saved
    return next(line.strip() for line in console.file.getvalue().splitlines() if line.strip().startswith("1 "))


def _study_with_designs(tmp_path, n: int = 6):
    """A study of the default space: designs with long specs, the best one confirmed with two more seeds."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'd.db'}", study_name="default")
    study.set_user_attr("space", "default")
    study.set_user_attr("space_file", str(builtin_spaces()["default"]))
    study.set_user_attr("max_epochs", 9)
    errors = [0.0266, 0.0312, 0.0451, 0.1, 0.2, 0.77]
    acts = ["relu_before_add", "relu_preact", "bn_after_add", "original", "preact", "preact"]
    for i in range(n):
        spec = (f"layout=cifar,depth=14,unit=basic,act={acts[i]},shortcut=exclusive_gate,gate_bias=-{i}.0,"
                "widths=8-16-32,in_chans=1")
        study.add_trial(_trial(i, TrialState.COMPLETE, "ok", [0.5, errors[i]], spec))
    best = study.trials[0].user_attrs["spec"]
    for repeat, error in ((1, 0.0346), (2, 0.0186)):
        study.add_trial(_trial(n + repeat, TrialState.COMPLETE, "ok", [0.5, error], best, repeat=repeat, confirms=0))
    return study


@pytest.mark.parametrize("width", [80, 120])
def test_best_table_fits_the_width_in_percent(tmp_path, monkeypatch, width):
    monkeypatch.setattr(display, "console", _console(width))
    show_best(_study_with_designs(tmp_path), top=10)
    printed = display.console.file.getvalue()
    assert all(len(line) <= width for line in printed.splitlines()), printed
    assert "2.66 ± 0.80%" in printed and "3.12%" in printed  # mean ± sd over 3 seeds, and one seed
    assert "0.0266" not in printed and "0.0312" not in printed
    _assert_fields_whole(printed)
    assert "depth=14,act=relu_before_add,shortcut=exclusive_gate,gate_bias=0" in printed  # a spec on its own line
    assert "every design: layout=cifar,unit=basic,widths=8-16-32,in_chans=1" in re.sub(r",\n", ",", printed)


def _assert_fields_whole(printed: str) -> None:
    """Every spec field printed is a whole key=value: specs wrap after a comma only, never inside a field."""
    for line in printed.splitlines():
        words = [w for w in line.split() if re.match(r"[\w,]*=\S", w)]  # not the "=" of "n = 1"
        for field in (f for w in words for f in w.split(",") if f):
            key, _, value = field.partition("=")
            assert key in spec_keys() and value and "…" not in value, f"a folded field {field!r}:\n{printed}"


def test_a_spec_wraps_only_after_its_commas():
    spec = "depth=14,act=relu_before_add,shortcut=exclusive_gate,gate_bias=-6"
    console = _console(24)
    console.print(display.SpecText(spec))
    assert console.file.getvalue().splitlines() == ["depth=14,", "act=relu_before_add,", "shortcut=exclusive_gate,",
                                                    "gate_bias=-6"]
    console = _console(40)
    console.print(display.SpecText(spec))
    assert console.file.getvalue().splitlines() == ["depth=14,act=relu_before_add,", "shortcut=exclusive_gate,"
                                                    "gate_bias=-6"]


def test_dashboard_note_gives_errors_in_percent(tmp_path):
    from optuna_dashboard._note import get_note_from_system_attrs

    from resnas.results import write_note
    study = _study_with_designs(tmp_path)
    study.set_user_attr("dataset", "digits")
    write_note(study, DEFAULT)
    note = get_note_from_system_attrs(study._storage.get_study_system_attrs(study._study_id), None)["body"]
    assert "| 2.66 ± 0.80% | 3 | best |" in note and "| 3.12% | 1 |" in note
    assert study.user_attrs["ranking"][0]["mean"] == pytest.approx(0.0266)  # what scripts read stays a fraction


# ---- the commands as a user runs them, at an 80-column terminal's width into a pipe (conftest's searched) ----
def _run(resnas_cli, *argv, cwd):
    run = resnas_cli(*argv, cwd=cwd, env={"COLUMNS": "80", "TERM": "dumb"})
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def _study_of(cwd):
    return optuna.load_study(study_name="default", storage=f"sqlite:///{cwd / 's.db'}")


def test_search_prints_rows_table_and_next_commands_in_80_columns(searched):
    cwd, out = searched
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert all(_digits(f) <= 4 for f in LONG_FLOAT.findall(out)), out
    _assert_fields_whole(out)
    live, table = out.split("best of default")
    rows = _rows(live)
    trials = _study_of(cwd).trials
    assert sorted(rows) == [t.number for t in trials] == [0, 1, 2], out
    for t in trials:  # the epoch it reached of the 2 and the error at that epoch, pruned or not
        errors = t.user_attrs["val_error"]
        assert re.match(rf"{t.number} +{t.user_attrs['status']} +{len(errors)}/2 +{errors[-1]:.2%} +depth=",
                        rows[t.number]), out
        assert f"{errors[-1]:.4f}" not in out
    assert "in_chans" not in live and "layout=" not in live  # the fixed fields, said once under the table
    assert re.search(r"\d+\.\d\d%", table) and "every design: layout=cifar" in table
    assert out.splitlines()[-3:] == ["  resnas best --storage sqlite:///s.db",
                                     "  resnas export --storage sqlite:///s.db --output best-net",
                                     "  resnas dashboard --storage sqlite:///s.db"], out


def test_best_prints_percent_and_json_keeps_the_full_spec_as_fractions(searched, resnas_cli):
    cwd, _ = searched
    out = _run(resnas_cli, "best", "--storage", "sqlite:///s.db", cwd=cwd)
    assert all(len(line) <= 80 for line in out.splitlines()), out
    study = _study_of(cwd)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert done and all(f"{t.value:.2%}" in out and f"{t.value:.4f}" not in out for t in done), out
    rows = json.loads(_run(resnas_cli, "best", "--storage", "sqlite:///s.db", "--json", cwd=cwd))["trials"]
    best = study.trials[rows[0]["trial"]]
    assert rows[0]["spec"] == best.user_attrs["spec"] and "in_chans=1" in rows[0]["spec"]
    assert rows[0]["mean"] == pytest.approx(best.value, abs=1e-6) and rows[0]["mean"] < 1  # a fraction
    assert "fractions" in _run(resnas_cli, "best", "--help", cwd=cwd)


def test_the_search_bar_counts_race_runs_apart_and_its_clock_runs_on_after_the_target(monkeypatch):
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    def run(number: int, **attrs):  # issue 24: `trials 30/24` during the race, a clock stopped at the target
        return create_trial(state=TrialState.COMPLETE, value=0.1, params={"x": 0.5},
                            distributions={"x": FloatDistribution(0, 1)}, user_attrs={"spec": "depth=8", **attrs})

    with display.SearchDisplay(2, 1, live=False) as shown:
        for number, attrs in enumerate([{}, {}, {"repeat": 1}, {"repeat": 2}]):
            shown.on_trial(None, run(number, **attrs))
        tasks = {t.description: t for t in shown.progress.tasks}
        assert (tasks["trials"].completed, tasks["trials"].total, tasks["race"].completed) == (2, 2, 2)
        clock = display.RunClock()
        clock.start -= 75  # the run started 75 s ago; the trials bar finished long before
        h, m, s = map(int, clock.render(tasks["trials"]).plain.split(":"))  # 75 s, or a few more on a busy machine
        assert tasks["trials"].finished and 75 <= 3600 * h + 60 * m + s < 90
