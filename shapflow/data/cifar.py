"""CIFAR-20: twenty CIFAR-100 classes as contributors, read from the official python archive.

The archive ``cifar-100-python.tar.gz`` (https://www.cs.toronto.edu/~kriz/cifar.html) holds three
Python pickles (``train``, ``test``, ``meta``). We never run a general unpickler on them:
``_SafeUnpickler`` resolves only the four globals a pickled numpy array needs and refuses any
other, so a tampered archive cannot execute code. The archive is read in memory (nothing is
extracted), or from its extracted ``cifar-100-python/`` folder.

The twenty contributors are chosen BY NAME (the reference code's comment and its indices
disagree), one fine class from each of CIFAR-100's twenty superclasses, so the market spans all
of the data set's semantic groups. Each has 500 training images (10,000 in all).
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shapflow.data.base import ContributorDataset

__all__ = ["CIFAR20_CLASSES", "CIFAR20_SUPERCLASSES", "load_cifar20", "read_cifar100"]

# (superclass, fine class): the contributor of each superclass, in contributor order.
_CHOICE = (
    ("aquatic_mammals", "dolphin"), ("fish", "aquarium_fish"), ("flowers", "rose"),
    ("food_containers", "bottle"), ("fruit_and_vegetables", "apple"),
    ("household_electrical_devices", "clock"), ("household_furniture", "chair"), ("insects", "butterfly"),
    ("large_carnivores", "lion"), ("large_man-made_outdoor_things", "bridge"),
    ("large_natural_outdoor_scenes", "mountain"), ("large_omnivores_and_herbivores", "elephant"),
    ("medium_mammals", "fox"), ("non-insect_invertebrates", "crab"), ("people", "baby"), ("reptiles", "turtle"),
    ("small_mammals", "hamster"), ("trees", "oak_tree"), ("vehicles_1", "bicycle"), ("vehicles_2", "tractor"),
)
CIFAR20_CLASSES: tuple[str, ...] = tuple(fine for _, fine in _CHOICE)
CIFAR20_SUPERCLASSES: tuple[str, ...] = tuple(coarse for coarse, _ in _CHOICE)

_MEMBERS = ("train", "test", "meta")


def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _allowed_globals() -> dict[tuple[str, str], Any]:
    import codecs

    reconstruct = _numpy_reconstruct()
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # how protocol-2 pickles written by Python 3 store bytes
    }


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers and numpy arrays; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_globals()
        if (module, name) not in allowed:
            raise ValueError(f"refusing to load {module}.{name}: a CIFAR-100 file holds only dicts, lists and "
                             "numpy arrays (the file is corrupt or was tampered with)")
        return allowed[(module, name)]


def _safe_load(raw: bytes, where: str) -> dict[bytes, Any]:
    try:
        obj = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise ValueError(f"{where}: not a readable CIFAR-100 python file: {err}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a dict, found {type(obj).__name__}")
    return obj


def _read_members(path: Path) -> dict[str, bytes]:
    """Raw bytes of ``train``, ``test`` and ``meta`` from the archive or the extracted folder."""
    if path.is_file():
        try:
            with tarfile.open(path, "r:*") as archive:
                found = {Path(m.name).name: m for m in archive.getmembers()
                         if m.isfile() and Path(m.name).parent.name == "cifar-100-python"}
                missing = [name for name in _MEMBERS if name not in found]
                if missing:
                    raise ValueError(f"{path} lacks cifar-100-python/{', '.join(missing)}: "
                                     "expected the official cifar-100-python.tar.gz")
                return {name: archive.extractfile(found[name]).read() for name in _MEMBERS}
        except tarfile.TarError as err:
            raise ValueError(f"{path} is not a tar archive ({err}): expected cifar-100-python.tar.gz") from None
    folder = path / "cifar-100-python" if (path / "cifar-100-python").is_dir() else path
    missing = [name for name in _MEMBERS if not (folder / name).is_file()]
    if not path.is_dir() or missing:
        raise ValueError(f"CIFAR-100 not found at {path}: give cifar-100-python.tar.gz or its extracted folder "
                         f"holding train, test and meta (missing: {', '.join(missing) or 'the folder'})")
    return {name: (folder / name).read_bytes() for name in _MEMBERS}


def _field(batch: dict[bytes, Any], key: str, where: str) -> Any:
    if key.encode() not in batch:
        raise ValueError(f"{where}: missing key {key!r} (found {sorted(k.decode() for k in batch)})")
    return batch[key.encode()]


def read_cifar100(path: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(images uint8 (N, 3, 32, 32), fine labels int64 (N,), the 100 fine label names) of one split."""
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is invalid: use train or test")
    path = Path(path)
    members = _read_members(path)
    meta = _safe_load(members["meta"], f"{path}:meta")
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in _field(meta, "fine_label_names", "meta"))
    if len(names) != 100:
        raise ValueError(f"{path}:meta lists {len(names)} fine label names, expected 100")
    batch = _safe_load(members[split], f"{path}:{split}")
    data = np.asarray(_field(batch, "data", split))
    labels = np.asarray(_field(batch, "fine_labels", split), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}:{split} data has dtype {data.dtype} and shape {data.shape}, "
                         "expected uint8 (N, 3072)")
    if labels.shape != (data.shape[0],) or (labels.size and not 0 <= labels.min() <= labels.max() < 100):
        raise ValueError(f"{path}:{split} fine_labels must hold one label in 0..99 per image "
                         f"({labels.shape[0]} labels for {data.shape[0]} images)")
    return data.reshape(-1, 3, 32, 32), labels, names


def load_cifar20(path: str | Path, *, classes: tuple[str, ...] = CIFAR20_CLASSES,
                 split: str = "train") -> ContributorDataset:
    """Contributors = the CIFAR-100 fine classes named in ``classes``; images (N, 3, 32, 32) in [-1, 1]."""
    data, labels, names = read_cifar100(path, split)
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise ValueError(f"class name(s) {', '.join(unknown)} are not CIFAR-100 fine labels")
    index = {names.index(c): i for i, c in enumerate(classes)}
    keep = np.isin(labels, list(index))
    owners = np.array([index[label] for label in labels[keep]], dtype=np.int64)
    images = data[keep].astype(np.float32) / 127.5 - 1.0
    info = tuple({"source": "cifar-100", "fine_label": c, "fine_index": names.index(c)} for c in classes)
    return ContributorDataset(torch.from_numpy(images), torch.from_numpy(owners), tuple(classes), info).check_market()
