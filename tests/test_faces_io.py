"""Photo loading: modes, EXIF orientation, bad files, decompression bombs."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gsscreen.faces import ImageError, load_image, load_image_scaled


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid-looking 1-bit PNG of width×height whose IDAT holds only a few rows: a few hundred bytes on disk,
    a decompression bomb if decoded. Written by hand so the test never allocates the pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    rows = zlib.compress(b"\x00" * (1 + (width + 7) // 8) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def test_zero_byte_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert "empty.jpg" in str(e.value) and "empty" in e.value.reason


def test_text_file_named_jpg(tmp_path: Path) -> None:
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a photo\n")
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert "notes.jpg" in str(e.value) and "not an image" in e.value.reason


def test_truncated_jpeg(tmp_path: Path, astronaut: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="JPEG", quality=90)
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert "cut.jpg" in str(e.value) and "truncated" in e.value.reason


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as e:
        load_image(tmp_path / "nowhere.png")
    assert "nowhere.png" in str(e.value) and e.value.reason == "file not found"


def test_folder_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_decompression_bomb_30000_squared_refused_from_header(tmp_path: Path) -> None:
    p = _png_header_only(tmp_path / "bomb.png", 30000, 30000)
    assert p.stat().st_size < 1000
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert "bomb.png" in str(e.value) and "too large" in e.value.reason


def test_own_pixel_limit_below_pillows(tmp_path: Path) -> None:
    # 6000×6000 = 36 MP passes Pillow's default guard; our configurable limit refuses it before decoding.
    p = _png_header_only(tmp_path / "big.png", 6000, 6000)
    with pytest.raises(ImageError, match="36 MP exceeds the 10 MP limit"):
        load_image(p, max_pixels=10_000_000)


def test_bytes_input(astronaut: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="PNG")
    out = load_image(buf.getvalue())
    assert out.dtype == np.uint8 and out.shape == astronaut.shape
    assert np.array_equal(out, astronaut)
    with pytest.raises(ImageError, match="0 bytes"):
        load_image(b"")


def test_modes_are_converted_to_rgb(tmp_path: Path, astronaut: np.ndarray) -> None:
    gray = Image.fromarray(astronaut).convert("L")
    g = np.asarray(gray)
    cases = {
        "gray.png": gray,
        "pal.png": Image.fromarray(astronaut).convert("P", palette=Image.Palette.ADAPTIVE),
        "cmyk.jpg": Image.fromarray(astronaut).convert("CMYK"),
        "bw.png": gray.convert("1"),
    }
    for name, im in cases.items():
        p = tmp_path / name
        im.save(p)
        out = load_image(p)
        assert out.shape == (512, 512, 3) and out.dtype == np.uint8, name
    assert np.array_equal(load_image(tmp_path / "gray.png")[..., 0], g)
    assert np.abs(load_image(tmp_path / "pal.png").astype(int) - astronaut).mean() < 12
    assert np.abs(load_image(tmp_path / "cmyk.jpg").astype(int) - astronaut).mean() < 12


def test_16_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(ramp).save(p)  # 16-bit grayscale PNG
    out = load_image(p)
    assert out.shape == (64, 64, 3)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    assert abs(int(out[32, 0, 0]) - round(ramp[32, 0] / 257)) <= 1


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:4, :, 3] = 255  # top half opaque red, bottom half fully transparent
    p = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(p)
    out = load_image(p)
    assert out[0, 0].tolist() == [200, 0, 0]
    assert out[7, 7].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied(tmp_path: Path, astronaut: np.ndarray) -> None:
    tall = astronaut[:, 64:448]  # non-square, so a missed rotation would change the shape
    stored = np.rot90(tall, 1)  # stored rotated 90° counter-clockwise...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...and tagged "rotate 90° clockwise to display"
    p = tmp_path / "rotated.jpg"
    Image.fromarray(np.ascontiguousarray(stored)).save(p, quality=95, exif=exif)
    out = load_image(p)
    assert out.shape == tall.shape
    assert np.abs(out.astype(int) - tall).mean() < 4


def test_scaled_loading_reports_factor(tmp_path: Path, astronaut: np.ndarray) -> None:
    p = tmp_path / "a.jpg"
    Image.fromarray(astronaut).resize((2048, 2048)).save(p, quality=90)
    small, factor = load_image_scaled(p, max_side=700)
    assert max(small.shape[:2]) <= 700
    assert factor == pytest.approx(2048 / max(small.shape[:2]))
    full, f1 = load_image_scaled(p)
    assert full.shape == (2048, 2048, 3) and f1 == 1.0
