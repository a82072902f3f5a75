"""Building blocks of the claim verdicts: effects with CIs and tests, and how they become verdicts.

An :class:`Effect` is one measured quantity a verdict rests on: the mean of per-unit values
(one value per seed-level comparison, e.g. the relative gain of a long-range model over its
short-range twin on one split and seed) with a Student-t 95 % CI and a two-sided
one-sample t-test against the null value — or, for ``paired_structure_effect``, the mean
per-structure difference between two sets of trials on the same test structures with a
Wilcoxon signed-rank test. Ratios are averaged on a log scale (geometric mean, CI and test
of the log).

An effect is *significant* in one direction when its p-value, multiplied by the number of
metrics the rule tests (Bonferroni), is below ``ALPHA`` (see docs/analysis.md, "Claim
verdicts"). :func:`combine_metrics` turns one verdict per metric into the claim's verdict;
:class:`Claim`, :class:`Precondition` and :class:`ClaimSet` are what ``claims`` returns.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from farfield.analysis.stats import CONFIDENCE, mean_ci, one_sample_test, paired_test, quietly
from scipy import stats

__all__ = ["ALPHA", "CONTRADICTED", "INCONCLUSIVE", "SUPPORTED", "VERDICTS", "Claim", "ClaimSet", "Effect",
           "Precondition", "claims_table", "combine_metrics", "difference_effect", "effect_over_units",
           "paired_structure_effect", "ratio_effect"]

ALPHA = 0.05
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE)


def _clean(value):
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


@dataclass
class Effect:
    """One measured effect: ``value`` (mean, or geometric mean for ratios) in ``unit`` with its
    95 % CI ``[ci_low, ci_high]``, ``n`` units, ``test`` and two-sided ``p_value`` against
    ``null`` (0 for differences and gains, 1 for ratios, a threshold for spreads).
    ``basis``: what one unit is; ``run_ids``: the trials the effect rests on."""

    name: str
    metric: str
    value: float
    ci_low: float
    ci_high: float
    unit: str
    n: int
    test: str
    p_value: float
    null: float = 0.0
    basis: str = ""
    run_ids: list[str] = field(default_factory=list)

    def direction(self, n_tests: int = 1) -> int:
        """+1 / −1 when significantly above / below ``null`` at ``ALPHA`` after a Bonferroni
        factor ``n_tests``; 0 otherwise (also when untestable)."""
        if not math.isfinite(self.p_value) or not math.isfinite(self.value) or self.p_value * n_tests >= ALPHA:
            return 0
        return int(np.sign(self.value - self.null))

    def text(self) -> str:
        """``+0.12 (95 % CI +0.05 to +0.19) fraction`` (``1.7 (… 1.4 to 2.0) ×`` for ratios), for tables."""
        if not math.isfinite(self.value):
            return "n/a (no data)"
        number = "{:+.3g}" if self.null == 0 else "{:.3g}"  # signed differences; plain ratios and spreads
        ci = (f" (95 % CI {number.format(self.ci_low)} to {number.format(self.ci_high)})"
              if math.isfinite(self.ci_low) and math.isfinite(self.ci_high) else " (no CI: < 2 units)")
        return f"{number.format(self.value)}{ci} {self.unit}".strip()

    def to_dict(self) -> dict:
        data = {key: _clean(value) for key, value in asdict(self).items()}
        data["run_ids"] = list(self.run_ids)
        return data


def _run_ids(runs) -> list[str]:
    found: set[str] = set()
    for item in runs:
        found.update([item] if isinstance(item, str) else item)
    return sorted(found)


def effect_over_units(name: str, metric: str, values, unit: str, basis: str, runs=(), null: float = 0.0) -> Effect:
    """Mean of ``values`` (one per unit) with a Student-t 95 % CI and a one-sample t-test
    against ``null``. ``runs``: run ids (or lists of them) the units rest on."""
    x = np.asarray(values, dtype=np.float64)
    mean, half, n = mean_ci(x)
    p_value, test = one_sample_test(x[np.isfinite(x)] - null)
    return Effect(name, metric, mean, mean - half, mean + half, unit, n, test, p_value, null, basis, _run_ids(runs))


def ratio_effect(name: str, metric: str, ratios, basis: str, runs=(), null: float = 1.0,
                 unit: str = "× (ratio)") -> Effect:
    """Geometric mean of positive ``ratios`` with the CI and one-sample t-test of their
    logarithms against ``log(null)`` (non-positive or non-finite ratios are dropped)."""
    r = np.asarray(ratios, dtype=np.float64)
    logs = np.log(r[np.isfinite(r) & (r > 0)])
    mean, half, n = mean_ci(logs)
    p_value, test = one_sample_test(logs - math.log(null))
    return Effect(name, metric, math.exp(mean) if n else float("nan"), math.exp(mean - half), math.exp(mean + half),
                  unit, n, f"{test} on log ratio", p_value, null, basis, _run_ids(runs))


def difference_effect(name: str, metric: str, values_a, values_b, unit: str, basis: str, runs=(),
                      log: bool = False) -> Effect:
    """Mean of ``values_a`` minus mean of ``values_b`` (two independent sets of units) with
    Welch's 95 % CI and two-sided p. ``log``: the values are logarithms of errors; the effect
    is reported as the ratio ``exp(difference)`` (null 1) with the CI exponentiated."""
    a, b = (np.asarray(v, dtype=np.float64) for v in (values_a, values_b))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    nan = float("nan")
    value, low, high, p_value = nan, nan, nan, nan
    if len(a) and len(b):
        value = float(a.mean() - b.mean())
    if len(a) >= 2 and len(b) >= 2 and (np.ptp(a) > 0 or np.ptp(b) > 0):
        result = quietly(stats.ttest_ind, a, b, equal_var=False)
        interval = result.confidence_interval(CONFIDENCE)
        low, high, p_value = float(interval.low), float(interval.high), float(result.pvalue)
    test = "welch t" + (" on log errors" if log else "")
    if log:
        value, low, high = math.exp(value) if len(a) and len(b) else nan, math.exp(low), math.exp(high)
    n = len(a) + len(b) if len(a) and len(b) else 0  # no effect without both sides
    return Effect(name, metric, value, low, high, unit, n, test, p_value, 1.0 if log else 0.0, basis, _run_ids(runs))


def paired_structure_effect(structures: pd.DataFrame, runs_a, runs_b, column: str, name: str, unit: str) -> Effect:
    """Per test structure, mean ``column`` over the trials ``runs_a`` minus the mean over
    ``runs_b`` (seed-averaged on each side, matched on ``split_hash`` and ``structure_id``):
    the mean difference, its Student-t 95 % CI and a Wilcoxon signed-rank p-value."""
    keys = ["split_hash", "structure_id"]
    runs_a, runs_b = _run_ids(runs_a), _run_ids(runs_b)
    if structures.empty or column not in structures:
        return Effect(name, column, float("nan"), float("nan"), float("nan"), unit, 0, "wilcoxon signed-rank",
                      float("nan"), 0.0, "paired over test structures", runs_a + runs_b)
    side = [structures[structures["run_id"].isin(runs)].groupby(keys)[column].mean() for runs in (runs_a, runs_b)]
    both = pd.concat(side, axis=1, keys=["a", "b"], join="inner").dropna()
    difference = (both["a"] - both["b"]).to_numpy()
    mean, half, n = mean_ci(difference)
    p_value, test = paired_test(difference)
    return Effect(name, column, mean, mean - half, mean + half, unit, n, test, p_value, 0.0,
                  f"paired over {n} test structures (seed-averaged)", runs_a + runs_b)


def combine_metrics(decisions: list[tuple[str, str, Effect | None]]) -> tuple[str, str, Effect | None]:
    """The claim's ``(verdict, reason, effect)`` from one decision per metric: supported when
    some metric supports it and none contradicts it, contradicted in the mirror case,
    inconclusive otherwise (no metric decides, or the metrics disagree). The effect shown
    is the deciding metric's (the first metric's when none decides)."""
    if not decisions:
        return INCONCLUSIVE, "no metric could be tested", None
    found = {verdict for verdict, _, _ in decisions}
    for verdict in (SUPPORTED, CONTRADICTED):
        other = CONTRADICTED if verdict == SUPPORTED else SUPPORTED
        if verdict in found and other not in found:
            chosen = next(d for d in decisions if d[0] == verdict)
            return chosen
    if SUPPORTED in found:
        reasons = "; ".join(reason for _, reason, _ in decisions)
        return INCONCLUSIVE, f"the metrics disagree: {reasons}", decisions[0][2]
    return INCONCLUSIVE, "; ".join(reason for _, reason, _ in decisions), decisions[0][2]


@dataclass
class Claim:
    """One claim's verdict, the deciding ``effect``, every ``evidence`` effect and the runs."""

    number: int
    statement: str
    verdict: str
    reason: str
    effect: Effect | None
    evidence: list[Effect] = field(default_factory=list)

    @property
    def run_ids(self) -> list[str]:
        return sorted({run for effect in self.evidence for run in effect.run_ids})

    def to_dict(self) -> dict:
        main = self.effect.to_dict() if self.effect is not None else {}
        return {"claim": self.number, "statement": self.statement, "verdict": self.verdict, "reason": self.reason,
                "effect": main.get("value"), "effect_name": main.get("name"), "metric": main.get("metric"),
                "unit": main.get("unit"), "ci95": [main.get("ci_low"), main.get("ci_high")],
                "null": main.get("null"), "n": main.get("n", 0), "basis": main.get("basis"),
                "test": main.get("test"), "p_value": main.get("p_value"), "run_ids": self.run_ids,
                "evidence": [e.to_dict() for e in self.evidence]}


