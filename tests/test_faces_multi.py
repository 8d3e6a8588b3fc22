"""Several faces: the largest is scored by default with every face boxed; ``--face all`` screens each face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from screen_support import fabricate_run
from test_orientation import two_children

from gsscreen.faces.overlay import SCORED_RGB, draw_faces
from gsscreen.modelpack import ExportConfig, export_model_pack, load_model_pack
from gsscreen.screening import ScreenConfig, ScreeningModel, screen_batch


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ScreeningModel:
    d = tmp_path_factory.mktemp("multi")
    return load_model_pack(export_model_pack(fabricate_run(d / "run", folds=2), d / "m.gss", ExportConfig(name="t")))


def test_draw_faces_boxes_every_face() -> None:
    img = np.zeros((400, 600, 3), np.uint8)
    faces = [{"box": [40, 40, 200, 220], "scored": True}, {"box": [300, 60, 420, 200], "scored": False}]
    out = draw_faces(img, faces, scale=2.0)  # boxes in original px of a photo twice this size
    assert out.shape == img.shape and (out[20, 20:100] == SCORED_RGB).all(axis=-1).any()
    assert out[:, 150:].any() and not out[300:, :].any()  # the second box drawn, nothing below the faces


def test_each_face_screened(model: ScreeningModel, astronaut: np.ndarray, grace_hopper: np.ndarray,
                            tmp_path: Path) -> None:
    two, seam = two_children(astronaut, grace_hopper)
    one = model.screen(two, heatmap=False)
    assert "several_faces" in one.reasons and one.outcome == "inconclusive"
    assert one.faces_overlay is not None and one.faces_overlay.ndim == 3
    each = model.screen_faces(two, heatmap=False)
    assert len(each) == len(one.faces) >= 2
    for r in each:
        assert "several_faces" not in r.reasons  # chosen one by one, the other face makes it no less clear
        assert sum(f["scored"] for f in r.faces) == 1 and len(r.faces) == len(each)
    scored = [next(f["box"] for f in r.faces if f["scored"]) for r in each]
    assert any(b[2] <= seam for b in scored) and any(b[0] >= seam for b in scored)
    photo = tmp_path / "two.png"
    Image.fromarray(two).save(photo)
    out = tmp_path / "out"
    table = screen_batch(model, ScreenConfig(inputs=[str(photo)], out_dir=str(out), face="all"), progress=False)
    assert table["face"].tolist() == list(range(1, len(each) + 1)) and (table["file"] == str(photo)).all()
    assert (out / "heatmaps" / "two_faces.png").is_file() and (out / "heatmaps" / "two_face2_gradcam.png").is_file()
    table1 = screen_batch(model, ScreenConfig(inputs=[str(photo)], out_dir=str(tmp_path / "o1"), workers=0),
                          progress=False)
    assert len(table1) == 1 and table1["outcome"].iloc[0] == "inconclusive"
    assert (tmp_path / "o1" / "heatmaps" / "two_faces.png").is_file()  # every face boxed, next to the heatmap
