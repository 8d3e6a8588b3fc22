"""Facial-region attributions: how much P(GS) drops when each region a dysmorphologist names is greyed out.

From the 5 landmarks of an aligned crop (left eye, right eye, nose tip, left and right mouth corner, image-left
first) the crop is divided into five disjoint regions (:func:`region_masks`):

- ``periocular``: a band over both eyes and brows (palpebral fissures, epicanthus, hypertelorism);
- ``nasal``: the nasal bridge between the eyes down to below the nose tip (flat bridge, short nose);
- ``perioral``: mouth, philtrum and lips (open mouth, thin upper lip);
- ``outline``: the rest of the face region of :func:`gsscreen.explain.face_region_mask` (forehead, cheeks,
  midface, jaw, chin);
- ``outside``: everything else: hair, ears, neck, clothes, background.

Attribution (occlusion, Zeiler & Fergus 2014): ``delta[r] = P(GS | photo) - P(GS | region r filled with grey)``,
in probability units (positive = the region carried evidence *for* GS). The *share* of the evidence is
``max(delta[r], 0) / sum_r max(delta[r], 0)`` (NaN when no region lowers P(GS)). All views of a photo (the photo
and its five occluded copies) go through the model in one batch. A large ``outside`` share flags a model that
learned the photo, not the child.

Shapes: crops ``(H, W, 3)`` uint8 RGB; landmarks ``(5, 2)`` crop pixels; masks ``(H, W)`` bool.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FILL",
    "REGIONS",
    "REGION_LABELS",
    "occluded_views",
    "region_attributions",
    "region_bars",
    "region_masks",
    "region_shares",
    "region_summary",
    "summary_sentence",
]

REGIONS = ("periocular", "nasal", "perioral", "outline", "outside")
REGION_LABELS = {
    "periocular": "periocular",
    "nasal": "nasal",
    "perioral": "perioral",
    "outline": "face outline / midface",
    "outside": "outside the face",
}
#: the grey an occluded region is filled with (the same mid grey the aligner fills outside a photo with)
FILL = 128

# Region geometry in the face's own units (i = interocular distance, d = eye–mouth distance), chosen from the
# proportions of a frontal face: the brows lie ~0.35 i above the pupils and the lower lid ~0.2 i below; the outer
# canthus ~0.25 i beyond the pupil (we go to 0.45 i to include it with the lateral brow); the nasal bridge starts
# between the eyes and the nose's width is ~0.7 i (0.35 i either side of the midline), its base ~0.2 d below the
# tip; the philtrum spans from the nose base to the upper lip, the lower lip ~0.25 d below the mouth corners.
PERIOCULAR = {"out": 0.45, "up": 0.40, "down": 0.22}  # x i
NASAL = {"half_width": 0.32, "below_tip": 0.12}  # x i, x d
PERIORAL = {"out": 0.18, "up": 0.30, "down": 0.28}  # x i, x d, x d


def _poly_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    m = np.zeros(shape, dtype=np.uint8)
    cv2.fillConvexPoly(m, np.round(np.asarray(points) * 16).astype(np.int32), 1, lineType=cv2.LINE_8, shift=4)
    return m.astype(bool)


def region_masks(landmarks: np.ndarray, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Five disjoint boolean ``(H, W)`` masks that together cover the image, keyed by :data:`REGIONS`.

    Where two regions' shapes overlap (the nasal bridge meets the inner eyes) the earlier region of
    :data:`REGIONS` keeps the pixels. The face outline is :func:`gsscreen.explain.face_region_mask` minus the
    three feature regions; ``outside`` is the rest.
    """
    from gsscreen.explain import _check_landmarks, _face_axes, face_region_mask

    lm = _check_landmarks(landmarks)
    h, w = int(shape[0]), int(shape[1])
    side, up, iod, emd = _face_axes(lm)
    le, re, nose, ml, mr = lm
    # Periocular: one box along the eye line from beyond the left eye to beyond the right eye.
    a, b = le - side * PERIOCULAR["out"] * iod, re + side * PERIOCULAR["out"] * iod
    top, bot = up * PERIOCULAR["up"] * iod, -up * PERIOCULAR["down"] * iod
    peri = _poly_mask(np.array([a + top, b + top, b + bot, a + bot]), (h, w))
    # Nasal: from the eye line (the bridge between the eyes) to just below the nose tip, around the midline.
    eye_c = (le + re) / 2.0
    along_up = float((eye_c - nose) @ up)  # nose tip -> eye line, along the face's up axis
    hw = side * NASAL["half_width"] * iod
    n_top = nose + up * along_up
    n_bot = nose - up * NASAL["below_tip"] * emd
    nasal = _poly_mask(np.array([n_top - hw, n_top + hw, n_bot + hw, n_bot - hw]), (h, w))
    # Perioral: the mouth corners widened sideways, up to the philtrum and down over the lower lip.
    pa, pb = ml - side * PERIORAL["out"] * iod, mr + side * PERIORAL["out"] * iod
    ptop, pbot = up * PERIORAL["up"] * emd, -up * PERIORAL["down"] * emd
    oral = _poly_mask(np.array([pa + ptop, pb + ptop, pb + pbot, pa + pbot]), (h, w))
    face = face_region_mask(lm, (h, w))
    nasal &= ~peri
    oral &= ~(peri | nasal)
    outline = face & ~(peri | nasal | oral)
    outside = ~(peri | nasal | oral | outline)
    return {"periocular": peri, "nasal": nasal, "perioral": oral, "outline": outline, "outside": outside}


