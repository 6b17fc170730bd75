"""A decompression bomb in a manifest (a PNG of a few bytes whose header claims 10^8+ pixels) is refused from its
header with one message naming the row and Pillow's limit, before any pixel is decoded."""

import struct
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from shapflow.cli.main import main
from shapflow.data.base import DataError
from shapflow.data.files import read_rgb
from shapflow.data.manifest import load_manifest


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, side: int) -> Path:
    """A grey PNG whose header says ``side`` x ``side`` pixels, with one row of data (Pillow reads the header on
    open; decoding it all would need side^2 bytes)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
                     + _chunk(b"IDAT", zlib.compress(b"\x00" * (side + 1))) + _chunk(b"IEND", b""))
    return path


# above Pillow's limit (it only warns and decodes) and above twice it (it raises its own error type)
@pytest.mark.parametrize("side", [10_000, 20_000])
def test_a_bomb_in_a_manifest_is_one_data_error(tmp_path, side):
    assert side * side > Image.MAX_IMAGE_PIXELS
    bomb_png(tmp_path / "bomb.png", side)
    Image.new("L", (8, 8)).save(tmp_path / "ok.png")
    (tmp_path / "m.csv").write_text("path,contributor\nok.png,alice\nbomb.png,bob\n")
    with pytest.raises(DataError, match=r"row 3: image .*bomb.png is too large to decode safely .* at most "
                                        f"{Image.MAX_IMAGE_PIXELS:,} pixels"):
        load_manifest(tmp_path / "m.csv")
    with pytest.raises(DataError, match="too large to decode safely"):
        read_rgb(tmp_path / "bomb.png", 8, "a folder")


def test_the_cli_answers_a_bomb_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns.db")
    bomb_png(tmp_path / "bomb.png", 20_000)
    (tmp_path / "m.csv").write_text("path,contributor\nbomb.png,bob\n")
    out = CliRunner().invoke(main, ["run", "--use-case", "digits-classes", "--overrides",
                                    f"data.source=manifest data.path={tmp_path}/m.csv"])
    assert out.exit_code == 2, (out.output, out.exception)
    assert "too large to decode safely" in out.output and "Traceback" not in out.output
