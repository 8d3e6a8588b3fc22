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
        pytest.skip(f"{HOLDOUT.name} not shipped yet: the shipped pack predates the identity-grouped hold-out "
                    "(scripts/train_demo_model.py writes it with the pack)")
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


def _script():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "train_demo_model.py"
    spec = importlib.util.spec_from_file_location("train_demo_model", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_holdout_note_reaches_both_cards(tmp_path):
    """The script's note carries its measured numbers in plain words, and lands verbatim in DEMO_MODEL.md."""
    script = _script()
    m = {"ds_kaggle_holdout": {"auc": 0.9123, "recall": 0.8, "specificity": 0.9, "accuracy": 0.85, "tp": 40, "fn": 10},
         "ds_kaggle_holdout_n": 110, "ds_kaggle_holdout_n_gs": 50, "ds_kaggle_holdout_auc_ci_delong": [0.87, 0.95],
         "ds_kaggle_holdout_sensitivity_at_specificity_0.95": 0.62, "threshold": 0.4321,
         "utk_holdout_false_positive_rate": 0.03, "utk_holdout_called_gs": 3, "utk_holdout_n": 100,
         "end_to_end_check": {"n_checked_end_to_end": 5, "max_abs_diff_p_gs": 0.0004},
         "audit": {"identity_threshold": 0.8, "max_held_to_train_cosine": 0.79, "max_cluster_held_out": 50,
                   "chained_clusters_kept_in_training": 1, "photos_in_chained_clusters": 70}}
    note = script.holdout_note(m)
    for text in ("AUC 0.912", "0.870–0.950", "sensitivity 0.800", "specificity 0.900", "0.620", "3.0% (3 of 100)",
                 "misses 10 of 50", "by child, not by photo", "do not cover", "threshold 0.432"):
        assert text in note, text
    card = tmp_path / "DEMO_MODEL.md"
    card.write_text("# card\n\nintro\n", encoding="utf-8")
    script.write_card_section(card, "old numbers")
    script.write_card_section(card, note)
    text = card.read_text(encoding="utf-8")
    assert text.startswith("# card\n\nintro\n") and "old numbers" not in text
    assert text.split(script.CARD_START)[1].split(script.CARD_END)[0].strip() == note.strip()
    lo, hi = script.wilson(40, 50)
    assert lo < 0.8 < hi


def test_fine_tuned_pack_is_scored_on_its_crops(tmp_path):
    """A pack with fine-tuned body stages is scored on each held-out photo's aligned crop, batched exactly as one
    photo at a time through the pack (mirror averaging, fold mean, the pack's own calibration); a photo without a
    crop stays unscored and says why."""
    import numpy as np
    import pandas as pd
    import torch
    from PIL import Image
    from screen_support import fabricate_run

    from gsscreen.modelpack import export_model_pack, load_model_pack

    script = _script()
    pack = export_model_pack(fabricate_run(tmp_path / "run", folds=3, unfreeze_from=4), tmp_path / "m.gss")
    model = load_model_pack(pack)
    rng = np.random.default_rng(0)
    crops = []
    for i in range(5):
        crops.append(str(tmp_path / f"crop{i}.png"))
        Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(crops[-1])
    held = pd.DataFrame({"image": [f"photo{i}.jpg" for i in range(6)], "label": ["GS", "control"] * 3,
                         "set": "ds-kaggle"})
    clustered = pd.DataFrame({"image": held["image"], "crop": [*crops, float("nan")]})
    out, check = script.score_crops(model, held, clustered, n_check=0, seed=0, batch=2)
    assert out["p_gs"].iloc[:5].notna().all() and np.isnan(out["p_gs"].iloc[5])
    assert out["problem"].iloc[5] == "no aligned crop"
    assert check["n_checked_end_to_end"] == 0
    for i in (0, 3):
        x = torch.from_numpy(np.array(Image.open(crops[i]).convert("RGB").resize((64, 64), Image.Resampling.BILINEAR,
                                                                                     reducing_gap=None)))
        fold_p = model.predict_tensor(x.permute(2, 0, 1)[None].float().div(255.0))[0]
        assert out["p_gs"].iloc[i] == pytest.approx(model.decision.ensemble_probability(fold_p), abs=1e-6)
