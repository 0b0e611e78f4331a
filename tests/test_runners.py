"""resnas.runners: a search run in-process, under accelerate launch, and the devices its workers get."""

import subprocess
import sys

import pytest
import torch
from optuna.trial import TrialState

from resnas.budget import search_trials

from _tiny import SCALED, _search, _study


def test_search_records_trials_and_resumes(space_file, tmp_path, capsys):
    db = tmp_path / "s.db"
    assert _search(space_file, db) == 0
    out = capsys.readouterr().out
    assert "best of tiny" in out and "resnas dashboard --storage" in out
    study = _study(db)
    assert len(search_trials(study)) == 4  # designs trained: a redraw of one (status duplicate) counts for nothing
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert done and study.best_value < 0.9
    attrs = done[0].user_attrs
    assert attrs["spec"].startswith("layout=cifar,depth=8") and "in_chans=1" in attrs["spec"]
    assert attrs["timm"] == f"timm.create_model('resnas_spec', spec='{attrs['spec']}')"
    assert attrs["status"] == "ok" and attrs["device"] == "cpu" and attrs["params"] > 1000 and attrs["macs"] > 0
    assert len(attrs["epoch_seconds"]) == len(attrs["val_error"]) == attrs["epochs"]
    assert study.user_attrs["space"] == "tiny" and study.user_attrs["dataset"] == "digits"
    assert study.metric_names == ["val_error"]
    # the space's target (4) is reached: the same command adds nothing; --more 2 adds two
    assert _search(space_file, db) == 0
    assert "study holds 4 of 4 trials; --more N to add" in capsys.readouterr().out
    assert len(_study(db).trials) == len(study.trials)
    assert _search(space_file, db, "--more", "2") == 0
    assert len(search_trials(_study(db))) == 6


def test_accelerate_launch_trains_each_trial_on_two_processes(tmp_path):
    import os
    import shutil

    from resnas.spec import ArchSpec

    space_file = tmp_path / "scaled.yaml"
    space_file.write_text(SCALED)
    db = tmp_path / "a.db"
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    launcher = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    run = subprocess.run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0", "-m", "resnas", "search",
                          "--space", str(space_file), "--storage", f"sqlite:///{db}", "--trials", "2", "--confirm", "0"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    trials = _study(db).trials
    assert len(trials) == 2 and all(t.user_attrs["status"] in ("ok", "pruned") for t in trials)
    assert run.stdout.count("best of tiny") == 1  # only the main process prints
    for t in trials:  # the trained design is the recorded one, to the last bit (not a float32 copy)
        assert ArchSpec.parse(t.user_attrs["spec"]).scale == t.params["scaling.scale"]
    assert "ExperimentalWarning" not in run.stderr


def test_devices_come_from_devices_or_workers_with_one_line_errors():
    from resnas.config import SearchError
    from resnas.runners import devices

    gpus = torch.cuda.device_count()
    assert devices(None, None) == [] and devices("cpu, cpu", None) == ["cpu", "cpu"]
    assert devices(None, 3) == ([f"cuda:{i % gpus}" for i in range(3)] if gpus else ["cpu"] * 3)
    with pytest.raises(SearchError, match=rf"^devices: 'cuda:{gpus}' is not a device here; allowed: cpu"):
        devices(f"cpu,cuda:{gpus}", None)
    with pytest.raises(SearchError, match=r"^workers: 3 does not match the 2 devices given$"):
        devices("cpu,cpu", 3)
