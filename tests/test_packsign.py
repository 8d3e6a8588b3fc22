"""Model pack manifest and signatures (issue #11, item 9): every member is covered, limits are enforced without
inflating a member, Ed25519 signatures catch deliberate edits, and the shipped demo pack is verified by default."""

from __future__ import annotations

import json
import shutil
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from screen_support import fabricate_run

from gsscreen import packsign
from gsscreen.modelpack import ModelPackError, export_model_pack, read_model_pack
from gsscreen.packsign import (
    MANIFEST,
    MAX_OTHER_MEMBER_BYTES,
    SIGNATURE,
    generate_key_pair,
    load_public_key,
    seal,
    sign_model_pack,
)
from gsscreen.screening import demo_model_path


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("packsign")
    return export_model_pack(fabricate_run(d / "run", folds=2), d / "m.gss")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    generate_key_pair(d / "a.pem", d / "a.pub")
    generate_key_pair(d / "b.pem", d / "b.pub")
    assert (d / "a.pem").stat().st_mode & 0o777 == 0o600
    return d / "a.pem", d / "a.pub", d / "b.pem", d / "b.pub"


def _members(p: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(p) as z:
        return {n: z.read(n) for n in z.namelist()}


def _write(p: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for n, b in members.items():
            z.writestr(n, b)
    return p


def _edit_info(members: dict[str, bytes], **changes: object) -> dict[str, bytes]:
    info = json.loads(members["model.json"])
    info.update(changes)
    return {**members, "model.json": json.dumps(info).encode()}


def test_manifest_lists_every_member(pack: Path) -> None:
    m = _members(pack)
    manifest = json.loads(m[MANIFEST])
    assert set(manifest["members"]) == set(m) - {MANIFEST}
    assert all(len(e["sha256"]) == 64 and e["size"] == len(m[n]) for n, e in manifest["members"].items())


@pytest.mark.parametrize(("change", "words"), [
    ({"threshold": 0.999999}, "model.json does not match its checksum"),
    ({"demo": False}, "model.json does not match its checksum"),
    ({"name": "renamed"}, "model.json does not match its checksum"),
    ({"alignment": {"size": 160}}, "model.json does not match its checksum"),
])
def test_edited_model_json_is_refused(pack: Path, tmp_path: Path, change: dict, words: str) -> None:
    bad = _write(tmp_path / "bad.gss", _edit_info(_members(pack), **change))
    with pytest.raises(ModelPackError, match=words) as e:
        read_model_pack(bad)
    assert "bad.gss" in str(e.value)


def _write_folder(p: Path, members: dict[str, bytes]) -> Path:
    p.mkdir()
    for n, b in members.items():
        (p / n).write_bytes(b)
    return p


@pytest.mark.parametrize("layout", ["zip", "folder"])
def test_manifest_problems_are_refused(pack: Path, tmp_path: Path, layout: str) -> None:
    """The same refusals whether the pack is one file or an unpacked folder."""
    write = _write if layout == "zip" else _write_folder
    m = _members(pack)
    manifest = json.loads(m[MANIFEST])

    def with_manifest(entries: dict) -> dict[str, bytes]:
        return {**m, MANIFEST: json.dumps({**manifest, "members": entries}).encode()}

    cases = {
        "unknown": ({**m, "extra.json": b"{}"}, "extra.json is not covered"),
        "missing": ({k: v for k, v in m.items() if k != "MODEL_CARD.md"}, "MODEL_CARD.md listed in manifest.json is "
                                                                           "missing"),
        "no manifest": ({k: v for k, v in m.items() if k != MANIFEST}, "has no manifest.json"),
        "null hash": (with_manifest({**manifest["members"], "MODEL_CARD.md": {"sha256": None, "size": 3}}),
                      "no valid SHA-256 for MODEL_CARD.md"),
        "empty hash": (with_manifest({**manifest["members"], "MODEL_CARD.md": {"sha256": "", "size": 3}}),
                       "no valid SHA-256 for MODEL_CARD.md"),
        "no size": (with_manifest({**manifest["members"], "MODEL_CARD.md": {"sha256": "0" * 64}}),
                    "no valid size for MODEL_CARD.md"),
        "weights dropped from manifest": (with_manifest({k: v for k, v in manifest["members"].items()
                                                         if k != "weights.safetensors"}),
                                          "weights.safetensors missing from manifest.json"),
    }
    for what, (members, words) in cases.items():
        with pytest.raises(ModelPackError, match=words):
            read_model_pack(write(tmp_path / f"{what}.gss", members))


def test_oversize_members_are_refused_without_inflating_them(pack: Path, tmp_path: Path) -> None:
    m = _members(pack)
    big = b"\0" * (2 * MAX_OTHER_MEMBER_BYTES)  # deflates to a few hundred kB
    honest = _write(tmp_path / "honest.gss", seal({**m, "MODEL_CARD.md": big}))  # manifest states the true size
    m2 = {**m, "MODEL_CARD.md": big}  # manifest still states the small size: the member is read with that cap
    lying = _write(tmp_path / "lying.gss", m2)
    for p, words in ((honest, "exceeds the .* byte limit"), (lying, "larger than its limit or its manifest size")):
        tracemalloc.start()
        try:
            with pytest.raises(ModelPackError, match=words):
                read_model_pack(p)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < MAX_OTHER_MEMBER_BYTES / 4, peak  # never the whole 64 MB


def test_signed_pack_verifies_only_under_its_key(pack: Path, tmp_path: Path, keys: tuple) -> None:
    a_priv, a_pub, _b_priv, b_pub = keys
    signed = shutil.copy(pack, tmp_path / "signed.gss")
    kid = sign_model_pack(signed, a_priv)
    assert SIGNATURE in _members(Path(signed))
    assert read_model_pack(signed, [load_public_key(a_pub)]).signed_by == kid
    with pytest.raises(ModelPackError, match="signature does not match"):
        read_model_pack(signed, [load_public_key(b_pub)])
    with pytest.raises(ModelPackError, match="not signed, but a trusted key was given"):
        read_model_pack(pack, [load_public_key(a_pub)])
    # an attacker edits the threshold and writes a consistent new manifest: the old signature no longer fits
    forged = _write(tmp_path / "forged.gss", {**seal(_edit_info(_members(Path(signed)), threshold=0.999999)),
                                              SIGNATURE: _members(Path(signed))[SIGNATURE]})
    assert read_model_pack(forged).info["threshold"] == 0.999999  # consistent, so only a key can tell
    with pytest.raises(ModelPackError, match="modified after signing"):
        read_model_pack(forged, [load_public_key(a_pub)])
    # signing refuses a pack whose members do not match its manifest
    with pytest.raises(packsign.PackIntegrityError, match="does not match its checksum"):
        sign_model_pack(_write(tmp_path / "t.gss", _edit_info(_members(pack), threshold=0.9)), a_priv)


def test_folder_pack_signing(pack: Path, tmp_path: Path, keys: tuple) -> None:
    a_priv, a_pub, *_ = keys
    folder = tmp_path / "folder"
    folder.mkdir()
    for n, b in _members(pack).items():
        (folder / n).write_bytes(b)
    sign_model_pack(folder, a_priv)
    assert read_model_pack(folder, [load_public_key(a_pub)]).signed_by
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(ModelPackError, match=r"notes\.txt is not covered"):
        read_model_pack(folder)


def test_demo_pack_is_signed_and_verified_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    demo = demo_model_path()
    c = read_model_pack(demo)
    assert c.signed_by == packsign.key_id(load_public_key(packsign.DEMO_PUBLIC_KEY))
    # The threshold edit of the audit (0.528 → 0.999999), with a consistent manifest, in a copy that gsscreen
    # takes for the shipped demo pack.
    fake = tmp_path / "demo_model.gss"
    m = _members(demo)
    _write(fake, {**seal(_edit_info(m, threshold=0.999999)), SIGNATURE: m[SIGNATURE]})
    monkeypatch.setattr("gsscreen.screening.demo_model_path", lambda: fake)
    with pytest.raises(ModelPackError, match="signature does not match the pack's contents") as e:
        read_model_pack(fake)
    assert "demo_model.gss" in str(e.value)
    _write(fake, seal(_edit_info(m, threshold=0.999999)))  # signature removed
    with pytest.raises(ModelPackError, match="not signed"):
        read_model_pack(fake)


def test_export_sign_and_trusted_key_cli(tmp_path: Path, keys: tuple) -> None:
    from typer.testing import CliRunner

    from gsscreen.cli import app

    a_priv, a_pub, _b_priv, b_pub = keys
    run = fabricate_run(tmp_path / "run", folds=2)
    r = CliRunner().invoke(app, ["export", str(run), "-o", str(tmp_path / "s.gss"), "--sign", str(a_priv)])
    assert r.exit_code == 0, r.output
    assert "signed with key" in r.output
    assert read_model_pack(tmp_path / "s.gss", [load_public_key(a_pub)]).signed_by
    r = CliRunner().invoke(app, ["screen", "--model", str(tmp_path / "s.gss"), "--trusted-key", str(b_pub),
                                 "-o", str(tmp_path / "out"), str(tmp_path / "none.jpg")])
    assert r.exit_code == 2 and "signature does not match" in r.output