def occluded_views(crop: np.ndarray, masks: Mapping[str, np.ndarray], fill: int = FILL) -> np.ndarray:
    """``(1 + R, H, W, 3)`` uint8: the crop, then one copy per region of ``masks`` (in :data:`REGIONS` order)
    with that region filled with grey ``fill``."""
    img = np.asarray(crop)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"crop must be an (H, W, 3) uint8 RGB array, got {img.dtype} {img.shape}")
    views = np.repeat(img[None], 1 + len(REGIONS), axis=0)
    for k, r in enumerate(REGIONS, start=1):
        m = np.asarray(masks[r], dtype=bool)
        if m.shape != img.shape[:2]:
            raise ValueError(f"mask {r!r} is {m.shape}, the crop {img.shape[:2]}")
        views[k][m] = fill
    return views


def region_shares(deltas: Mapping[str, float]) -> dict[str, float]:
    """Share (0–1) of the positive evidence per region; NaN everywhere when no region lowers P(GS)."""
    pos = {r: max(float(deltas[r]), 0.0) if math.isfinite(float(deltas[r])) else 0.0 for r in REGIONS}
    total = sum(pos.values())
    return {r: (v / total if total > 0 else math.nan) for r, v in pos.items()}


def region_attributions(
    predict: Callable[[np.ndarray], np.ndarray],
    crops: Sequence[np.ndarray],
    landmarks: Sequence[np.ndarray],
    names: Sequence[str] | None = None,
    photos_per_batch: int = 8,
) -> Any:
    """Occlusion attributions of every crop: a DataFrame with one row per crop.

    predict: ``(N, H, W, 3)`` uint8 crops -> ``(N,)`` P(GS) in 0–1 (e.g. a model pack's ensemble). Views of
    ``photos_per_batch`` photos (6 views each) go through it at a time.
    Columns: ``file``, ``p_gs`` (unoccluded), ``delta_<region>`` (P drop, probability units), ``share_<region>``
    (0–1 of the positive evidence), ``problem`` (a bad crop or landmarks: that row only, the rest go on).
    """
    import pandas as pd

    if len(crops) != len(landmarks):
        raise ValueError(f"{len(crops)} crops but {len(landmarks)} landmark sets")
    names = list(names) if names is not None else [f"photo_{i:04d}" for i in range(len(crops))]
    if len(names) != len(crops):
        raise ValueError(f"{len(crops)} crops but {len(names)} names")
    rows: list[dict[str, Any]] = []
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        p = np.asarray(predict(np.concatenate([v for _, v in pending])), dtype=np.float64).reshape(len(pending), -1)
        for (i, _), pi in zip(pending, p, strict=True):
            deltas = {r: float(pi[0] - pi[k]) for k, r in enumerate(REGIONS, start=1)}
            rows[i].update(p_gs=float(pi[0]), **{f"delta_{r}": v for r, v in deltas.items()},
                           **{f"share_{r}": v for r, v in region_shares(deltas).items()})
        pending.clear()

    for i, (crop, lm, name) in enumerate(zip(crops, landmarks, names, strict=True)):
        rows.append({"file": str(name), "problem": ""})
        try:
            c = np.asarray(crop)
            views = occluded_views(c, region_masks(lm, c.shape[:2]))
        except ValueError as exc:
            rows[-1]["problem"] = f"{name}: {exc}"
            continue
        pending.append((i, views))
        if len(pending) >= photos_per_batch:
            flush()
    flush()
    cols = ["file", "p_gs", *(f"delta_{r}" for r in REGIONS), *(f"share_{r}" for r in REGIONS), "problem"]
    return pd.DataFrame(rows).reindex(columns=cols)


