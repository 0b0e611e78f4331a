"""Every example in examples/, run as a user runs it, in its smallest form: resnas and bash in a subprocess,
a Python example in this process as ``python example.py ARGS`` runs it (runpy, as __main__, in its folder)."""

import contextlib
import io
import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import timm
import torch
from optuna.trial import TrialState

import resnas
from resnas.data import load_data
from resnas.space import load_space
from resnas.spec import ArchSpec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent  # python, resnas and accelerate of this environment, as an activated venv has


def _run(argv: list[str], cwd: Path, timeout: int = 300, **env: str) -> str:
    """Run an example in ``cwd`` with one thread per process (the tests share 2 cores); its stdout."""
    full = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", COLUMNS="200",
                PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **env)
    full.pop("RESNAS_STORAGE", None)
    run = subprocess.run([str(a) for a in argv], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, f"{argv} exited {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout


def _example(script: str, *args, cwd: Path, monkeypatch) -> str:
    """``python examples/SCRIPT ARGS`` in ``cwd``, run in this process; its stdout."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / script), *map(str, args)])
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("RESNAS_STORAGE", raising=False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    return out.getvalue()


def _trials(db: Path, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=f"sqlite:///{db}").trials


def _best(trials):
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    return min(done, key=lambda t: (t.value, t.number))


def test_quick_search_prints_the_best_design_and_its_timm_model(tmp_path, monkeypatch, resnas_cli):
    db = tmp_path / "quick.db"
    argv = ["--trials", "2", "--epochs", "1", "--storage", f"sqlite:///{db}", "--confirm", "0"]
    out = _example("quick_search.py", *argv, cwd=tmp_path, monkeypatch=monkeypatch)
    trials = _trials(db, "default")
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE and t.user_attrs["status"] == "ok" for t in trials)
    assert len(re.findall(r"^trial \d+: ok, val_error ", out, re.M)) == 2  # the study callback, once per trial
    best = _best(trials)
    number, error = re.search(r"best design \(trial (\d+)\): val_error ([\d.]+) over 1 seed", out).groups()
    assert int(number) == best.number and float(error) == pytest.approx(best.value, abs=5e-5)
    assert f"spec: {best.user_attrs['spec']}\n" in out
    params, recorded = map(int, re.search(r"params: (\d+) \(recorded (\d+)\)", out).groups())
    assert params == recorded == best.user_attrs["params"] > 1000
    model = timm.create_model("resnas_spec", spec=best.user_attrs["spec"])
    assert resnas.count_params(model) == params
    assert "logits (8, 10) for a batch of (8, 1, 8, 8)" in out
    assert (tmp_path / "resnas-artifacts").is_dir()  # the best trials' weights, beside the database

    # a second seed of the other design (as the race trains): confirmed, it ranks first, luckiest run or not
    other = next(t for t in trials if t.number != best.number)
    study = optuna.load_study(study_name="default", storage=f"sqlite:///{db}")
    error = other.value + 0.01
    study.add_trial(optuna.trial.create_trial(
        value=error, params=other.params, distributions=other.distributions,
        user_attrs={**other.user_attrs, "repeat": 1, "confirms": other.number, "val_error": [error]}))
    out = _example("quick_search.py", *argv, cwd=tmp_path, monkeypatch=monkeypatch)  # the study is done: it reads
    shown = int(re.search(r"best design \(trial (\d+)\): val_error [\d.]+ \+- [\d.]+ over 2 seed", out).group(1))
    first = json.loads(resnas_cli("best", "--storage", f"sqlite:///{db}", "--json").stdout)["trials"][0]
    assert shown == first["trial"] == other.number != best.number  # as `resnas best` ranks it, not the luckiest


def test_zoo_timm_counts_params_shows_features_and_fine_tunes(tmp_path, monkeypatch):
    out = _example("zoo_timm.py", "--model", "depth=8,widths=4-8-16", "--steps", "30", cwd=tmp_path,
                   monkeypatch=monkeypatch)
    assert "preact_resnet164: 1,703,258 params" in out
    assert "feature shapes: [(16, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8)]" in out
    assert "('norm', 256, 4)" in out  # feature_info: module, channels, reduction
    first, last = map(float, re.search(r"loss: ([\d.]+) \(mean of the first 10 steps\) -> ([\d.]+)", out).groups())
    assert last < first - 0.05, out
    assert float(re.search(r"val error: ([\d.]+)", out).group(1)) < 0.9  # better than chance after 30 steps


def test_custom_space_yaml_runs_with_resnas_search(tmp_path):
    space_file = EXAMPLES / "custom_space.yaml"
    space = load_space(space_file)
    assert (space.sampler, space.pruner, space.dataset) == ("tpe", "hyperband", "digits")
    assert space.choices["depth"] == (8, 14) and space.choices["act"] == ("original", "preact")
    assert set(space.choices["shortcut"]) == {"identity", "exclusive_gate", "shortcut_gate"}
    db = tmp_path / "gates.db"
    out = _run([BIN / "resnas", "search", "--space", space_file, "--trials", "2", "--epochs", "1",
                "--storage", f"sqlite:///{db}", "--confirm", "0"], tmp_path)
    assert "best of gates" in out
    study = optuna.load_study(study_name="gates", storage=f"sqlite:///{db}")
    assert study.user_attrs["space"] == "gates" and study.user_attrs["space_file"] == str(space_file)
    assert len(study.trials) == 2
    for t in study.trials:
        assert t.state == TrialState.COMPLETE and t.user_attrs["status"] == "ok"
        spec = ArchSpec.parse(t.user_attrs["spec"])
        assert spec.depth in (8, 14) and spec.act in ("original", "preact") and spec.widths == (8, 16, 32)
        assert spec.shortcut in ("identity", "exclusive_gate", "shortcut_gate")
        if spec.shortcut != "identity":
            assert -8 <= t.params[f"{spec.shortcut}.gate_bias"] == spec.gate_bias <= 0


def test_multi_gpu_trial_sh_trains_one_trial_on_two_cpu_processes(tmp_path):
    db = tmp_path / "multi.db"
    out = _run(["bash", EXAMPLES / "multi_gpu_trial.sh"], tmp_path, NUM_PROCESSES="2", ACCELERATE_USE_CPU="1",
               EPOCHS="1", MAX_SEEDS="2", STORAGE=f"sqlite:///{db}", MAIN_PROCESS_PORT="0")
    assert "accelerate launch --num_processes 2:" in out
    assert out.count("best of default") == 1  # only the main process reports
    trials = _trials(db, "default")
    # the search's one trial, then the race (its design and the paper's unit, unless it is that) to 2 seeds,
    # each on both processes too
    raced = optuna.load_study(study_name="default", storage=f"sqlite:///{db}").user_attrs["race"]["designs"]
    assert sorted(map(str, (t.user_attrs.get("repeat") for t in trials))) == \
        sorted(["None", "1"] + (["0", "1"] if len(raced) == 2 else []))
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["status"] == "ok" for t in trials)
    assert len({t.user_attrs["seed"] for t in trials}) == 2  # paired: one seed per repeat
    assert trials[0].user_attrs["status"] == "ok" and trials[0].user_attrs["epochs"] == 1
    assert trials[0].user_attrs["val_error"] == [trials[0].value]  # the one epoch, gathered over both processes


def test_workers_sh_runs_two_cpu_workers_on_one_study(tmp_path):
    db = tmp_path / "workers.db"
    out = _run(["bash", EXAMPLES / "workers.sh"], tmp_path, WORKERS="2", TRIALS="2", EPOCHS="1", CONFIRM="0",
               STORAGE=f"sqlite:///{db}")
    assert "workers: 2" in out and out.count("best of default") == 1
    trials = _trials(db, "default")
    assert len(trials) == 2
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["status"] == "ok" for t in trials)
    assert all(t.user_attrs["device"] == "cpu" for t in trials)
    assert trials[0].params != trials[1].params  # each worker's sampler draws its own candidates


def test_export_reload_gives_the_recorded_error_and_the_exported_predictions(tmp_path, monkeypatch):
    db, folder = tmp_path / "export.db", tmp_path / "best-net"
    out = _example("export_reload.py", "--storage", f"sqlite:///{db}", "--output", folder, "--trials", "1",
                   "--epochs", "1", "--max-seeds", "2", cwd=tmp_path, monkeypatch=monkeypatch)
    trials = _trials(db, "default")
    assert "repeat" not in trials[0].user_attrs and all("repeat" in t.user_attrs for t in trials[1:])  # then the race
    best = trials[int(re.search(r"exported trial (\d+) to", out).group(1))]
    # of a design's runs, its first (the search trial, or the paper's unit's repeat 0) keeps the weights
    assert best.number == min(t.number for t in trials if t.user_attrs["spec"] == best.user_attrs["spec"])
    assert f"exported trial {best.number} to {folder} (trial {best.number}'s own weights)" in out
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    reloaded, recorded = map(float, re.search(r"val error: ([\d.]+) reloaded, ([\d.]+) recorded", out).groups())
    assert reloaded == recorded == pytest.approx(best.value, abs=1e-6)
    assert "predictions match the exported weights: True" in out
    # and here, in this process: the folder rebuilds the trial's design with the weights that scored its error
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert str(model.spec) == best.user_attrs["spec"]
    data = load_data("digits")
    with torch.no_grad():
        wrong = sum((model(x).argmax(1) != y).sum().item() for x, y in data.loader("val", 288))
    assert wrong / len(data.val) == pytest.approx(best.value, abs=1e-6)
