"""Data sets: digits split, the batched on-device augmentation, CIFAR on disk, image folders."""

import pickle

import numpy as np
import pytest
import torch

from resnas.data import Augment, DataError, TensorSplit, augment_batch, load_data


def test_digits_split_is_fixed_disjoint_and_shaped_for_cifar_nets():
    a, b = load_data("digits"), load_data("digits")
    assert (len(a.train), len(a.val), len(a.test)) == (1149, 288, 360)
    assert a.input_size == (1, 8, 8) and a.num_classes == 10
    assert torch.equal(a.val.images, b.val.images) and torch.equal(a.test.labels, b.test.labels)
    x, y = next(iter(a.loader("test", batch_size=360)))
    assert x.shape == (360, 1, 8, 8) and x.dtype == torch.float32
    assert sorted(y.unique().tolist()) == list(range(10))
    # the train images are normalised with their own statistics
    xt, _ = next(iter(a.loader("val", batch_size=288)))
    assert abs(xt.mean().item()) < 0.2 and 0.8 < xt.std().item() < 1.2


def test_train_loader_shuffles_with_its_generator_and_drops_the_partial_batch():
    data = load_data("digits")
    loader = data.loader("train", 100, generator=torch.Generator().manual_seed(1))
    batches = list(loader)
    assert len(batches) == 1149 // 100 and all(len(y) == 100 for _, y in batches)
    again = list(data.loader("train", 100, generator=torch.Generator().manual_seed(1)))
    assert all(torch.equal(y1, y2) for (_, y1), (_, y2) in zip(batches, again))
    assert sum(len(y) for _, y in data.loader("val", 100)) == 288


def test_augment_crops_a_shifted_window_of_the_zero_padded_image():
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6) + 1
    out = augment_batch(x, Augment(pad=2, flip=False))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    windows = [padded[:, :, dy:dy + 6, dx:dx + 6] for dy in range(5) for dx in range(5)]
    for i in range(2):
        assert any(torch.equal(out[i], w[i]) for w in windows)
    assert torch.equal(augment_batch(x, Augment(pad=0, flip=False)), x)


def test_flip_mirrors_about_half_the_images():
    torch.manual_seed(0)
    x = torch.randn(400, 1, 4, 4)
    out = augment_batch(x, Augment(pad=0, flip=True))
    flipped = torch.tensor([torch.equal(o, xi.flip(2)) for o, xi in zip(out, x)])
    same = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert bool((flipped | same).all()) and 150 < flipped.sum().item() < 250


def test_tensor_split_serves_batches_from_its_device():
    split = TensorSplit(torch.full((5, 1, 2, 2), 255, dtype=torch.uint8), torch.arange(5), (0.5,), (0.5,))
    x, y = split.__getitems__([4, 1])
    assert torch.allclose(x, torch.ones(2, 1, 2, 2)) and y.tolist() == [4, 1]
    assert split.to("cpu") is split


def _write_cifar(root, name):
    """A small CIFAR in torchvision's on-disk format: pickled dicts of uint8 rows (3072 = 3x32x32, CHW)."""
    rng = np.random.default_rng(0)
    if name == "cifar10":
        folder, files, key = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "labels"
        meta, meta_key, classes = "batches.meta", "label_names", 10
    else:
        folder, files, key = root / "cifar-100-python", ["train"], "fine_labels"
        meta, meta_key, classes = "meta", "fine_label_names", 100
    folder.mkdir(parents=True)
    written = {}
    for i, f in enumerate(files + ["test_batch" if name == "cifar10" else "test"]):
        data = rng.integers(0, 256, (20, 3072), dtype=np.uint8)
        labels = [(i * 20 + j) % classes for j in range(20)]
        with open(folder / f, "wb") as fh:
            pickle.dump({"data": data, key: labels}, fh)
        written[f] = (data, labels)
    with open(folder / meta, "wb") as fh:
        pickle.dump({meta_key: [f"class{c}" for c in range(classes)]}, fh)
    return written


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_on_disk_loads_with_shapes_and_labels(tmp_path, name):
    written = _write_cifar(tmp_path, name)
    data = load_data(name, tmp_path, download=False)
    n_train = 100 if name == "cifar10" else 20
    assert len(data.train) + len(data.val) == n_train and len(data.test) == 20
    assert len(data.val) == round(n_train * 0.1)
    assert data.input_size == (3, 32, 32) and data.num_classes == (10 if name == "cifar10" else 100)
    test_rows, test_labels = written["test_batch" if name == "cifar10" else "test"]
    assert torch.equal(data.test.images, torch.from_numpy(test_rows).view(20, 3, 32, 32))
    assert data.test.labels.tolist() == test_labels
    # every training image keeps its own label across the train/val carve
    rows = np.concatenate([written[f][0] for f in written if "test" not in f])
    labels = sum((written[f][1] for f in written if "test" not in f), [])
    lookup = {r.tobytes(): lab for r, lab in zip(rows, labels)}
    for split in (data.train, data.val):
        for img, lab in zip(split.images, split.labels):
            assert lookup[img.numpy().tobytes()] == lab.item()
    x, y = next(iter(data.loader("train", 8, generator=torch.Generator().manual_seed(0))))
    assert x.shape == (8, 3, 32, 32) and y.shape == (8,)


def test_missing_cifar_is_a_one_line_error_saying_where_to_put_it(tmp_path):
    with pytest.raises(DataError) as e:
        load_data("cifar10", tmp_path, download=False)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path) in msg and "cifar-10-batches-py" in msg


def test_unknown_dataset_names_the_allowed_ones():
    with pytest.raises(DataError, match="allowed: digits, cifar10, cifar100, imagenet, folder"):
        load_data("mnist")
    with pytest.raises(DataError, match="--data-dir"):
        load_data("cifar10")


def test_image_folder_goes_through_timm_transforms(image_folder):
    data = load_data("folder", image_folder, image_size=32, workers=0)
    assert data.num_classes == 2 and data.input_size == (3, 32, 32)
    assert (len(data.train), len(data.val), len(data.test)) == (18, 2, 4)
    x, y = next(iter(data.loader("train", 4, generator=torch.Generator().manual_seed(0))))
    assert x.shape == (4, 3, 32, 32) and set(y.tolist()) <= {0, 1}
    with pytest.raises(DataError, match="no val/"):
        load_data("imagenet", image_folder / "train", workers=0)


def test_docstring_examples_run():
    import doctest

    import resnas.data

    assert doctest.testmod(resnas.data).failed == 0