def region_summary(rows: Any) -> dict[str, Any]:
    """Mean over photos (rows of :func:`region_attributions`): ``{"n", "delta": {r: mean}, "share": {r: mean}}``.

    The share is the mean of the photos' own shares (photos where no region lowers P(GS) are left out of it).
    """
    import pandas as pd

    df = pd.DataFrame(rows)
    ok = df[df["p_gs"].notna()] if "p_gs" in df else df.iloc[:0]
    out: dict[str, Any] = {"n": len(ok), "delta": {}, "share": {}}
    for r in REGIONS:
        d = ok.get(f"delta_{r}", pd.Series(dtype=float)).astype(float)
        s = ok.get(f"share_{r}", pd.Series(dtype=float)).astype(float)
        out["delta"][r] = float(d.mean()) if d.notna().any() else math.nan
        out["share"][r] = float(s.mean()) if s.notna().any() else math.nan
    return out


def summary_sentence(summary: Mapping[str, Any], who: str = "GS photos") -> str:
    """One line for a report: which region carries most of the evidence, and how much lies outside the face."""
    share = summary.get("share") or {}
    face = [r for r in REGIONS if r != "outside" and math.isfinite(share.get(r, math.nan))]
    if not summary.get("n") or not face:
        return f"no region attributions for {who}"
    top = max(face, key=lambda r: share[r])
    text = (f"for {who} (n = {summary['n']}), the {REGION_LABELS[top]} region carries {share[top]:.0%} of the "
            "evidence")
    out = share.get("outside", math.nan)
    if math.isfinite(out):
        text += f"; {out:.0%} lies outside the face"
        if out >= 0.25:
            text += " (a large share: the model may have learned the photo, not the child)"
    return text


