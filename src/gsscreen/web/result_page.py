"""The screening app's pages (upload, results, error, model card), rendered from Jinja templates in ``web/screen/``.

Everything a page shows comes from :mod:`gsscreen.web.i18n` (English / zh-CN); numbers are formatted here. The
result of each photo shows the original photo with the scored face boxed (orange) and every other face boxed
(blue), the Grad-CAM overlay with its colour bar, the P(GS) meter with the threshold marked and labelled, the
operating point that made the call, the quality reasons in plain words, and the model's age range as a property
of the model. Several photos give a table first (with a CSV download built in the page, no round trip). The
print layout (CSS ``@media print``) fits one result on one page with the date, the model id and the clinician's
free-text reference — typed into a field outside the form, so it is never sent to the server.
"""

from __future__ import annotations

import base64
import csv
import functools
import io
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gsscreen.web.i18n import LANGUAGES, STRINGS, error_text, reason_text, t

if TYPE_CHECKING:
    from jinja2 import Environment

    from gsscreen.screening import ScreeningModel, ScreenResult

TEMPLATES = Path(__file__).resolve().parent / "screen"
#: box colours on the photo (Okabe–Ito orange / blue: distinguishable with the common colour-vision deficiencies)
SCORED_BOX = (230, 159, 0)
OTHER_BOX = (0, 114, 178)
#: long side of the photo shown on the page, px
SHOWN_SIDE = 480
#: flags that describe the model (or the child's age against it), not the photo: shown under "About the model"
MODEL_PROPERTY_FLAGS = frozenset({"age_range_unknown", "outside_age_range"})


