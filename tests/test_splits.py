"""Property tests of the cross-validation split (subject-grouped, stratified, balanced)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsscreen.training.splits import assign_subsets, fold_masks, fold_roles, split_summary


@st.composite
def cohorts(draw, max_subjects: int = 60, max_photos: int = 6) -> pd.DataFrame:
    """Random cohorts: odd sizes, unbalanced classes, subjects with many photos, some photos without subject."""
    n_gs = draw(st.integers(1, max_subjects))
    n_ctrl = draw(st.integers(1, max_subjects))
    rows = []
    for cls, n in (("GS", n_gs), ("control", n_ctrl)):
        for s in range(n):
            k = draw(st.integers(1, max_photos))
            no_id = draw(st.booleans()) and k == 1 and draw(st.integers(0, 4)) == 0
            for j in range(k):
                sid = None if no_id else f"{cls}{s}"
                rows.append({"image": f"/p/{cls}_{s}_{j}.jpg", "label": cls, "subject_id": sid})
    return pd.DataFrame(rows)


@settings(max_examples=60, deadline=None)
@given(table=cohorts(), seed=st.integers(0, 2**31 - 1), n_folds=st.integers(3, 6))
def test_split_properties(table: pd.DataFrame, seed: int, n_folds: int) -> None:
    out = assign_subsets(table, n_folds=n_folds, seed=seed)
    assert len(out) == len(table) and set(out["subset"]) <= set(range(n_folds))
    # No subject in two subsets.
    with_id = out[out["subject_id"].notna()]
    assert (with_id.groupby("subject_id")["subset"].nunique() == 1).all()
    # Each photo tested exactly once; train / val / test disjoint within every fold and covering all photos.
    tested = np.zeros(len(out), dtype=int)
    for k in range(n_folds):
        tr, va, te = fold_masks(out["subset"].to_numpy(), k, n_folds)
        assert not (tr & va).any() and not (tr & te).any() and not (va & te).any()
        assert (tr | va | te).all()
        tested += te
    assert (tested == 1).all()
    # Same seed -> same split.
    again = assign_subsets(table, n_folds=n_folds, seed=seed)
    assert (again["subset"].to_numpy() == out["subset"].to_numpy()).all()


@settings(max_examples=60, deadline=None)
@given(n_gs=st.integers(1, 200), n_ctrl=st.integers(1, 200), seed=st.integers(0, 10_000))
def test_single_photo_subjects_give_counts_within_one(n_gs: int, n_ctrl: int, seed: int) -> None:
    table = pd.DataFrame(
        {
            "image": [f"g{i}" for i in range(n_gs)] + [f"c{i}" for i in range(n_ctrl)],
            "label": ["GS"] * n_gs + ["control"] * n_ctrl,
            "subject_id": [f"sg{i}" for i in range(n_gs)] + [f"sc{i}" for i in range(n_ctrl)],
        }
    )
    summary = split_summary(assign_subsets(table, 5, seed)).reindex(range(5), fill_value=0)
    for col in ("GS", "control", "total"):
        assert summary[col].max() - summary[col].min() <= 1, summary


def test_many_photo_subjects_are_balanced_greedily() -> None:
    # 10 GS subjects with 1..10 photos (55) and 55 one-photo controls: subset GS counts stay close (LPT greedy).
    rows = [{"image": f"g{s}_{j}", "label": "GS", "subject_id": f"g{s}"} for s in range(10) for j in range(s + 1)]
    rows += [{"image": f"c{i}", "label": "control", "subject_id": f"c{i}"} for i in range(55)]
    out = assign_subsets(pd.DataFrame(rows), 5, seed=3)
    gs = split_summary(out)["GS"]
    assert gs.sum() == 55 and gs.max() - gs.min() <= 2


def test_different_seeds_shuffle_ties() -> None:
    table = pd.DataFrame(
        {"image": [f"i{i}" for i in range(40)], "label": ["GS", "control"] * 20, "subject_id": range(40)}
    )
    splits = {tuple(assign_subsets(table, 5, seed)["subset"]) for seed in range(5)}
    assert len(splits) > 1


def test_fold_roles_paper_layout() -> None:
    assert fold_roles(0, 5) == ([2, 3, 4], 1, 0)
    assert fold_roles(4, 5) == ([1, 2, 3], 0, 4)
    assert sorted(fold_roles(k, 5)[2] for k in range(5)) == list(range(5))
    with pytest.raises(ValueError, match="out of range"):
        fold_roles(5, 5)


def test_bad_labels_are_rejected() -> None:
    with pytest.raises(ValueError, match="labels must be"):
        assign_subsets(pd.DataFrame({"image": ["a"], "label": ["down"]}))


def test_identical_files_share_a_subset_even_under_different_subjects() -> None:
    table = pd.DataFrame({
        "image": [f"i{i}" for i in range(30)],
        "label": ["GS", "control"] * 15,
        "subject_id": [f"s{i}" for i in range(30)],
        "sha256": [f"h{i}" for i in range(30)],
    })
    table.loc[[2, 10, 20], "sha256"] = "dup"  # one file copied under three subjects
    table.loc[[5, 7], "sha256"] = None  # not computed: no grouping
    for seed in range(5):
        out = assign_subsets(table, 5, seed)
        assert out.loc[[2, 10, 20], "subset"].nunique() == 1


def test_near_duplicates_share_a_subset_even_after_filtering():
    n = 40
    table = pd.DataFrame({
        "image": [f"/p/{i}.jpg" for i in range(n)],
        "label": ["GS" if i % 2 else "control" for i in range(n)],
        "subject_id": [f"s{i}" for i in range(n)],
        "near_duplicate_of": pd.array([None] * n, dtype="string"),
    })
    pairs = [(3, 17), (4, 30), (9, 11)]
    for a, b in pairs:
        table.loc[b, "near_duplicate_of"] = f"/p/{a}.jpg"
    # Drop a few unrelated rows and re-index, as the study does after alignment failures.
    kept = table.drop(index=[0, 1, 2]).sample(frac=1, random_state=0).reset_index(drop=True)
    for seed in range(5):
        out = assign_subsets(kept, n_folds=5, seed=seed)
        subset = dict(zip(out["image"], out["subset"], strict=True))
        for a, b in pairs:
            assert subset[f"/p/{a}.jpg"] == subset[f"/p/{b}.jpg"]


@st.composite
def single_class_subject_cohorts(draw) -> pd.DataFrame:
    """Both classes have subjects with several photos (each subject in one class only)."""
    rows = []
    for cls in ("GS", "control"):
        sizes = draw(st.lists(st.integers(1, 7), min_size=3, max_size=40))
        for s, k in enumerate(sizes):
            rows += [{"image": f"/p/{cls}_{s}_{j}.jpg", "label": cls, "subject_id": f"{cls}{s}"} for j in range(k)]
    return pd.DataFrame(rows)


@settings(max_examples=150, deadline=None)
@given(table=single_class_subject_cohorts(), seed=st.integers(0, 2**31 - 1), n_folds=st.integers(3, 6))
def test_each_class_is_balanced_within_its_largest_subject(table: pd.DataFrame, seed: int, n_folds: int) -> None:
    """What the paper asks of every subset, for each class separately: the photos of one class differ between any
    two subsets by at most the size of that class's largest subject (a subject cannot be split), whatever the
    other class does."""
    out = assign_subsets(table, n_folds=n_folds, seed=seed)
    for cls in ("GS", "control"):
        mine = out[out["label"] == cls]
        per_subset = mine.groupby("subset").size().reindex(range(n_folds), fill_value=0)
        largest = int(mine.groupby("subject_id").size().max())
        assert per_subset.max() - per_subset.min() <= largest, (cls, per_subset.tolist(), largest)


def test_controls_balanced_when_gs_subjects_are_uneven() -> None:
    """Hand-worked: GS subjects of 4, 1 and 1 photos over 3 subsets leave totals (4, 1, 1); six single-photo
    controls must still be spread 2/2/2, never piled where the GS photos are few."""
    rows = [{"image": f"/g{j}.jpg", "label": "GS", "subject_id": "g0"} for j in range(4)]
    rows += [{"image": "/g4.jpg", "label": "GS", "subject_id": "g1"}, {"image": "/g5.jpg", "label": "GS",
                                                                       "subject_id": "g2"}]
    rows += [{"image": f"/c{j}.jpg", "label": "control", "subject_id": f"c{j}"} for j in range(6)]
    out = assign_subsets(pd.DataFrame(rows), n_folds=3, seed=0)
    ctrl = out[out["label"] == "control"].groupby("subset").size().reindex(range(3), fill_value=0)
    assert sorted(ctrl.tolist()) == [2, 2, 2]
