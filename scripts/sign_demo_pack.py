"""Sign the shipped demo model pack (run after re-exporting it).

    .venv/bin/python scripts/sign_demo_pack.py [--key /work/artifacts/keys/demo_ed25519.pem] [--pack PATH]
                                               [--new-key]

The private key never enters the repository; its public half is ``src/gsscreen/assets/demo_ed25519.pub``, which
gsscreen uses to verify the demo pack every time it is loaded. ``--new-key`` makes a new pair (the old public key
is replaced, so packs signed with the old key stop verifying). A pack written before manifests existed is sealed
first (its current members are taken as they are: run this only on a pack you just exported yourself).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main() -> None:
    from gsscreen.packsign import (
        DEMO_PUBLIC_KEY,
        MANIFEST,
        _list_members,
        generate_key_pair,
        key_id,
        load_private_key,
        load_public_key,
        seal_legacy_pack,
        sign_model_pack,
    )
    from gsscreen.screening import demo_model_path

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--key", type=Path, default=Path("/work/artifacts/keys/demo_ed25519.pem"),
                    help="Ed25519 private key, PEM (kept outside the repository)")
    ap.add_argument("--pack", type=Path, default=demo_model_path(), help="the pack to sign (default: the demo pack)")
    ap.add_argument("--new-key", action="store_true", help="generate a new key pair first")
    args = ap.parse_args()
    if args.new_key:
        kid = generate_key_pair(args.key, DEMO_PUBLIC_KEY)
        print(f"new key pair {kid}: private {args.key} (mode 0600), public {DEMO_PUBLIC_KEY}")
    key = load_private_key(args.key)
    if key_id(key.public_key()) != key_id(load_public_key(DEMO_PUBLIC_KEY)):
        sys.exit(f"{args.key} is not the private half of {DEMO_PUBLIC_KEY}; use --new-key to replace both")
    if MANIFEST not in _list_members(args.pack):
        seal_legacy_pack(args.pack)
        print(f"sealed {args.pack} (manifest.json added)")
    kid = sign_model_pack(args.pack, key)
    print(f"signed {args.pack} with key {kid}")


if __name__ == "__main__":
    main()
