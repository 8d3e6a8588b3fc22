"""Model packs: export from a run folder, the threshold rules, faithful reload, and refusal of bad packs."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from screen_support import fabricate_run

from gsscreen.modelpack import (
    FORMAT_VERSION,
    TAMPERED,
    ExportConfig,
    ModelPackError,
    export_model_pack,
    load_model_pack,
    read_model_pack,
    sha256_bytes,
)
from gsscreen.packsign import seal


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return fabricate_run(tmp_path / "run", folds=3, unfreeze_from=4)


def _rewrite_zip(src: Path, dst: Path, info: dict | None = None, weights: bytes | None = None) -> Path:
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    if info is not None:
        members["model.json"] = json.dumps(info).encode()
    if weights is not None:
        members["weights.safetensors"] = weights
    members = seal(members)  # a consistent manifest, so the deeper check under test is reached
    with zipfile.ZipFile(dst, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    return dst


def test_export_zip_contents_and_pooled_threshold(run: Path, tmp_path: Path) -> None:
    from gsscreen.evaluation.metrics import choose_threshold

    out = export_model_pack(run, tmp_path / "m.gss", ExportConfig(name="t"))
    with zipfile.ZipFile(out) as z:
        assert sorted(z.namelist()) == ["MODEL_CARD.md", "manifest.json", "model.json", "reliability.png",
                                        "weights.safetensors"]
        info = json.loads(z.read("model.json"))
        blob = z.read("weights.safetensors")
    assert info["format_version"] == 2  # float packs stay readable by gsscreen versions before qdelta8 (3)
    assert info["weights_sha256"] == sha256_bytes(blob)
    assert info["backbone"] == "tiny" and info["input_size"] == 64 and info["n_folds"] == 3
    # The pooled out-of-fold validation predictions, with the study's rule.
    val = pd.concat([pd.read_csv(run / "folds" / f"fold_{k}" / "predictions.csv").query("set == 'val'")
                     for k in range(3)])
    assert info["threshold_rule"] == "pooled_validation"
    # Operating points are chosen on the calibrated pooled validation predictions (gsscreen.decision).
    from gsscreen.evaluation.calibration import calibrator_from_dict

    pc = calibrator_from_dict(info["calibration"]["map"]).predict(val["p_gs"].to_numpy())
    balanced = info["operating_points"]["balanced"]["threshold"]
    assert balanced == pytest.approx(choose_threshold(val["y"].to_numpy(), pc, "youden"))
    assert info["threshold"] == info["operating_points"][info["default_operating_point"]]["threshold"]
    names = set(info["tensors"])
    assert {n.split(".")[0] for n in names} == {"fold0", "fold1", "fold2", "frozen"}
    # tiny is random-init: its frozen body (body.1-3) is stored once; trained parts (body.4, head) per fold.
    assert any(n.startswith("frozen.body.1.") for n in names)
    assert not any(n.startswith("frozen.head.") or n.startswith("frozen.body.4.") for n in names)
    assert "fold2.head.classifier.weight" in names


def test_threshold_rules_and_best_fold(run: Path, tmp_path: Path) -> None:
    mean = read_model_pack(export_model_pack(run, tmp_path / "a.gss", ExportConfig(threshold_rule="mean"))).info
    assert mean["threshold_rule"] == "mean_of_fold_thresholds"
    assert mean["threshold"] == pytest.approx(np.mean([0.45, 0.47, 0.49]))
    best = read_model_pack(export_model_pack(run, tmp_path / "b.gss", ExportConfig(folds="best"))).info
    # fold 2 has the best *validation* AUC (0.8); it keeps its own validation threshold
    assert best["n_folds"] == 1 and best["folds"][0]["run_fold"] == 2
    assert best["folds"][0]["threshold"] == pytest.approx(0.49)
    # its pack still calibrates on (and takes its operating points from) that fold's own validation predictions
    assert best["calibration"]["n_validation"] == 8
    assert best["threshold"] == best["operating_points"]["screening"]["threshold"]
    assert all(n.startswith(("fold0.", "frozen.")) for n in best["tensors"])


def test_reload_reproduces_each_fold_model(run: Path, tmp_path: Path) -> None:
    from gsscreen.training.run_folder import load_fold_model

    pack = load_model_pack(export_model_pack(run, tmp_path / "m.gss"))
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    got = pack.predict_tensor_views(x)
    for k in range(3):
        ref = load_fold_model(run / "folds" / f"fold_{k}")
        with torch.no_grad():
            want = torch.softmax(ref(x), dim=1)[:, 1].numpy()
        np.testing.assert_allclose(got[:, k], want, rtol=1e-5, atol=1e-6)
    # fold models share one frozen body in memory
    assert pack.models[0].body[1] is pack.models[2].body[1]
    assert pack.models[0].head is not pack.models[1].head


def test_pack_crops_like_the_study_did(run: Path, tmp_path: Path) -> None:
    """A pack records the run's own alignment settings (not this version's defaults), and screening uses them."""
    from gsscreen.config import save_config
    from gsscreen.faces.align import AlignConfig

    assert load_model_pack(export_model_pack(run, tmp_path / "a.gss")).align_config.border == AlignConfig().border
    (run / "aligned").mkdir(exist_ok=True)
    save_config(AlignConfig(border="replicate", eye_y=0.38), run / "aligned" / "config.json")
    pack = load_model_pack(export_model_pack(run, tmp_path / "b.gss"))
    assert pack.info["alignment"]["border"] == "replicate"
    assert pack.align_config == AlignConfig(border="replicate", eye_y=0.38)


def test_screened_crop_is_the_packs_alignment_of_the_photo(run: Path, tmp_path: Path, astronaut) -> None:
    """What the model sees when screening is exactly ``align_face(photo, the pack's alignment)``: settings a study
    used that differ from this version's defaults (crop size, eye height, zoom, border fill) all carry over."""
    import numpy as np

    from gsscreen.config import save_config
    from gsscreen.faces.align import AlignConfig, align_face

    own = AlignConfig(border="replicate", eye_y=0.36, zoom=0.9)
    assert own != AlignConfig()
    (run / "aligned").mkdir(exist_ok=True)
    save_config(own, run / "aligned" / "config.json")
    model = load_model_pack(export_model_pack(run, tmp_path / "own.gss"))
    res = model.screen(astronaut, heatmap=False)
    expected = align_face(astronaut, own).image
    assert res.crop is not None and res.crop.shape == expected.shape
    assert np.abs(res.crop.astype(int) - expected.astype(int)).max() <= 1
    default = align_face(astronaut, AlignConfig()).image
    assert np.abs(res.crop.astype(int) - default.astype(int)).mean() > 5  # the settings really changed the crop


def test_folder_pack_equals_zip_pack(run: Path, tmp_path: Path) -> None:
    z = load_model_pack(export_model_pack(run, tmp_path / "m.gss"))
    folder = export_model_pack(run, str(tmp_path / "packdir") + "/")
    assert folder.is_dir() and (folder / "weights.safetensors").is_file() and (folder / "MODEL_CARD.md").is_file()
    f = load_model_pack(folder)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(z.predict_tensor(x), f.predict_tensor(x))


def test_model_card(run: Path, tmp_path: Path) -> None:
    out = export_model_pack(run, tmp_path / "m.gss", ExportConfig(demo=True, age_range_months=(12, 120)))
    card = read_model_pack(out).card
    assert "not a medical device" in card
    assert "Down syndrome only" in card and "web-collected" in card and "gsscreen study" in card
    assert "0.810 ± 0.040" in card  # AUC mean ± SD from metrics.json
    assert "12–120 months" in card
    plain = read_model_pack(export_model_pack(run, tmp_path / "p.gss")).card
    assert "Down syndrome only" not in plain and "age range" in plain.lower()


def test_tampered_weights_refused(run: Path, tmp_path: Path) -> None:
    out = export_model_pack(run, tmp_path / "m.gss")
    with zipfile.ZipFile(out) as z:
        blob = bytearray(z.read("weights.safetensors"))
    blob[-5] ^= 0x01  # one bit of one weight
    bad = _rewrite_zip(out, tmp_path / "bad.gss", weights=bytes(blob))
    with pytest.raises(ModelPackError, match=re.escape(TAMPERED)) as e:
        load_model_pack(bad)
    assert TAMPERED in str(e.value) and "bad.gss" in str(e.value)


def test_shape_mismatch_names_the_tensor(run: Path, tmp_path: Path) -> None:
    from safetensors.torch import load, save

    out = export_model_pack(run, tmp_path / "m.gss")
    contents = read_model_pack(out)
    tensors = load(zipfile.ZipFile(out).read("weights.safetensors"))
    tensors["fold1.head.hidden.1.bias"] = torch.zeros(32)  # the model expects 64
    blob = save(tensors)
    info = dict(contents.info, weights_sha256=sha256_bytes(blob),
                tensors={k: list(v.shape) for k, v in tensors.items()})
    bad = _rewrite_zip(out, tmp_path / "shape.gss", info=info, weights=blob)
    with pytest.raises(ModelPackError, match=r"fold1\.head\.hidden\.1\.bias has shape \(32,\).*expects \(64,\)"):
        load_model_pack(bad)
    # a manifest that disagrees with the file is refused too
    info2 = dict(contents.info, tensors={**contents.info["tensors"], "fold0.head.classifier.bias": [3]})
    with pytest.raises(ModelPackError, match=r"fold0\.head\.classifier\.bias"):
        read_model_pack(_rewrite_zip(out, tmp_path / "manifest.gss", info=info2))


def test_versions_refused(run: Path, tmp_path: Path) -> None:
    out = export_model_pack(run, tmp_path / "m.gss")
    info = read_model_pack(out).info
    newer = FORMAT_VERSION + 1
    with pytest.raises(ModelPackError, match=f"format version {newer} is newer"):
        read_model_pack(_rewrite_zip(out, tmp_path / "v.gss", info=dict(info, format_version=newer)))
    with pytest.raises(ModelPackError, match=r"made with gsscreen 9\.0\.0, newer"):
        read_model_pack(_rewrite_zip(out, tmp_path / "g.gss", info=dict(info, gsscreen_version="9.0.0")))
    with pytest.raises(ModelPackError, match="not a model pack"):
        (tmp_path / "junk.gss").write_bytes(b"not a zip")
        read_model_pack(tmp_path / "junk.gss")


def test_offline_body_needs_its_weights(run: Path, tmp_path: Path) -> None:
    # A pack claiming its frozen body comes from an offline source that tiny does not have.
    out = export_model_pack(run, tmp_path / "m.gss")
    info = read_model_pack(out).info
    bad = _rewrite_zip(out, tmp_path / "o.gss", info=dict(info, frozen_source="offline"))
    with pytest.raises(ModelPackError, match="needs the pretrained tiny weights"):
        load_model_pack(bad)


def test_frozen_fingerprint_checked(run: Path, tmp_path: Path) -> None:
    out = export_model_pack(run, tmp_path / "m.gss")
    info = read_model_pack(out).info
    bad = _rewrite_zip(out, tmp_path / "f.gss", info=dict(info, frozen_sha256="0" * 64))
    with pytest.raises(ModelPackError, match="differ from those the model was trained with"):
        load_model_pack(bad)


def test_unfinished_run_refused(run: Path, tmp_path: Path) -> None:
    (run / "folds" / "fold_1" / "result.json").unlink()
    with pytest.raises(ModelPackError, match="fold_1: fold not finished"):
        export_model_pack(run, tmp_path / "m.gss")


@pytest.mark.slow
def test_export_of_a_real_study_matches_its_predictions(tmp_path: Path) -> None:
    """End to end with the training engineer's code: a 1-epoch `tiny` study, exported; each pack fold model
    reproduces the run's test predictions (mirror averaged, as the study evaluates)."""
    from PIL import Image

    from gsscreen.examples import example_image
    from gsscreen.training.config import preset, replace
    from gsscreen.training.data import load_crops
    from gsscreen.training.study import run_study

    rng = np.random.default_rng(0)
    rows = []
    for i in range(10):
        im = example_image("astronaut" if i % 2 else "grace_hopper")
        s = int(min(im.shape[:2]) * rng.uniform(0.7, 1.0))
        crop = np.clip(im[:s, :s].astype(float) * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
        p = tmp_path / f"p{i}.png"
        Image.fromarray(crop).resize((80, 80)).save(p)
        rows.append({"image": str(p), "label": "GS" if i % 2 else "control", "subject_id": f"s{i}"})
    cfg = preset("quick")
    cfg = replace(cfg, baseline=False, n_bootstrap=10, train=replace(cfg.train, epochs=1))  # type: ignore[arg-type]
    run_study(pd.DataFrame(rows), tmp_path / "run", cfg, progress=False)
    pack = load_model_pack(export_model_pack(tmp_path / "run", tmp_path / "m.gss"))
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv")
    crops, ok, _ = load_crops(list(preds["photo"]), 64)
    assert len(ok) == len(preds)
    got = pack.predict_tensor(crops.float() / 255.0)
    for i, r in enumerate(preds.itertuples()):
        assert got[i, int(r.fold)] == pytest.approx(r.p_gs, abs=1e-5)


def test_float16_weights_halve_the_trained_part_and_keep_the_predictions(run: Path, tmp_path: Path) -> None:
    """``weights_dtype="float16"`` stores the per-fold floating tensors at half precision (fine-tuned body stages
    are large); loading casts them back, so predictions move by rounding only; anything else is refused."""
    from safetensors.torch import load as st_load

    full = export_model_pack(run, tmp_path / "f32.gss")
    half = export_model_pack(run, tmp_path / "f16.gss", ExportConfig(weights_dtype="float16"))
    with zipfile.ZipFile(full) as z32, zipfile.ZipFile(half) as z16:
        t32, t16 = st_load(z32.read("weights.safetensors")), st_load(z16.read("weights.safetensors"))
    assert set(t32) == set(t16)
    for k, v in t16.items():
        if k.startswith("fold") and t32[k].is_floating_point():
            assert v.dtype == torch.float16, k
            torch.testing.assert_close(v.float(), t32[k], rtol=1e-3, atol=1e-4)
        else:  # the stored frozen body and integer buffers are left as they are
            assert v.dtype == t32[k].dtype, k
    trained32 = sum(v.numel() * v.element_size() for k, v in t32.items() if k.startswith("fold"))
    trained16 = sum(v.numel() * v.element_size() for k, v in t16.items() if k.startswith("fold"))
    assert trained16 < 0.6 * trained32
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    p32 = load_model_pack(full).predict_tensor_views(x)
    p16 = load_model_pack(half).predict_tensor_views(x)
    np.testing.assert_allclose(p16, p32, atol=2e-3)
    assert all(p.dtype == torch.float32 for p in load_model_pack(half).models[0].parameters())
    with pytest.raises(ModelPackError, match="weights_dtype"):
        export_model_pack(run, tmp_path / "bad.gss", ExportConfig(weights_dtype="int8"))


def test_qdelta8_round_trip_within_half_a_step(run: Path, tmp_path: Path) -> None:
    """``weights_dtype="qdelta8"``: int8 codes of each trained tensor's difference from the freshly built network
    (body) or from zero (head), one scale per output row; reloading rebuilds every weight within half a
    quantisation step of its row, the member is deflated, and float32 / float16 packs still load."""
    from safetensors.torch import load as st_load

    from gsscreen.modelpack import build_fold_models
    from gsscreen.training.run_folder import CHECKPOINT, load_weights

    full = export_model_pack(run, tmp_path / "f32.gss")
    half = export_model_pack(run, tmp_path / "f16.gss", ExportConfig(weights_dtype="float16"))
    q = export_model_pack(run, tmp_path / "q.gss", ExportConfig(weights_dtype="qdelta8", quant_levels=15))
    with zipfile.ZipFile(q) as z:
        assert z.getinfo("weights.safetensors").compress_type == zipfile.ZIP_DEFLATED
        stored = st_load(z.read("weights.safetensors"))
    info = read_model_pack(q).info
    assert info["format_version"] == FORMAT_VERSION and info["quantisation"]["levels"] == 15
    assert info["quantisation"]["delta_from_base"] and all(
        k.startswith("body.") for k in info["quantisation"]["delta_from_base"])
    w = "fold1.head.classifier.weight"
    assert stored[w + "#int8"].dtype == torch.int8 and stored[w + "#int8"].abs().max() <= 15
    assert stored[w + "#scale"].shape == (stored[w + "#int8"].shape[0],)
    assert stored["fold1.head.classifier.bias"].dtype == torch.float32  # 1-D tensors are kept as they are
    _, models = build_fold_models(read_model_pack(q))
    _, fresh = build_fold_models(read_model_pack(full))  # the exact trained weights
    for k in range(3):
        trained, _ = load_weights(run / "folds" / f"fold_{k}" / CHECKPOINT)
        got, exact = models[k].state_dict(), fresh[k].state_dict()
        for name in trained:
            if trained[name].is_floating_point() and trained[name].ndim >= 2:
                step = stored[f"fold{k}.{name}#scale"].reshape((-1,) + (1,) * (trained[name].ndim - 1))
                err = (got[name] - exact[name]).abs()
                assert bool((err <= step / 2 * (1 + 1e-5) + 1e-7).all()), name
                assert not torch.equal(got[name], exact[name]) or step.max() == 0
            else:
                assert torch.equal(got[name], exact[name]), name
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    p32 = load_model_pack(full).predict_tensor_views(x)
    np.testing.assert_allclose(load_model_pack(half).predict_tensor_views(x), p32, atol=2e-3)
    # tiny's random stand-in weights amplify rounding (the fine-tuned demo model: docs/design.md); at ±127 steps
    # its predictions stay close
    fine = export_model_pack(run, tmp_path / "q127.gss", ExportConfig(weights_dtype="qdelta8", quant_levels=127))
    np.testing.assert_allclose(load_model_pack(fine).predict_tensor_views(x), p32, atol=0.03)


def test_qdelta8_refused_on_other_base_weights_or_broken_parts(run: Path, tmp_path: Path) -> None:
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    q = export_model_pack(run, tmp_path / "q.gss", ExportConfig(weights_dtype="qdelta8"))
    info = read_model_pack(q).info
    # other base weights on this machine (here: another seed builds another tiny body) → a clear refusal
    other = _rewrite_zip(q, tmp_path / "o.gss", info=dict(info, init_seed=int(info["init_seed"]) + 1,
                                                          frozen_sha256=None))
    with pytest.raises(ModelPackError, match="base fingerprint mismatch"):
        load_model_pack(other)
    with zipfile.ZipFile(q) as z:
        tensors = st_load(z.read("weights.safetensors"))
    name = "fold0.head.classifier.weight"
    for change, message in ((lambda t: t.pop(name + "#scale"), "needs exactly"),
                            (lambda t: t.__setitem__(name + "#int8", t[name + "#int8"].float()), "must be int8"),
                            (lambda t: t.__setitem__(name + "#scale", torch.ones(1)), r"has shape \(1,\)")):
        bad_t = dict(tensors)
        change(bad_t)
        blob = st_save(bad_t)
        bad_info = dict(info, weights_sha256=sha256_bytes(blob),
                        tensors={k: list(v.shape) for k, v in bad_t.items()})
        with pytest.raises(ModelPackError, match=message):
            load_model_pack(_rewrite_zip(q, tmp_path / "b.gss", info=bad_info, weights=blob))
    with pytest.raises(ModelPackError, match="quant_levels"):
        export_model_pack(run, tmp_path / "bad.gss", ExportConfig(weights_dtype="qdelta8", quant_levels=200))


def test_cli_export_weights_dtype(run: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gsscreen.cli import app

    r = CliRunner().invoke(app, ["export", str(run), "-o", str(tmp_path / "q.gss"), "--weights-dtype", "qdelta8"])
    assert r.exit_code == 0, r.output
    assert read_model_pack(tmp_path / "q.gss").info["quantisation"]["scheme"] == "qdelta8"
    r = CliRunner().invoke(app, ["export", str(run), "-o", str(tmp_path / "b.gss"), "--weights-dtype", "int4"])
    assert r.exit_code == 2 and "weights_dtype must be" in r.output
