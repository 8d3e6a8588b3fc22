"""Reading photos safely: any common format and mode → (H, W, 3) uint8 RGB, or an :class:`ImageError`.

Formats: JPEG, PNG, WebP, BMP, TIFF, GIF (first frame) and HEIC/HEIF (through ``pillow-heif``).

Handles EXIF orientation, grayscale / palette / alpha / CMYK / 16-bit modes, decompression bombs (refused from the
header, before any pixel is decoded), and empty, truncated or non-image files. Large JPEGs can be decoded directly
at reduced size (libjpeg DCT scaling), which makes a 12-MP photo cheap when only a detection-sized copy is needed.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gsscreen.errors import GsscreenError


def _register_heif() -> bool:
    # HEIC/HEIF (iPhone photos) through pillow-heif, when installed: Image.open then reads them like any format.
    try:
        import pillow_heif
    except ImportError:  # pragma: no cover - a declared dependency, but the reader must not need it
        return False
    pillow_heif.register_heif_opener()
    return True


#: whether HEIC/HEIF photos can be read (pillow-heif installed)
HEIF_SUPPORTED = _register_heif()

#: Refuse images with more pixels than this (a 100-MP photo is already far beyond any camera portrait).
DEFAULT_MAX_PIXELS = 100_000_000


class ImageError(GsscreenError):
    """A photo could not be read. ``file`` names it, ``reason`` says why (both are in the message)."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


def _describe(src: str | Path | bytes) -> str:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes in memory>"
    return str(src)


def _open(src: str | Path | bytes, name: str, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse bombs before decoding."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise ImageError(name, "empty data (0 bytes)")
        fp: io.BytesIO | Path = io.BytesIO(bytes(src))
    else:
        p = Path(src)
        if not p.exists():
            raise ImageError(name, "file not found")
        if p.is_dir():
            raise ImageError(name, "is a folder, not an image file")
        if p.stat().st_size == 0:
            raise ImageError(name, "empty file (0 bytes)")
        fp = p
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; make both an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(fp)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(name, f"image too large, refused as a possible decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(name, "not an image, or an unsupported format (cannot identify image file)") from exc
    except OSError as exc:
        raise ImageError(name, f"cannot open: {exc}") from exc
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise ImageError(
            name,
            f"image too large: {w}×{h} = {w * h / 1e6:.0f} MP exceeds the {max_pixels / 1e6:.0f} MP limit "
            "(refused as a possible decompression bomb, nothing was decoded)",
        )
    if w == 0 or h == 0:
        im.close()
        raise ImageError(name, f"image has no pixels ({w}×{h})")
    return im


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow mode → (H, W, 3) uint8 RGB. Transparency is composited on white (a photo background)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        # 16-bit data fill 0–65535; scale to 8 bits (rather than clipping, which would blow out the image).
        a = a / 257.0 if a.max(initial=0) > 255 else a
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if mode == "F":
        a = np.asarray(im).astype(np.float64)
        a = a * 255.0 if a.max(initial=0) <= 1.0 else a
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("P", "L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB")).copy()
    if mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im).copy()


def load_image_scaled(
    src: str | Path | bytes,
    max_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    check_shape: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, float]:
    """Read a photo, optionally reduced so its longer side is at most about ``max_side`` px.

    Returns ``(image, factor)``: image (H, W, 3) uint8 RGB, EXIF-upright; ``factor`` = original size / returned
    size (1.0 when not reduced), so ``original_px = returned_px * factor``. JPEGs are decoded at reduced size
    directly (only power-of-two reductions that keep the long side ≥ ``max_side``), then resized with area averaging.
    Raises :class:`ImageError` naming the file and the problem. ``check_shape(h, w)``, when given, is called with
    the stored size before any pixel is decoded (e.g. :func:`gsscreen.faces.align.check_photo_shape`); what it
    raises propagates.
    """
    name = _describe(src)
    im = _open(src, name, max_pixels)
    try:
        if check_shape is not None:
            check_shape(im.size[1], im.size[0])
        orig_long = max(im.size)
        try:
            if max_side is not None and im.format == "JPEG" and orig_long > max_side:
                # draft() picks the largest 1/2, 1/4, 1/8 reduction that keeps each side >= the request.
                w0, h0 = im.size
                im.draft("RGB", (max(1, max_side * w0 // orig_long), max(1, max_side * h0 // orig_long)))
            im.load()
        except (OSError, SyntaxError, ValueError) as exc:
            msg = str(exc)
            if "truncated" in msg.lower():
                raise ImageError(name, f"truncated or incomplete image file ({msg})") from exc
            raise ImageError(name, f"corrupt image data ({msg})") from exc
        except Image.DecompressionBombError as exc:  # pragma: no cover - caught at open
            raise ImageError(name, f"image too large ({exc})") from exc
        k = orig_long // max_side if max_side is not None else 1
        if k >= 2 and im.format != "JPEG":
            # Box-reduce in Pillow before the array copy: a 40-MP PNG then costs its decoded bytes once, not three
            # times (the long side stays >= max_side, and the area resize below finishes the job).
            try:
                full, im = im, im.reduce(k)
                full.close()
            except (ValueError, NotImplementedError):  # modes reduce() does not handle (e.g. P): full-size path
                pass
        try:
            upright = ImageOps.exif_transpose(im)
        except Exception:  # broken EXIF must not lose the photo: keep it as stored
            upright = im
        arr = _to_rgb(upright if upright is not None else im)
    finally:
        im.close()
    if max_side is not None and max(arr.shape[:2]) > max_side:
        import cv2

        s = max_side / max(arr.shape[:2])
        new = (max(1, round(arr.shape[1] * s)), max(1, round(arr.shape[0] * s)))
        arr = cv2.resize(arr, new, interpolation=cv2.INTER_AREA)
    factor = orig_long / max(arr.shape[:2])
    return arr, float(factor)


def load_image(src: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a photo at full resolution as an (H, W, 3) uint8 RGB array, EXIF orientation applied.

    ``src`` is a path or the file's bytes. Raises :class:`ImageError` (file + reason) for a missing, empty,
    non-image, truncated or corrupt file, or one larger than ``max_pixels`` (refused from the header alone).
    """
    return load_image_scaled(src, None, max_pixels)[0]
