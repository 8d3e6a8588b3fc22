"""The reader-study app through its HTTP API (FastAPI TestClient), its database and its CSV export."""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from gsscreen.web import readers_app as ra
from gsscreen.web.readers_app import (
    EXPORT_COLUMNS,
    ReadersConfig,
    create_app,
    export_answers,
    read_answers,
    read_cohort_images,
    reader_order,
    write_example_cohort,
)


@pytest.fixture(scope="module")
def cohort_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_cohort(tmp_path_factory.mktemp("readers-cohort"), n=4)


def _app(cohort: Path, db: Path, **kw) -> TestClient:
    return TestClient(create_app(ReadersConfig(cohort=cohort, db=db, **kw)))


def _sign_in(client: TestClient, name: str, role: str) -> dict:
    study = client.app.state.study
    code = ra.create_invitation(study.db, name, role)
    r = client.post("/api/session", json={"name": name, "role": role, "invite": code})
    assert r.status_code == 200, r.text
    return r.json()


def _answer_next(client: TestClient, answer: str = "GS", confidence: int | None = 3) -> dict:
    """Show the current photo (fetch its bytes) and answer it; returns the /api/next payload that was answered."""
    nxt = client.get("/api/next").json()
    assert not nxt["done"]
    assert client.get(f"/api/photos/{nxt['photo_id']}").status_code == 200
    body = {"photo_id": nxt["photo_id"], "answer": answer}
    if confidence is not None:
        body["confidence"] = confidence
    r = client.post("/api/answers", json=body)
    assert r.status_code == 201, r.text
    return nxt


def _cohort_images(cohort: Path) -> list[str]:
    return [row["image"] for row in csv.DictReader(cohort.open())]


def test_full_session_serves_opaque_ids_and_no_labels(cohort_csv: Path, tmp_path: Path) -> None:
    client = _app(cohort_csv, tmp_path / "r.sqlite", seconds=1)
    cfg = client.get("/api/config").json()
    assert cfg == {"seconds": 1.0, "confidence": True, "roles": ["junior", "senior"]}

    assert client.get("/api/next").status_code == 401  # not signed in
    me = _sign_in(client, "  Dr.   Ada  Lovelace ", "senior")
    assert me["reader"] == "Dr. Ada Lovelace"  # whitespace normalised
    assert (me["answered"], me["total"], me["done"]) == (0, 4, False)
    assert client.get("/api/session").json()["reader"] == "Dr. Ada Lovelace"  # the cookie identifies the session

    images = _cohort_images(cohort_csv)
    seen_ids: list[str] = []
    bodies: list[str] = []
    for i in range(4):
        r = client.get("/api/next")
        bodies.append(r.text)
        nxt = r.json()
        assert nxt["index"] == i + 1 and nxt["answered"] == i and nxt["total"] == 4
        photo = client.get(f"/api/photos/{nxt['photo_id']}")
        assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
        assert photo.headers["cache-control"] == "no-store"
        with Image.open(io.BytesIO(photo.content)) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and min(im.size) > 100
            assert not im.getexif()  # re-encoded: no metadata reaches the browser
        r = client.post("/api/answers", json={"photo_id": nxt["photo_id"], "answer": "control", "confidence": 4})
        assert r.status_code == 201
        bodies.append(r.text)
        assert r.json()["answered"] == i + 1
        seen_ids.append(nxt["photo_id"])

    done = client.get("/api/next").json()
    assert done["done"] and "photo_id" not in done and done["answered"] == 4
    assert len(set(seen_ids)) == 4
    # Ids are opaque: nothing of the file name, and no label or path in any API answer.
    for pid in seen_ids:
        assert all(Path(img).stem not in pid for img in images)
    for text in bodies:
        assert "label" not in text and all(Path(img).stem not in text for img in images) and "photos/" not in text

    page = client.get("/")
    assert page.status_code == 200 and "Reader study" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/readers-static/readers.js").status_code == 200
    assert client.get("/readers-static/readers.css").status_code == 200


