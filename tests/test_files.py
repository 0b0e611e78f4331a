"""resnas.files: the modes of the files resnas writes, and the checksum of a set of tensors."""

import os
import stat

import torch

from resnas.files import follow_umask, tensor_sha256


def test_follow_umask_gives_a_file_and_a_folder_the_mode_the_users_umask_gives(tmp_path):
    weights, folder = tmp_path / "model.safetensors", tmp_path / "net"
    weights.write_bytes(b"x")
    weights.chmod(0o600)  # as safetensors writes it
    folder.mkdir(mode=0o700)  # as tempfile.mkdtemp makes it
    mask = os.umask(0o027)
    try:
        follow_umask(weights)
        follow_umask(folder)
    finally:
        os.umask(mask)
    assert stat.S_IMODE(weights.stat().st_mode) == 0o640 and stat.S_IMODE(folder.stat().st_mode) == 0o750


def test_tensor_sha256_sees_names_dtypes_shapes_values_and_text_but_not_order():
    w, b = torch.zeros(2, 3), torch.ones(3)
    digest = tensor_sha256({"w": w, "b": b})
    assert digest == tensor_sha256({"b": b, "w": w.clone()})
    others = [tensor_sha256({"w": w, "b": b}, "spec"), tensor_sha256({"v": w, "b": b}),
              tensor_sha256({"w": w.double(), "b": b}), tensor_sha256({"w": w.reshape(3, 2), "b": b}),
              tensor_sha256({"w": w, "b": torch.tensor([1.0, 1.0, 2.0])})]
    assert len({digest, *others}) == 6
