"""Data sets as train / validation / test splits, and the loaders that feed them to a network.

``digits`` (scikit-learn's bundled 1,797 handwritten digits) and ``cifar10`` / ``cifar100`` are small
enough to sit in memory, on the GPU when there is one: their loader indexes one uint8 tensor with a
whole batch of indices and does the paper's augmentation there, batched (Sec. 4.1: zero-pad, random
crop, horizontal flip), so the GPU never waits for the CPU. ``imagenet`` and ``folder`` (any folder of
class sub-folders) go through ``timm.data`` and worker processes, with timm's standard augmentation.

``digits`` runs through the CIFAR networks unchanged: 1-channel 8x8 images, so a CIFAR-layout spec
with ``in_chans=1`` sees its stages at 8x8, 4x4 and 2x2 instead of 32/16/8. Its augmentation is a
1-pixel shift without flips (a mirrored 2 is not a 2).

The validation split is carved from the training set with a fixed seed, so a search selects on it;
the test split is kept for the final report::

    >>> data = load_data("digits")
    >>> len(data.train), len(data.val), len(data.test), data.input_size
    (1149, 288, 360, (1, 8, 8))
    >>> x, y = next(iter(data.loader("val", batch_size=32)))
    >>> tuple(x.shape), y.dtype
    ((32, 1, 8, 8), torch.int64)
"""

from __future__ import annotations

import os
import shutil
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import PartialState
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_dataset, create_transform
from torch.utils.data import DataLoader, Dataset, RandomSampler, Subset
from torchvision.datasets import CIFAR10, CIFAR100

from .errors import did_you_mean, first_line
from .zoo import CIFAR10_MEAN, CIFAR10_STD

__all__ = ["CIFAR_STATS", "DATASETS", "Augment", "Data", "DataError", "DataSet", "TensorSplit", "augment_batch",
           "load_data"]

SPLITS = ("train", "val", "test")
SPLIT_SEED = 0  # the split is part of the data set: fixed, whatever the training seed

