"""The shipped demo model loads, fits in git, and its cards state the hold-out numbers the training script measured.

Nothing here hard-codes a result: the numbers come from ``assets/demo_model_holdout.json``, which
``scripts/train_demo_model.py`` writes from the same measurement it puts into both cards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ASSETS = Path(__file__).resolve().parents[1] / "src" / "gsscreen" / "assets"
PACK = ASSETS / "demo_model.gss"
HOLDOUT = ASSETS / "demo_model_holdout.json"
CARD = ASSETS / "DEMO_MODEL.md"


@pytest.fixture(scope="module")
def holdout() -> dict:
    if not HOLDOUT.is_file():
        pytest.fail(f"{HOLDOUT} is missing: scripts/train_demo_model.py writes it next to the pack")
    return json.loads(HOLDOUT.read_text(encoding="utf-8"))


def test_pack_is_small_enough_for_git():
    assert PACK.stat().st_size <= 10 * 1024 * 1024


def test_cards_state_the_measured_holdout_numbers(holdout):
    from gsscreen.modelpack import read_model_pack

    note = holdout["note"]
    h = holdout["ds_kaggle_holdout"]
    for text in (f"AUC {h['auc']:.3f}", f"sensitivity {h['recall']:.3f}", f"specificity {h['specificity']:.3f}",
                 f"{holdout['ds_kaggle_holdout_sensitivity_at_specificity_0.95']:.3f}",
                 f"({holdout['utk_holdout_called_gs']} of {holdout['utk_holdout_n']})",
                 "by child, not by photo", "do not cover"):
        assert text in note, text
    card = CARD.read_text(encoding="utf-8")
    section = card.split("<!-- holdout:start -->")[1].split("<!-- holdout:end -->")[0]
    assert section.strip() == note.strip()
    contents = read_model_pack(PACK)
    assert note.strip() in contents.card
    assert contents.info.get("holdout_note", "").strip() == note.strip()
    assert contents.info["threshold"] == pytest.approx(holdout["threshold"])


def test_holdout_keeps_children_on_one_side(holdout):
    audit = holdout["audit"]
    assert audit["held_with_train_neighbour_ge_0.8"] == 0
    assert audit["max_held_to_train_cosine"] < audit["identity_threshold"]


def test_shipped_model_loads_and_screens_a_portrait():
    from gsscreen.models.backbones.facenet import facenet_weights_available

    if not facenet_weights_available():
        pytest.skip("FaceNet weights not installed (the demo pack rebuilds its body from them)")
    from gsscreen.examples import example_path
    from gsscreen.modelpack import load_model_pack

    model = load_model_pack(PACK)
    r = model.screen_file(example_path("grace_hopper"), heatmap=False)
    assert r.problem or 0.0 <= r.p_gs <= 1.0
