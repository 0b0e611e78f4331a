"""resnas.results: a trial exported (kept weights or retrained) and read back through timm."""

import json

import optuna
import pytest
import timm
import torch

from resnas.cli import main
from resnas.data import load_data

from _tiny import _search


def test_best_json_and_export_reload_through_timm(space_file, tmp_path, capsys):
    db = tmp_path / "e.db"
    assert _search(space_file, db) == 0
    capsys.readouterr()
    assert main(["best", "--storage", f"sqlite:///{db}", "--json", "--top", "2"]) == 0
    ranked = json.loads(capsys.readouterr().out)["trials"]
    assert ranked[0]["rank"] == 1 and ranked[0]["values"][0] <= ranked[-1]["values"][0]
    out = tmp_path / "best-net"
    assert main(["export", "--storage", f"sqlite:///{db}", "--output", str(out)]) == 0
    assert "own weights" in capsys.readouterr().out
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    assert str(model.spec) == ranked[0]["spec"] and model.pretrained_cfg["input_size"] == [1, 8, 8]
    # the exported weights give exactly the validation error the trial recorded
    data = load_data("digits")
    x, y = data.val.__getitems__(list(range(len(data.val))))
    with torch.no_grad():
        error = (model(x).argmax(1) != y).float().mean().item()
    assert error == pytest.approx(ranked[0]["values"][0], abs=1e-6)
    assert main(["export", "--storage", f"sqlite:///{db}", "--output", str(out)]) == 2  # never overwrites


def test_export_retrains_a_trial_that_kept_no_weights(tmp_path):
    from resnas.results import export_trial
    db = f"sqlite:///{tmp_path}/r.db"
    study = optuna.create_study(study_name="hand", storage=db)
    study.set_user_attr("dataset", "digits")
    study.set_user_attr("max_epochs", 1)
    study.add_trial(optuna.trial.create_trial(
        value=0.5, params={}, distributions={},
        user_attrs={"spec": "depth=8,widths=4-8-16,in_chans=1", "status": "ok", "epochs": 1}))
    folder, how = export_trial(study, db, 0, tmp_path / "net")
    assert how == "retrained for 1 epochs: trial 0 kept no weights"
    model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    assert model.pretrained_cfg["input_size"] == [1, 8, 8] and model.num_classes == 10
    with pytest.raises(ValueError, match="^trial: 7 is not in study hand"):
        export_trial(study, db, 7, tmp_path / "other")
    assert not (tmp_path / "other").exists()
