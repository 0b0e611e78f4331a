"""Export: a timm local-dir folder that rebuilds the network with its weights and describes its input."""

import doctest
import json
import shutil

import optuna
import pytest
import timm
import torch
from optuna.trial import TrialState
from safetensors.torch import load_file

import resnas
import resnas.export
from resnas.cli import main
from resnas.data import load_data
from resnas.export import ExportError, export, load, read_config
from resnas.kept import weights_kept
from resnas.recipe import design_seed
from resnas.storage import artifact_root

SPEC = "depth=8,widths=8-16-32,in_chans=1,act=original,shortcut=exclusive_gate,gate_bias=-6"


@pytest.fixture
def net():
    torch.manual_seed(0)
    model = resnas.build(SPEC)
    model.train()
    model(torch.randn(16, 1, 8, 8))  # move the BN running statistics away from their init
    return model.eval()


def test_local_dir_rebuilds_identical_logits(net, tmp_path):
    export(net, tmp_path, input_size=(1, 8, 8), mean=(0.3,), std=(0.4,), crop_pct=1.0)
    again = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(net(x), again(x))
    assert str(again.spec) == str(net.spec)
    assert torch.equal(load(tmp_path).eval()(x), net(x))


def test_config_describes_architecture_and_input(net, tmp_path):
    export(net, tmp_path, input_size=(1, 8, 8), mean=(0.3,), std=(0.4,), crop_pct=1.0)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == "resnas_spec"
    assert config["model_args"] == {"spec": str(net.spec)}
    cfg = config["pretrained_cfg"]
    assert (cfg["input_size"], cfg["mean"], cfg["std"], cfg["num_classes"]) == ([1, 8, 8], [0.3], [0.4], 10)
    assert cfg["pool_size"] == [2, 2]  # 8x8 through the CIFAR stages: 8 -> 4 -> 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    model = timm.create_model(f"local-dir:{tmp_path}", pretrained=True)
    data_cfg = timm.data.resolve_data_config(model=model)
    assert tuple(data_cfg["input_size"]) == (1, 8, 8) and tuple(data_cfg["mean"]) == (0.3,)


def test_default_input_is_the_layouts(tmp_path):
    net = resnas.build("depth=8,num_classes=7")
    cfg = read_config(export(net, tmp_path))["pretrained_cfg"]
    assert cfg["input_size"] == [3, 32, 32] and cfg["num_classes"] == 7 and cfg["pool_size"] == [8, 8]


def test_bad_folders_are_one_line_errors(net, tmp_path):
    with pytest.raises(ExportError, match="is not a directory"):
        load(tmp_path / "nope")
    with pytest.raises(ExportError, match="has no config.json"):
        load(tmp_path)
    export(net, tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ExportError, match="not valid JSON"):
        load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet50", "model_args": {}}))
    with pytest.raises(ExportError, match="architecture 'resnet50'; allowed: resnas_spec"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnas_spec", "model_args": {"spec": "depth=20"},
                                                      "pretrained_cfg": {}}))
    with pytest.raises(ExportError, match="cannot load") as e:
        load(tmp_path)  # the weights are those of a depth-8 net
    assert "\n" not in str(e.value)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ExportError, match="has no model.safetensors"):
        load(tmp_path)


def test_export_needs_a_resnas_network(tmp_path):
    with pytest.raises(ExportError, match="has no spec"):
        export(torch.nn.Linear(2, 2), tmp_path)


def test_docstring_examples_run():
    assert doctest.testmod(resnas.export).failed == 0


SEEDED = """
name: seeded
dataset: digits
sampler: grid
pruner: none
epochs: {min: 2, max: 2}
seed: 3
recipe: {batch_size: 128, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  act: [original, preact]
  shortcut: {identity: {}, scaling: {scale: [0.5]}}
"""


def _val_error(model) -> float:
    """The error over the whole validation split, computed as training computes it (wrong / count)."""
    data = load_data("digits")
    x, y = data.val.__getitems__(list(range(len(data.val))))
    with torch.no_grad():
        return int((model.eval()(x).argmax(1) != y).sum()) / len(y)


def test_export_retrains_with_the_searchs_seed_and_reproduces_the_trial(tmp_path, capsys):
    space, db = tmp_path / "seeded.yaml", tmp_path / "s.db"
    space.write_text(SEEDED)
    url = f"sqlite:///{db}"
    assert main(["search", "--space", str(space), "--storage", url, "--seed", "11", "--confirm", "0"]) == 0  # not the space's 3
    study = optuna.load_study(study_name="seeded", storage=url)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE and t.user_attrs["status"] == "ok"]
    assert len(done) == 4 and study.user_attrs["seed"] == 11
    assert all(t.user_attrs["seed"] == design_seed(11) for t in done)
    kept = next(t for t in done if weights_kept(study, url, t))  # top k: files of the rest removed
    assert main(["export", "--storage", url, "--trial", str(kept.number), "--output", str(tmp_path / "own")]) == 0
    assert "own weights" in capsys.readouterr().out
    # no trial keeps weights now: every export retrains
    shutil.rmtree(artifact_root(url))
    for t in done:
        out = tmp_path / f"net{t.number}"
        assert main(["export", "--storage", url, "--trial", str(t.number), "--output", str(out)]) == 0
        assert f"trial {t.number} kept no weights" in capsys.readouterr().out
        model = timm.create_model(f"local-dir:{out}", pretrained=True)
        assert str(model.spec) == t.user_attrs["spec"]
        assert _val_error(model) == t.value == t.user_attrs["val_error"][-1]
    # the retrained network is the trial's own, to the last bit
    own = load_file(tmp_path / "own" / "model.safetensors")
    again = load_file(tmp_path / f"net{kept.number}" / "model.safetensors")
    assert own.keys() == again.keys() and all(torch.equal(own[k], again[k]) for k in own)
