"""Physicians vs the model on the same photos (Hong et al. 2021, Table 2's physician rows and Fig. 4).

Inputs:

* ``answers``: a DataFrame with one row per (reader, photo): columns ``reader``, ``role`` (e.g. "pediatrician",
  "geneticist"), ``photo``, ``answer`` (``"GS"`` / ``"control"``, case-insensitive; ``1`` / ``0`` also
  accepted) and optionally ``confidence`` (integer 1–5, 5 = most confident).
* ``truth``: the true label of each photo, as a mapping ``photo -> "GS"/"control"/1/0``, a Series indexed
  by photo, or a DataFrame with columns ``photo`` and ``label``.

Statistics:

* :func:`reader_metrics`: per-reader accuracy, sensitivity, specificity, precision, F1.
* :func:`reader_point_vs_band`: whether a reader's (1 − specificity, sensitivity) lies above, inside or below
  the model's ROC 95 % CI band (the paper's criterion: above the upper limit = better than the model).
* :func:`mcnemar_test`: paired correct/incorrect comparison of two raters on the same photos.
* :func:`reader_delong`: DeLong's paired test of a reader's confidence-graded ROC vs the model's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import binom, chi2

from gsscreen.evaluation.metrics import check_labels, confusion_matrix, metrics_from_counts
from gsscreen.evaluation.roc import DelongTest, RocBand, delong_test

__all__ = [
    "EXACT_BELOW",
    "McNemar",
    "answers_to_labels",
    "compare_readers_to_model",
    "mcnemar_test",
    "reader_delong",
    "reader_metrics",
    "reader_point_vs_band",
    "reader_score",
    "truth_series",
]

#: McNemar's test is exact (binomial) when the number of discordant photos is below this, chi-square otherwise.
EXACT_BELOW = 25

_REQUIRED = ("reader", "role", "photo", "answer")


class McNemar(NamedTuple):
    """McNemar's test. ``b``: photos A got right and B wrong; ``c``: A wrong and B right.

    ``statistic`` is ``min(b, c)`` for the exact test and the continuity-corrected chi-square otherwise;
    ``exact`` says which was used.
    """

    statistic: float
    p_value: float
    b: int
    c: int
    exact: bool = False


# --------------------------------------------------------------------------------------------------- labels


def _label_value(v: Any, where: str) -> int:
    """``"GS"``/``"control"``/1/0 -> 1/0; anything else raises naming ``where``."""
    if isinstance(v, str):
        t = v.strip().lower()
        if t == "gs":
            return 1
        if t == "control":
            return 0
    elif isinstance(v, (bool, np.bool_, int, np.integer, float, np.floating)) and v in (0, 1):
        return int(v)
    raise ValueError(f"{where}: expected 'GS' or 'control', got {v!r}")


def answers_to_labels(values: ArrayLike, where: str = "answer") -> np.ndarray:
    """Vector of ``"GS"``/``"control"`` (or 1/0) -> ``(n,)`` int8 1/0; the error names the first bad row."""
    return np.array(
        [_label_value(v, f"{where}[{i}]") for i, v in enumerate(np.asarray(values, dtype=object))], dtype=np.int8
    )


def truth_series(truth: Mapping[Any, Any] | pd.Series | pd.DataFrame) -> pd.Series:
    """Normalise ``truth`` to an int Series (1 GS / 0 control) indexed by photo id (as strings)."""
    if isinstance(truth, pd.DataFrame):
        missing = {"photo", "label"} - set(truth.columns)
        if missing:
            raise ValueError(f"truth table lacks column(s) {sorted(missing)}; it needs 'photo' and 'label'")
        s = pd.Series(truth["label"].to_numpy(), index=truth["photo"].astype(str).to_numpy())
    elif isinstance(truth, pd.Series):
        s = pd.Series(truth.to_numpy(), index=truth.index.astype(str))
    elif isinstance(truth, Mapping):
        s = pd.Series(list(truth.values()), index=[str(k) for k in truth])
    else:
        raise TypeError(f"truth must be a mapping, Series or DataFrame, got {type(truth).__name__}")
    dup = s.index[s.index.duplicated()]
    if len(dup):
        raise ValueError(f"truth lists photo {dup[0]!r} more than once")
    labels = [_label_value(v, f"truth for photo {k!r}") for k, v in s.items()]
    return pd.Series(labels, index=s.index, dtype=np.int8)


def _check_answers(answers: pd.DataFrame, truth: pd.Series) -> pd.DataFrame:
    """Validated copy of ``answers`` with ``photo`` as str and an int ``call`` column (1 = GS)."""
    if not isinstance(answers, pd.DataFrame):
        raise TypeError(f"answers must be a pandas DataFrame, got {type(answers).__name__}")
    missing = [c for c in _REQUIRED if c not in answers.columns]
    if missing:
        raise ValueError(f"answers table lacks column(s) {missing}; needs {list(_REQUIRED)} (+ optional confidence)")
    df = answers.copy()
    df["photo"] = df["photo"].astype(str)
    df["call"] = [
        _label_value(a, f"answer of reader {r!r} for photo {p!r}")
        for r, p, a in zip(df["reader"], df["photo"], df["answer"], strict=True)
    ]
    unknown = ~df["photo"].isin(truth.index)
    if unknown.any():
        row = df[unknown].iloc[0]
        raise ValueError(
            f"reader {row['reader']!r} answered photo {row['photo']!r}, which has no true label "
            f"({int(unknown.sum())} such answer(s))"
        )
    dup = df.duplicated(["reader", "photo"])
    if dup.any():
        row = df[dup].iloc[0]
        raise ValueError(f"reader {row['reader']!r} answered photo {row['photo']!r} more than once")
    roles = df.groupby("reader")["role"].nunique()
    if (roles > 1).any():
        raise ValueError(f"reader {roles[roles > 1].index[0]!r} is listed with more than one role")
    if "confidence" in df.columns:
        conf = pd.to_numeric(df["confidence"], errors="coerce")
        bad = conf.notna() & ~conf.isin([1, 2, 3, 4, 5])
        bad |= conf.isna() & df["confidence"].notna()
        if bad.any():
            row = df[bad].iloc[0]
            raise ValueError(
                f"confidence of reader {row['reader']!r} for photo {row['photo']!r} must be an integer "
                f"1–5, got {row['confidence']!r}"
            )
        df["confidence"] = conf
    return df


# --------------------------------------------------------------------------------------------------- metrics


def reader_metrics(answers: pd.DataFrame, truth: Mapping[Any, Any] | pd.Series | pd.DataFrame) -> pd.DataFrame:
    """Per-reader accuracy, sensitivity, specificity, precision and F1.

    Returns:
        one row per reader (in order of first appearance): ``reader, role, n, n_missing`` (photos with a
        true label the reader did not answer), ``tp, fp, tn, fn, accuracy, sensitivity, specificity,
        precision, f1`` (``nan`` where undefined).
    """
    t = truth_series(truth)
    df = _check_answers(answers, t)
    rows = []
    for reader, g in df.groupby("reader", sort=False):
        y = t.loc[g["photo"]].to_numpy()
        (tn, fp), (fn, tp) = confusion_matrix(y, g["call"].to_numpy()).tolist()
        m = metrics_from_counts(tp, fp, tn, fn)
        rows.append(
            {
                "reader": reader,
                "role": g["role"].iloc[0],
                "n": len(g),
                "n_missing": int(len(t) - len(g)),
                "tp": tp,
                "fp": fp,
                "tn": tn,
                "fn": fn,
                "accuracy": m["accuracy"],
                "sensitivity": m["recall"],
                "specificity": m["specificity"],
                "precision": m["precision"],
                "f1": m["f1"],
            }
        )
    return pd.DataFrame(rows)


def _band_arrays(band: RocBand | Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(band, RocBand):
        sp, lo, hi = band.specificities, band.lo, band.hi
    elif isinstance(band, Mapping) and {"specificities", "lo", "hi"} <= set(band):
        sp, lo, hi = (np.asarray(band[k], dtype=np.float64) for k in ("specificities", "lo", "hi"))
    else:
        raise TypeError("band must be a RocBand or a dict with 'specificities', 'lo' and 'hi'")
    order = np.argsort(sp, kind="stable")
    return sp[order], lo[order], hi[order]


def reader_point_vs_band(sens: float, spec: float, band: RocBand | Mapping[str, Any]) -> dict[str, Any]:
    """Where a reader's operating point lies relative to the model's ROC confidence band.

    The band's limits are linearly interpolated at the reader's specificity (the band is tabulated on a
    specificity grid, 101 points by default). A point counts as inside when ``band_lo <= sens <= band_hi``.

    Returns:
        ``{"inside": bool, "position": "above" | "inside" | "below", "band_lo", "band_hi"}``;
        "above" means better than the model at that specificity, "below" worse (the paper's criterion).
    """
    sens, spec = float(sens), float(spec)
    if not (0.0 <= sens <= 1.0 and 0.0 <= spec <= 1.0):
        raise ValueError(f"sensitivity and specificity must lie in [0, 1], got {sens!r}, {spec!r}")
    sp, lo, hi = _band_arrays(band)
    b_lo = float(np.interp(spec, sp, lo))
    b_hi = float(np.interp(spec, sp, hi))
    position = "above" if sens > b_hi else "below" if sens < b_lo else "inside"
    return {"inside": position == "inside", "position": position, "band_lo": b_lo, "band_hi": b_hi}


# --------------------------------------------------------------------------------------------------- tests


def mcnemar_test(y: ArrayLike, call_a: ArrayLike, call_b: ArrayLike, exact: bool | None = None) -> McNemar:
    """McNemar's test of two raters' correct/incorrect calls on the same photos.

    Args:
        y: ``(n,)`` truth, 1 GS / 0 control. call_a, call_b: ``(n,)`` calls, 1 GS / 0 control (e.g. a reader's
            answers and the model's ``p >= threshold`` at its operating threshold).
        exact: ``None`` picks the rule below; ``True``/``False`` force the exact / chi-square version.

    Rule: with ``b + c`` discordant photos, the exact two-sided binomial test
    ``p = min(1, 2·P[Bin(b+c, ½) <= min(b, c)])`` is used when ``b + c < 25`` (:data:`EXACT_BELOW`), where the
    chi-square approximation is poor; otherwise ``(max(|b − c| − 1, 0))² / (b + c)`` (continuity-corrected)
    against chi-square with 1 degree of freedom. No discordant photos gives ``p = 1``.
    """
    yy = check_labels(y)
    a = check_labels(call_a, "call_a")
    bcall = check_labels(call_b, "call_b")
    if not (a.shape == bcall.shape == yy.shape):
        raise ValueError(f"y, call_a and call_b must have the same length, got {yy.size}, {a.size}, {bcall.size}")
    ok_a = a == yy
    ok_b = bcall == yy
    b = int(np.sum(ok_a & ~ok_b))
    c = int(np.sum(~ok_a & ok_b))
    n = b + c
    use_exact = n < EXACT_BELOW if exact is None else bool(exact)
    if n == 0:
        return McNemar(0.0, 1.0, b, c, use_exact)
    if use_exact:
        p = min(1.0, 2.0 * float(binom.cdf(min(b, c), n, 0.5)))
        return McNemar(float(min(b, c)), p, b, c, True)
    stat = max(abs(b - c) - 1.0, 0.0) ** 2 / n
    return McNemar(float(stat), float(chi2.sf(stat, 1)), b, c, False)


def reader_score(answers: ArrayLike, confidences: ArrayLike) -> np.ndarray:
    """Turn answer + 1–5 confidence into one 10-level score for a reader's ROC. ``(n,)`` float.

    GS with confidence ``c`` -> ``5 + c`` (6…10); control with confidence ``c`` -> ``6 − c`` (1…5). So 1 =
    "surely control", 5 / 6 = "unsure, leaning control / GS", 10 = "surely GS": the order matches P(GS).
    """
    lab = answers_to_labels(answers)
    conf = np.asarray(confidences, dtype=np.float64)
    if conf.shape != lab.shape:
        raise ValueError(f"confidences has shape {conf.shape} but answers has {lab.shape}")
    bad = ~np.isin(conf, (1, 2, 3, 4, 5))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"confidences must be integers 1–5; found {conf[i]!r} at index {i}")
    return np.where(lab == 1, 5.0 + conf, 6.0 - conf)


def reader_delong(y: ArrayLike, confidences: ArrayLike, p_model: ArrayLike, answers: ArrayLike) -> DelongTest:
    """DeLong's paired test of a reader's confidence-graded ROC against the model's, on the same photos.

    The reader's score is :func:`reader_score` (answer + confidence, 10 levels). Returns
    ``DelongTest(z, p_value, auc1 = reader's AUC, auc2 = model's AUC)``; ``z > 0`` favours the reader.
    """
    return delong_test(y, reader_score(answers, confidences), p_model)


# --------------------------------------------------------------------------------------------------- table


def compare_readers_to_model(
    answers: pd.DataFrame,
    truth: Mapping[Any, Any] | pd.Series | pd.DataFrame,
    p_model: Mapping[Any, float] | pd.Series,
    threshold: float,
    band: RocBand | Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Table 2 / Fig. 4 in one table: each reader against the model on that reader's photos.

    Adds to :func:`reader_metrics` the model's accuracy/sensitivity/specificity on the same photos at
    ``threshold`` (``p >= threshold`` = GS), McNemar's test (reader = A, model = B), the reader's position
    relative to ``band`` (when given) and, for readers who gave confidences for all their photos, DeLong's
    test of the reader's 10-level score vs the model (``delong_z``, ``delong_p``, ``reader_auc``, ``model_auc``).
    """
    t = truth_series(truth)
    df = _check_answers(answers, t)
    pm = p_model if isinstance(p_model, pd.Series) else pd.Series(dict(p_model))
    pm.index = pm.index.astype(str)
    lacking = sorted(set(df["photo"]) - set(pm.index))
    if lacking:
        raise ValueError(f"the model has no P(GS) for photo {lacking[0]!r} ({len(lacking)} photo(s) missing)")
    base = reader_metrics(answers, t).set_index("reader")
    rows = []
    for reader, g in df.groupby("reader", sort=False):
        y = t.loc[g["photo"]].to_numpy()
        p = pm.loc[g["photo"]].to_numpy(dtype=np.float64)
        model_call = (p >= threshold).astype(np.int8)
        (tn, fp), (fn, tp) = confusion_matrix(y, model_call).tolist()
        mm = metrics_from_counts(tp, fp, tn, fn)
        mc = mcnemar_test(y, g["call"].to_numpy(), model_call)
        row: dict[str, Any] = dict(base.loc[reader])
        row.update(
            reader=reader,
            model_accuracy=mm["accuracy"],
            model_sensitivity=mm["recall"],
            model_specificity=mm["specificity"],
            mcnemar_b=mc.b,
            mcnemar_c=mc.c,
            mcnemar_statistic=mc.statistic,
            mcnemar_p=mc.p_value,
            mcnemar_exact=mc.exact,
        )
        if band is not None and not (math.isnan(row["sensitivity"]) or math.isnan(row["specificity"])):
            pos = reader_point_vs_band(row["sensitivity"], row["specificity"], band)
            row.update(band_position=pos["position"], band_lo=pos["band_lo"], band_hi=pos["band_hi"])
        has_conf = "confidence" in g.columns and g["confidence"].notna().all()
        if has_conf and 0 < y.sum() < y.size and min(y.sum(), y.size - y.sum()) >= 2:
            d = reader_delong(y, g["confidence"].to_numpy(), p, g["answer"].to_numpy())
            row.update(delong_z=d.z, delong_p=d.p_value, reader_auc=d.auc1, model_auc=d.auc2)
        rows.append(row)
    out = pd.DataFrame(rows)
    first = ["reader", "role"]
    return out[first + [c for c in out.columns if c not in first]]