def test_order_is_seeded_per_reader_and_stable(tmp_path: Path) -> None:
    cohort = write_example_cohort(tmp_path / "c8", n=8)
    db = tmp_path / "r.sqlite"
    images = _cohort_images(cohort)

    def order_via_api(name: str, role: str) -> list[str]:
        client = _app(cohort, db, seed=7)
        _sign_in(client, name, role)
        ids = [_answer_next(client)["photo_id"] for _ in range(8)]
        with sqlite3.connect(db) as con:
            by_id = dict(con.execute("SELECT photo_id, image FROM photos"))
        return [by_id[i] for i in ids]

    a = order_via_api("Alice", "junior")
    b = order_via_api("Bob", "junior")
    assert sorted(a) == sorted(images) == sorted(b)
    assert a == reader_order(images, 7, "Alice", "junior")
    assert b == reader_order(images, 7, "Bob", "junior")
    assert a != b  # 8! orders: different readers get different permutations
    assert reader_order(images, 7, " alice ", "junior") == a  # same reader, however the name is typed
    assert reader_order(images, 8, "Alice", "junior") != a  # the seed matters
    assert reader_order(images, 7, "Alice", "senior") != a  # so does the role (a different reader)


def test_resume_after_closing_the_browser(cohort_csv: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    first = _app(cohort_csv, db)
    _sign_in(first, "Grace", "junior")
    answered = [_answer_next(first, "GS", 5)["photo_id"] for _ in range(2)]
    current = first.get("/api/next").json()["photo_id"]
    assert first.get(f"/api/photos/{current}").status_code == 200  # shown, then the browser closes
    token = first.cookies.get(ra.COOKIE_NAME)
    first.close()

    # A new browser (no cookie), even after a server restart: same name and role continue at photo 3.
    again = _app(cohort_csv, db)
    me = _sign_in(again, "grace", "junior")
    assert (me["answered"], me["total"], me["reader"]) == (2, 4, "Grace")
    nxt = again.get("/api/next").json()
    assert nxt["index"] == 3 and nxt["photo_id"] == current
    assert (
        again.post("/api/answers", json={"photo_id": answered[0], "answer": "GS", "confidence": 5}).status_code == 409
    )

    # The old session's token still works (a reload keeps the cookie).
    assert again.get("/api/session", headers={ra.TOKEN_HEADER: token}).json()["answered"] == 2

    # The photo is shown again after the reload: that counts a second view.
    assert again.get(f"/api/photos/{current}").status_code == 200
    assert (
        again.post("/api/answers", json={"photo_id": current, "answer": "control", "confidence": 2}).status_code == 201
    )
    rows = {r["photo"]: r for r in read_answers(db)}
    with sqlite3.connect(db) as con:
        current_image = con.execute("SELECT image FROM photos WHERE photo_id = ?", (current,)).fetchone()[0]
    assert rows[current_image]["views"] == 2 and rows[current_image]["answer"] == "control"
    assert len(rows) == 3

    # Signing out ends that session only.
    assert again.delete("/api/session").status_code == 200
    assert again.get("/api/next").status_code == 401


def test_two_readers_at_once_do_not_mix(cohort_csv: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    app = create_app(ReadersConfig(cohort=cohort_csv, db=db))
    readers = {("Ann", "junior"): ("GS", 1), ("Ben", "senior"): ("control", 5)}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(readers))

    def work(name: str, role: str, answer: str, confidence: int) -> None:
        try:
            with TestClient(app) as client:
                _sign_in(client, name, role)
                barrier.wait(timeout=10)  # both readers answer at the same time
                for _ in range(4):
                    _answer_next(client, answer, confidence)
                assert client.get("/api/next").json()["done"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(*k, *v)) for k, v in readers.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors

    rows = read_answers(db)
    assert len(rows) == 8
    for (name, role), (answer, confidence) in readers.items():
        mine = [r for r in rows if r["reader"] == name]
        assert len(mine) == 4 and {r["role"] for r in mine} == {role}
        assert {r["answer"] for r in mine} == {answer} and {r["confidence"] for r in mine} == {confidence}
        assert sorted(r["photo"] for r in mine) == sorted(_cohort_images(cohort_csv))
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_refusals(cohort_csv: Path, tmp_path: Path) -> None:
    client = _app(cohort_csv, tmp_path / "r.sqlite")
    assert client.post("/api/session", json={"name": "X", "role": "nurse"}).status_code == 422
    assert client.post("/api/session", json={"name": "   ", "role": "junior"}).status_code == 422
    _sign_in(client, "Cleo", "senior")
    first = client.get("/api/next").json()["photo_id"]

    # Unknown photo id -> 404; a listed photo that is not the current one -> 409.
    assert client.get("/api/photos/0123456789abcdef0123").status_code == 404
    assert client.post("/api/answers", json={"photo_id": "nope", "answer": "GS", "confidence": 1}).status_code == 404
    # Answering before the photo was shown -> 409; bad answer or missing confidence -> 422.
    assert client.post("/api/answers", json={"photo_id": first, "answer": "GS", "confidence": 1}).status_code == 409
    assert client.get(f"/api/photos/{first}").status_code == 200
    assert client.post("/api/answers", json={"photo_id": first, "answer": "maybe", "confidence": 1}).status_code == 422
    assert client.post("/api/answers", json={"photo_id": first, "answer": "GS"}).status_code == 422
    assert client.post("/api/answers", json={"photo_id": first, "answer": "GS", "confidence": 6}).status_code == 422

    assert client.post("/api/answers", json={"photo_id": first, "answer": "GS", "confidence": 2}).status_code == 201
    again = client.post("/api/answers", json={"photo_id": first, "answer": "control", "confidence": 5})
    assert again.status_code == 409 and "already answered" in again.json()["detail"]
    assert client.get(f"/api/photos/{first}").status_code == 409  # no second look at an answered photo
    second = client.get("/api/next").json()["photo_id"]
    with sqlite3.connect(tmp_path / "r.sqlite") as con:
        later = [
            r[0]
            for r in con.execute("SELECT photo_id FROM orders WHERE photo_id NOT IN (?, ?) LIMIT 1", (first, second))
        ]
    assert client.get(f"/api/photos/{later[0]}").status_code == 409  # no peeking ahead
    rows = read_answers(tmp_path / "r.sqlite")
    assert [(r["answer"], r["confidence"]) for r in rows] == [("GS", 2)]  # the refused answers left no trace


def test_study_without_confidence(cohort_csv: Path, tmp_path: Path) -> None:
    client = _app(cohort_csv, tmp_path / "r.sqlite", confidence=False)
    assert client.get("/api/config").json()["confidence"] is False
    _sign_in(client, "Dee", "junior")
    nxt = client.get("/api/next").json()
    client.get(f"/api/photos/{nxt['photo_id']}")
    r = client.post("/api/answers", json={"photo_id": nxt["photo_id"], "answer": "GS", "confidence": 3})
    assert r.status_code == 422
    _answer_next(client, "GS", None)
    assert read_answers(tmp_path / "r.sqlite")[0]["confidence"] is None


def test_export_csv_contents_and_timing(cohort_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "r.sqlite"
    clock = {"t": 1000.0}
    monkeypatch.setattr(ra.time, "time", lambda: clock["t"])
    client = _app(cohort_csv, db)
    _sign_in(client, "Eve", "senior")
    expected = []
    for i, (answer, conf) in enumerate([("GS", 5), ("control", 4), ("control", 1), ("GS", 3)]):
        nxt = client.get("/api/next").json()
        client.get(f"/api/photos/{nxt['photo_id']}")  # served at t
        clock["t"] += 10.0 + i  # the reader takes 10 + i seconds
        r = client.post("/api/answers", json={"photo_id": nxt["photo_id"], "answer": answer, "confidence": conf})
        assert r.status_code == 201
        expected.append((answer, str(conf), f"{10.0 + i}"))

    out = tmp_path / "out" / "readers.csv"
    result = CliRunner().invoke(_cli_app(), ["readers", "export", "--db", str(db), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "4 answers" in result.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    assert [(r["answer"], r["confidence"], r["seconds"]) for r in rows] == expected  # in the reader's order
    assert {r["reader"] for r in rows} == {"Eve"} and {r["role"] for r in rows} == {"senior"}
    assert sorted(r["photo"] for r in rows) == sorted(_cohort_images(cohort_csv))  # the cohort's paths as given
    assert all(r["answered_at"].endswith("+00:00") and r["views"] == "1" for r in rows)

    # The evaluation module reads it with pandas: the columns it needs are there and typed.
    import pandas as pd

    table = pd.read_csv(out)
    assert {"reader", "role", "photo", "answer", "confidence"} <= set(table.columns)
    assert table["confidence"].tolist() == [5, 4, 1, 3]
    assert export_answers(db, tmp_path / "again.csv") == 4


def _cli_app():
    from gsscreen.cli import app

    return app


def test_cli_errors_name_the_file(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = tmp_path / "nope.csv"
    r = runner.invoke(_cli_app(), ["readers", "serve", str(missing), "--db", str(tmp_path / "r.sqlite")])
    assert r.exit_code == 2 and "nope.csv" in r.output
    r = runner.invoke(_cli_app(), ["readers", "export", "--db", str(tmp_path / "x.sqlite"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "x.sqlite" in r.output


def test_cohort_problems_are_listed_not_fatal(cohort_csv: Path, tmp_path: Path) -> None:
    folder = cohort_csv.parent
    bad = folder / "broken.png"
    bad.write_bytes(b"not an image")
    csv_path = tmp_path / "c.csv"
    abs_img = (folder / "photos" / "astronaut.png").resolve()
    csv_path.write_text(
        "image,label,age\n"
        f"{abs_img},GS,3\n"  # absolute path outside the CSV's folder: kept as written
        f"{abs_img},GS,3\n"  # repeated
        f"{folder / 'missing.png'},control,4\n"
        f"{bad},control,4\n"
        f"{folder / 'photos' / 'grace_hopper.png'},maybe,5\n"
        ",GS,1\n",
        encoding="utf-8",
    )
    photos, problems = read_cohort_images(csv_path)
    assert photos == [(abs_img.as_posix(), abs_img)]
    reasons = " | ".join(p["problem"] for p in problems)
    assert len(problems) == 5, reasons
    for kind in ("duplicate_row", "missing_file", "unreadable_image", "unknown_label", "missing_value"):
        assert kind in reasons

    no_label = tmp_path / "nolabel.csv"
    no_label.write_text("image\nx.png\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"nolabel\.csv: missing required column\(s\): label"):
        read_cohort_images(no_label)


def test_photo_key_is_the_path_as_written(tmp_path: Path) -> None:
    csv_path = tmp_path / "study" / "cohort.csv"
    assert ra.photo_key("photos/a.png", csv_path) == "photos/a.png"
    assert ra.photo_key("./photos/../photos/a.png", csv_path) == "photos/a.png"
    assert ra.photo_key(tmp_path / "study" / "b.jpg", csv_path) == "b.jpg"  # absolute inside the folder
    outside = (tmp_path / "elsewhere" / "c.jpg").resolve()
    assert ra.photo_key(outside, csv_path) == outside.as_posix()


def test_database_refuses_another_cohort(cohort_csv: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    _app(cohort_csv, db)
    other = write_example_cohort(tmp_path / "other", n=3)
    with pytest.raises(ValueError, match="another cohort"):
        create_app(ReadersConfig(cohort=other, db=db))


def test_sign_out_ends_exactly_that_session(cohort_csv: Path, tmp_path: Path) -> None:
    """A reader signed in on two devices who signs out on one stays signed in on the other; other readers too."""
    c = _app(cohort_csv, tmp_path / "r.sqlite")
    first = _sign_in(c, "ann", "junior")["token"]
    second = _sign_in(c, "ann", "junior")["token"]
    other = _sign_in(c, "bob", "senior")["token"]
    c.cookies.clear()
    assert len({first, second, other}) == 3

    def signed_in(token: str) -> bool:
        r = c.get("/api/session", headers={ra.TOKEN_HEADER: token})
        assert r.status_code in (200, 401), r.text
        return r.status_code == 200

    assert signed_in(first) and signed_in(second) and signed_in(other)
    assert c.delete("/api/session", headers={ra.TOKEN_HEADER: first}).status_code == 200
    assert not signed_in(first)  # the old token is dead on the server, not only in the browser
    assert signed_in(second) and signed_in(other)
    # Ann's answers survive her signing out: the second device carries on where she was.
    _answer_next(TestClient(c.app, headers={ra.TOKEN_HEADER: second}))
    assert c.get("/api/session", headers={ra.TOKEN_HEADER: second}).json()["answered"] == 1
