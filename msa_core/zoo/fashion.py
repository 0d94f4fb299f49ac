"""Fashion-MNIST: training data from Debian's ``dataset-fashion-mnist``, a fixed test subset shipped
in ``assets/``.

Training needs the Debian package (``apt-get install dataset-fashion-mnist``); the models' default
inputs do not: the first ``TEST_SUBSET`` images of a fixed shuffle of the official test set are
stored as ``assets/fashion-test-1024.npz`` (uint8 images ``[1024, 784]`` and labels ``[1024]``,
loadable with ``allow_pickle=False``), written by ``export_test_subset()`` when a Fashion-MNIST
model is trained.
"""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

import numpy as np
import torch

from msa_core.errors import MSAInputError
from msa_core.zoo.weights import ASSETS

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
TEST_SUBSET = 1024
SUBSET_PATH = ASSETS / f"fashion-test-{TEST_SUBSET}.npz"
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IDX_DTYPES = {0x08: np.uint8}  # idx type code -> dtype (Fashion-MNIST uses unsigned bytes only)


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzipped or not) as an array: magic ``00 00 type ndim``, big-endian int32 dims,
    data."""
    raw = (gzip.decompress if path.suffix == ".gz" else bytes)(path.read_bytes())
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in IDX_DTYPES:
        raise MSAInputError(f"{path} is not an unsigned-byte idx file")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    data = np.frombuffer(raw, IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise MSAInputError(f"{path}: header shape {shape} does not match {data.size} data bytes")
    return data.reshape(shape)


def debian_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``[n, 784]`` and labels uint8 ``[n]`` of ``split`` ("train" or "t10k") from the
    Debian package."""
    paths = [
        DEBIAN_DIR / f"{split}-{kind}-idx{dims}-ubyte.gz"
        for kind, dims in (("images", 3), ("labels", 1))
    ]
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise MSAInputError(
            f"Fashion-MNIST files {', '.join(missing)} are missing; training needs the Debian "
            "package: apt-get install dataset-fashion-mnist"
        )
    images, labels = (read_idx(path) for path in paths)
    return images.reshape(len(images), -1), labels


@cache
def train_split() -> tuple[torch.Tensor, torch.Tensor]:
    """The 60,000 training images scaled to [0, 1] ``[60000, 784]`` and their labels ``[60000]``."""
    images, labels = debian_split("train")
    return torch.tensor(images / 255.0, dtype=torch.float32), torch.tensor(labels, dtype=torch.long)


def export_test_subset() -> Path:
    """Write the fixed test subset (first ``TEST_SUBSET`` of a seed-0 shuffle of the test set) to
    assets/."""
    images, labels = debian_split("t10k")
    order = np.random.default_rng(0).permutation(len(images))[:TEST_SUBSET]
    SUBSET_PATH.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(SUBSET_PATH, images=images[order], labels=labels[order])
    return SUBSET_PATH


@cache
def shipped_subset() -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped test subset: images scaled to [0, 1] ``[1024, 784]`` and labels ``[1024]``."""
    if not SUBSET_PATH.exists():
        raise MSAInputError(
            f"{SUBSET_PATH} is missing; recreate it with msa_core.zoo.fashion.export_test_subset() "
            "(needs the Debian package dataset-fashion-mnist)"
        )
    with np.load(SUBSET_PATH, allow_pickle=False) as data:
        images, labels = data["images"], data["labels"]
    return torch.tensor(images / 255.0, dtype=torch.float32), torch.tensor(labels, dtype=torch.long)
