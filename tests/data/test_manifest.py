import numpy as np
import pytest
from PIL import Image

from shapflow.data import load_manifest


def _write_images(folder, names):
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (10, 10), dtype=np.uint8)).save(folder / name)


def test_manifest_loads_images_in_range(tmp_path):
    _write_images(tmp_path, ["a.png", "b.png", "c.png"])
    (tmp_path / "m.csv").write_text("path,contributor\na.png,alice\nb.png,bob\nc.png,alice\n")
    data = load_manifest(tmp_path / "m.csv", image_size=8)
    assert data.names == ("alice", "bob")
    assert data.images.shape == (3, 1, 8, 8)
    assert data.images.min() >= -1 and data.images.max() <= 1
    assert data.counts().tolist() == [2, 1]
    assert len(data.subset([False, True])) == 1


def test_missing_file_names_the_row(tmp_path):
    _write_images(tmp_path, ["a.png"])
    (tmp_path / "m.csv").write_text("path,contributor\na.png,alice\nmissing.png,bob\n")
    with pytest.raises(ValueError, match=r"row 3.*missing.png"):
        load_manifest(tmp_path / "m.csv")


def test_unreadable_image_names_the_row(tmp_path):
    _write_images(tmp_path, ["a.png"])
    (tmp_path / "broken.png").write_text("not an image")
    (tmp_path / "m.csv").write_text("path,contributor\na.png,alice\nbroken.png,bob\n")
    with pytest.raises(ValueError, match="row 3: cannot read image"):
        load_manifest(tmp_path / "m.csv")


def test_contributor_without_images_is_named(tmp_path):
    _write_images(tmp_path, ["a.png", "b.png"])
    (tmp_path / "m.csv").write_text("path,contributor\na.png,alice\nb.png,bob\n")
    with pytest.raises(ValueError, match="zero images: carol"):
        load_manifest(tmp_path / "m.csv", contributors=["alice", "bob", "carol"])


def test_single_contributor_is_rejected(tmp_path):
    _write_images(tmp_path, ["a.png"])
    (tmp_path / "m.csv").write_text("path,contributor\na.png,alice\n")
    with pytest.raises(ValueError, match="at least 2 contributors"):
        load_manifest(tmp_path / "m.csv")


def test_missing_manifest_and_bad_header(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_manifest(tmp_path / "none.csv")
    (tmp_path / "m.csv").write_text("file,owner\na.png,alice\n")
    with pytest.raises(ValueError, match="path,contributor"):
        load_manifest(tmp_path / "m.csv")
