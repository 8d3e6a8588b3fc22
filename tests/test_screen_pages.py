"""The screening pages: strings in both languages, several photos with a table and CSV, boxes on the photo, the
threshold and operating point, the print layout's reference kept client-side, the model card, HEIC and GIF."""

from __future__ import annotations

import base64
import csv
import html
import io
import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from screen_support import encode, fabricate_run

from gsscreen.modelpack import ExportConfig, export_model_pack, load_model_pack
from gsscreen.web import i18n
from gsscreen.web.security import CSRF_FIELD

#: what a clinician must never read on a page: status numbers, exception names, Python reprs
TECHNICAL = re.compile(r"\b(4\d\d|5\d\d) error|\berror \d{3}\b|Traceback|Error:|Exception|UploadError|<class |"
                       r"\bNone\b|\bnan\b|retry", re.I)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("pages")
    pack = export_model_pack(fabricate_run(d / "run", folds=2), d / "m.gss", ExportConfig(age_range_months=(12, 120)))
    return load_model_pack(pack)


@pytest.fixture(scope="module")
def client(model, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    from gsscreen.web.screen_app import ScreenAppConfig, create_app

    db = tmp_path_factory.mktemp("audit") / "a.sqlite"
    return TestClient(create_app(ScreenAppConfig(audit_db=str(db)), model))


def _token(client: TestClient) -> dict[str, str]:
    page = client.get("/").text
    return {CSRF_FIELD: re.search(rf'name="{CSRF_FIELD}" value="([^"]+)"', page).group(1)}


def _visible_text(page: str) -> str:
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", page, flags=re.S)
    body = re.sub(r'src="data:[^"]+"|href="data:[^"]+"', "", body)
    return re.sub(r"<[^>]+>", " ", body)


# ----------------------------------------------------------------------------------------------- strings


def test_every_string_has_both_languages() -> None:
    assert set(i18n.EN) == set(i18n.ZH)
    for key in i18n.EN:
        assert i18n.EN[key].strip() and i18n.ZH[key].strip(), key
        # the same {fields} in both languages, so formatting never fails in one of them
        assert set(re.findall(r"{(\w+)}", i18n.EN[key])) == set(re.findall(r"{(\w+)}", i18n.ZH[key])), key
        if key not in ("result.pgs", "batch.pgs"):
            assert re.search(r"[\u4e00-\u9fff]", i18n.ZH[key]), f"{key} is not translated"


def test_every_gate_code_outcome_and_upload_problem_has_both_languages() -> None:
    from gsscreen.faces.quality import NOTE_TEXT, OUTCOMES, REASON_TEXT
    from gsscreen.screening import FLAG_TEXT

    for code in {*REASON_TEXT, *NOTE_TEXT, *FLAG_TEXT}:
        assert f"reason.{code}" in i18n.EN and f"reason.{code}" in i18n.ZH, code
    for oc in OUTCOMES:
        assert f"outcome.{oc}" in i18n.EN and f"outcome.{oc}" in i18n.ZH, oc
    src = (Path(i18n.__file__).parent / "screen_app.py").read_text(encoding="utf-8")
    for code in set(re.findall(r'UploadError\(\s*\d+,\s*"(\w+)"', src)):
        assert f"error.{code}" in i18n.EN and f"error.{code}" in i18n.ZH, code


def test_language_choice() -> None:
    assert i18n.choose_language(None, "zh-CN,zh;q=0.9,en;q=0.8") == "zh-CN"
    assert i18n.choose_language(None, "en-GB,en;q=0.9,zh;q=0.5") == "en"
    assert i18n.choose_language(None, "fr-FR, zh-TW;q=0.7") == "zh-CN"
    assert i18n.choose_language("zh-cn", "en") == "zh-CN"
    assert i18n.choose_language("xx", None) == "en"
    assert i18n.reason_text("zh-CN", "no_such_code") == i18n.ZH["reason.other"]


# ----------------------------------------------------------------------------------------------- pages


def test_batch_upload_gives_table_csv_and_one_section_per_photo(client: TestClient, astronaut) -> None:
    jpg = encode(astronaut)
    r = client.post("/screen", files=[("photo", ("a.jpg", jpg, "image/jpeg")), ("photo", ("b.png", encode(
        astronaut, "PNG"), "image/png")), ("photo", ("notes.txt", b"not a photo", "text/plain"))],
        data={"age_months": "200", **_token(client)})
    assert r.status_code == 200
    page = r.text
    rows = re.findall(r"<tr class=\"(refer|no_signal|inconclusive)\">", page)
    assert len(rows) == 3 and rows[2] == "inconclusive"
    assert page.count('class="result"') == 3
    uri = re.search(r'id="csv"[^>]*href="data:text/csv;charset=utf-8;base64,([^"]+)"', page).group(1)
    table = list(csv.DictReader(io.StringIO(base64.b64decode(uri).decode("utf-8-sig"))))
    assert [t["photo"] for t in table] == ["a.jpg", "b.png", "notes.txt"]
    assert table[2]["outcome"] == "inconclusive" and "not a photo in a supported format" in table[2][
        "Reasons and notes"]
    assert float(table[0]["p_gs"]) == pytest.approx(float(re.search(r'id="p-gs">([0-9.]+)<', page).group(1)),
                                                    abs=1e-3)
    assert not TECHNICAL.search(_visible_text(page)), TECHNICAL.search(_visible_text(page))
    # the age outside the model's range is said under "About the model", not as a photo-quality reason
    first = page[page.index('id="photo-0"'):page.index('id="photo-1"')]
    props = html.unescape(first[first.index('class="model-props"'):])
    assert i18n.EN["reason.outside_age_range"] in props


def test_single_result_page_shows_what_a_clinic_needs(client: TestClient, model, astronaut) -> None:
    r = client.post("/screen", files={"photo": ("a.jpg", encode(astronaut), "image/jpeg")},
                    data={"age_months": "36", **_token(client)})
    page = r.text
    assert r.status_code == 200 and 'id="results-table"' not in page
    # the original photo with the face boxed, beside the heatmap and its colour bar
    assert re.search(r'<img class="photo" id="original" src="data:image/png;base64,', page)
    assert 'id="heatmap"' in page and 'class="colorbar"' in page
    # the threshold labelled on the meter, with the operating point that made the call
    thr = model.threshold
    assert f"threshold {thr:.3f} (screening)" in page and "“screening” operating point" in page
    assert "sensitivity" in page and "calibrated probability" in page
    # the model's age range is a property of the model, not a photo-quality reason
    props = page[page.index('class="model-props"'):]
    assert "Trained on photos of children aged 12–120 months." in props
    assert "aged 12" not in page[page.index('class="flags"'):page.index('class="model-props"')]
    # print layout: date and model id in the header; the reference field is never part of the form
    assert 'id="print-date"' in page and model.model_id in page
    ref = re.search(r"<input id=\"reference\"[^>]*>", page).group(0)
    assert "name=" not in ref and 'form="no-form"' in ref
    assert 'href="/model-card?lang=en"' in page
    css = client.get("/screen-static/pages.css").text
    assert "@media print" in css and "#reference { display: none; }" in css


def test_chinese_page(client: TestClient, astronaut) -> None:
    r = client.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert "开始筛查" in r.text and 'lang="zh-CN"' in r.text and 'href="/?lang=en"' in r.text
    r = client.post("/screen?lang=zh-CN", files={"photo": ("a.jpg", encode(astronaut), "image/jpeg")},
                    data=_token(client))
    assert r.status_code == 200
    call = re.search(r'id="call">([^<]+)<', r.text).group(1)
    assert call in (i18n.ZH["outcome.refer"], i18n.ZH["outcome.no_signal"], i18n.ZH["outcome.inconclusive"])
    assert "关于模型" in r.text and "阈值" in r.text


def test_error_page_is_plain(client: TestClient) -> None:
    r = client.post("/screen", files={"photo": ("a.txt", b"hello", "text/plain")}, data=_token(client))
    assert r.status_code == 415
    detail = re.search(r'id="detail">([^<]+)<', r.text).group(1)
    assert detail == i18n.EN["error.unsupported_type"]
    assert not TECHNICAL.search(_visible_text(r.text))


def test_model_card_page_and_figure(client: TestClient) -> None:
    r = client.get("/model-card")
    assert r.status_code == 200 and "<table>" in r.text and "Operating points" in r.text
    assert 'src="/model-card/reliability.png"' in r.text
    png = client.get("/model-card/reliability.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert client.get("/model-card/other.png").status_code == 404


def test_boxes_scored_orange_others_blue() -> None:
    from gsscreen.web.result_page import OTHER_BOX, SCORED_BOX, photo_with_boxes

    photo = np.full((100, 200, 3), 255, np.uint8)
    out = photo_with_boxes(photo, 2.0, [{"box": [20, 20, 180, 180], "scored": True},
                                        {"box": [240, 40, 360, 160], "scored": False}])
    assert tuple(out[10, 50]) == SCORED_BOX  # left edge of the scored box at 1/2 scale: x = 10
    assert tuple(out[50, 120]) == OTHER_BOX  # left edge of the other box: x = 120
    assert tuple(out[50, 50]) == (255, 255, 255)  # inside untouched


# ----------------------------------------------------------------------------------------------- formats


def test_heic_and_gif_everywhere(tmp_path: Path, client: TestClient, astronaut) -> None:
    from gsscreen.cohort import find_images
    from gsscreen.faces.io import HEIF_SUPPORTED, load_image
    from gsscreen.screening import expand_inputs
    from gsscreen.web.screen_app import sniff_image_type

    assert HEIF_SUPPORTED
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="HEIF", quality=90)
    heic = buf.getvalue()
    gif = encode(astronaut, "GIF")
    assert sniff_image_type(heic) == "image/heic" and sniff_image_type(gif) == "image/gif"
    for data in (heic, gif):
        img = load_image(data)
        assert img.shape == astronaut.shape and np.abs(img.astype(int) - astronaut).mean() < 8
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "child.HEIC").write_bytes(heic)
    (tmp_path / "d" / "child2.gif").write_bytes(gif)
    assert sorted(p.name for p in find_images(tmp_path / "d")) == ["child.HEIC", "child2.gif"]
    assert len(expand_inputs([str(tmp_path / "d")])[0]) == 2
    r = client.post("/screen", files={"photo": ("iphone.heic", heic, "image/heic")}, data=_token(client))
    assert r.status_code == 200 and re.search(r'id="p-gs">[0-9.]+<', r.text)


def test_terminal_words_are_plain() -> None:
    import pandas as pd

    from gsscreen.plain import plain_problem
    from gsscreen.screening import format_table

    assert plain_problem("no face found (300×300 photo; tried: pad_0.15_replicate, upscale, rot90)") == "no face found"
    assert plain_problem("OSError: [Errno 5] Input/output error") == "the photo could not be processed"
    table = pd.DataFrame([
        {"file": "/x/a.jpg", "p_gs": float("nan"), "call": "inconclusive — retake the photo", "flags": "no_face",
         "problem": "no face found (300×300 photo; tried: pad_0.15_replicate, upscale)"},
        {"file": "/x/b.jpg", "p_gs": float("nan"), "call": "inconclusive — retake the photo", "flags": "unreadable",
         "problem": "truncated or incomplete image file (image file is truncated (3 bytes not processed))"},
    ])
    text = format_table(table)
    assert "No face was found in the photo." in text and "Truncated or incomplete image file." in text
    assert "tried" not in text and "pad_" not in text and "bytes not processed" not in text and "nan" not in text
