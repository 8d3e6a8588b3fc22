"""The demographics table of a study (the paper's Table 1): age and sex per group, with the usual tests.

- Age: mean ± SD (sample SD, ddof = 1) in months and years (months / 12), and an independent-samples t-test
  GS vs control: Student's (pooled variance) by default, Welch's (unequal variances, Welch–Satterthwaite df)
  as an option. Two-sided p-values.
- Sex: male / female / unknown counts, and Pearson's chi-squared test of independence on the 2×2 table
  (GS, control) × (male, female), without continuity correction by default — the "Pearson Chi-Square" row
  of SPSS; Yates' correction as an option. Fisher's exact p is added when an expected count is under 5.

The tests are scipy's (``scipy.stats.ttest_ind``, ``scipy.stats.chi2_contingency``); this module only collapses
rows to children, picks the variant and words the result.

Unit of analysis: one child counts once. When the table has real subject ids and some child has several photos,
rows are first collapsed to one per subject (mean age over the child's photos; the child's sex) — counting photos
would inflate N and shrink p. ``unit="photo"`` forces one row per photo. The chosen unit is in ``notes``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from gsscreen.cohort import CONTROL, GS, normalise_label, normalise_sex

GROUPS = (GS, CONTROL, "all")


@dataclass
class GroupStats:
    """One column of the table. Ages in months; SD is the sample SD (ddof = 1); None when not computable."""

    n: int
    n_age: int
    age_mean_months: float | None
    age_sd_months: float | None
    male: int
    female: int
    sex_unknown: int

    @property
    def age_mean_years(self) -> float | None:
        return None if self.age_mean_months is None else self.age_mean_months / 12.0

    @property
    def age_sd_years(self) -> float | None:
        return None if self.age_sd_months is None else self.age_sd_months / 12.0


@dataclass
class TestResult:
    """A two-sided test: ``statistic`` (t or chi²), degrees of freedom ``df``, ``p_value``, the number of
    observations used ``n``, and test-specific extras (e.g. ``mean_difference``, ``expected``, ``fisher_p``)."""

    test: str
    statistic: float
    df: float
    p_value: float
    n: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Demographics:
    """Per-group statistics (keys ``"GS"``, ``"control"``, ``"all"``), the two tests (None when not computable:
    see ``notes``), the unit counted (``"subject"`` or ``"photo"``) and notes for the reader."""

    groups: dict[str, GroupStats]
    age_test: TestResult | None
    sex_test: TestResult | None
    unit: str
    notes: list[str] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        """A display table (strings): rows N / age / sex, columns GS, control, all, test, p."""

        def mean_sd(m: float | None, s: float | None, digits: int) -> str:
            if m is None:
                return "–"
            return f"{m:.{digits}f} ± {s:.{digits}f}" if s is not None else f"{m:.{digits}f}"

        def pct(k: int, g: GroupStats) -> str:
            known = g.male + g.female
            return f"{k} ({100.0 * k / known:.1f}%)" if known else str(k)

        rows: dict[str, list[str]] = {}
        unit = "children" if self.unit == "subject" else "photos"
        rows[f"N ({unit})"] = [str(self.groups[g].n) for g in GROUPS] + ["", ""]
        at = self.age_test
        rows["Age, months, mean ± SD"] = [mean_sd(self.groups[g].age_mean_months, self.groups[g].age_sd_months, 1)
                                          for g in GROUPS] + ([at.test, format_p(at.p_value)] if at else ["", ""])
        rows["Age, years, mean ± SD"] = [mean_sd(self.groups[g].age_mean_years, self.groups[g].age_sd_years, 2)
                                         for g in GROUPS] + ["", ""]
        st = self.sex_test
        rows["Sex, male, n (%)"] = [pct(self.groups[g].male, self.groups[g]) for g in GROUPS] + (
            [st.test, format_p(st.p_value)] if st else ["", ""]
        )
        rows["Sex, female, n (%)"] = [pct(self.groups[g].female, self.groups[g]) for g in GROUPS] + ["", ""]
        rows["Sex, unknown, n"] = [str(self.groups[g].sex_unknown) for g in GROUPS] + ["", ""]
        return pd.DataFrame.from_dict(rows, orient="index", columns=[*GROUPS, "test", "p"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (NaN / inf become None)."""

        def group(g: GroupStats) -> dict[str, Any]:
            d = asdict(g)
            d["age_mean_years"], d["age_sd_years"] = g.age_mean_years, g.age_sd_years
            return d

        out = {
            "unit": self.unit,
            "groups": {k: group(v) for k, v in self.groups.items()},
            "age_test": asdict(self.age_test) if self.age_test else None,
            "sex_test": asdict(self.sex_test) if self.sex_test else None,
            "notes": list(self.notes),
        }
        return _jsonable(out)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    return v