CIFAR_STATS = {
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


class DataError(ValueError):
    """A data set that is unknown, missing or malformed (one line, naming where to put it)."""


@dataclass(frozen=True)
class Augment:
    """Random crop after zero-padding by ``pad`` pixels, and a horizontal flip with probability 1/2."""

    pad: int = 4
    flip: bool = True


class TensorSplit(Dataset):
    """A split held as one uint8 (N, C, H, W) tensor, indexed by a whole batch of indices at once
    (``__getitems__``, which torch's DataLoader calls with the batch's indices).

    >>> split = TensorSplit(torch.zeros(10, 1, 8, 8, dtype=torch.uint8), torch.arange(10), (0.5,), (0.25,))
    >>> x, y = split.__getitems__([0, 3])
    >>> tuple(x.shape), x[0, 0, 0, 0].item(), y.tolist()
    ((2, 1, 8, 8), -2.0, [0, 3])
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, augment: Augment | None = None):
        self.images, self.labels, self.augment = images, labels, augment
        self.stats = (tuple(mean), tuple(std))
        # on the 0..255 scale of the stored bytes, shaped to broadcast over (B, C, H, W)
        self.mean = torch.tensor(mean, device=images.device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=images.device).view(1, -1, 1, 1) * 255

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> TensorSplit:
        if self.images.device == torch.device(device):
            return self
        return TensorSplit(self.images.to(device), self.labels.to(device), *self.stats, self.augment)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices)
        if self.images.is_cuda:  # a pinned, asynchronous copy: a pageable one would wait for the GPU's queue
            index = index.pin_memory().to(self.images.device, non_blocking=True)
        x = self.images[index]
        if self.augment is not None:
            x = augment_batch(x, self.augment)
        return (x.float() - self.mean) / self.std, self.labels[index]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([i])
        return x[0], y[0]


def _as_is(batch):
    """collate_fn for TensorSplit: __getitems__ already returns the batch."""
    return batch


def augment_batch(x: torch.Tensor, augment: Augment) -> torch.Tensor:
    """Per-image random crop (after zero-padding) and flip of a (B, C, H, W) batch, on x's device."""
    b, c, h, w = x.shape
    if augment.pad:
        p = augment.pad
        padded = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (b, 1), device=x.device)
        dx = torch.randint(0, 2 * p + 1, (b, 1), device=x.device)
        rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chans = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[batch, chans, rows, cols]  # one gather for the whole batch
    if augment.flip:
        flip = torch.rand(b, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


@dataclass
class Data:
    """The splits of one data set and what a network needs to know about its input."""

    name: str
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: Dataset
    val: Dataset
    test: Dataset | None
    crop_pct: float = 1.0
    workers: int = 0
    _on_device: dict = field(default_factory=dict, repr=False)

    def pretrained_cfg(self) -> dict:
        """The input description timm keeps in a model's ``pretrained_cfg``."""
        return dict(input_size=self.input_size, mean=self.mean, std=self.std, num_classes=self.num_classes,
                    crop_pct=self.crop_pct, interpolation="bilinear")

    def loader(self, split: str, batch_size: int, *, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> DataLoader:
        """Batches of ``split``: shuffled with ``generator`` and without a last partial batch for 'train'.

        In-memory splits are moved to ``device`` once and served from there.
        """
        if split not in SPLITS:
            raise DataError(f"split: {split!r} is unknown; allowed: {', '.join(SPLITS)}")
        dataset = getattr(self, split)
        if dataset is None:
            raise DataError(f"{self.name}: has no {split} split")
        train = split == "train"
        if isinstance(dataset, TensorSplit):
            key = (split, str(device))
            if key not in self._on_device:
                self._on_device[key] = dataset.to(device)
            dataset = self._on_device[key]
            return DataLoader(dataset, batch_size=batch_size, drop_last=train, collate_fn=_as_is,
                              sampler=RandomSampler(dataset, generator=generator) if train else None)
        return DataLoader(dataset, batch_size=batch_size, drop_last=train, num_workers=self.workers,
                          sampler=RandomSampler(dataset, generator=generator) if train else None,
                          pin_memory=torch.cuda.is_available(), persistent_workers=self.workers > 0)


def load_data(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True,
              image_size: int = 224, val_fraction: float = 0.1, workers: int | None = None) -> Data:
    """The data set ``name`` (one of DATASETS), read from (or downloaded into) ``data_dir``.

    >>> load_data("digits").num_classes
    10
    """
    if name not in DATASETS:
        raise DataError(f"dataset: {name!r} is unknown; allowed: {', '.join(DATASETS)}{did_you_mean(name, DATASETS)}")
    row = DATASETS[name]
    if row.embedded:
        return row.load(Load(name))
    if data_dir is None:
        raise DataError(f"{name}: needs a data directory (--data-dir)")
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction: {val_fraction!r} is out of range; allowed: (0, 1)")
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    return row.load(Load(name, Path(data_dir), download, image_size, val_fraction, workers))


@dataclass(frozen=True)
class Load:
    """What ``load_data`` was asked for, as every loader of the table below takes it."""

    name: str
    root: Path | None = None
    download: bool = True
    image_size: int = 224
    val_fraction: float = 0.1
    workers: int = 0


def _stratified_split(labels: np.ndarray, sizes: tuple[int, ...]) -> list[np.ndarray]:
    from sklearn.model_selection import train_test_split  # deferred: sklearn takes a second to import, digits only

    parts, rest = [], np.arange(len(labels))
    for size in sizes:
        rest, part = train_test_split(rest, test_size=size, stratify=labels[rest], random_state=SPLIT_SEED)
        parts.append(np.sort(part))
    return [np.sort(rest), *parts]


def _digits(_: Load) -> Data:
    from sklearn.datasets import load_digits  # deferred: sklearn takes a second to import, digits only

    digits = load_digits()
    images = torch.from_numpy(np.round(digits.images * (255 / 16))).to(torch.uint8)[:, None]  # 0..16 -> 0..255
    labels = torch.from_numpy(digits.target).long()
    train, test, val = _stratified_split(digits.target, (360, 288))  # 20% test, then 20% of the rest for val
    mean = (images[train].float().mean().item() / 255,)
    std = (images[train].float().std().item() / 255,)

    def split(idx, augment=None):
        return TensorSplit(images[idx], labels[idx], mean, std, augment)

    return Data("digits", 10, (1, 8, 8), mean, std, split(train, Augment(pad=1, flip=False)), split(val), split(test))


def _cifar_class(name: str):
    """torchvision's CIFAR class, checking the batches' presence rather than their md5.

    The archive's md5 is still checked on download; this lets users (and the tests) supply their own
    batches in torchvision's on-disk format.
    """
    base = CIFAR10 if name == "cifar10" else CIFAR100
    return type(base.__name__, (base,), dict(
        train_list=[[f, None] for f, _ in base.train_list], test_list=[[f, None] for f, _ in base.test_list],
        meta={**base.meta, "md5": None}))


def _first_missing(path: Path) -> Path | None:
    """The outermost folder on the way to ``path`` that does not exist yet (None: ``path`` exists)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    return missing[-1] if missing else None


def _cifar(load: Load) -> Data:
    name, root, download, val_fraction = load.name, load.root, load.download, load.val_fraction
    cls = _cifar_class(name)
    # what a failed download would leave behind: the folders made for root, else its archive and folder in it
    new = [p for p in (_first_missing(root), root / cls.filename, root / cls.base_folder) if p and not p.exists()]
    try:
        with PartialState().main_process_first():  # one process downloads, the others wait and read
            train_set = cls(str(root), train=True, download=download)
        test_set = cls(str(root), train=False)
    except (RuntimeError, OSError, urllib.error.URLError) as e:
        for path in new:  # nothing of a failed download stays: a typo in --data-dir leaves no folders
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        why = f"download failed ({first_line(e)})" if download else "download is off"
        raise DataError(f"{name}: not found in {root / cls.base_folder} and {why}; put the extracted "
                        f"{cls.base_folder}/ from {cls.url} in {root}") from None
    images = torch.from_numpy(train_set.data).permute(0, 3, 1, 2).contiguous()  # HWC -> CHW, still uint8
    labels = torch.tensor(train_set.targets, dtype=torch.long)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = max(1, round(len(labels) * val_fraction))
    val, train = perm[:n_val].sort().values, perm[n_val:].sort().values
    mean, std = CIFAR_STATS[name]
    test_images = torch.from_numpy(test_set.data).permute(0, 3, 1, 2).contiguous()
    return Data(name, len(train_set.classes), (3, 32, 32), mean, std,
                TensorSplit(images[train], labels[train], mean, std, Augment()),
                TensorSplit(images[val], labels[val], mean, std),
                TensorSplit(test_images, torch.tensor(test_set.targets, dtype=torch.long), mean, std))


def _folder(load: Load) -> Data:
    name, root, image_size, val_fraction = load.name, load.root, load.image_size, load.val_fraction
    if not root.is_dir():
        raise DataError(f"{name}: {root} is not a directory; "
                        "expected class sub-folders, or train/ and val/ holding them")
    size, crop_pct = (3, image_size, image_size), 0.875
    mean, std = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    train_tf = create_transform(size, is_training=True, mean=mean, std=std)
    eval_tf = create_transform(size, crop_pct=crop_pct, mean=mean, std=std)
    try:
        train_all = create_dataset("", root=str(root), split="train", transform=train_tf)
        eval_all = create_dataset("", root=str(root), split="train", transform=eval_tf)
    except Exception as e:  # timm's folder reader raises assorted errors for empty or odd folders
        raise DataError(f"{name}: no images found in {root} ({e})") from None
    n = len(train_all)
    if n < 2:
        raise DataError(f"{name}: {root} holds {n} images; need class sub-folders of images")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    n_val = max(1, round(n * val_fraction))
    test = None
    for split in ("val", "validation", "test"):  # the official val split is the test split here
        if (root / split).is_dir():
            test = create_dataset("", root=str(root), split=split, transform=eval_tf)
            break
    if name == "imagenet" and test is None:
        raise DataError(f"imagenet: {root} has no val/ folder; expected train/ and val/ with one folder per class")
    num_classes = len(train_all.reader.class_to_idx)
    return Data(name, num_classes, size, tuple(mean), tuple(std), Subset(train_all, sorted(perm[n_val:])),
                Subset(eval_all, sorted(perm[:n_val])), test, crop_pct=crop_pct, workers=load.workers)


@dataclass(frozen=True)
class DataSet:
    """One data set resnas knows: its loader, how the paper trains on it, and the input it gives."""

    name: str
    load: Callable[[Load], Data]
    recipe: str  # its training recipe: a key of resnas.train.RECIPES
    epochs: int  # the paper's budget, ``resnas train``'s default (digits converges in 30, STACK.md)
    input_size: tuple[int, int, int] | None  # None: set by ``image_size``
    embedded: bool = False  # shipped with a package: no data directory


DATASETS = {d.name: d for d in (
    DataSet("digits", _digits, "digits", 30, (1, 8, 8), embedded=True),
    DataSet("cifar10", _cifar, "cifar", 164, (3, 32, 32)),
    DataSet("cifar100", _cifar, "cifar", 164, (3, 32, 32)),
    DataSet("imagenet", _folder, "imagenet", 90, None),
    DataSet("folder", _folder, "imagenet", 90, None),  # any folder of class sub-folders
)}
