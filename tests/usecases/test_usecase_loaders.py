"""Loaders of the real data layouts on generated miniature fixtures, and their errors on malformed ones."""

import csv
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from shapflow.data.artbench import load_artbench
from shapflow.data.celebahq import load_celebahq
from shapflow.data.cifar import CIFAR20_CLASSES, CIFAR20_SUPERCLASSES, load_cifar20, read_cifar100

FILLER = [f"filler_{i}" for i in range(80)]
FINE_NAMES = sorted([*CIFAR20_CLASSES, *FILLER])  # 100 names, like the real meta file


def _pixels(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def _batch(labels: list[int], seed: int) -> dict:
    data = _pixels(len(labels), seed)
    return {b"batch_label": b"training batch 1 of 1", b"fine_labels": labels, b"coarse_labels": [0] * len(labels),
            b"filenames": [f"{i}.png".encode() for i in range(len(labels))], b"data": data}


def _train_labels(per_class: int = 2) -> list[int]:
    wanted = [FINE_NAMES.index(c) for c in (*CIFAR20_CLASSES, "filler_0", "filler_1")]
    return [label for label in wanted for _ in range(per_class)]


def _cifar_members() -> dict[str, bytes]:
    """The three pickles of the official archive, miniature: every CIFAR-20 class + two filler classes."""
    labels = _train_labels()
    meta = {b"fine_label_names": [n.encode() for n in FINE_NAMES], b"coarse_label_names": [b"x"] * 20}
    return {"train": pickle.dumps(_batch(labels, 0), protocol=2),
            "test": pickle.dumps(_batch(labels[:10], 1), protocol=2), "meta": pickle.dumps(meta, protocol=2)}


def _write_archive(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, raw in members.items():
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))


def test_cifar20_reads_the_archive_and_the_extracted_folder_identically(tmp_path):
    members = _cifar_members()
    _write_archive(tmp_path / "cifar-100-python.tar.gz", members)
    folder = tmp_path / "extracted" / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, raw in members.items():
        (folder / name).write_bytes(raw)
    from_archive = load_cifar20(tmp_path / "cifar-100-python.tar.gz")
    from_folder = load_cifar20(tmp_path / "extracted")
    assert from_archive.names == CIFAR20_CLASSES and len(set(CIFAR20_SUPERCLASSES)) == 20
    assert from_archive.images.shape == (40, 3, 32, 32) and from_archive.counts().tolist() == [2] * 20
    assert float(from_archive.images.min()) >= -1.0 and float(from_archive.images.max()) <= 1.0
    assert bool((from_archive.images == from_folder.images).all())
    # pixel layout: channel-planar rows, the first image's red plane is its first 1024 bytes
    labels = _train_labels()
    row = _pixels(len(labels), 0)[labels.index(FINE_NAMES.index(CIFAR20_CLASSES[0]))]
    expected = row[:1024].reshape(32, 32).astype(np.float32) / 127.5 - 1.0
    owner0 = np.flatnonzero(from_archive.contributor.numpy() == 0)[0]
    np.testing.assert_allclose(from_archive.images[owner0, 0].numpy(), expected)


def test_cifar20_rejects_malformed_inputs(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_cifar20(tmp_path / "nowhere")
    members = _cifar_members()
    _write_archive(tmp_path / "no-meta.tar.gz", {k: v for k, v in members.items() if k != "meta"})
    with pytest.raises(ValueError, match="lacks cifar-100-python/meta"):
        read_cifar100(tmp_path / "no-meta.tar.gz")
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="not a tar archive"):
        read_cifar100(tmp_path / "junk.tar.gz")
    bad = dict(members, train=pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [0, 1]}))
    _write_archive(tmp_path / "bad-shape.tar.gz", bad)
    with pytest.raises(ValueError, match=r"expected uint8 \(N, 3072\)"):
        read_cifar100(tmp_path / "bad-shape.tar.gz")
    with pytest.raises(ValueError, match="not CIFAR-100 fine labels"):
        _write_archive(tmp_path / "ok.tar.gz", members)
        load_cifar20(tmp_path / "ok.tar.gz", classes=("dolphin", "unicorn"))


