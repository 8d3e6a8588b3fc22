"""Cross-validation subsets: stratified by class, grouped by subject, balanced between GS and controls.

The paper splits the photos into five subsets, each balanced between GS and controls; fold ``k`` tests on subset
``k``, validates on subset ``k + 1`` and trains on the other three (train:val:test = 3:1:1). Here photos of one
subject never land in two subsets (otherwise the model could recognise the child instead of the syndrome).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gsscreen.groups import split_groups

LABELS = ("GS", "control")


def _subject_keys(table: pd.DataFrame) -> pd.Series:
    """One group key per photo (see :func:`gsscreen.groups.split_groups`): subject ids, identical bytes,
    near-duplicate chains and likely-same-child clusters, joined by one union-find."""
    return split_groups(table)


def assign_subsets(table: pd.DataFrame, n_folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """Return a copy of ``table`` with an int column ``subset`` in ``0 .. n_folds - 1``.

    Args:
        table: one row per photo with columns ``image`` and ``label`` (``GS`` / ``control``) and optionally
            ``subject_id`` (missing = the photo is its own subject); ``sha256``, ``near_duplicate_of`` and
            ``identity_cluster`` (:func:`gsscreen.identity.likely_same_child`) group photos further.
        n_folds: number of subsets.
        seed: seeds the order in which equally sized subject groups are dealt out.

    Each class is dealt out separately (stratified). Within a class, subject groups are taken largest first (ties
    in random order from ``seed``) and each goes to the subset holding the fewest photos of that class so far,
    ties to the subset with the fewest photos overall, then the lowest index (greedy balancing). With one photo
    per subject every subset's class counts are within 1 of each other. A subject with photos in both classes
    (a data error) is dealt out as one group under its majority label.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds={n_folds}: need at least 2 subsets")
    missing = {"image", "label"} - set(table.columns)
    if missing:
        raise ValueError(f"photo table lacks column(s) {sorted(missing)}")
    bad = sorted(set(table["label"].astype(str)) - set(LABELS))
    if bad:
        raise ValueError(f"labels must be 'GS' or 'control'; found {bad}")
    out = table.copy().reset_index(drop=True)
    keys = _subject_keys(out)
    is_gs = (out["label"] == "GS").to_numpy()

    groups = pd.DataFrame({"key": keys, "gs": is_gs.astype(int), "ctrl": (~is_gs).astype(int)})
    per = groups.groupby("key", sort=True)[["gs", "ctrl"]].sum()
    per["n"] = per["gs"] + per["ctrl"]
    per["cls"] = np.where(per["gs"] >= per["ctrl"], 0, 1)  # 0 = GS, 1 = control (majority label)
    rng = np.random.default_rng(seed)
    per["tie"] = rng.permutation(len(per))

    counts = np.zeros((n_folds, 2), dtype=np.int64)  # photos per subset and class
    subset_of: dict[str, int] = {}
    # GS first, then controls: the controls' tie-break on subset totals then evens out the GS remainders.
    for cls in (0, 1):
        grp = per[per["cls"] == cls].sort_values(["n", "tie"], ascending=[False, True])
        for key, row in grp.iterrows():
            order = np.lexsort((np.arange(n_folds), counts.sum(axis=1), counts[:, cls]))
            s = int(order[0])
            subset_of[str(key)] = s
            counts[s, 0] += int(row["gs"])
            counts[s, 1] += int(row["ctrl"])
    out["subset"] = keys.map(subset_of).astype(int).to_numpy()
    return out


def fold_roles(k: int, n_folds: int = 5) -> tuple[list[int], int, int]:
    """Subsets of fold ``k`` (0-based): ``(train_subsets, val_subset, test_subset)``.

    Fold ``k`` tests on subset ``k``, validates on subset ``(k + 1) % n_folds`` and trains on the others, so over
    the ``n_folds`` folds every subset (hence every photo) is tested exactly once.
    """
    if not 0 <= k < n_folds:
        raise ValueError(f"fold {k} out of range 0..{n_folds - 1}")
    if n_folds < 3:
        raise ValueError(f"n_folds={n_folds}: need at least 3 (train, validation and test subsets)")
    test = k
    val = (k + 1) % n_folds
    train = [s for s in range(n_folds) if s not in (test, val)]
    return train, val, test


def fold_masks(subsets: np.ndarray, k: int, n_folds: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks ``(train, val, test)`` over photos for fold ``k`` given each photo's ``subset``."""
    train, val, test = fold_roles(k, n_folds)
    subsets = np.asarray(subsets)
    return np.isin(subsets, train), subsets == val, subsets == test


def split_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Photos per subset and class (rows = subset, columns = GS, control, total, subjects)."""
    keys = _subject_keys(table)
    counts = pd.crosstab(table["subset"], table["label"]).reindex(columns=list(LABELS), fill_value=0)
    counts["total"] = counts.sum(axis=1)
    counts["subjects"] = keys.groupby(table["subset"]).nunique()
    return counts
