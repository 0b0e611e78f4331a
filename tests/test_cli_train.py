"""`resnas train`: trains, reports, exports a folder timm reloads; bad arguments exit with code 2."""

import pytest
import timm
import torch
from safetensors.torch import load_file

import resnas
from resnas.cli import main
from resnas.export import read_config

TINY = "depth=8,widths=8-16-32"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    code = main(["train", "--model", TINY, "--dataset", "digits", "--epochs", "2", "--batch-size", "64",
                 "--output", str(out)])
    return code, out


def test_train_exports_a_folder_timm_reloads_with_the_trained_weights(trained):
    code, out = trained
    assert code == 0
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    # the same network rebuilt from the last checkpoint of the run
    state = load_file(out / "checkpoint.safetensors")
    reference = resnas.build(str(model.spec))
    reference.load_state_dict({k[len("/model/"):]: v for k, v in state.items() if k.startswith("/model/")})
    x = torch.randn(8, 1, 8, 8)
    assert torch.equal(model(x), reference.eval()(x))
    cfg = read_config(out)["pretrained_cfg"]
    assert cfg["input_size"] == [1, 8, 8] and cfg["num_classes"] == 10 and len(cfg["mean"]) == 1


def test_train_prints_val_and_test_error(trained, capsys):
    # a second run resumes the finished checkpoint: nothing left to train, same report
    code, out = trained
    args = ["train", "--model", TINY, "--epochs", "2", "--batch-size", "64", "--output", str(out), "--resume"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "val error" in printed and "test error" in printed and "local-dir:" in printed


@pytest.mark.parametrize("args, message", [
    (["--model", "resnet9000"], "model: unknown name 'resnet9000'"),
    (["--model", "depth=21"], "depth: 21 is not 6n+2"),
    (["--model", TINY, "--dataset", "mnist"], "Invalid value for '--dataset'"),
    (["--model", TINY, "--epochs", "0"], "Invalid value for '--epochs'"),
    (["--model", TINY, "--dataset", "cifar10"], "cifar10: needs a data directory"),
    (["--model", TINY, "--batch-size", "5000"], "batch_size: 5000 exceeds"),
    (["--model", TINY, "--schedule-epochs", "1", "--epochs", "2"], "epochs: 2 exceeds schedule_epochs=1"),
])
def test_bad_arguments_exit_2_with_one_line(args, message, capsys, tmp_path):
    assert main(["train", *args, "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_missing_cifar_names_where_to_put_it(capsys, tmp_path):
    assert main(["train", "--model", TINY, "--dataset", "cifar10", "--data-dir", str(tmp_path), "--no-download"]) == 2
    assert "put the extracted cifar-10-batches-py/" in capsys.readouterr().err


def test_existing_checkpoint_needs_resume(trained, capsys):
    assert main(["train", "--model", TINY, "--output", str(trained[1])]) == 2
    assert "pass --resume" in capsys.readouterr().err


def test_help_shows_an_example(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "resnas train --model" in out and "--data-dir" in out