@lru_cache(maxsize=4)
def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def region_bars(deltas: Mapping[str, float], path: str | Path | None = None, title: str | None = None) -> bytes:
    """A small horizontal bar chart of the P(GS) change per region (PNG bytes, 352 × 209 px; also written to
    ``path``).

    Bars to the right (red) = occluding the region lowers P(GS): the region carried evidence for GS; to the left
    (blue) = the region held evidence against GS. A region without a number has no bar.

    Drawn with PIL (Pillow's bundled font): a few milliseconds, where a matplotlib figure cost ~0.2 s, as much as
    the model's whole forward pass for the photo (folder screening draws one chart per photo).
    """
    import io

    from PIL import Image, ImageDraw

    vals = [float(deltas.get(r, math.nan)) for r in REGIONS]
    w, h = 352, 209
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    small, tiny = _font(11), _font(10)
    left, right = 128, 14  # the labels' column, a margin
    top = 24 if title else 10
    bottom = h - 40  # the axis, its ticks and its label below
    if title:
        d.text((w / 2, 4), title, fill="black", font=small, anchor="ma")
    lim = max(0.05, max((abs(v) for v in vals if math.isfinite(v)), default=0.0) * 1.15)
    x0, x1 = left, w - right
    zero = (x0 + x1) / 2.0

    def xpos(v: float) -> float:
        return zero + (x1 - x0) / 2.0 * max(-1.0, min(1.0, v / lim))

    slot = (bottom - top) / len(REGIONS)
    for k, (r, v) in enumerate(zip(REGIONS, vals, strict=True)):
        yc = top + slot * (k + 0.5)
        d.text((left - 6, yc), REGION_LABELS[r], fill="black", font=small, anchor="rm")
        if math.isfinite(v) and v != 0:
            a, b = sorted((zero, xpos(v)))
            d.rectangle((a, yc - 0.3 * slot, b, yc + 0.3 * slot), fill="#b2182b" if v > 0 else "#2166ac")
    d.line((zero, top, zero, bottom), fill="black", width=1)
    d.line((x0, bottom, x1, bottom), fill="black", width=1)
    for v in (-lim, 0.0, lim):
        x = xpos(v)
        d.line((x, bottom, x, bottom + 3), fill="black", width=1)
        d.text((x, bottom + 5), f"{v:+.2f}" if v else "0", fill="black", font=tiny, anchor="ma")
    d.text((zero, h - 4), "drop in P(GS) when greyed out", fill="black", font=small, anchor="md")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    data = buf.getvalue()
    if path is not None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return data


def pack_regions(model: Any, batch: Sequence[Any],
                 plain: Callable[[], np.ndarray] | None = None) -> list[dict[str, float] | None]:
    """Region deltas for prepared photos of :class:`gsscreen.screening.ScreeningModel` (``model_input``
    ``(S, S, 3)`` uint8 and ``landmarks`` in crop pixels): the fold models' mean P(GS) of the plain view, for the
    photo and each occluded copy, all in one forward. A photo without landmarks gets None.

    ``plain``: when given, returns the fold-mean P(GS) of every photo's unoccluded view ``(len(batch),)`` (e.g. from
    the CAM's own forward pass); it is called after the occluded views ran and that view is not run again."""
    import torch

    views, idx = [], []
    first = 0 if plain is None else 1
    for i, prep in enumerate(batch):
        lm = getattr(prep, "landmarks", None)
        if lm is None:
            continue
        img = np.asarray(prep.model_input)
        scale = img.shape[0] / np.asarray(prep.crop).shape[0]
        try:
            views.append(occluded_views(img, region_masks(np.asarray(lm, dtype=np.float64) * scale,
                                                          img.shape[:2]))[first:])
        except ValueError:
            continue  # degenerate landmarks: no regions for this photo, the screening goes on
        idx.append(i)
    out: list[dict[str, float] | None] = [None] * len(batch)
    if not views:
        return out
    x = torch.from_numpy(np.concatenate(views)).permute(0, 3, 1, 2).float().div_(255.0)
    p = model.predict_tensor_views(x).mean(axis=1).reshape(len(idx), 1 + len(REGIONS) - first)
    if plain is not None:
        p0 = np.asarray(plain(), dtype=np.float64)
        p = np.concatenate([p0[idx][:, None], p], axis=1)
    for i, pi in zip(idx, p, strict=True):
        out[i] = {r: round(float(pi[0] - pi[k]), 4) for k, r in enumerate(REGIONS, start=1)}
    return out


