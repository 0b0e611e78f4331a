"""The files resnas writes: their names, their checksum, their permissions.

Below the trainer, the trial record and the export, which all name or check these files.
"""

from __future__ import annotations

import hashlib
import os

import torch

__all__ = ["ARCHITECTURE", "CHECKSUM", "CONFIG", "WEIGHTS", "follow_umask", "tensor_sha256"]

CONFIG, WEIGHTS = "config.json", "model.safetensors"  # a timm local-dir folder
ARCHITECTURE = "resnas_spec"  # config.json's architecture: the timm model that reads model_args.spec
CHECKSUM = "sha256"  # the safetensors metadata key of resnas files (kept weights, epoch checkpoints)


def follow_umask(path: str | os.PathLike) -> None:
    """Give ``path`` the mode a file (0o666) or folder (0o777) gets under the user's umask: safetensors
    writes 0600 and tempfile.mkdtemp makes 0700, whatever the umask says."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_umask())


def _umask() -> int:
    try:  # Linux shows it without changing it; os.umask can only read it by setting it (process-wide)
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o077)
        os.umask(mask)
        return mask


def tensor_sha256(tensors: dict[str, torch.Tensor], text: str = "") -> str:
    """The sha256 of ``text`` and of the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256(text.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()
