"""Likely-same-child grouping: union-find groups, FaceNet identity clusters, the leakage audit, splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from gsscreen.groups import NEAR_DUPLICATE_SEP, UnionFind, split_groups
from gsscreen.identity import identity_groups, leakage_audit, similar_pairs
from gsscreen.training.splits import assign_subsets, fold_roles


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_union_find_root_does_not_depend_on_order():
    pairs = [("c", "d"), ("a", "b"), ("b", "d"), ("x", "y")]
    roots = set()
    for order in (pairs, pairs[::-1], [pairs[2], pairs[0], pairs[3], pairs[1]]):
        uf = UnionFind()
        for a, b in order:
            uf.union(a, b)
        roots.add(tuple(uf.find(k) for k in "abcdxy"))
    assert roots == {("a", "a", "a", "a", "x", "x")}


def test_near_duplicate_chain_is_one_group():
    # C looks like A and like B (A and B not alike): all three must share a group, whichever partner C names first.
    table = pd.DataFrame({
        "image": ["/p/A", "/p/B", "/p/C", "/p/D"],
        "label": ["GS"] * 4,
        "subject_id": ["photo-2", "photo-3", "photo-4", "photo-5"],
        "near_duplicate_of": pd.array([None, None, f"/p/A{NEAR_DUPLICATE_SEP}/p/B", None], dtype="string"),
    })
    keys = split_groups(table)
    assert keys.iloc[0] == keys.iloc[1] == keys.iloc[2] != keys.iloc[3]


def test_identity_clusters_join_subjects_bytes_and_near_duplicates():
    table = pd.DataFrame({
        "image": [f"/p/{i}" for i in range(6)],
        "label": ["GS", "GS", "control", "control", "GS", "control"],
        "subject_id": ["s0", "s1", None, "", "s0", None],
        "sha256": ["h0", "h1", "h2", "h2", "h4", "h5"],
        "identity_cluster": [0, 1, 1, 2, 3, 4],
    })
    keys = split_groups(table).tolist()
    # 0 ~ 4 (subject s0); 1 ~ 2 (identity cluster 1); 2 ~ 3 (identical bytes); 5 alone
    assert keys[0] == keys[4] and keys[1] == keys[2] == keys[3] and len(set(keys)) == 3


def test_identity_groups_link_chains_at_the_threshold():
    rng = np.random.default_rng(0)
    base = _unit(rng.normal(size=(5, 64)))
    # a chain: x1 close to x0, x2 close to x1 but not to x0; x3, x4 unrelated
    x1 = _unit((base[0] + 0.8 * base[3])[None])[0]
    x2 = _unit((x1 + 0.8 * base[4])[None])[0]
    emb = np.stack([base[0], x1, x2, base[1], base[2]])
    sim = emb @ emb.T
    t = float(min(sim[0, 1], sim[1, 2])) - 1e-4
    assert sim[0, 2] < t  # not directly linked: only the chain joins them
    labels = identity_groups(emb, t)
    assert labels[0] == labels[1] == labels[2] and len(set(labels.tolist())) == 3
    assert labels.tolist() == sorted(labels.tolist())  # numbered by first photo
    pairs = similar_pairs(emb, t)
    assert {(int(i), int(j)) for i, j, _ in pairs} == {(0, 1), (1, 2)}
    assert np.allclose(pairs[:, 2], [sim[0, 1], sim[1, 2]])
    with pytest.raises(ValueError, match="threshold"):
        identity_groups(emb, 1.5)


def test_similar_pairs_match_a_brute_force_count_across_blocks():
    emb = _unit(np.random.default_rng(1).normal(size=(70, 8)))
    sim = emb @ emb.T
    expected = {(i, j) for i in range(70) for j in range(i + 1, 70) if sim[i, j] >= 0.5}
    got = {(int(i), int(j)) for i, j, _ in similar_pairs(emb, 0.5, block=16)}
    assert got == expected and len(expected) > 10


def test_splits_keep_identity_clusters_together():
    n = 60
    table = pd.DataFrame({"image": [f"/p/{i}" for i in range(n)], "label": ["GS", "control"] * (n // 2)})
    table["identity_cluster"] = np.arange(n)
    table.loc[[0, 2, 4, 6], "identity_cluster"] = 1000  # one child, four photos
    table.loc[[1, 9], "identity_cluster"] = 1001
    for seed in range(4):
        out = assign_subsets(table, 5, seed)
        assert out.loc[[0, 2, 4, 6], "subset"].nunique() == 1
        assert out.loc[[1, 9], "subset"].nunique() == 1


def test_leakage_audit_counts_training_neighbours_only():
    rng = np.random.default_rng(2)
    n = 50
    emb = _unit(rng.normal(size=(n, 128)))  # random 128-d: pairwise cosine ~ N(0, 0.09)
    subsets = np.arange(n) % 5
    # photo 0 (subset 0, tested in fold 0) gets a copy in a training subset of fold 0; photo 5 (subset 0)
    # a copy in fold 0's validation subset (1), which is not training.
    train0, val0, _ = fold_roles(0, 5)
    j = next(i for i in range(n) if subsets[i] == train0[0] and i not in (0, 5))
    k = next(i for i in range(n) if subsets[i] == val0 and i not in (0, 5))
    emb[j] = _unit(emb[0] + 0.02 * rng.normal(size=128)[None])[0]
    emb[k] = _unit(emb[5] + 0.02 * rng.normal(size=128)[None])[0]
    audit = leakage_audit(emb, subsets, 5, thresholds=(0.8,))
    a = audit["thresholds"]["0.8"]
    # each photo of a close pair counts when its partner's subset trains the fold that tests it
    expected = {x for x, y in ((0, j), (j, 0), (5, k), (k, 5)) if subsets[y] in fold_roles(int(subsets[x]), 5)[0]}
    assert 0 in expected and 5 not in expected  # photo 5's copy only validates fold 0
    assert a["n"] == len(expected)
    assert a["per_fold"][0] == 1
    assert np.isclose(a["share"], len(expected) / n)
    assert audit["nearest_train_cosine"][0] > 0.8 and audit["nearest_train_cosine"][5] < 0.8


facenet = pytest.importorskip("gsscreen.models.backbones.facenet")


@pytest.mark.skipif(not facenet.facenet_weights_available(), reason="FaceNet weights not installed")
def test_facenet_identity_links_edited_copies_and_separates_people(astronaut, grace_hopper, tmp_path):
    from PIL import Image

    from gsscreen.identity import DEFAULT_IDENTITY_THRESHOLD, embed_crop_files, embed_crops

    a = Image.fromarray(astronaut[40:220, 160:320]).resize((160, 160))
    h, w = grace_hopper.shape[:2]
    g = Image.fromarray(grace_hopper[int(0.05 * h) : int(0.6 * h), int(0.22 * w) : int(0.78 * w)]).resize((160, 160))
    paths = []
    for name, im in (("a", a), ("a_mirror", a.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
                     ("a_jpeg", a), ("g", g), ("g_mirror", g.transpose(Image.Transpose.FLIP_LEFT_RIGHT))):
        p = tmp_path / (f"{name}.jpg" if name == "a_jpeg" else f"{name}.png")
        im.save(p, **({"quality": 50} if name == "a_jpeg" else {}))
        paths.append(str(p))
    emb, ok = embed_crop_files(paths)
    assert ok == list(range(5)) and emb.shape == (5, 512)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    labels = identity_groups(emb, DEFAULT_IDENTITY_THRESHOLD)
    assert labels[0] == labels[1] == labels[2] != labels[3] == labels[4]
    # cached: the second call reads the same vectors back
    again, _ = embed_crop_files(paths)
    assert np.array_equal(emb, again)
    # the resize path (224 px crops) agrees closely with 160 px input
    big = torch.from_numpy(np.asarray(a.resize((224, 224)))).permute(2, 0, 1)[None]
    assert float(embed_crops(big, cache=False)[0] @ emb[0]) > 0.95


@pytest.mark.slow
def test_study_keeps_likely_same_child_together_and_audits(tmp_path, monkeypatch):
    """A quick study without subject ids: photos the (stubbed) face comparison calls one child share a subset, and
    splits.csv / metrics.json carry the groups and the leakage audit."""
    from training_synth import make_cohort

    import gsscreen.identity as ident
    from gsscreen.models.backbones import facenet as fn
    from gsscreen.training.config import GroupingConfig, preset, replace
    from gsscreen.training.run_folder import read_json
    from gsscreen.training.study import run_study

    table = make_cohort(tmp_path / "photos", n_subjects=20).drop(columns=["subject_id"])
    n = len(table)
    rng = np.random.default_rng(0)
    fake = _unit(rng.normal(size=(n, 512)))
    twins = [(0, 4), (4, 9), (7, 13)]  # 0 ~ 4 ~ 9 is a chain; 7 ~ 13
    for a, b in twins:
        fake[b] = _unit((fake[a] + 0.01 * rng.normal(size=512))[None])[0]
    monkeypatch.setattr(fn, "facenet_weights_available", lambda: True)
    monkeypatch.setattr(ident, "embed_crops", lambda crops, keys=None, **kw: fake[: len(crops)])
    cfg = replace(preset("quick"), grouping=GroupingConfig(likely_same_child=True, threshold=0.8, audit=True))
    cfg.train.epochs = 1
    res = run_study(table, tmp_path / "run", cfg, progress=False)
    splits = pd.read_csv(tmp_path / "run" / "splits.csv")
    sub = dict(zip(splits["photo"], splits["subset"], strict=True))
    grp = dict(zip(splits["photo"], splits["group"], strict=True))
    for a, b in twins:
        assert sub[table["image"][a]] == sub[table["image"][b]]
        assert grp[table["image"][a]] == grp[table["image"][b]]
    g = res.metrics["grouping"]
    assert g["used"] and g["n_clusters"] == 2 and g["n_photos_in_clusters"] == 5 and g["largest_cluster"] == 3
    # grouped, so no test photo has its twin in training
    assert g["leakage_audit"]["thresholds"]["0.9"]["n"] == 0
    assert splits["nearest_train_cosine"].max() < 0.8
    assert read_json(tmp_path / "run" / "config.json")["grouping"]["likely_same_child"] is True


def test_cluster_table_and_contact_sheet(tmp_path):
    from PIL import Image

    from gsscreen.identity import cluster_table, contact_sheet

    rng = np.random.default_rng(5)
    emb = _unit(rng.normal(size=(5, 32)))
    emb[3] = _unit((emb[0] + 0.01 * rng.normal(size=32))[None])[0]
    labels = identity_groups(emb, 0.9)
    images = [f"/p/img{i}.jpg" for i in range(5)]
    t = cluster_table(labels, images, emb)
    assert len(t) == 1 and t["size"].iloc[0] == 2 and t["images"].iloc[0] == "/p/img0.jpg;/p/img3.jpg"
    assert 0.9 <= t["min_cosine"].iloc[0] <= 1.0
    crops = {}
    for i in (0, 3):
        crops[images[i]] = str(tmp_path / f"c{i}.png")
        Image.new("RGB", (64, 64), (40 * i, 90, 160)).save(crops[images[i]])
    out = contact_sheet(t, crops, tmp_path / "sheet.png", tile=64)
    with Image.open(out) as im:
        assert im.size[1] == 64 + 14 and im.size[0] > 2 * 64
        assert im.getpixel((110 + 10, 10)) == (0, 90, 160)  # the first crop in its tile
