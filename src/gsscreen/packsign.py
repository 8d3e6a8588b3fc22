"""The model pack's manifest (every member's SHA-256 and size) and optional Ed25519 signatures.

A pack (zip or folder) holds its members plus ``manifest.json``::

    {"format": "gsscreen-pack-manifest", "version": 1,
     "members": {"model.json": {"sha256": "…", "size": 7702}, "weights.safetensors": {…}, …}}

Reading a pack (:func:`read_pack_members`) refuses, naming the pack and the member: a missing manifest, an entry
without a valid checksum or size, a member the manifest does not list (or a listed one that is missing), a member
larger than its limit (read with a cap, never inflated in full), and any size or checksum mismatch. Editing
``model.json`` (a threshold, ``demo``, alignment settings) therefore needs a new manifest, which anyone can write:
for *deliberate* tampering the manifest is signed (``manifest.sig``, Ed25519 over the manifest's bytes) and the
reader is given the public keys it trusts (``--trusted-key``). The shipped demo pack is verified against the
public key shipped beside it, always.

The manifest is generic: it lists whatever members the pack has; only ``model.json`` and ``weights.safetensors``
are required by the format. Add a member by adding it to the members written by ``modelpack._write_pack``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsscreen.errors import GsscreenError

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MANIFEST_FORMAT = "gsscreen-pack-manifest"
MANIFEST_VERSION = 1
#: members the pack format itself needs
REQUIRED_MEMBERS = ("model.json", "weights.safetensors")
#: size limits, bytes: tensor files may be large (5 VGG-16 folds ≈ 2.7 GB); text/JSON members never need much
MAX_TENSOR_MEMBER_BYTES = 4 * 1024**3
MAX_OTHER_MEMBER_BYTES = 32 * 1024**2
MAX_MANIFEST_BYTES = 1024**2
MAX_SIGNATURE_BYTES = 4096
_TENSOR_SUFFIXES = (".safetensors", ".onnx")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
DEMO_PUBLIC_KEY = Path(__file__).resolve().parent / "assets" / "demo_ed25519.pub"


class PackIntegrityError(GsscreenError, ValueError):
    """A pack's members do not match its manifest or signature; the message names the pack and the member."""


def member_limit(name: str) -> int:
    """Largest accepted size of a member, bytes."""
    if name == MANIFEST:
        return MAX_MANIFEST_BYTES
    if name == SIGNATURE:
        return MAX_SIGNATURE_BYTES
    return MAX_TENSOR_MEMBER_BYTES if name.endswith(_TENSOR_SUFFIXES) else MAX_OTHER_MEMBER_BYTES


def build_manifest(members: dict[str, bytes]) -> bytes:
    """The manifest (JSON bytes) of ``members`` (name → bytes; the manifest and signature are left out)."""
    entries = {n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}
               for n, b in sorted(members.items()) if n not in (MANIFEST, SIGNATURE)}
    doc = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "members": entries}
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


def seal(members: dict[str, bytes]) -> dict[str, bytes]:
    """``members`` plus their manifest (an old signature is dropped: it covered another manifest)."""
    out = {n: b for n, b in members.items() if n not in (MANIFEST, SIGNATURE)}
    out[MANIFEST] = build_manifest(out)
    return out


# ------------------------------------------------------------------------------------------------ keys


def _crypto() -> Any:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return serialization, ed25519, InvalidSignature


