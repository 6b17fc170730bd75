import numpy as np
import pytest
from PIL import Image

from shapflow.data import DataError, load_manifest


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


EXPORTS = {  # what spreadsheets save as "CSV", as bytes
    "utf-8 with BOM": "\ufeffpath,contributor\na.png,alice\nb.png,bob\n".encode(),
    "windows line endings": b"path,contributor\r\na.png,alice\r\nb.png,bob\r\n",
    "spaces and header case": b" Path , Contributor \n a.png ,alice\nb.png  ,bob\n",  # names: see NAME_RULE
    "semicolons": b"path;contributor\na.png;alice\nb.png;bob\n",
    "utf-16 tabs": "path\tcontributor\na.png\talice\nb.png\tbob\n".encode("utf-16"),
    "blank rows": b"path,contributor\na.png,alice\n,\n\nb.png,bob\n,,\n",
    "windows separators": b"path,contributor\nimgs\\a.png,alice\nimgs\\b.png,bob\n",
}


@pytest.mark.parametrize("export", sorted(EXPORTS))
def test_manifests_as_spreadsheets_export_them_load(tmp_path, export):
    folder = tmp_path / "imgs" if "separators" in export else tmp_path
    folder.mkdir(exist_ok=True)
    _write_images(folder, ["a.png", "b.png"])
    (tmp_path / "m.csv").write_bytes(EXPORTS[export])
    data = load_manifest(tmp_path / "m.csv")
    assert data.names == ("alice", "bob") and data.counts().tolist() == [1, 1]


def test_latin1_names_are_read_and_errors_name_file_row_and_fix(tmp_path):
    _write_images(tmp_path, ["a.png", "b.png"])
    (tmp_path / "m.csv").write_bytes("path,contributor\na.png,Zoë\nb.png,José\n".encode("latin-1"))
    assert load_manifest(tmp_path / "m.csv").names == ("Zoë", "José")
    (tmp_path / "m.csv").write_text("path,contributor\na.png,alice\nb.png, \n")
    with pytest.raises(DataError, match=r"m\.csv row 3: empty contributor name: fill in who contributed b\.png"):
        load_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("path,contributor\n")
    with pytest.raises(DataError, match="lists no images: add rows"):
        load_manifest(tmp_path / "m.csv")


def test_data_errors_are_input_errors_of_the_data_source(tmp_path):
    from shapflow.config import AssetsConfig, DataConfig, InputError
    from shapflow.data import load_data

    (tmp_path / "m.csv").write_text("file,owner\na.png,alice\n")
    with pytest.raises(InputError, match=r"manifest .*m\.csv lacks column"):
        load_data(DataConfig(source="manifest", path=str(tmp_path / "m.csv")))
    (tmp_path / "cifar.tar.gz").write_text("not an archive")  # a loader's own ValueError, reported as the data's
    with pytest.raises(DataError, match=r"data.source=cifar20: .*cifar\.tar\.gz"):
        load_data(DataConfig(source="cifar20"), AssetsConfig(cifar100=str(tmp_path / "cifar.tar.gz")))


def test_names_that_differ_only_in_surrounding_space_are_refused_never_merged(tmp_path):
    _write_images(tmp_path, ["a.png", "b.png", "c.png"])
    (tmp_path / "m.csv").write_text('path,contributor\na.png,trail\nb.png,"trail "\nc.png,bob\n')
    with pytest.raises(DataError, match=r"row 3: contributor name 'trail ' ends with whitespace: a contributor name "
                                        r"is kept exactly as written"):
        load_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("path,contributor\na.png, alice\nb.png,bob\n")  # a hand-typed ", "
    with pytest.raises(DataError, match=r"row 2: contributor name ' alice' starts with whitespace"):
        load_manifest(tmp_path / "m.csv")


def test_names_that_look_the_same_or_hold_control_characters_are_refused(tmp_path):
    _write_images(tmp_path, ["a.png", "b.png", "c.png"])
    (tmp_path / "m.csv").write_text("path,contributor\na.png,Zo\u00eb\nb.png,Zoe\u0308\nc.png,bob\n")
    with pytest.raises(DataError, match=r"rows 2 and 3: contributor names 'Zo\\xeb' and 'Zoe\\u0308' look the same"):
        load_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("path,contributor\na.png,al\x07ice\nb.png,bob\n")
    with pytest.raises(DataError, match=r"row 2: .* holds the control character\(s\) U\+0007"):
        load_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text(f"path,contributor\na.png,{'x' * 1001}\nb.png,bob\n")
    with pytest.raises(DataError, match=r"has 1001 characters: .*1 to 1000 characters"):
        load_manifest(tmp_path / "m.csv")


SPREADSHEET_NAMES = ["comma, inside", 'say "cheese"', "two\nlines", "emoji \U0001f3a8\u2728", "x" * 300,
                     "Trail", "trail", "tab\tinside", "semi;colon"]


def test_every_name_a_spreadsheet_cell_holds_is_kept_exactly(tmp_path):
    import csv

    _write_images(tmp_path, [f"{k}.png" for k in range(len(SPREADSHEET_NAMES))])
    with open(tmp_path / "m.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("path", "contributor"),
                                      *((f"{k}.png", name) for k, name in enumerate(SPREADSHEET_NAMES))])
    assert load_manifest(tmp_path / "m.csv").names == tuple(SPREADSHEET_NAMES)


def test_the_same_image_file_given_by_two_contributors_is_refused(tmp_path):
    _write_images(tmp_path, ["a.png", "b.png"])
    (tmp_path / "copy.png").write_bytes((tmp_path / "a.png").read_bytes())
    (tmp_path / "m.csv").write_text("path,contributor\na.png,alice\nb.png,alice\nb.png,bob\ncopy.png,carol\n")
    with pytest.raises(DataError, match=r"row 4: image .*b\.png is the same file \(same content\) as row 3's, listed "
                                        r"for contributor 'alice' there and 'bob' here"):
        load_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("path,contributor\na.png,alice\nb.png,bob\ncopy.png,carol\n")
    with pytest.raises(DataError, match=r"row 4: image .*copy\.png is the same file"):
        load_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("path,contributor\na.png,alice\ncopy.png,alice\nb.png,bob\n")
    assert load_manifest(tmp_path / "m.csv").counts().tolist() == [2, 1]  # one contributor's own copies: allowed


def test_every_loader_market_refuses_names_that_break_the_rule():
    import torch

    from shapflow.data import ContributorDataset

    images, owners = torch.zeros(2, 1, 8, 8), torch.tensor([0, 1])
    with pytest.raises(DataError, match="contributor name 'b ' ends with whitespace"):
        ContributorDataset(images, owners, ("a", "b ")).check_market()
    with pytest.raises(DataError, match="contributor names 'a' and 'a' look the same"):
        ContributorDataset(images, owners, ("a", "a")).check_market()
