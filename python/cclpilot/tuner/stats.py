"""Statistics on measurement summaries: moments from (count, sum, sum of squares) and the
comparisons the online tuner makes between two arms.

The plugin ships summaries, never raw samples, so everything here works on moments. There is no
scipy dependency: the one distribution needed (Student's t, for Welch's test) is computed from
the regularised incomplete beta function below, which the tests check against scipy where it is
installed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cclpilot.errors import CclpilotError


class StatsError(CclpilotError):
    """A statistics routine got an argument outside its domain."""


@dataclass(frozen=True)
class Summary:
    """Moments of a set of durations (nanoseconds).

    ``n_eff`` is the number of independent observations behind the moments. The daemon sums the
    per-rank samples of one collective (every rank times the same collective, and those times are
    strongly correlated because each rank waits for its slowest peer), so ``count`` rank-samples
    hold only about ``count / ranks`` independent collectives. Tests and confidence intervals use
    ``n_eff``; the variance uses all rank-samples. That variance includes the between-collective
    spread, which is what the mean of a collective varies by, so the standard error it gives is
    conservative (never smaller than the true one).
    """

    count: int = 0
    sum_ns: float = 0.0
    sum_sq_ns: float = 0.0
    min_ns: float = math.inf
    max_ns: float = 0.0
    n_eff: float = 0.0

    def add(self, count: int, sum_ns: float, sum_sq_ns: float, min_ns: float, max_ns: float,
            n_eff: float) -> Summary:
        if count < 0 or sum_ns < 0.0 or sum_sq_ns < 0.0 or n_eff < 0.0:
            raise StatsError(f"a summary cannot hold negative moments (count={count}, "
                             f"sum={sum_ns}, sum_sq={sum_sq_ns}, n_eff={n_eff})")
        if count == 0:
            return self
        return Summary(self.count + count, self.sum_ns + sum_ns, self.sum_sq_ns + sum_sq_ns,
                       min(self.min_ns, min_ns), max(self.max_ns, max_ns), self.n_eff + n_eff)

    def merge(self, other: Summary) -> Summary:
        return self.add(other.count, other.sum_ns, other.sum_sq_ns, other.min_ns, other.max_ns,
                        other.n_eff)

    @staticmethod
    def of(values: list[float], ranks: int = 1) -> Summary:
        """Summary of raw values (tests and synthetic data); ``ranks`` values per independent
        observation."""
        if not values:
            return Summary()
        return Summary(len(values), math.fsum(values), math.fsum(v * v for v in values),
                       min(values), max(values), len(values) / max(1, ranks))

    @property
    def mean(self) -> float:
        return self.sum_ns / self.count if self.count else math.nan

    @property
    def variance(self) -> float:
        """Unbiased sample variance over rank-samples (nan below two samples).

        sum_sq - sum^2/n cancels badly when the spread is tiny next to the mean; the result is
        clamped at 0 and then floored in ``standard_error`` so a test never divides by zero.
        """
        if self.count < 2:
            return math.nan
        return max(0.0, (self.sum_sq_ns - self.sum_ns * self.sum_ns / self.count) / (self.count - 1))

    @property
    def standard_error(self) -> float:
        """Standard error of the mean over independent observations (nan when unknown)."""
        if self.count < 2 or self.n_eff <= 0.0:
            return math.nan
        # Floor: a relative spread below 1e-6 is below timer resolution and float cancellation.
        var = max(self.variance, (1e-6 * self.mean) ** 2)
        return math.sqrt(var / self.n_eff)

    def to_json(self) -> dict[str, float | int | None]:
        return {
            "count": self.count,
            "n_eff": round(self.n_eff, 3),
            "mean_ns": None if self.count == 0 else round(self.mean, 3),
            "stdev_ns": None if self.count < 2 else round(math.sqrt(self.variance), 3),
            "min_ns": None if self.count == 0 else self.min_ns,
            "max_ns": None if self.count == 0 else self.max_ns,
        }


# ---- Student's t distribution ------------------------------------------------------------------

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function, evaluated with the modified Lentz
    method; converges quickly for x < (a + 1) / (a + b + 2), which the caller ensures."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = tiny if abs(d) < tiny else d
    d = 1.0 / d
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = tiny if abs(d) < tiny else d
        c = 1.0 + aa / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = tiny if abs(d) < tiny else d
        c = 1.0 + aa / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if a <= 0.0 or b <= 0.0 or not 0.0 <= x <= 1.0:
        raise StatsError(f"betainc needs a, b > 0 and 0 <= x <= 1 (got a={a}, b={b}, x={x})")
    if x == 0.0 or x == 1.0:
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    front = math.exp(log_front)
    # Use the symmetry I_x(a,b) = 1 - I_{1-x}(b,a) where the continued fraction converges fast.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` > 0 degrees of freedom."""
    if not df > 0.0 or math.isnan(t):
        raise StatsError(f"t_sf needs df > 0 and a number t (got t={t}, df={df})")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t > 0 else 1.0 - tail


def t_ppf_upper(alpha: float, df: float) -> float:
    """The t with P(T > t) = alpha (0 < alpha < 0.5), by bisection on ``t_sf``."""
    if not 0.0 < alpha < 0.5:
        raise StatsError(f"t_ppf_upper needs 0 < alpha < 0.5 (got {alpha})")
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > alpha:
        hi *= 2.0
        if hi > 1e12:
            return hi
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if t_sf(mid, df) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


# ---- Welch's test ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Welch:
    """Welch's unequal-variance comparison of a candidate against a reference.

    ``diff`` = reference mean - candidate mean (positive: the candidate is faster);
    ``p_faster`` = one-sided p-value of "the candidate is faster", ``p_slower`` the other side.
    """

    diff: float
    se: float
    df: float
    t: float
    p_faster: float
    p_slower: float

    def gain_bounds(self, reference_mean: float, alpha: float) -> tuple[float, float]:
        """One-sided (1 - alpha) lower and upper bounds of the relative gain diff / reference."""
        q = t_ppf_upper(alpha, self.df)
        return ((self.diff - q * self.se) / reference_mean, (self.diff + q * self.se) / reference_mean)


def welch(candidate: Summary, reference: Summary) -> Welch:
    """Welch's t-test on two summaries; both need at least two samples and n_eff > 1."""
    for name, s in (("candidate", candidate), ("reference", reference)):
        if s.count < 2 or s.n_eff <= 1.0:
            raise StatsError(f"Welch's test needs at least two independent samples per side; "
                             f"the {name} has count={s.count}, n_eff={s.n_eff:.2f}")
    vc = candidate.standard_error ** 2
    vr = reference.standard_error ** 2
    se = math.sqrt(vc + vr)
    diff = reference.mean - candidate.mean
    # Welch-Satterthwaite degrees of freedom, with the effective sample sizes.
    df = (vc + vr) ** 2 / (vc * vc / (candidate.n_eff - 1.0) + vr * vr / (reference.n_eff - 1.0))
    t = diff / se
    p_faster = t_sf(t, df)
    return Welch(diff=diff, se=se, df=df, t=t, p_faster=p_faster, p_slower=1.0 - p_faster)
