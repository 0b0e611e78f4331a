"""Shared test settings and fixtures."""

import os

# One intra-op thread per test process and per process a test starts (they inherit it; resnas.threads
# honours it): the tests' tiny nets gain little from more, and on a busy machine (or under pytest -n 2)
# threads waiting for each other made a 6 s training take 170 s.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from _tiny import TINY  # noqa: E402

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


@pytest.fixture
def pg_url():
    """The throw-away PostgreSQL of .ci/postgres (RESNAS_TEST_POSTGRES); in CI a missing server fails, never skips."""
    url = os.environ.get("RESNAS_TEST_POSTGRES")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must start PostgreSQL first: eval \"$(.ci/postgres)\"")
        pytest.skip("no PostgreSQL: eval \"$(.ci/postgres)\" starts one on 127.0.0.1")
    return url


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path
