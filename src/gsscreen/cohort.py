"""The cohort: a table of photos with labels, read, normalised and validated in one pass.

A cohort file is a CSV (comma, semicolon or tab separated; UTF-8, an Excel BOM is fine) with one row per photo:

============== ======== ==================================================================================
column         required meaning
============== ======== ==================================================================================
``image``      yes      path of the photo, relative to the CSV's folder (absolute paths are allowed)
``label``      yes      ``GS`` or ``control`` (synonyms are normalised, see :data:`LABEL_SYNONYMS`)
``syndrome``   no       the syndrome's name for GS photos (e.g. ``down``); empty for controls
``subject_id`` no       the child the photo shows: photos of one child must stay in one fold
``age_months`` no       age at the photo, in months (a number >= 0)
``sex``        no       ``male`` / ``female`` (``M``, ``F``, ``boy``, ``girl``, ... are normalised)
``photo_date`` no       date of the photo, ISO 8601 (``2020-03-14``)
============== ======== ==================================================================================

Column names are matched ignoring case and surrounding spaces (``Subject ID`` -> ``subject_id``); other
columns are kept as they are.

:func:`load_cohort` never stops at the first problem: every problem found is returned as a
:class:`CohortProblem` (a value), each naming its row and file, so a user fixes the whole table in one go.
Only misuse raises :class:`CohortError`: the table's own file missing, or a required column absent.

Row numbers (``CohortProblem.row`` and the table's ``source_row`` column): for a CSV, the 1-based **line number
in the file** (the header is line 1, so the first photo is line 2; a spreadsheet shows the same number); for a
DataFrame, the 0-based **position** of the row (``df.iloc[row]``).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gsscreen.errors import GsscreenError, describe_image_error
from gsscreen.groups import NEAR_DUPLICATE_SEP
from gsscreen.imagefiles import IMAGE_EXTENSIONS, find_images

GS = "GS"
CONTROL = "control"

REQUIRED_COLUMNS: tuple[str, ...] = ("image", "label")
OPTIONAL_COLUMNS: tuple[str, ...] = ("syndrome", "subject_id", "age_months", "sex", "photo_date")

# Columns load_cohort adds to the table (not written back by Cohort.to_csv).
INTERNAL_COLUMNS: tuple[str, ...] = (
    "source_row", "label_raw", "subject_inferred", "sha256", "phash", "near_duplicate_of"
)


# Label spellings accepted, after lower-casing and turning runs of spaces / "_" / "-" into one space.
# Anything else is reported as ``unknown_label`` (never guessed, never dropped).
# "0"/"1" follow the project's array convention (1 = GS).
LABEL_SYNONYMS: dict[str, str] = {
    **dict.fromkeys(
        ("gs", "case", "cases", "syndrome", "syndromic", "affected", "genetic syndrome", "patient", "1"), GS
    ),
    **dict.fromkeys(
        ("control", "controls", "ctrl", "healthy", "normal", "unaffected", "non syndromic", "no gs", "0"), CONTROL
    ),
}

# Sex spellings accepted (same normalisation as labels). Numeric codes are NOT accepted: 0/1 mean opposite
# things in different data sets (UTKFace: 0 = male; others: 1 = male).
SEX_SYNONYMS: dict[str, str] = {
    **dict.fromkeys(("m", "male", "boy", "man", "masculine", "h", "homme", "männlich", "maennlich"), "male"),
    **dict.fromkeys(("f", "female", "girl", "woman", "feminine", "w", "femme", "weiblich"), "female"),
}

# Values meaning "not known" in optional columns: read as missing without a problem.
MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "none", "null", "unknown", "unk", "?", "-", "--", "not known"})

# Column names users often write instead of ours: hinted at, never silently used.
COLUMN_HINTS: dict[str, str] = {
    "path": "image",
    "file": "image",
    "filename": "image",
    "file_name": "image",
    "photo": "image",
    "img": "image",
    "class": "label",
    "diagnosis": "label",
    "group": "label",
    "target": "label",
    "subject": "subject_id",
    "patient_id": "subject_id",
    "participant_id": "subject_id",
    "person_id": "subject_id",
    "age": "age_months",
    "age_years": "age_months",
    "gender": "sex",
    "date": "photo_date",
}

# Kinds of problem, with what each means. Blocking kinds make a row unusable (``ok_table`` leaves it out and
# ``gsscreen cohort check`` exits with 1); the others are warnings and the value in question is set missing.
PROBLEM_KINDS: dict[str, str] = {
    "missing_value": "the row has no image path or no label",
    "missing_file": "the image file does not exist",
    "unreadable_image": "the file exists but is not an image Pillow can read",
    "unknown_label": "the label is neither GS nor control nor a known synonym",
    "duplicate_row": "the same image path appears in more than one row",
    "duplicate_image": "the same photo (identical bytes, sha256) appears under different names",
    "subject_label_conflict": "one subject_id appears with both labels",
    "near_duplicate": "two photos of different subjects look almost the same (perceptual hash): a fold leak",
    "bad_age": "age_months is not a number >= 0 (read as missing)",
    "unknown_sex": "sex is not a recognised value (read as missing)",
    "bad_date": "photo_date is not an ISO 8601 date (read as missing)",
    "syndrome_on_control": "a control photo has a syndrome name",
    "unused_column": "a column looks like one of ours under another name and is not read",
    "empty_cohort": "the table has no rows",
    "single_label": "all photos have the same label",
}
BLOCKING_KINDS = frozenset(
    {
        "missing_value",
        "missing_file",
        "unreadable_image",
        "unknown_label",
        "duplicate_row",
        "duplicate_image",
        "subject_label_conflict",
        "empty_cohort",
    }
)

# Default distance (bits of the 192-bit colour pHash, see perceptual_hash) at or under which two photos of different
# subjects are reported as near-duplicates. Measured on ds-kaggle (2,399 face-centred crops): re-encoded, resized
# and mirrored copies fall at 8-26; the first pair of different children at 28; copies re-cropped by ~10 % spread
# over 28-40 among look-alikes, so they are only partly caught (raise the threshold to look for them by eye).
DEFAULT_NEAR_DUPLICATE_DISTANCE = 26


class CohortError(GsscreenError, ValueError):
    """Misuse: the cohort table cannot be read at all (missing file, missing required columns, bad folders)."""


@dataclass(frozen=True)
class CohortProblem:
    """One problem found in a cohort.

    ``row``: CSV line number (1-based, header = line 1) or DataFrame position (0-based); ``None`` for a problem
    of the whole table. ``file``: the image path as written in the table (``None`` when not about one photo).
    ``kind``: one of :data:`PROBLEM_KINDS`.
    """

    row: int | None
    file: str | None
    kind: str
    message: str

    @property
    def blocking(self) -> bool:
        """True when the row cannot be used (see :data:`BLOCKING_KINDS`)."""
        return self.kind in BLOCKING_KINDS

    def __str__(self) -> str:
        where = f"line {self.row}" if self.row is not None else "table"
        what = f" ({self.file})" if self.file else ""
        level = "error" if self.blocking else "warning"
        return f"{where}{what}: {level} [{self.kind}] {self.message}"


@dataclass
class Cohort:
    """A validated cohort.

    ``table`` has one row per input row (none dropped), in input order, with:

    - ``image``: absolute path (str); ``label``: exactly ``"GS"`` / ``"control"``, or ``<NA>`` when unknown;
    - ``subject_id`` (str): as given, else ``"photo-<row>"`` (one subject per photo), with ``subject_inferred``
      (bool) True where the id was made up;
    - ``syndrome`` (str or NA), ``age_months`` (float, NaN when missing/bad), ``sex`` (``"male"``/``"female"``/
      NA), ``photo_date`` (datetime64, NaT) whenever the column was given;
    - ``source_row`` (row number as in problems), ``label_raw`` (label as written), ``sha256`` and ``phash``
      (hex strings of the file's bytes and 192-bit colour perceptual hash; NA when not computed);
    - any other column of the input, unchanged.
    """

    table: pd.DataFrame
    problems: list[CohortProblem] = field(default_factory=list)
    source: Path | None = None

    @property
    def y(self) -> np.ndarray:
        """Labels as an int array of shape (n_rows,): 1 = GS, 0 = control.

        Raises :class:`CohortError` when some labels are unknown (use ``ok_table()`` first).
        """
        lab = self.table["label"]
        unknown = lab.isna()
        if unknown.any():
            rows = self.table.loc[unknown, "source_row"].tolist()[:10]
            raise CohortError(f"{self._name()}: {int(unknown.sum())} row(s) have no valid label (rows {rows}...); "
                              "use Cohort.ok_table() to leave them out")
        return (lab == GS).to_numpy(dtype=np.int64)

    @property
    def blocking_problems(self) -> list[CohortProblem]:
        return [p for p in self.problems if p.blocking]

    @property
    def subjects_given(self) -> bool:
        """True when every row has a subject id from the table (none inferred)."""
        return not bool(self.table["subject_inferred"].any()) if len(self.table) else False

    def ok_table(self) -> pd.DataFrame:
        """The rows without a blocking problem (a copy, same columns, original index)."""
        bad_rows = {p.row for p in self.problems if p.blocking and p.row is not None}
        keep = ~self.table["source_row"].isin(bad_rows)
        return self.table.loc[keep].copy()

    def problems_frame(self) -> pd.DataFrame:
        """Problems as a table with columns ``row, file, kind, blocking, message``."""
        cols = ["row", "file", "kind", "blocking", "message"]
        rows = [(p.row, p.file, p.kind, p.blocking, p.message) for p in self.problems]
        df = pd.DataFrame(rows, columns=cols)
        df["row"] = df["row"].astype("Int64")
        return df

    def summary(self) -> dict[str, Any]:
        """Counts for a quick look; JSON-serialisable.

        Keys: ``source, n_rows, n_usable, labels`` (photos per label, ``unknown`` included), ``usable_labels``,
        ``subjects_given, n_subjects, subjects_per_label, syndromes`` (photos per syndrome among GS),
        ``age_months`` (n, mean, sd, min, max over rows with an age, or None), ``sex`` (counts),
        ``photo_dates`` (n given), ``problems`` (count per kind), ``n_blocking``.
        """
        t = self.table
        ok = self.ok_table()
        labels = {GS: int((t["label"] == GS).sum()), CONTROL: int((t["label"] == CONTROL).sum())}
        labels["unknown"] = int(len(t) - labels[GS] - labels[CONTROL])
        out: dict[str, Any] = {
            "source": str(self.source) if self.source else None,
            "n_rows": len(t),
            "n_usable": len(ok),
            "labels": labels,
            "usable_labels": {GS: int((ok["label"] == GS).sum()), CONTROL: int((ok["label"] == CONTROL).sum())},
            "subjects_given": self.subjects_given,
            "n_subjects": int(t["subject_id"].nunique()),
            "subjects_per_label": {
                lab: int(t.loc[t["label"] == lab, "subject_id"].nunique()) for lab in (GS, CONTROL)
            },
        }
        if "syndrome" in t:
            syn = t.loc[t["label"] == GS, "syndrome"].fillna("(not given)")
            out["syndromes"] = {str(k): int(v) for k, v in syn.value_counts().sort_index().items()}
        else:
            out["syndromes"] = None
        if "age_months" in t and t["age_months"].notna().any():
            a = t["age_months"].dropna().astype(float)
            out["age_months"] = {
                "n": len(a),
                "mean": float(a.mean()),
                "sd": float(a.std(ddof=1)) if len(a) > 1 else None,
                "min": float(a.min()),
                "max": float(a.max()),
            }
        else:
            out["age_months"] = None
        if "sex" in t:
            out["sex"] = {
                "male": int((t["sex"] == "male").sum()),
                "female": int((t["sex"] == "female").sum()),
                "unknown": int(t["sex"].isna().sum()),
            }
        else:
            out["sex"] = None
        out["photo_dates"] = int(t["photo_date"].notna().sum()) if "photo_date" in t else None
        kinds: dict[str, int] = {}
        for p in self.problems:
            kinds[p.kind] = kinds.get(p.kind, 0) + 1
        out["problems"] = kinds
        out["n_blocking"] = len(self.blocking_problems)
        return out

    def to_csv(self, path: str | Path) -> Path:
        """Write the table as a cohort CSV that :func:`load_cohort` reads back.

        Image paths become relative to the CSV's folder (absolute when on another drive); made-up subject ids
        are written empty (so they are made up again, not mistaken for real ones); unknown labels are written as
        they were given; the internal columns (:data:`INTERNAL_COLUMNS`) are left out.
        """
        t = self.table.copy()
        if "label_raw" in t:
            t["label"] = t["label"].astype(object).where(t["label"].notna(), t["label_raw"])
        if "subject_inferred" in t:
            if t["subject_inferred"].all():
                t = t.drop(columns=["subject_id"])
            else:
                t["subject_id"] = t["subject_id"].where(~t["subject_inferred"], "")
        if "photo_date" in t and pd.api.types.is_datetime64_any_dtype(t["photo_date"]):
            t["photo_date"] = t["photo_date"].dt.strftime("%Y-%m-%d")
        t = t.drop(columns=[c for c in INTERNAL_COLUMNS if c in t])
        return write_cohort_csv(t, path)

    def _name(self) -> str:
        return str(self.source) if self.source else "cohort table"


# ----------------------------------------------------------------------------------------------------------
# normalisation of single values


def _key(value: Any) -> str:
    # "  Healthy_Control " -> "healthy control"
    return re.sub(r"[\s_\-]+", " ", str(value)).strip().lower()


def _is_missing(value: Any) -> bool:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return True
    return _key(value) in MISSING_MARKERS


def normalise_label(value: Any) -> str | None:
    """``"GS"`` / ``"control"`` for a known spelling (see :data:`LABEL_SYNONYMS`), else ``None``."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return LABEL_SYNONYMS.get(_key(value))


def normalise_sex(value: Any) -> str | None:
    """``"male"`` / ``"female"`` for a known spelling (see :data:`SEX_SYNONYMS`), else ``None``."""
    if _is_missing(value):
        return None
    return SEX_SYNONYMS.get(_key(value).rstrip("."))


# ----------------------------------------------------------------------------------------------------------
# image fingerprints


def _dct_matrix(n: int) -> np.ndarray:
    # Orthonormal DCT-II basis (n, n): row k is cos(pi * (2i + 1) * k / 2n), scaled.
    i = np.arange(n)
    m = np.cos(np.pi * (2 * i[None, :] + 1) * i[:, None] / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT32 = _dct_matrix(32)
_MASK64 = (1 << 64) - 1
# A chroma channel flatter than this (std over the 32x32 thumbnail, 0-255 units) carries no colour: grey photos.
# Its bits would be noise, so they are all set to 0 instead (see perceptual_distance).
_FLAT_CHROMA_STD = 2.0


def _channel_hash(channel: np.ndarray) -> int:
    # 8x8 lowest DCT frequencies of a (32, 32) channel, each bit = coefficient > their median.
    coeffs = (_DCT32 @ channel @ _DCT32.T)[:8, :8]
    bits = (coeffs > np.median(coeffs)).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def _thumbnail(image: Any) -> np.ndarray:
    """(32, 32, 3) float64 RGB thumbnail of a PIL image or an (H, W[, 3]) uint8 array (box-filtered)."""
    from PIL import Image

    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    if im.mode == "P":
        im = im.convert("RGBA")  # palette with transparency: Pillow wants RGBA first
    return np.asarray(im.convert("RGB").resize((32, 32), Image.Resampling.BOX), dtype=np.float64)


def perceptual_hash(image: Any, mirror: bool = False) -> int:
    """192-bit colour DCT perceptual hash (pHash) of a PIL image or an (H, W[, 3]) uint8 array.

    The image is reduced to a 32x32 thumbnail and split into luma Y and two colour differences (B-Y, R-Y); for
    each, the 8x8 lowest 2-D DCT frequencies are compared with their median (bit = coefficient > median), giving
    three 64-bit words packed as ``Y << 128 | (B-Y) << 64 | (R-Y)``. A colourless channel (grey photo) is all 0.
    ``mirror=True`` hashes the left-right mirrored image (flipped copies are a common augmentation leak).

    Why colour: on face-centred crops, a grey-only 64-bit pHash puts distinct children as close as re-cropped
    copies of one photo (measured on ds-kaggle); the colour words separate them (background, clothes, skin).
    """
    rgb = _thumbnail(image)
    if mirror:
        rgb = rgb[:, ::-1]
    y = rgb @ np.array([0.299, 0.587, 0.114])
    words = [_channel_hash(y)]
    for chroma in (rgb[..., 2] - y, rgb[..., 0] - y):
        words.append(0 if chroma.std() < _FLAT_CHROMA_STD else _channel_hash(chroma))
    return (words[0] << 128) | (words[1] << 64) | words[2]


def _words(hashes: Sequence[int] | np.ndarray) -> np.ndarray:
    # 192-bit ints -> (n, 3) uint64 [Y, B-Y, R-Y]
    return np.array([[(int(h) >> s) & _MASK64 for s in (128, 64, 0)] for h in hashes], dtype=np.uint64).reshape(
        -1, 3
    )


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise perceptual distances (0..192) between (n, 3) and (m, 3) hash words -> (n, m) int64.

    When both photos are colourless (chroma words 0), only luma can be compared: its distance is scaled by 3 so
    that one threshold (in bits of 192) means the same for grey and colour photos.
    """
    d = _popcount64(a[:, None, :] ^ b[None, :, :])  # (n, m, 3)
    total = d.sum(axis=-1)
    grey_a = (a[:, 1] == 0) & (a[:, 2] == 0)
    grey_b = (b[:, 1] == 0) & (b[:, 2] == 0)
    both_grey = grey_a[:, None] & grey_b[None, :]
    return np.where(both_grey, 3 * d[..., 0], total)


def perceptual_distance(a: int, b: int) -> int:
    """Distance (0..192) between two :func:`perceptual_hash` values: differing bits, grey photos scaled."""
    return int(_distances(_words([a]), _words([b]))[0, 0])


def _popcount64(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x).astype(np.int64)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
    return table[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1)


def near_duplicate_pairs(
    hashes: Sequence[int] | np.ndarray,
    max_distance: int,
    mirrored: Sequence[int] | np.ndarray | None = None,
) -> list[tuple[int, int, int]]:
    """All pairs ``(i, j, distance)`` with ``i < j`` whose :func:`perceptual_hash` values are within
    ``max_distance`` (of 192 bits). With ``mirrored`` (the hashes of the mirrored photos), a pair's distance is
    the smaller of direct and mirrored, so left-right flipped copies are found too.

    Vectorised XOR + popcount, a block of rows at a time: 2,400 photos (2.9 M pairs) take well under a second.
    """
    h = _words(hashes)
    m = _words(mirrored) if mirrored is not None else None
    if m is not None and len(m) != len(h):
        raise ValueError(f"mirrored has {len(m)} hashes, hashes has {len(h)}")
    n = len(h)
    out: list[tuple[int, int, int]] = []
    block = 256
    for start in range(0, n, block):
        stop = min(n, start + block)
        d = _distances(h[start:stop], h)
        if m is not None:
            d = np.minimum(d, _distances(h[start:stop], m))
        ii, jj = np.nonzero(d <= max_distance)
        for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
            gi = start + i
            if j > gi:
                out.append((gi, j, int(d[i, j])))
    out.sort()
    return out


@dataclass(frozen=True)
class Fingerprint:
    """What reading one image file told us: sha256 (hex) of its bytes, its :func:`perceptual_hash` and that of
    its mirror image (None when not computed), or why it failed."""

    sha256: str | None
    phash: int | None
    phash_mirror: int | None = None
    error_kind: str | None = None  # "missing_file" | "unreadable_image"
    error: str | None = None


def fingerprint_file(path: str | Path, perceptual: bool = True) -> Fingerprint:
    """Read ``path`` once: sha256 of its bytes, a cheap validity check and (optionally) its perceptual hash.

    The validity check is Pillow's ``verify()`` (headers / PNG checksums, no full decode). The perceptual hash
    decodes a thumbnail only: for JPEGs ``Image.draft`` lets the decoder scale by 1/2..1/8 while decoding,
    which is what keeps 2,400 photos down to seconds. Never raises for a bad file: the error is in the result.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        return Fingerprint(None, None, None, "missing_file", f"file not found: {p}")
    except IsADirectoryError:
        return Fingerprint(None, None, None, "missing_file", f"is a folder, not an image file: {p}")
    except OSError as exc:  # permissions, broken links, I/O errors
        return Fingerprint(None, None, None, "unreadable_image", f"cannot read {p}: {exc.strerror or exc}")
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return Fingerprint(digest, None, None, "unreadable_image", f"empty file: {p}")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        phash = phash_mirror = None
        if perceptual:
            # verify() leaves the image unusable: open again to decode the thumbnail.
            with Image.open(io.BytesIO(data)) as im:
                if im.format == "JPEG":
                    im.draft("RGB", (64, 64))  # decode at 1/2..1/8 scale: most of the speed
                im = ImageOps.exif_transpose(im)  # a rotated copy should hash like the upright one
                thumb = _thumbnail(im)
            phash = perceptual_hash(thumb.astype(np.uint8))
            phash_mirror = perceptual_hash(thumb.astype(np.uint8), mirror=True)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError,
            EOFError) as exc:
        # Truncated or corrupt data surfaces as any of these depending on the format's decoder.
        return Fingerprint(digest, None, None, "unreadable_image", f"{p}: {describe_image_error(exc)}")
    return Fingerprint(digest, phash, phash_mirror)


# ----------------------------------------------------------------------------------------------------------
# reading a cohort


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        with path.open(encoding="utf-8-sig") as fh:
            first = fh.readline()
    except UnicodeDecodeError as exc:
        raise CohortError(f"{path}: not a UTF-8 text file ({exc})") from exc
    # Excel in many locales writes ";"-separated CSV; pick the separator that splits the header most.
    sep = max((",", ";", "\t"), key=first.count)
    try:
        # Everything as text: "007" stays a subject id, not the number 7. Empty cells are "" (handled by us).
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CohortError(f"{path}: cannot parse as CSV: {exc}") from exc


def _canonical_column(name: Any) -> str:
    return re.sub(r"\s+", "_", str(name).strip()).lower()


def _resolve_image(value: str, base: Path) -> str:
    text = value.strip()
    if os.sep == "/" and "\\" in text and not Path(text).exists():
        text = text.replace("\\", "/")  # a table written on Windows
    p = Path(text).expanduser()
    if not p.is_absolute():
        p = base / p
    return os.path.normpath(str(p))


def load_cohort(
    source: str | Path | pd.DataFrame,
    base_dir: str | Path | None = None,
    check_images: bool = True,
    near_duplicate_distance: int | None = DEFAULT_NEAR_DUPLICATE_DISTANCE,
    progress: bool = False,
) -> Cohort:
    """Read, normalise and validate a cohort; every problem is reported, no row is dropped.

    Args:
        source: a CSV path, or a DataFrame with the same columns.
        base_dir: folder that relative image paths start from; default: the CSV's folder, or the current folder
            for a DataFrame.
        check_images: read every image file once (existence, Pillow ``verify()``, sha256, perceptual hash). False
            skips all file access (no ``missing_file`` / duplicate-photo checks): for tables already checked.
        near_duplicate_distance: max distance (of 192 bits, see :func:`perceptual_distance`) between perceptual
            hashes for two photos of different subjects to be reported as ``near_duplicate``; ``None`` skips the
            perceptual hash.
        progress: show a tqdm bar while reading images.

    Raises:
        CohortError: the CSV does not exist / cannot be parsed, or ``image`` / ``label`` columns are missing.
    """
    if isinstance(source, pd.DataFrame):
        raw = source.reset_index(drop=True).copy()
        src_path = None
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        row_offset = 0  # DataFrame: 0-based position
        name = "cohort table"
    else:
        src_path = Path(source).expanduser()
        if not src_path.is_file():
            raise CohortError(f"cohort file not found: {src_path}")
        raw = _read_csv(src_path)
        base = Path(base_dir) if base_dir is not None else src_path.parent
        row_offset = 2  # CSV: header is line 1
        name = str(src_path)
    base = base.expanduser().resolve()

    renamed = {c: _canonical_column(c) for c in raw.columns}
    canon = list(renamed.values())
    dupes = sorted({c for c in canon if canon.count(c) > 1})
    if dupes:
        raise CohortError(f"{name}: column(s) given twice: {', '.join(dupes)}")
    raw = raw.rename(columns=renamed)
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        hints = [f"'{c}' (use '{COLUMN_HINTS[c]}'?)" for c in raw.columns if COLUMN_HINTS.get(c) in missing]
        found = ", ".join(f"'{c}'" for c in raw.columns) or "none"
        msg = f"{name}: missing required column(s): {', '.join(missing)}; found: {found}"
        if hints:
            msg += f"; perhaps rename {', '.join(hints)}"
        raise CohortError(msg)

    problems: list[CohortProblem] = []
    n = len(raw)
    rows = np.arange(n) + row_offset
    # Text of every cell, "" for missing: DataFrames may hold numbers / NaN, CSVs hold strings.
    text = raw.astype(object).where(raw.notna(), "").map(lambda v: str(v).strip())
    files = text["image"].tolist()

    def add(i: int | None, kind: str, message: str) -> None:
        problems.append(CohortProblem(None if i is None else int(rows[i]), None if i is None else files[i] or None,
                                      kind, message))

    if n == 0:
        problems.append(CohortProblem(None, None, "empty_cohort", f"{name} has no rows"))
    for col in raw.columns:
        target = COLUMN_HINTS.get(col)
        if target and target not in raw.columns:
            problems.append(CohortProblem(None, None, "unused_column",
                                          f"column '{col}' is not read; if it is the {target}, name it '{target}'"
                                          + (" (in months)" if target == "age_months" else "")))

    table = raw.copy()
    table.insert(0, "source_row", rows)

    # image paths
    resolved: list[str | None] = []
    for i, f in enumerate(files):
        if not f:
            add(i, "missing_value", "no image path")
            resolved.append(None)
        else:
            resolved.append(_resolve_image(f, base))
    table["image"] = resolved

    # labels
    table["label_raw"] = text["label"]
    labels: list[str | None] = []
    for i, v in enumerate(text["label"]):
        lab = normalise_label(v)
        if not v:
            add(i, "missing_value", "no label")
        elif lab is None:
            add(i, "unknown_label", f"unknown label {v!r}: use GS or control (or a synonym: "
                                   "healthy/normal/unaffected, case/syndrome/affected)")
        labels.append(lab)
    table["label"] = pd.array(labels, dtype="string")
    if n and len({lab for lab in labels if lab}) == 1:
        problems.append(CohortProblem(None, None, "single_label",
                                      f"all labelled photos are {next(lab for lab in labels if lab)}"))

    # subjects
    given = text["subject_id"] if "subject_id" in text else pd.Series([""] * n, dtype=object)
    inferred = (given == "").to_numpy()
    table["subject_id"] = [f"photo-{r}" if inf else s for s, inf, r in zip(given, inferred, rows, strict=True)]
    table["subject_inferred"] = inferred

    # optional columns
    if "syndrome" in table:
        syn = text["syndrome"].where(~text["syndrome"].map(_is_missing), None)
        table["syndrome"] = pd.array(syn.tolist(), dtype="string")
        for i in np.nonzero((syn.notna() & (pd.Series(labels) == CONTROL)).to_numpy())[0]:
            add(int(i), "syndrome_on_control", f"labelled control but syndrome is {syn.iloc[i]!r}")
    if "age_months" in table:
        ages = np.full(n, np.nan)
        for i, v in enumerate(text["age_months"]):
            if _is_missing(v):
                continue
            try:
                a = float(v.replace(",", ".")) if v.count(",") == 1 and "." not in v else float(v)
            except ValueError:
                add(i, "bad_age", f"age_months {v!r} is not a number")
                continue
            if not np.isfinite(a) or a < 0:
                add(i, "bad_age", f"age_months {v!r} is not a number >= 0")
                continue
            ages[i] = a
        table["age_months"] = ages
    if "sex" in table:
        sexes: list[str | None] = []
        for i, v in enumerate(text["sex"]):
            s = normalise_sex(v)
            if s is None and not _is_missing(v):
                add(i, "unknown_sex", f"sex {v!r} not recognised (use male / female; M, F, boy, girl also work)")
            sexes.append(s)
        table["sex"] = pd.array(sexes, dtype="string")
    if "photo_date" in table:
        dates: list[Any] = []
        for i, v in enumerate(text["photo_date"]):
            d = pd.NaT
            if not _is_missing(v):
                d = pd.to_datetime(v, format="ISO8601", errors="coerce")
                if pd.isna(d):
                    add(i, "bad_date", f"photo_date {v!r} is not an ISO 8601 date (YYYY-MM-DD)")
            dates.append(d)
        table["photo_date"] = pd.to_datetime(pd.Series(dates, dtype="datetime64[ns]"))

    # duplicate rows: the same file twice
    first_at: dict[str, int] = {}
    for i, p in enumerate(resolved):
        if p is None:
            continue
        if p in first_at:
            j = first_at[p]
            extra = ""
            if labels[i] != labels[j]:
                extra = f"; labels differ ({labels[j]} vs {labels[i]})"
                add(j, "duplicate_row", f"same image as line {rows[i]}{extra}")
            add(i, "duplicate_row", f"same image as line {rows[j]}{extra}")
        else:
            first_at[p] = i

    # subjects with two labels
    lab_s = pd.Series(labels, dtype=object)
    given_mask = ~inferred
    if given_mask.any():
        per_subject = lab_s[given_mask].groupby(table["subject_id"][given_mask].to_numpy()).agg(
            lambda s: sorted({x for x in s if x})
        )
        conflicted = {s for s, labs in per_subject.items() if len(labs) > 1}
        for i in np.nonzero(given_mask)[0]:
            s = table["subject_id"].iloc[i]
            if s in conflicted:
                add(int(i), "subject_label_conflict", f"subject {s!r} has photos labelled both GS and control")

    sha: list[str | None] = [None] * n
    ph: list[int | None] = [None] * n
    # near_dup[j] = images of the rows that row j looks like (a leak between folds unless all share a subset).
    near_dup: list[str | None] = [None] * n
    if check_images:
        _check_images(resolved, files, first_at, labels, table, add, sha, ph, near_duplicate_distance, rows, progress,
                      near_dup)
    table["near_duplicate_of"] = pd.array(near_dup, dtype="string")
    table["sha256"] = pd.array(sha, dtype="string")
    table["phash"] = pd.array([None if h is None else f"{h:048x}" for h in ph], dtype="string")

    problems.sort(key=lambda p: (-1 if p.row is None else p.row, p.kind))
    return Cohort(table=table, problems=problems, source=src_path)


def _check_images(
    resolved: list[str | None],
    written: list[str],
    first_at: dict[str, int],
    labels: list[str | None],
    table: pd.DataFrame,
    add: Any,
    sha: list[str | None],
    ph: list[int | None],
    near_duplicate_distance: int | None,
    rows: np.ndarray,
    progress: bool,
    near_dup: list[str | None],
) -> None:
    # Each distinct file is read once (rows repeating a path share its result).
    unique = sorted(first_at.items(), key=lambda kv: kv[1])
    perceptual = near_duplicate_distance is not None
    it: Iterable[tuple[str, int]] = unique
    if progress:
        from tqdm import tqdm

        it = tqdm(unique, desc="checking photos", unit="photo")
    prints: dict[str, Fingerprint] = {p: fingerprint_file(p, perceptual) for p, _ in it}
    for i, p in enumerate(resolved):
        if p is None:
            continue
        fp = prints[p]
        sha[i], ph[i] = fp.sha256, fp.phash
        if fp.error_kind and first_at[p] == i:
            add(i, fp.error_kind, fp.error)

    subjects = table["subject_id"].tolist()
    # identical bytes under different names
    by_hash: dict[str, list[int]] = {}
    for p, i in unique:
        if prints[p].sha256 and not prints[p].error_kind:
            by_hash.setdefault(prints[p].sha256, []).append(i)
    for group in by_hash.values():
        if len(group) < 2:
            continue
        labs = {labels[i] for i in group}
        conflict = len(labs) > 1
        for k, i in enumerate(group):
            others = [j for j in group if j != i]
            where = ", ".join(f"line {rows[j]} ({written[j]})" for j in others)
            if conflict:
                add(i, "duplicate_image", f"same photo (identical bytes) as {where}, with a different label")
            elif k > 0:
                subj = "" if all(subjects[j] == subjects[i] for j in group) else " under a different subject"
                add(i, "duplicate_image", f"same photo (identical bytes) as {where}{subj}")

    if near_duplicate_distance is None:
        return
    # near-duplicates between different subjects; identical files are already reported above
    idx = [i for p, i in unique if prints[p].phash is not None]
    pairs = near_duplicate_pairs(
        [prints[resolved[i]].phash for i in idx],  # type: ignore[index,misc]
        near_duplicate_distance,
        mirrored=[prints[resolved[i]].phash_mirror for i in idx],  # type: ignore[index,misc]
    )
    for a, b, d in pairs:
        i, j = idx[a], idx[b]
        if subjects[i] == subjects[j] or sha[i] == sha[j]:
            continue
        note = "" if labels[i] == labels[j] else f"; labels differ ({labels[i]} vs {labels[j]})"
        # Every partner is kept (not just the first), so a chain A ~ C ~ B ends in one split group.
        near_dup[j] = resolved[i] if near_dup[j] is None else f"{near_dup[j]}{NEAR_DUPLICATE_SEP}{resolved[i]}"
        add(j, "near_duplicate",
            f"looks like line {rows[i]} ({written[i]}), subject {subjects[i]!r} vs {subjects[j]!r}: "
            f"perceptual-hash distance {d}/192{note}; keep both in one fold or drop one")


# ----------------------------------------------------------------------------------------------------------
# from folders and back to CSV


def cohort_from_folders(
    root: str | Path,
    gs: Sequence[str] = ("down",),
    control: Sequence[str] = ("healthy",),
    syndrome_from_folder: bool = True,
) -> pd.DataFrame:
    """Build a cohort table from sub-folders of ``root``: every image under ``root/<gs folder>`` is GS, every
    image under ``root/<control folder>`` is control (searched recursively).

    Returns a DataFrame with columns ``image`` (absolute path), ``label`` and, with ``syndrome_from_folder``,
    ``syndrome`` (the GS folder's name, e.g. ``down``; empty for controls). No subject ids: each photo is
    its own subject. Write it with :func:`write_cohort_csv` to get paths relative to the CSV.

    Raises:
        CohortError: ``root`` or a named folder is missing, a folder is named as both GS and control, or a
            folder holds no images.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise CohortError(f"folder not found: {base}")
    both = sorted(set(gs) & set(control))
    if both:
        raise CohortError(f"folder(s) named as both GS and control: {', '.join(both)}")
    if not gs and not control:
        raise CohortError("name at least one GS or control folder")
    present = sorted(p.name for p in base.iterdir() if p.is_dir())
    records: list[dict[str, Any]] = []
    for names, label in ((gs, GS), (control, CONTROL)):
        for sub in names:
            folder = base / sub
            if not folder.is_dir():
                raise CohortError(f"{base}: no sub-folder {sub!r}; found: {', '.join(present) or 'none'}")
            images = find_images(folder)
            if not images:
                raise CohortError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            for p in images:
                rec: dict[str, Any] = {"image": str(p.resolve()), "label": label}
                if syndrome_from_folder:
                    rec["syndrome"] = Path(sub).name if label == GS else ""
                records.append(rec)
    cols = ["image", "label", *(["syndrome"] if syndrome_from_folder else [])]
    return pd.DataFrame.from_records(records, columns=cols)


def folder_groups(
    root: str | Path, gs: Sequence[str] = (), control: Sequence[str] = ()
) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    """Which sub-folders of ``root`` hold GS and which hold control photos: as named, or inferred.

    Nothing is assumed about a user's folders: with both ``gs`` and ``control`` given they are used as they are.
    Otherwise ``root`` must hold exactly two sub-folders with images, and the missing side is inferred: the folder
    not named on the command line, or, when none is named, the one whose name is a control word (``healthy``,
    ``control``, ``normal``, ... see :data:`LABEL_SYNONYMS`; the other is GS) or a GS word (``syndrome``, ``case``).

    Returns ``(gs, control, note)``: ``note`` says what was inferred (None when nothing was).

    Raises:
        CohortError: ``root`` is missing, or the layout does not say which folder is which (the message lists the
            sub-folders and says how to name them).
    """
    gs, control = tuple(gs), tuple(control)
    if gs and control:
        return gs, control, None
    base = Path(root).expanduser()
    if not base.is_dir():
        raise CohortError(f"folder not found: {base}")
    subs = sorted(p.name for p in base.iterdir() if p.is_dir() and find_images(p))
    how = "name them with --gs FOLDER --control FOLDER"
    if len(subs) != 2:
        raise CohortError(f"{base}: cannot tell which sub-folders hold GS and which hold control photos (found "
                          f"{len(subs)} with images: {', '.join(subs) or 'none'}); {how}")
    if gs or control:
        given = gs or control
        rest = tuple(s for s in subs if s not in given)
        if len(rest) != 1:
            raise CohortError(f"{base}: {', '.join(given)} is not one of its two sub-folders "
                              f"({', '.join(subs)}); {how}")
        gs, control = (gs, rest) if gs else (rest, control)
    else:
        kinds = [normalise_label(s) for s in subs]
        if kinds.count(CONTROL) == 1 and kinds.count(GS) != 2:
            c = subs[kinds.index(CONTROL)]
            gs, control = tuple(s for s in subs if s != c), (c,)
        elif kinds.count(GS) == 1 and kinds.count(CONTROL) == 0:
            g = subs[kinds.index(GS)]
            gs, control = (g,), tuple(s for s in subs if s != g)
        else:
            raise CohortError(f"{base}: cannot tell which of its sub-folders {subs[0]!r} and {subs[1]!r} holds GS "
                              f"photos and which holds controls; {how}")
    note = (f"inferred from the two sub-folders of {base}: --gs {' --gs '.join(gs)} "
            f"--control {' --control '.join(control)}")
    return gs, control, note


def write_cohort_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a cohort table as CSV, with ``image`` paths made relative to the CSV's folder where possible
    (so the folder can be moved as a whole). Returns the path written."""
    out = Path(path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = out.parent.resolve()
    t = table.copy()

    def rel(p: Any) -> Any:
        if not isinstance(p, str) or not p or not Path(p).is_absolute():
            return p
        try:
            return Path(os.path.relpath(p, folder)).as_posix()
        except ValueError:  # another drive on Windows
            return p

    t["image"] = t["image"].map(rel)
    t.to_csv(out, index=False)
    return out
