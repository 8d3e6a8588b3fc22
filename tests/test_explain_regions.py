"""Facial-region attributions (gsscreen.explain_regions): regions from the 5 landmarks, occlusion deltas, summary."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gsscreen.explain import face_region_mask
from gsscreen.explain_regions import (
    REGIONS,
    occluded_views,
    region_attributions,
    region_bars,
    region_masks,
    region_shares,
    region_summary,
    summary_sentence,
)

# A frontal face in a 224 crop, as the aligner's template puts it (eyes at y 0.4, mouth at y 0.68).
LM = np.array([[80.0, 90.0], [144.0, 90.0], [112.0, 122.0], [84.0, 152.0], [140.0, 152.0]])


def test_regions_are_disjoint_cover_the_crop_and_sit_on_their_features() -> None:
    m = region_masks(LM, (224, 224))
    assert tuple(m) == REGIONS
    total = sum(v.astype(int) for v in m.values())
    assert (total == 1).all()  # disjoint, and every pixel in exactly one region
    at = {r: {name for name, v in m.items() if v[int(y), int(x)]} for r, (x, y) in
          {"le": LM[0], "re": LM[1], "nose": LM[2], "ml": LM[3], "mr": LM[4]}.items()}
    assert at["le"] == at["re"] == {"periocular"}
    assert at["nose"] == {"nasal"}
    assert at["ml"] == at["mr"] == {"perioral"}
    assert m["outline"][40, 112]  # forehead
    assert m["outline"][185, 112]  # chin
    assert m["outside"][5, 5] and m["outside"][220, 112]  # background corner, neck
    face = face_region_mask(LM, (224, 224))
    assert not (m["outside"] & face).any()
    # The face region is split among the four facial regions (the eye band may reach a little past its temples).
    assert ((m["periocular"] | m["nasal"] | m["perioral"] | m["outline"]) >= face).all()
    assert m["outline"].sum() > 0.3 * face.sum()


def test_regions_follow_a_tilted_smaller_face() -> None:
    theta = np.deg2rad(20)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    lm = (LM - 112) @ rot.T * 0.6 + 112
    m = region_masks(lm, (224, 224))
    for i, r in ((0, "periocular"), (2, "nasal"), (4, "perioral")):
        assert m[r][round(float(lm[i, 1])), round(float(lm[i, 0]))], r
    assert m["periocular"].sum() < region_masks(LM, (224, 224))["periocular"].sum()


def test_occluded_views_grey_exactly_one_region_each() -> None:
    crop = np.random.default_rng(0).integers(0, 100, size=(224, 224, 3)).astype(np.uint8)
    m = region_masks(LM, (224, 224))
    v = occluded_views(crop, m)
    assert v.shape == (6, 224, 224, 3)
    assert (v[0] == crop).all()
    for k, r in enumerate(REGIONS, start=1):
        assert (v[k][m[r]] == 128).all() and (v[k][~m[r]] == crop[~m[r]]).all()
    with pytest.raises(ValueError, match="uint8"):
        occluded_views(crop.astype(float), m)


def _eye_model(views: np.ndarray) -> np.ndarray:
    """P(GS) = red brightness around the left eye (x 70–90, y 82–98) minus a little for a bright bottom-left
    corner (so one region holds evidence against GS)."""
    eye = views[:, 82:98, 70:90, 0].astype(np.float64).mean(axis=(1, 2)) / 255.0
    corner = views[:, 200:, :20, 0].astype(np.float64).mean(axis=(1, 2)) / 255.0
    return np.clip(0.2 + 0.7 * eye - 0.2 * corner, 0, 1)


def test_attribution_finds_the_region_the_model_uses() -> None:
    crop = np.zeros((224, 224, 3), np.uint8)
    crop[82:98, 70:90, 0] = 255  # bright left eye: the evidence
    crop[200:, :20, 0] = 250  # bright corner (evidence against GS): greying it raises P(GS), a negative delta
    calls = []

    def predict(v: np.ndarray) -> np.ndarray:
        calls.append(len(v))
        return _eye_model(v)

    bad = np.zeros((5, 2))
    df = region_attributions(predict, [crop, crop, crop], [LM, bad, LM], names=["a.jpg", "b.jpg", "c.jpg"],
                             photos_per_batch=8)
    assert calls == [12]  # 2 good photos x (photo + 5 regions), one batch
    assert "b.jpg" in df.loc[1, "problem"] and math.isnan(df.loc[1, "p_gs"])
    row = df.iloc[0]
    assert row["delta_periocular"] > 0.3
    assert row["share_periocular"] == pytest.approx(1.0)
    assert row["delta_outside"] < 0
    for r in ("nasal", "perioral", "outline"):
        assert abs(row[f"delta_{r}"]) < 1e-9
    s = region_summary(df)
    assert s["n"] == 2 and s["share"]["periocular"] == pytest.approx(1.0)
    line = summary_sentence(s)
    assert "periocular region carries 100% of the evidence" in line and "0% lies outside the face" in line


def test_shares_and_sentence_edge_cases() -> None:
    sh = region_shares({"periocular": 0.2, "nasal": 0.1, "perioral": -0.3, "outline": 0.0, "outside": 0.1})
    assert sh["periocular"] == pytest.approx(0.5) and sh["perioral"] == 0.0 and sum(sh.values()) == pytest.approx(1)
    none = region_shares(dict.fromkeys(REGIONS, -0.1))
    assert all(math.isnan(v) for v in none.values())
    assert summary_sentence({"n": 0, "share": {}}) == "no region attributions for GS photos"
    s = {"n": 3, "share": {"periocular": 0.2, "nasal": 0.1, "perioral": 0.1, "outline": 0.1, "outside": 0.5}}
    assert "outside the face" in summary_sentence(s) and "learned the photo" in summary_sentence(s)


def test_bar_chart_png(tmp_path) -> None:
    data = region_bars({"periocular": 0.3, "nasal": -0.05, "perioral": 0.1, "outline": 0.0, "outside": math.nan},
                       tmp_path / "bars.png")
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "bars.png").read_bytes() == data


# ------------------------------------------------------------------------------------------------ in screening


def test_pack_records_its_cam_and_screening_shows_regions(tmp_path, astronaut) -> None:
    """A new pack records the CAM it is explained with; screening a photo returns region deltas (also in the
    JSON), the web page's region figure and the batch output's bar chart beside the heatmap."""
    import json

    from screen_support import fabricate_run

    from gsscreen.explain_cam import CamSpec, default_cam
    from gsscreen.explain_regions import regions_figure_html
    from gsscreen.modelpack import ExportConfig, export_model_pack, load_model_pack, read_model_pack

    run = fabricate_run(tmp_path / "run", folds=2, unfreeze_from=5)
    pack = export_model_pack(run, tmp_path / "m.gss", ExportConfig(name="t"))
    assert read_model_pack(pack).info["cam"] == default_cam("tiny").to_dict()
    sm = load_model_pack(pack)
    res = sm.screen(astronaut)
    assert res.ok and set(res.regions) == set(REGIONS)
    assert all(math.isfinite(v) and -1 <= v <= 1 for v in res.regions.values())
    assert json.loads(json.dumps(res.to_dict()))["regions"] == res.regions
    html = regions_figure_html(res.regions)
    assert 'id="region-bars"' in html and "periocular" in html and "data:image/png;base64," in html
    assert regions_figure_html(None) == ""
    assert sm.screen(astronaut, heatmap=False).regions is None
    # A pack whose model.json names another CAM is explained with it: one map of the ensemble (one backward pass
    # over the shared frozen body), P(GS) per fold; the plain view's P(GS) is handed on for the regions.
    sm.cam = CamSpec("layercam", ("body.2", "body.4"))
    plain: list[np.ndarray] = []
    p, maps, flat = sm.explain_tensor(sm.to_tensor(res.crop), on_plain=plain.append)
    assert maps.shape == (1, 1, 64, 64) and p.shape == (1, 2) and not flat.any()
    assert plain[0].shape == (1, 2)
    np.testing.assert_allclose(plain[0], sm.predict_tensor_views(sm.to_tensor(res.crop)), atol=1e-5)


def test_fold_summary_and_fig3_table_per_fold_and_pooled() -> None:
    from gsscreen.explain_regions import fig3_context, fold_summary, fold_summary_lines

    nan = math.nan
    rows = [
        # fold, on-face share, on face, periocular/nasal/perioral/outline/outside deltas
        (0, 0.8, True, (0.3, 0.1, 0.0, 0.0, 0.0)),
        (0, 0.3, False, (0.0, 0.0, 0.0, 0.0, 0.2)),
        (1, 0.9, True, (0.2, 0.0, 0.2, 0.0, 0.0)),
        (1, nan, False, (nan,) * 5),  # no map, no attributions: left out of both counts
    ]
    recs = []
    for fold, share, on, deltas in rows:
        d = dict(zip(REGIONS, deltas, strict=True))
        recs.append({"fold": fold, "on_face_share": share, "on_face": on, **{f"delta_{r}": v for r, v in d.items()},
                     **{f"share_{r}": v for r, v in (region_shares(d) if not math.isnan(deltas[0]) else
                                                     dict.fromkeys(REGIONS, nan)).items()}})
    s = fold_summary(recs)
    assert (s["pooled"]["n_maps"], s["pooled"]["n_on_face"]) == (3, 2)
    assert (s["folds"][0]["n_on_face"], s["folds"][1]["n_maps"]) == (1, 1)
    sh = s["pooled"]["regions"]["share"]
    assert sh["periocular"] == pytest.approx((0.75 + 0 + 0.5) / 3)
    assert sh["outside"] == pytest.approx(1 / 3)
    assert "more than half of its mass" in s["rule"]
    lines = fold_summary_lines(s)
    assert lines[0].startswith("fold 0: 1 of 2 maps mainly on the face") and lines[2].startswith("pooled: 2 of 3")
    ctx = fig3_context(recs)
    assert [r["name"] for r in ctx["rows"]] == ["fold 0", "fold 1", "pooled"]
    assert ctx["rows"][2]["on"] == "2 of 3" and ctx["rows"][2]["shares"][0] == "42%"
    assert "periocular region carries 42%" in ctx["sentence"]