def _load_key(path: str | Path, private: bool) -> Any:
    """An Ed25519 key (private: PKCS#8, unencrypted; else public) from a PEM file; a wrong file names itself."""
    serialization, ed25519, _ = _crypto()
    p = Path(path).expanduser()
    kind = "private" if private else "public"
    try:
        data = p.read_bytes()
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except OSError:
        raise
    except (ValueError, TypeError) as exc:
        what = "an unencrypted PEM private key" if private else "a PEM public key"
        raise PackIntegrityError(f"{p}: not {what} ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey):
        raise PackIntegrityError(f"{p}: not an Ed25519 {kind} key")
    return key


def load_private_key(path: str | Path) -> Any:
    """An Ed25519 private key from a PEM file (PKCS#8, unencrypted)."""
    return _load_key(path, private=True)


def load_public_key(path: str | Path) -> Any:
    """An Ed25519 public key from a PEM file."""
    return _load_key(path, private=False)


def key_id(public_key: Any) -> str:
    """A short fingerprint of a public key (first 16 hex digits of the SHA-256 of its raw bytes)."""
    serialization, _, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key_pair(private_path: str | Path, public_path: str | Path) -> str:
    """Write a new Ed25519 key pair (private PEM with mode 0600, public PEM); returns the key id."""
    import os

    serialization, ed25519, _ = _crypto()
    key = ed25519.Ed25519PrivateKey.generate()
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    pp = Path(private_path)
    pp.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(pp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(priv)
    Path(public_path).write_bytes(pub)
    return key_id(key.public_key())


# ------------------------------------------------------------------------------------------------ reading


@dataclass
class PackMembers:
    """A pack's verified members (manifest and signature left out) and who signed it (a key id, or None)."""

    members: dict[str, bytes]
    signed_by: str | None = None
    signature_present: bool = False


def _list_members(path: Path) -> dict[str, int]:
    """Member name → stored size (bytes) of a folder or zip pack (no member is read)."""
    if path.is_dir():
        sizes: dict[str, int] = {}
        for p in sorted(path.iterdir()):
            if p.name.startswith("."):
                continue  # editor and OS droppings (.DS_Store) are not pack members
            if not p.is_file() or p.is_symlink():
                raise PackIntegrityError(f"{path}: {p.name} is not a plain file; a model pack folder holds only files")
            sizes[p.name] = p.stat().st_size
        return sizes
    if not path.is_file():
        raise PackIntegrityError(f"{path}: model pack not found")
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except zipfile.BadZipFile as exc:
        raise PackIntegrityError(f"{path}: not a model pack (not a zip file and not a folder: {exc})") from None
    sizes = {}
    for zi in infos:
        if zi.filename in sizes:
            raise PackIntegrityError(f"{path}: member {zi.filename} appears twice")
        sizes[zi.filename] = zi.file_size
    return sizes


def _read_capped(path: Path, name: str, cap: int) -> bytes:
    """Read one member, at most ``cap`` bytes; raises when it holds more (never inflates beyond ``cap + 1``)."""
    if path.is_dir():
        with open(path / name, "rb") as f:
            data = f.read(cap + 1)
    else:
        with zipfile.ZipFile(path) as z, z.open(name) as f:
            buf = bytearray()
            while len(buf) <= cap:
                chunk = f.read(min(1 << 20, cap + 1 - len(buf)))
                if not chunk:
                    break
                buf += chunk
            data = bytes(buf)
    if len(data) > cap:
        raise PackIntegrityError(f"{path}: member {name} is larger than its limit or its manifest size "
                                 f"({cap} bytes); refused")
    return data


def _parse_manifest(path: Path, raw: bytes) -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackIntegrityError(f"{path}: {MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT or not isinstance(doc.get("members"), dict):
        raise PackIntegrityError(f"{path}: {MANIFEST} is not a {MANIFEST_FORMAT}")
    if doc.get("version") != MANIFEST_VERSION:
        raise PackIntegrityError(f"{path}: {MANIFEST} version {doc.get('version')!r} is not supported")
    entries = doc["members"]
    for name, e in entries.items():
        if name in (MANIFEST, SIGNATURE) or not _NAME.fullmatch(str(name)):
            raise PackIntegrityError(f"{path}: {MANIFEST} lists an invalid member name {name!r}")
        sha = e.get("sha256") if isinstance(e, dict) else None
        size = e.get("size") if isinstance(e, dict) else None
        if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
            raise PackIntegrityError(f"{path}: {MANIFEST} has no valid SHA-256 for {name} (got {sha!r}); refused")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise PackIntegrityError(f"{path}: {MANIFEST} has no valid size for {name} (got {size!r}); refused")
        if size > member_limit(name):
            raise PackIntegrityError(f"{path}: member {name} of {size} bytes exceeds the {member_limit(name)} byte "
                                     "limit; refused")
    missing = [n for n in REQUIRED_MEMBERS if n not in entries]
    if missing:
        raise PackIntegrityError(f"{path}: not a model pack: {', '.join(missing)} missing from {MANIFEST}")
    return entries


def read_pack_members(path: str | Path, trusted_keys: Iterable[Any] | None = None) -> PackMembers:
    """Read and verify every member of a pack against its manifest (and its signature against ``trusted_keys``,
    Ed25519 public keys, when given: then an unsigned pack, or one signed by another key, is refused).

    Raises :class:`PackIntegrityError` naming the pack and the member (see the module docstring).
    """
    p = Path(path)
    stored = _list_members(p)
    if MANIFEST not in stored:
        raise PackIntegrityError(f"{p}: the pack has no {MANIFEST} (made before packs listed their members' "
                                 "checksums, or altered); re-export it with `gsscreen export`")
    manifest_raw = _read_capped(p, MANIFEST, MAX_MANIFEST_BYTES)
    entries = _parse_manifest(p, manifest_raw)
    unknown = sorted(set(stored) - set(entries) - {MANIFEST, SIGNATURE})
    if unknown:
        raise PackIntegrityError(f"{p}: member {unknown[0]} is not covered by {MANIFEST}; refused (a pack holds "
                                 "only the members its manifest lists)")
    absent = sorted(set(entries) - set(stored))
    if absent:
        raise PackIntegrityError(f"{p}: member {absent[0]} listed in {MANIFEST} is missing")
    members: dict[str, bytes] = {}
    for name, e in sorted(entries.items()):
        data = _read_capped(p, name, int(e["size"]))
        if len(data) != e["size"]:
            raise PackIntegrityError(f"{p}: {name} does not match its checksum in {MANIFEST} ({len(data)} bytes, "
                                     f"listed with {e['size']}): the file was modified or corrupted")
        if hashlib.sha256(data).hexdigest() != e["sha256"]:
            raise PackIntegrityError(f"{p}: {name} does not match its checksum in {MANIFEST}: the file was modified "
                                     "or corrupted")
        members[name] = data
    out = PackMembers(members, signature_present=SIGNATURE in stored)
    keys = list(trusted_keys or [])
    if keys:
        if SIGNATURE not in stored:
            raise PackIntegrityError(f"{p}: the pack is not signed, but a trusted key was given; refused")
        sig = _read_capped(p, SIGNATURE, MAX_SIGNATURE_BYTES)
        out.signed_by = _verify(p, manifest_raw, sig, keys)
    return out


def _verify(path: Path, manifest_raw: bytes, sig_text: bytes, keys: list[Any]) -> str:
    _, _, invalid = _crypto()
    try:
        sig = base64.b64decode(sig_text.strip(), validate=True)
    except ValueError:
        raise PackIntegrityError(f"{path}: {SIGNATURE} is not a base64 signature") from None
    for k in keys:
        try:
            k.verify(sig, manifest_raw)
        except invalid:
            continue
        return key_id(k)
    ids = ", ".join(key_id(k) for k in keys)
    raise PackIntegrityError(f"{path}: the signature does not match the pack's contents under the trusted key(s) "
                             f"{ids}: the pack was modified after signing, or signed by someone else; refused")


# ------------------------------------------------------------------------------------------------ writing


def _zip_kind(name: str, data: bytes) -> int:
    """Deflate text members; tensor files only when it saves ≥ 10 % (float32 weights barely compress and
    are stored, so loading them costs no inflating; int8 codes of ``qdelta8`` packs deflate to about half)."""
    if not name.endswith(_TENSOR_SUFFIXES):
        return zipfile.ZIP_DEFLATED
    probe = data[: 1 << 22]  # the first 4 MiB tell float32 (≈ 7 % saved) from int8 codes
    return zipfile.ZIP_DEFLATED if len(zlib.compress(probe, 1)) < 0.9 * len(probe) else zipfile.ZIP_STORED


def write_pack_members(out: Path, as_folder: bool, members: dict[str, bytes]) -> Path:
    """Write ``members`` (sealed with their manifest here) as a folder or a zip, atomically for a zip."""
    sealed = seal(members) if MANIFEST not in members else members
    if as_folder:
        out.mkdir(parents=True, exist_ok=True)
        stale = [q for q in out.iterdir() if q.is_file() and q.name in (MANIFEST, SIGNATURE)]
        for q in stale:
            q.unlink()
        for name, data in sealed.items():
            (out / name).write_bytes(data)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w") as z:
            for name, data in sealed.items():
                kind = _zip_kind(name, data)
                z.writestr(name, data, compress_type=kind)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def sign_model_pack(pack: str | Path, private_key: Any) -> str:
    """Sign a pack in place (its manifest is verified first; the signature goes to ``manifest.sig``).

    ``private_key``: an Ed25519 private key object or a path to its PEM file. Returns the signer's key id.
    """
    p = Path(pack)
    key = private_key if not isinstance(private_key, (str, Path)) else load_private_key(private_key)
    verified = read_pack_members(p)  # never sign members that do not match their manifest
    manifest_raw = _read_capped(p, MANIFEST, MAX_MANIFEST_BYTES)
    sig = base64.b64encode(key.sign(manifest_raw)) + b"\n"
    write_pack_members(p, p.is_dir(), {**verified.members, MANIFEST: manifest_raw, SIGNATURE: sig})
    return key_id(key.public_key())


def seal_legacy_pack(pack: str | Path) -> None:
    """Add a manifest to a pack written before manifests existed (its current members are taken as they are).

    For the pack's own author only (e.g. ``scripts/sign_demo_pack.py``): it vouches for members nobody checked.
    """
    p = Path(pack)
    stored = _list_members(p)
    members = {n: _read_capped(p, n, member_limit(n)) for n in stored if n not in (MANIFEST, SIGNATURE)}
    write_pack_members(p, p.is_dir(), seal(members))


def demo_trusted_keys() -> list[Any]:
    """The public key the shipped demo pack is verified against (an empty list when it is not installed)."""
    return [load_public_key(DEMO_PUBLIC_KEY)] if DEMO_PUBLIC_KEY.is_file() else []