def format_p(p: float) -> str:
    """p-value for a table: 3 decimals, ``<0.001`` below that."""
    if p is None or not math.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def t_test(a: np.ndarray, b: np.ndarray, welch: bool = False) -> TestResult:
    """Independent-samples two-sided t-test of mean(a) = mean(b); a, b are 1-D samples (n >= 2 each).

    Student: pooled variance s² = ((na-1)sa² + (nb-1)sb²) / (na+nb-2), t = (ma-mb) / (s·sqrt(1/na + 1/nb)),
    df = na+nb-2. Welch: t = (ma-mb) / sqrt(sa²/na + sb²/nb), df by Welch–Satterthwaite.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        raise ValueError(f"t-test needs at least 2 values per group, got {na} and {nb}")
    if a.var(ddof=1) == 0 and b.var(ddof=1) == 0:
        raise ValueError("t-test undefined: no variation within either group")
    res = stats.ttest_ind(a, b, equal_var=not welch)
    diff = float(a.mean() - b.mean())
    se = abs(diff / float(res.statistic)) if res.statistic != 0 else float(res.standard_error)
    name = "Welch's t-test" if welch else "Student's t-test"
    return TestResult(name, float(res.statistic), float(res.df), float(res.pvalue), na + nb,
                      {"mean_difference": diff, "se": se})


def chi2_test(observed: np.ndarray, yates: bool = False) -> TestResult:
    """Pearson's chi-squared test of independence on an (r, c) table of counts.

    Expected E = row total × column total / N; chi² = Σ (O - E)² / E; df = (r-1)(c-1). With ``yates`` (only
    applied when df = 1): Σ (max(|O - E| - 0.5, 0))² / E. Raises ValueError when a row or column is all zero.
    """
    o = np.asarray(observed, dtype=np.float64)
    if o.ndim != 2 or min(o.shape) < 2:
        raise ValueError(f"need an (r, c) table with r, c >= 2, got shape {o.shape}")
    rows, cols, n = o.sum(axis=1), o.sum(axis=0), o.sum()
    if (rows == 0).any() or (cols == 0).any():
        raise ValueError("chi-squared undefined: a row or column of the table is all zero")
    res = stats.chi2_contingency(o, correction=yates)
    corrected = yates and int(res.dof) == 1
    name = "Pearson chi-squared" + (" (Yates-corrected)" if corrected else "")
    return TestResult(name, float(res.statistic), float(res.dof), float(res.pvalue), int(n),
                      {"expected": np.asarray(res.expected_freq).tolist()})


def _per_subject(df: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    # One row per subject: its label (dropped if conflicting), mean age, its sex (unknown if conflicting).
    def one(g: pd.DataFrame) -> pd.Series:
        labs = set(g["label"].dropna())
        sexes = set(g["sex"].dropna())
        return pd.Series(
            {
                "label": labs.pop() if len(labs) == 1 else None,
                "age": g["age"].mean() if g["age"].notna().any() else np.nan,
                "sex": sexes.pop() if len(sexes) == 1 else None,
                "sex_conflict": len(sexes) > 1,
                "label_conflict": len(labs) > 1,
            }
        )

    out = df.groupby("subject_id", sort=False)[["label", "age", "sex"]].apply(one).reset_index()
    if out["label_conflict"].any():
        notes.append(f"{int(out['label_conflict'].sum())} subject(s) have photos with both labels: left out")
    if out["sex_conflict"].any():
        notes.append(f"{int(out['sex_conflict'].sum())} subject(s) have photos with different sex values: "
                     "counted as unknown")
    return out[out["label"].notna()]


def demographics_table(
    table: pd.DataFrame, welch: bool = False, yates: bool = False, unit: str = "auto"
) -> Demographics:
    """Table 1 from a cohort table (e.g. ``Cohort.table`` or ``Cohort.ok_table()``).

    Args:
        table: needs ``label`` (GS / control or a synonym); reads ``age_months`` and ``sex`` when present, and
            ``subject_id`` (+ ``subject_inferred``) to count children rather than photos.
        welch: Welch's t-test instead of Student's.
        yates: Yates' continuity correction for the 2×2 chi-squared.
        unit: ``"auto"`` (per subject when real subject ids repeat, else per photo), ``"subject"`` or ``"photo"``.

    Raises:
        ValueError: no ``label`` column, or an unknown ``unit``.
    """
    if "label" not in table.columns:
        raise ValueError(f"demographics need a 'label' column; found: {', '.join(map(str, table.columns))}")
    if unit not in ("auto", "subject", "photo"):
        raise ValueError(f"unit must be 'auto', 'subject' or 'photo', got {unit!r}")
    notes: list[str] = []
    has_age = "age_months" in table.columns
    has_sex = "sex" in table.columns

    df = pd.DataFrame({"label": [normalise_label(v) for v in table["label"]]}, index=table.index)
    bad_label = df["label"].isna()
    if bad_label.any():
        notes.append(f"{int(bad_label.sum())} row(s) without a valid GS/control label: left out")
    if has_age:
        age = pd.to_numeric(table["age_months"], errors="coerce").astype(float)
        df["age"] = age.where(age >= 0)
    else:
        df["age"] = np.nan
    df["sex"] = [normalise_sex(v) for v in table["sex"]] if has_sex else None
    df = df[~bad_label]

    given = (
        table.loc[df.index, "subject_id"].astype(str)
        if "subject_id" in table.columns
        else None
    )
    if given is not None and "subject_inferred" in table.columns:
        real = ~table.loc[df.index, "subject_inferred"].astype(bool)
    else:
        real = pd.Series(given is not None, index=df.index)
    repeats = given is not None and bool(given[real].duplicated().any())
    chosen = unit if unit != "auto" else ("subject" if repeats else "photo")
    if chosen == "subject":
        if given is None:
            raise ValueError("unit='subject' needs a 'subject_id' column")
        df = df.assign(subject_id=given.where(real, "photo:" + df.index.astype(str)))
        n_photos = len(df)
        df = _per_subject(df, notes)
        notes.append(f"counted per child: {len(df)} subjects from {n_photos} photos (mean age over each child's "
                     "photos)")
    else:
        notes.append("counted per photo" + (" (no subject repeats: photos = children)" if given is not None and
                                            not repeats else " (no subject ids: a child with several photos "
                                            "counts several times)"))

    groups: dict[str, GroupStats] = {}
    for g in GROUPS:
        sub = df if g == "all" else df[df["label"] == g]
        ages = sub["age"].dropna().to_numpy(dtype=float)
        groups[g] = GroupStats(
            n=len(sub),
            n_age=len(ages),
            age_mean_months=float(ages.mean()) if len(ages) else None,
            age_sd_months=float(ages.std(ddof=1)) if len(ages) > 1 else None,
            male=int((sub["sex"] == "male").sum()),
            female=int((sub["sex"] == "female").sum()),
            sex_unknown=int(sub["sex"].isna().sum()),
        )

    age_test = None
    if not has_age:
        notes.append("no age_months column: no age statistics")
    else:
        missing = {g: groups[g].n - groups[g].n_age for g in (GS, CONTROL)}
        if sum(missing.values()):
            notes.append(f"age missing for {sum(missing.values())} of {len(df)} ({missing[GS]} GS, "
                         f"{missing[CONTROL]} control): excluded from the age statistics and t-test")
        try:
            age_test = t_test(df.loc[df["label"] == GS, "age"].dropna().to_numpy(),
                              df.loc[df["label"] == CONTROL, "age"].dropna().to_numpy(), welch=welch)
        except ValueError as exc:
            notes.append(f"no age test: {exc}")

    sex_test = None
    if not has_sex:
        notes.append("no sex column: no sex statistics")
    else:
        unknown = {g: groups[g].sex_unknown for g in (GS, CONTROL)}
        if sum(unknown.values()):
            notes.append(f"sex unknown for {sum(unknown.values())} of {len(df)} ({unknown[GS]} GS, "
                         f"{unknown[CONTROL]} control): excluded from the chi-squared test")
        observed = np.array([[groups[g].male, groups[g].female] for g in (GS, CONTROL)])
        try:
            sex_test = chi2_test(observed, yates=yates)
        except ValueError as exc:
            notes.append(f"no sex test: {exc}")
        else:
            sex_test.extra["observed"] = observed.tolist()
            if (np.asarray(sex_test.extra["expected"]) < 5).any():
                sex_test.extra["fisher_p"] = float(stats.fisher_exact(observed)[1])
                notes.append("an expected sex count is under 5: the chi-squared approximation is poor; "
                             f"Fisher's exact test p = {format_p(sex_test.extra['fisher_p'])}")
    return Demographics(groups=groups, age_test=age_test, sex_test=sex_test, unit=chosen, notes=notes)
