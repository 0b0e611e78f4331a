"""resnas.objective: one trial: a design drawn again, a diverged candidate, the probe filter around the reference net."""

import json

import pytest
from optuna.trial import TrialState

from resnas.cli import main

from _tiny import TINY, _search, _study
from _tinygrid import _search as _search_text


def test_a_design_drawn_again_is_not_retrained(tmp_path, capsys):
    space = tmp_path / "three.yaml"  # three designs: the sampler redraws some before it draws the last
    space.write_text(TINY.replace("shortcut: {identity: {}, scaling: {scale: [0.5, 1.0]}}", "shortcut: [identity]")
                     .replace("act: [original, preact]", "act: [original, relu_before_add, preact]")
                     .replace("pruner: hyperband", "pruner: none"))
    db = tmp_path / "d.db"
    assert _search(space, db, "--trials", "5", "--epochs", "1") == 0
    trials = _study(db).trials
    assert all(t.state == TrialState.COMPLETE for t in trials)
    trained = {t.user_attrs["spec"]: t for t in trials if "duplicate_of" not in t.user_attrs}
    repeats = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert len(trained) == 3 and repeats  # a redraw takes no trial of the 5: the search ends at the 3 designs
    for t in repeats:
        twin = trials[t.user_attrs["duplicate_of"]]
        assert t.user_attrs["spec"] == twin.user_attrs["spec"] and t.value == twin.value
        assert t.user_attrs["status"] == "duplicate" and t.user_attrs["epochs"] == 0 and "val_error" not in t.user_attrs
    capsys.readouterr()
    assert main(["best", "--storage", f"sqlite:///{db}", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["trials"]) == 3  # each design once


def test_diverged_candidates_are_recorded_and_the_search_goes_on(tmp_path, capsys):
    space = tmp_path / "unstable.yaml"
    space.write_text(TINY.replace("recipe: {batch_size: 128, warmup_iters: 0}",
                                  "recipe: {batch_size: 128, warmup_iters: 0, lr: 1000.0, max_loss: 20.0}"))
    db = tmp_path / "x.db"
    assert _search(space, db, "--trials", "3") == 0
    trials = [t for t in _study(db).trials if "duplicate_of" not in t.user_attrs]  # a redraw trains nothing
    assert len(trials) == 3
    diverged = [t for t in trials if t.user_attrs["status"] == "diverged"]
    assert diverged and all(t.state == TrialState.COMPLETE and t.value == pytest.approx(0.9) for t in diverged)
    assert all(t.user_attrs["reason"] for t in diverged)


TABLE1 = """
name: tinytable1
dataset: digits
sampler: grid
pruner: none
epochs: {min: 1, max: 1}
seed: 0
recipe: {batch_size: 128, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  act: [original]
  shortcut: {identity: {}, exclusive_gate: {gate_bias: [-7.0]}}
"""

def test_probe_max_deviation_prunes_far_from_the_reference_net_on_both_sides(tmp_path):
    db = tmp_path / "p.db"
    assert _search_text(tmp_path, db, "--confirm", "0", "--probe-max-deviation", "0.3", text=TABLE1) == 0
    trials = {t.user_attrs["spec"]: t for t in _study(db, "tinytable1").get_trials(deepcopy=False)}
    gate = next(t for s, t in trials.items() if "exclusive_gate" in s)
    identity = next(t for s, t in trials.items() if "identity" in s)
    # the exclusive gate at b_g -7 passes almost no gradient through its shortcut: far below the reference
    assert gate.user_attrs["probe_vs_reference"] < -0.3
    assert gate.state == TrialState.PRUNED and "vs the reference net, beyond ±0.3" in gate.user_attrs["reason"]
    assert "val_error" not in gate.user_attrs  # pruned before training: no epoch spent
    assert abs(identity.user_attrs["probe_vs_reference"]) <= 0.3 and identity.state == TrialState.COMPLETE