def regions_figure_html(deltas: Mapping[str, float] | None) -> str:
    """A ``<figure>`` with the bar chart (inline PNG) and the numbers as a small table, for the screening page;
    ``""`` when there are none."""
    import base64
    import html

    if not deltas:
        return ""
    png = base64.b64encode(region_bars(deltas)).decode("ascii")
    rows = "".join(f"<tr><td>{html.escape(REGION_LABELS[r])}</td><td>{float(deltas[r]):+.3f}</td></tr>"
                   for r in REGIONS if r in deltas)
    return ('<figure class="region-bars" id="region-bars">'
            f'<img src="data:image/png;base64,{png}" alt="drop in P(GS) when each facial region is greyed out">'
            "<figcaption>Which facial region carried the evidence: the drop in P(GS) when the region is greyed "
            "out (right = evidence for GS)</figcaption>"
            f'<table class="region-table"><thead><tr><th>region</th><th>ΔP(GS)</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></figure>")


#: The rule behind "mainly on the face", stated wherever the count is shown.
ON_FACE_RULE = ("a map is mainly on the face when more than half of its mass lies inside the face region (the "
                "5 landmarks widened to forehead, cheeks and chin; gsscreen.explain.face_region_mask)")


def fold_summary(rows: Any) -> dict[str, Any]:
    """The Fig. 3 numbers per fold and pooled from the rows of ``gsscreen explain`` / the report's gallery
    (columns ``fold``, ``on_face_share``, ``on_face`` and, when computed, ``delta_<region>``/``share_<region>``).

    Returns ``{"rule", "pooled": {...}, "folds": {fold: {...}}}``, each part ``{"n_maps", "n_on_face",
    "regions": region_summary}``.
    """
    import pandas as pd

    df = pd.DataFrame(rows)

    def part(d: pd.DataFrame) -> dict[str, Any]:
        ok = d[d["on_face_share"].notna()] if "on_face_share" in d else d.iloc[:0]
        out: dict[str, Any] = {"n_maps": len(ok), "n_on_face": int(ok["on_face"].astype(bool).sum()) if len(ok) else 0}
        if f"delta_{REGIONS[0]}" in d:
            out["regions"] = region_summary(d.assign(p_gs=d[f"delta_{REGIONS[0]}"]))
        return out

    folds = {int(f): part(g) for f, g in df.groupby("fold")} if "fold" in df and len(df) else {}
    return {"rule": ON_FACE_RULE, "pooled": part(df), "folds": folds}


def fold_summary_lines(summary: Mapping[str, Any], who: str = "GS photos") -> list[str]:
    """Plain-text lines of :func:`fold_summary` (per fold, then pooled) for the terminal."""
    lines = []
    for name, part in [*((f"fold {f}", p) for f, p in summary["folds"].items()), ("pooled", summary["pooled"])]:
        text = f"{name}: {part['n_on_face']} of {part['n_maps']} maps mainly on the face"
        if "regions" in part and part["regions"]["n"]:
            sh = part["regions"]["share"]
            text += "; evidence " + ", ".join(f"{REGION_LABELS[r]} {sh[r]:.0%}" for r in REGIONS
                                              if math.isfinite(sh[r]))
        lines.append(text)
    if "regions" in summary["pooled"]:
        lines.append(summary_sentence(summary["pooled"]["regions"], who))
    lines.append(f"rule: {summary['rule']}")
    return lines


def fig3_context(rows: Any, who: str = "GS test photos") -> dict[str, Any]:
    """Template context of the report's Fig. 3 table (``report/templates/sections/_gradcam_regions.html.j2``):
    maps mainly on the face and the region shares of the evidence, per fold and pooled, with the rule stated."""
    s = fold_summary(rows)
    out_rows = []
    for name, part in [*((f"fold {f}", p) for f, p in s["folds"].items()), ("pooled", s["pooled"])]:
        reg = part.get("regions") or {"share": {}, "n": 0}
        out_rows.append({
            "name": name, "on": f"{part['n_on_face']} of {part['n_maps']}",
            "pct": f"{part['n_on_face'] / part['n_maps']:.0%}" if part["n_maps"] else "–",
            "shares": [f"{reg['share'][r]:.0%}" if reg["n"] and math.isfinite(reg["share"][r]) else "–"
                       for r in REGIONS],
        })
    has_regions = "regions" in s["pooled"]
    return {"rule": s["rule"], "regions": [REGION_LABELS[r] for r in REGIONS], "rows": out_rows,
            "has_regions": has_regions,
            "sentence": summary_sentence(s["pooled"]["regions"], who) if has_regions else ""}
