"""Paired comparisons of two methods with stated power.

One evaluation seed fixes, for every method alike, the test network's initial weights, the order and
augmentation of its training batches and (for generated sets) the sampling noise: two methods' runs
with the same (distill_seed, seed) differ only in the distilled images, so they are compared *paired*:

    d_i = a_i - b_i                    over the n shared keys (distill_seed, seed)
    mean_d, sd_d (ddof 1), se = sd_d / sqrt(n)
    95% CI = mean_d -+ t_{0.975, n-1} se                   (t interval on the paired differences)
    p = scipy.stats.ttest_rel(a, b).pvalue                (two-sided paired t-test)
    MDD = (t_{0.975, n-1} + t_{0.80, n-1}) se             (minimum detectable difference: the true
                                                           difference found with 80 % power at alpha 0.05)

and a percentile bootstrap CI of mean_d beside the t interval (10,000 resamples, fixed seed). A
"no significant difference" is only as strong as its MDD: a comparison whose MDD is 4 points says
nothing about a 2-point gap. Undefined quantities (n < 2; no spread in the differences) are None,
never nan.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

ALPHA, POWER = 0.05, 0.80
BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 10_000, 0


@dataclass(frozen=True)
class Paired:
    n: int  # pairs
    mean: float  # mean of a - b
    sd: float | None  # sample std of the differences (None: n < 2)
    ci_low: float | None  # 95% t interval
    ci_high: float | None
    p: float | None  # paired t-test, two-sided (None: n < 2 or no spread)
    mdd: float | None  # minimum detectable difference at 80% power, alpha 0.05
    boot_low: float | None  # 95% percentile bootstrap interval of the mean difference
    boot_high: float | None

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def significant(self) -> bool:
        return self.p is not None and self.p < ALPHA


def paired(a, b) -> Paired:
    """Paired statistics of a - b for equal-length sequences a, b (pair i = a[i], b[i])."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired samples need equal, non-empty 1-D shapes, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired samples must be finite")
    d = a - b
    n, mean = len(d), float(d.mean())
    if n < 2:
        return Paired(n, mean, None, None, None, None, None, None, None)
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    t975, t80 = stats.t.ppf(1 - ALPHA / 2, n - 1), stats.t.ppf(POWER, n - 1)
    p = float(stats.ttest_rel(a, b).pvalue) if sd > 0 else None  # no spread: the t statistic is undefined
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    boot = d[rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))].mean(axis=1)
    lo, hi = np.percentile(boot, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return Paired(n, mean, sd, mean - t975 * se, mean + t975 * se, p, (t975 + t80) * se, float(lo), float(hi))


def pair_up(a: dict, b: dict) -> tuple[list, list, list, str]:
    """Align two methods' runs {(distill_seed, seed): value}: returns (keys, a values, b values, how).

    Both fine-tuned (several distill seeds each): pairs on (distill_seed, seed). Otherwise a method
    that fine-tunes nothing has distill_seed 0 only, so the other's runs are averaged over its
    distill seeds per seed and the pairs are on the seed (independent pairs, n = #seeds)."""
    ds_a, ds_b = {k[0] for k in a}, {k[0] for k in b}
    if ds_a == ds_b:
        keys = sorted(set(a) & set(b))
        return keys, [a[k] for k in keys], [b[k] for k in keys], ("(distill_seed, seed)" if len(ds_a) > 1 else "seed")

    def per_seed(x):
        seeds = {}
        for (_, s), v in x.items():
            seeds.setdefault(s, []).append(v)
        return {s: sum(vs) / len(vs) for s, vs in seeds.items()}

    pa, pb = per_seed(a), per_seed(b)
    keys = sorted(set(pa) & set(pb))
    return keys, [pa[k] for k in keys], [pb[k] for k in keys], "seed (fine-tuned runs averaged over distill seeds)"