@functools.cache
def _env() -> Environment:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def png_data_uri(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@functools.cache
def colorbar_uri(colormap: str = "jet") -> str:
    """A 256 × 14 px PNG of the heatmap's colour map (the one :func:`gsscreen.explain.overlay` uses)."""
    import matplotlib

    ramp = matplotlib.colormaps[colormap](np.linspace(0, 1, 256))[:, :3]
    return png_data_uri(np.repeat((ramp * 255).round().astype(np.uint8)[None], 14, axis=0))


def photo_with_boxes(photo: np.ndarray, factor: float, faces: list[dict[str, Any]]) -> np.ndarray:
    """``photo`` ``(H, W, 3)`` (shown at 1/``factor`` of the original size) with each face box drawn: the scored
    face thick orange, the others blue. Boxes are ``[x0, y0, x1, y1]`` in original-photo px."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(photo)
    draw = ImageDraw.Draw(im)
    width = max(2, round(max(im.size) / 160))
    for f in sorted(faces, key=lambda f: bool(f.get("scored"))):  # the scored box on top
        x0, y0, x1, y1 = (float(v) / factor for v in f["box"])
        scored = bool(f.get("scored"))
        draw.rectangle((x0, y0, x1, y1), outline=SCORED_BOX if scored else OTHER_BOX,
                       width=width * 2 if scored else width)
    return np.asarray(im)


def _faces(res: ScreenResult) -> list[dict[str, Any]]:
    faces = list(getattr(res, "faces", None) or [])
    if not faces and res.face and res.face.get("box"):
        faces = [{"box": res.face["box"], "scored": True}]
    return faces


def outcome_code(res: ScreenResult) -> str:
    """``refer`` / ``no_signal`` / ``inconclusive`` for a result (older results: from ``suspected``)."""
    oc = getattr(res, "outcome", None)
    if oc:
        return str(oc)
    if res.p_gs is None or res.suspected is None:
        return "inconclusive"
    return "refer" if res.suspected else "no_signal"


def _pct(v: float | None) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.0f} %"


@dataclass
class PhotoResult:
    """One uploaded photo's result and what the page needs to show it (built by :func:`photo_result`)."""

    name: str
    result: ScreenResult | None
    photo_uri: str | None = None
    error_code: str | None = None


def photo_result(name: str, res: ScreenResult | None, data: bytes | None, error_code: str | None = None
                 ) -> PhotoResult:
    """Attach the boxed photo (decoded from the upload ``data`` at most :data:`SHOWN_SIDE` px) to a result."""
    uri = None
    if data is not None:
        from gsscreen.faces.io import ImageError, load_image_scaled

        try:
            photo, factor = load_image_scaled(data, SHOWN_SIDE)
            uri = png_data_uri(photo_with_boxes(photo, factor, _faces(res) if res is not None else []))
        except ImageError:
            uri = None
    return PhotoResult(name=name, result=res, photo_uri=uri, error_code=error_code)


def _view(pr: PhotoResult, model: ScreeningModel, lang: str, index: int) -> dict[str, Any]:
    """The template's view of one photo's result: every string already in ``lang``."""
    res = pr.result
    if res is None:
        code = pr.error_code or "bad_request"
        text = reason_text(lang, "no_face") if code == "no_face" else error_text(lang, code)
        return {"index": index, "name": pr.name, "outcome": "inconclusive", "call": t(lang, "outcome.inconclusive"),
                "p_gs": None, "p_text": "—", "reasons": [text], "notes": [], "error": True, "photo_uri": pr.photo_uri,
                "heatmap_uri": None, "photo_caption": t(lang, "result.photo"), "age_outside": False,
                "thr_text": "", "op_name": "", "seconds": "0"}
    oc = outcome_code(res)
    reasons = list(getattr(res, "reasons", None) or [])
    notes = list(getattr(res, "notes", None) or [])
    if not reasons and not notes:  # an older result: its flags are the reasons
        reasons = [f for f in res.flags if f not in MODEL_PROPERTY_FLAGS]
    else:
        notes += [f for f in res.flags if f not in reasons and f not in notes and f not in MODEL_PROPERTY_FLAGS]
    d = model.decision
    op = d.operating_point
    thr = res.threshold
    op_name = t(lang, f"op.{op.name}")
    if oc == "inconclusive":  # no call was made: say so instead of naming the threshold that would have made it
        op_line = t(lang, "result.no_call", why=reason_text(lang, reasons[0]) if reasons else t(lang, "reason.other"))
    elif op.sensitivity is not None:
        op_line = t(lang, "result.op_line", op=op_name, t=f"{thr:.3f}", se=_pct(op.sensitivity),
                    sp=_pct(op.specificity))
    else:
        op_line = t(lang, "result.op_line_plain", t=f"{thr:.3f}")
    if not d.calibrated:
        cal_line = t(lang, "result.uncalibrated")
    elif d.prevalence is not None:
        cal_line = t(lang, "result.calibrated_prev", prev=_pct(d.prevalence))
    else:
        cal_line = t(lang, "result.calibrated", prev=_pct(d.train_prevalence))
    faces = _faces(res)
    return {
        "index": index, "name": pr.name, "outcome": oc, "call": t(lang, f"outcome.{oc}"),
        "p_gs": res.p_gs, "p_text": "—" if res.p_gs is None else f"{res.p_gs:.3f}",
        "p_pct": 0.0 if res.p_gs is None else round(100 * res.p_gs, 1), "thr_text": f"{thr:.3f}",
        "thr_pct": round(100 * thr, 1), "op_name": op_name, "op_line": op_line, "cal_line": cal_line,
        "reasons": [reason_text(lang, c) for c in reasons], "notes": [reason_text(lang, c) for c in notes],
        "photo_uri": pr.photo_uri,
        "photo_caption": t(lang, "result.photo_caption_others" if len(faces) > 1 else "result.photo_caption"),
        "heatmap_uri": png_data_uri(res.overlay) if res.overlay is not None else None,
        "regions": _regions_view(res.regions),
        "age_outside": "outside_age_range" in res.flags, "seconds": f"{res.seconds:.2f}", "error": False,
    }


def results_csv(rows: list[dict[str, Any]], lang: str) -> str:
    """The results table as CSV text (one row per photo; outcome as code and in words)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["photo", "outcome", t(lang, "batch.result"), "p_gs", "threshold", "operating_point",
                t(lang, "batch.reasons")])
    for r in rows:
        w.writerow([r["name"], r["outcome"], r["call"], "" if r["p_gs"] is None else f"{r['p_gs']:.4f}",
                    r.get("thr_text", ""), r.get("op_name", ""), " ".join(r["reasons"] + r["notes"])])
    return buf.getvalue()


def _common(model: ScreeningModel, lang: str, path: str) -> dict[str, Any]:
    other = [lg for lg in LANGUAGES if lg != lang]
    ages = model.age_range
    return {
        "lang": lang, "s": STRINGS[lang], "model_id": model.model_id, "demo": model.is_demo,
        "switch": [{"lang": lg, "name": STRINGS[lg]["lang.name"], "href": f"{path}?lang={lg}"} for lg in other],
        "age_line": (t(lang, "result.age_range", lo=f"{ages[0]:g}", hi=f"{ages[1]:g}") if ages
                     else t(lang, "result.age_unknown")),
        "has_card": bool(model.card),
    }


def render_index(model: ScreeningModel, lang: str, *, token_field: bool, max_mb: float, max_photos: int,
                 form_extra: str = "") -> str:
    """The upload page. ``form_extra``: trusted HTML added inside the form (e.g. a CSRF token field)."""
    from markupsafe import Markup

    return _env().get_template("index.html.j2").render(
        **_common(model, lang, "/"), token_field=token_field, form_extra=Markup(form_extra),
        choose=t(lang, "index.choose", mb=f"{max_mb:g}", n=max_photos))


def render_results(items: list[PhotoResult], model: ScreeningModel, lang: str) -> str:
    """The result page of one or several photos."""
    rows = [_view(pr, model, lang, i) for i, pr in enumerate(items)]
    csv_uri = "data:text/csv;charset=utf-8;base64," + base64.b64encode(
        ("\ufeff" + results_csv(rows, lang)).encode("utf-8")).decode("ascii")  # BOM: Excel reads UTF-8 (Chinese)
    seconds = sum(float(r.get("seconds", 0) or 0) for r in rows)
    return _env().get_template("results.html.j2").render(
        **_common(model, lang, "/"), rows=rows, csv_uri=csv_uri, colorbar=colorbar_uri(),
        date=datetime.now(UTC).astimezone().strftime("%Y-%m-%d %H:%M"), seconds=f"{seconds:.1f}")


def render_error(model: ScreeningModel, lang: str, code: str, **fields: Any) -> str:
    """The page of an upload that could not be screened at all: the problem in plain words, no status number."""
    return _env().get_template("error.html.j2").render(**_common(model, lang, "/"),
                                                       detail=error_text(lang, code, **fields))


def _markdown_html(md: str) -> str:
    """The model card's small Markdown subset (headings, paragraphs, lists, tables, images, bold, code) → HTML."""
    import html
    import re

    def inline(s: str) -> str:
        s = html.escape(s)
        s = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)",
                   lambda m: f'<img src="/model-card/{html.escape(Path(m.group(2)).name)}" alt="{m.group(1)}">', s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", s)

    out: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line:
            i += 1
            continue
        if m := re.match(r"^(#{1,4})\s+(.*)", line):
            n = len(m.group(1)) + 1
            out.append(f"<h{n}>{inline(m.group(2))}</h{n}>")
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                    rows.append(cells)
                i += 1
            head, *body = rows or [[]]
            out.append("<table><thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</tbody></table>")
        elif re.match(r"^\s*- ", line):
            items = []
            while i < len(lines) and (re.match(r"^\s*- ", lines[i]) or (lines[i].startswith("  ") and items)):
                if re.match(r"^\s*- ", lines[i]):
                    items.append(lines[i].split("- ", 1)[1])
                else:
                    items[-1] += " " + lines[i].strip()
                i += 1
            out.append("<ul>" + "".join(f"<li>{inline(x)}</li>" for x in items) + "</ul>")
        else:
            para = [line]
            i += 1
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#|\||\s*- )", lines[i]):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{inline(' '.join(para))}</p>")
    return "\n".join(out)


def render_card(model: ScreeningModel, lang: str) -> str:
    """The model card as a page (the card itself is in English, as exported)."""
    from markupsafe import Markup

    return _env().get_template("card.html.j2").render(**_common(model, lang, "/model-card"),
                                                      card=Markup(_markdown_html(model.card)))


__all__ = ["PhotoResult", "outcome_code", "photo_result", "photo_with_boxes", "render_card", "render_error",
           "render_index", "render_results", "results_csv"]


def _regions_view(deltas: dict[str, float] | None) -> dict[str, Any] | None:
    """The facial-region bars beside the heatmap (gsscreen.explain_regions): a PNG data URI and the numbers."""
    if not deltas:
        return None
    import base64

    from gsscreen.explain_regions import REGION_LABELS, REGIONS, region_bars

    return {"uri": "data:image/png;base64," + base64.b64encode(region_bars(deltas)).decode("ascii"),
            "rows": [(REGION_LABELS[r], f"{float(deltas[r]):+.3f}") for r in REGIONS if r in deltas]}
