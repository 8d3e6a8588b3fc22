"""The groups a cross-validation split must keep together: one union-find over every reason two photos belong together.

A photo joins the group of every other photo that

- has the same ``subject_id`` (given by the user);
- has identical bytes (``sha256`` from :func:`gsscreen.cohort.load_cohort`);
- is a perceptual near-duplicate of it (``near_duplicate_of``: every partner, ``NEAR_DUPLICATE_SEP``-joined image
  paths; chains A ~ C ~ B end in one group);
- sits in the same likely-same-child cluster (``identity_cluster``, from :func:`gsscreen.identity.likely_same_child`).

:func:`split_groups` returns one key per photo; :func:`gsscreen.training.splits.assign_subsets` deals out whole groups.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

NEAR_DUPLICATE_SEP = " | "


class UnionFind:
    """Disjoint sets over hashable items: ``union(a, b)``, ``find(a)`` (path halving; the smaller root wins,
    so the result does not depend on the order of unions)."""

    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}

    def find(self, a: Any) -> Any:
        parent = self.parent
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(self, a: Any, b: Any) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        lo, hi = (ra, rb) if str(ra) <= str(rb) else (rb, ra)
        self.parent[hi] = lo


def split_groups(table: pd.DataFrame) -> pd.Series:
    """One group key (str) per row of ``table`` (same index): rows with equal keys must share a subset.

    Uses the columns present among ``subject_id``, ``sha256``, ``near_duplicate_of``, ``identity_cluster``; a row
    without a subject id is its own subject (keyed by its image path). The key of a group is its smallest member
    key, so it does not depend on row order.
    """
    if "subject_id" in table.columns:
        sid = table["subject_id"]
        missing = sid.isna() | (sid.astype(str).str.strip() == "")
        keys = ("s:" + sid.astype(str)).where(~missing, "i:" + table["image"].astype(str))
    else:
        keys = "i:" + table["image"].astype(str)
    extra = [c for c in ("sha256", "near_duplicate_of", "identity_cluster") if c in table.columns]
    if not extra:
        return keys
    uf = UnionFind()
    for k in keys:
        uf.find(k)

    def union_by(col: pd.Series) -> None:
        first: dict[str, str] = {}
        for key, value in zip(keys, col, strict=True):
            if pd.isna(value):
                continue
            v = str(value)
            if v in first:
                uf.union(first[v], key)
            else:
                first[v] = key

    if "sha256" in table.columns:
        union_by(table["sha256"])
    if "identity_cluster" in table.columns:
        union_by(table["identity_cluster"])
    if "near_duplicate_of" in table.columns:
        # Keyed by image path, so filtered or re-indexed copies of the cohort table still match.
        by_image = dict(zip(table["image"].astype(str), keys, strict=True))
        for key, others in zip(keys, table["near_duplicate_of"], strict=True):
            if pd.isna(others):
                continue
            for other in str(others).split(NEAR_DUPLICATE_SEP):
                if other in by_image:
                    uf.union(key, by_image[other])
    return keys.map(uf.find)
