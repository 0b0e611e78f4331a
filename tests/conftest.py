"""Shared test settings and fixtures."""

import numpy as np
import pytest
import torch

# One intra-op thread per test process: the tests' tiny nets gain little from more, and on a busy
# machine (or under pytest -n 2) threads waiting for each other made a 6 s training take 170 s.
torch.set_num_threads(1)


@pytest.fixture
def image_folder(tmp_path):
    """train/ (10 images per class) and val/ (2 per class) of two classes, 40x48 RGB PNGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("val", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{i}.png")
    return tmp_path
