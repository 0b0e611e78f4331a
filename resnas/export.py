"""A trained network as a timm ``local-dir`` folder: ``config.json`` + ``model.safetensors``.

``timm.create_model('local-dir:DIR', pretrained=True)`` rebuilds it with its weights, and its
``pretrained_cfg`` describes the input it was trained on (size, channels, mean, std, classes)::

    >>> import tempfile, torch, timm, resnas
    >>> net = resnas.build("depth=8,widths=8-16-32,in_chans=1").eval()
    >>> folder = export(net, tempfile.mkdtemp(), input_size=(1, 8, 8), mean=(0.3,), std=(0.4,))
    >>> again = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    >>> x = torch.randn(2, 1, 8, 8)
    >>> torch.equal(net(x), again(x)), tuple(again.pretrained_cfg["input_size"])
    (True, (1, 8, 8))
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import timm
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import first_line
from .files import ARCHITECTURE, CHECKSUM, CONFIG, WEIGHTS, follow_umask, tensor_sha256
from .spec import ArchSpec
from .zoo import input_cfg

__all__ = ["ExportError", "export", "load", "read_config", "verify_weights"]


class ExportError(ValueError):
    """A folder that is not a resnas/timm local-dir export (one line, naming what is wrong)."""


def export(model: nn.Module, directory: str | os.PathLike, **input_info: Any) -> Path:
    """Write ``model`` (a resnas network) to ``directory``; ``input_info`` overrides the pretrained_cfg
    entries of its layout (input_size, mean, std, crop_pct, ..., e.g. ``Data.pretrained_cfg()``)."""
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ExportError(f"model: {type(model).__name__} has no spec; export takes a resnas network")
    cfg = {**input_cfg(spec), **input_info, "num_classes": spec.num_classes}
    reduction = model.feature_info[-1]["reduction"]
    cfg["pool_size"] = tuple(max(1, s // reduction) for s in cfg["input_size"][1:])
    config = dict(architecture=ARCHITECTURE, num_classes=spec.num_classes, num_features=model.num_features,
                  global_pool="avg", model_args=dict(spec=str(spec)),
                  pretrained_cfg=dict(cfg, first_conv="stem.conv", classifier="head.fc", license="mit",
                                      paper_ids="arXiv:1603.05027"))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _write_weights(model, directory / WEIGHTS)
    _atomic_write(directory / CONFIG, json.dumps(config, indent=2) + "\n")
    return directory


def _write_weights(model: nn.Module, path: Path) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, tmp, metadata={"format": "pt", CHECKSUM: tensor_sha256(tensors)})
    follow_umask(tmp)
    os.replace(tmp, path)


def verify_weights(path: str | os.PathLike, name: str | None = None) -> None:
    """Check the weights file against the checksum it carries (files without one predate it); a
    one-line ExportError naming ``name`` (default: the path) for a damaged one."""
    name = name or str(path)
    try:
        with safe_open(path, framework="pt") as f:
            expected = (f.metadata() or {}).get(CHECKSUM)
            tensors = {k: f.get_tensor(k) for k in f.keys()} if expected else {}
    except OSError as e:
        raise ExportError(f"export: cannot read {name} ({e.strerror or e})") from None
    except Exception as e:  # safetensors' own error: a truncated file, a bad header
        raise ExportError(f"export: {name} is unreadable (corrupt or truncated: {type(e).__name__})") from None
    if expected and tensor_sha256(tensors) != expected:
        raise ExportError(f"export: {name} is corrupt (checksum mismatch: its tensor data changed after it was "
                          "written)")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The config.json of an export, checked: one-line ExportError for anything else."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ExportError(f"export: {directory} is not a directory")
    for name in (CONFIG, WEIGHTS):
        if not (directory / name).is_file():
            raise ExportError(f"export: {directory} has no {name}; expected {CONFIG} and {WEIGHTS} from resnas train")
    try:
        config = json.loads((directory / CONFIG).read_text())
    except json.JSONDecodeError as e:
        raise ExportError(f"export: {directory / CONFIG} is not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("architecture") != ARCHITECTURE:
        found = config.get("architecture") if isinstance(config, dict) else None
        raise ExportError(f"export: {directory / CONFIG} has architecture {found!r}; allowed: {ARCHITECTURE}")
    if not isinstance(config.get("model_args"), dict) or "spec" not in config["model_args"]:
        raise ExportError(f"export: {directory / CONFIG} has no model_args.spec")
    return config


def load(directory: str | os.PathLike) -> nn.Module:
    """The network of an export, with its weights, through timm's ``local-dir:`` loader."""
    config = read_config(directory)
    try:
        ArchSpec.parse(config["model_args"]["spec"])
    except ValueError as e:
        raise ExportError(f"export: {Path(directory) / CONFIG} has a bad spec ({e})") from None
    verify_weights(Path(directory) / WEIGHTS)
    try:
        return timm.create_model(f"local-dir:{Path(directory).resolve()}", pretrained=True)
    except (RuntimeError, OSError) as e:  # weights that do not match the spec, unreadable files
        raise ExportError(f"export: cannot load {directory} ({first_line(e)})") from None