class _Exploit:
    """Pickles as a call of os.system (print is no good: Ray, once imported, swaps builtins.print)."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_reader_refuses_pickled_code(tmp_path, capfd):
    members = dict(_cifar_members(), meta=pickle.dumps({b"fine_label_names": _Exploit()}, protocol=2))
    _write_archive(tmp_path / "evil.tar.gz", members)
    with pytest.raises(ValueError, match=r"refusing to load (posix|nt|os)\.system"):
        read_cifar100(tmp_path / "evil.tar.gz")
    assert "pwned" not in capfd.readouterr().out


def _png(path, colour, size=20):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)


def _csv(path, header, rows):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def test_celebahq_keeps_the_most_frequent_identities(tmp_path):
    counts = {"7": 3, "2": 3, "5": 1, "9": 2}  # 7 and 2 tie: name order; 9 next
    rows = []
    for identity, count in counts.items():
        for k in range(count):
            _png(tmp_path / "img" / f"{identity}_{k}.jpg", (int(identity) * 20, 0, 0))
            rows.append((f"{identity}_{k}.jpg", identity))
    _csv(tmp_path / "labels.csv", ["image", "identity"], rows)
    data = load_celebahq(tmp_path / "img", tmp_path / "labels.csv", num_identities=3, image_size=8)
    assert data.names == ("2", "7", "9") and data.counts().tolist() == [3, 3, 2]
    assert data.images.shape == (8, 3, 8, 8)
    red = data.images[data.contributor == 1][:, 0].mean().item()  # identity 7: red 140 -> 140/127.5 - 1
    assert red == pytest.approx(140 / 127.5 - 1, abs=0.02)


def test_celebahq_errors_name_the_problem(tmp_path):
    _png(tmp_path / "img" / "a.jpg", (0, 0, 0))
    _csv(tmp_path / "bad-header.csv", ["file", "person"], [("a.jpg", "1")])
    with pytest.raises(ValueError, match="lacks column"):
        load_celebahq(tmp_path / "img", tmp_path / "bad-header.csv", num_identities=2)
    _csv(tmp_path / "labels.csv", ["image", "identity"], [("a.jpg", "1"), ("missing.jpg", "2")])
    with pytest.raises(ValueError, match="missing from"):
        load_celebahq(tmp_path / "img", tmp_path / "labels.csv", num_identities=2)
    with pytest.raises(ValueError, match="were requested"):
        load_celebahq(tmp_path / "img", tmp_path / "labels.csv", num_identities=5)
    _csv(tmp_path / "empty-cell.csv", ["image", "identity"], [("a.jpg", "")])
    with pytest.raises(ValueError, match="row 2: empty identity"):
        load_celebahq(tmp_path / "img", tmp_path / "empty-cell.csv", num_identities=2)


ART_HEADER = ["name", "artist", "url", "is_public_domain", "length", "width", "style", "split"]


def test_artbench_filters_style_and_split_and_groups_artists(tmp_path):
    root = tmp_path / "artbench-10-imagefolder-split"
    rows = []
    for i, (artist, style, split) in enumerate([("van-gogh", "post_impressionism", "train")] * 3 +
                                               [("cezanne", "post_impressionism", "train")] * 2 +
                                               [("monet", "impressionism", "train"),
                                                ("gauguin", "post_impressionism", "test")]):
        _png(root / split / style / f"{artist}_{i}.jpg", (i * 30, 0, 0))
        rows.append((f"{artist}_{i}.jpg", artist, "", "True", 20, 20, style, split))
    _csv(tmp_path / "ArtBench-10.csv", ART_HEADER, rows)
    data = load_artbench(root, tmp_path / "ArtBench-10.csv", image_size=8)
    assert data.names == ("cezanne", "van-gogh") and data.counts().tolist() == [2, 3]
    assert data.images.shape == (5, 3, 8, 8)


def test_artbench_errors_name_the_problem(tmp_path):
    root = tmp_path / "images"
    _png(root / "elsewhere" / "a.jpg", (0, 0, 0))
    _csv(tmp_path / "meta.csv", ART_HEADER, [("a.jpg", "x", "", "True", 1, 1, "post_impressionism", "train")])
    with pytest.raises(ValueError, match="not found; tried"):
        load_artbench(root, tmp_path / "meta.csv")
    _csv(tmp_path / "no-artist.csv", ["name", "style", "split"], [("a.jpg", "post_impressionism", "train")])
    with pytest.raises(ValueError, match="lacks column"):
        load_artbench(root, tmp_path / "no-artist.csv")
    with pytest.raises(ValueError, match="no rows with style=post_impressionism and split=test"):
        load_artbench(root, tmp_path / "meta.csv", split="test")
    with pytest.raises(ValueError, match="style='cubism' is invalid"):
        load_artbench(root, tmp_path / "meta.csv", style="cubism")