@dataclass
class Precondition:
    """Did the models learn? ``fraction``: their error / the baseline's, to be below ``threshold``;
    ``met`` is None when the baseline is unknown (not checked). ``accurate_threshold``: the stricter
    bar below which the verdicts are firm rather than provisional (``accurate``)."""

    met: bool | None
    fraction: float
    threshold: float
    text: str
    accurate_threshold: float

    @property
    def accurate(self) -> bool | None:
        """True below ``accurate_threshold``; None when not checked."""
        return None if self.met is None else bool(self.fraction < self.accurate_threshold)

    def to_dict(self) -> dict:
        return {"name": "models learned", "met": self.met, "threshold": self.threshold,
                "fraction_of_baseline": None if not math.isfinite(self.fraction) else self.fraction,
                "accurate": self.accurate, "accurate_threshold": self.accurate_threshold, "text": self.text}


@dataclass
class ClaimSet:
    """The precondition and the claims, in order; ``n_metrics``: the Bonferroni factor used."""

    precondition: Precondition
    claims: list[Claim]
    n_metrics: int = 1

    def to_dict(self) -> dict:
        return {"rules": "docs/analysis.md#claim-verdicts", "alpha": ALPHA, "metrics_bonferroni": self.n_metrics,
                "precondition": self.precondition.to_dict(), "claims": [c.to_dict() for c in self.claims]}


def claims_table(claim_set: ClaimSet) -> pd.DataFrame:
    """One row per claim: verdict, effect text, test, p-value, number of runs, reason."""
    rows = []
    for claim in claim_set.claims:
        effect = claim.effect
        rows.append({"claim": claim.number, "statement": claim.statement, "verdict": claim.verdict,
                     "effect": f"{effect.name}: {effect.text()}" if effect is not None else "–",
                     "test": effect.test if effect is not None else "–",
                     "p_value": effect.p_value if effect is not None else float("nan"),
                     "n_runs": len(claim.run_ids), "reason": claim.reason})
    return pd.DataFrame(rows, columns=["claim", "statement", "verdict", "effect", "test", "p_value", "n_runs",
                                       "reason"])
