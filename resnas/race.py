"""The race to a verdict: the designs still in it train one more seed per round, a design leaves when it is
significantly worse than the leader, and the race ends with one design, a tie shown within a margin, or a
spent budget. Pure statistics (numpy, scipy.stats), no Optuna: the search layer stores a ``Verdict`` as
plain dicts and floats.

The table is ``errors[design] -> [error of repeat 0, repeat 1, ...]``; repeat r of every design trains with
the same data order, so the designs are paired by repeat. ``race`` replays every look on the table's
first n repeats (n = first_look, ..., max_seeds), so the same table always gives the same verdict.

The tests at a look with k designs still in the race and n seeds each:

- **Pooled seed-to-seed variance.** s^2 is the residual mean square of the two-way design x repeat layout
  (df = (k-1)(n-1)): repeat effects cancel (pairing), and a design whose few seeds happen to agree is
  judged by the spread of all the race's designs, not its own.
- **Leaving: a Holm-type step-down against the leader, with Tukey's studentized range.** The leader is the
  lowest mean. The other designs are taken worst first; design i leaves when
  q = (mean_i - mean_leader) / (s / sqrt(n)) exceeds the studentized range quantile for the m designs not
  yet set aside at this step (m = k at the first step), and the step-down stops at the first design that
  does not. Why the error rate holds although the leader is chosen after the fact: comparing the worst
  design with the lowest mean is the range of the m means, so under "all m equal" the first step errs with
  probability alpha exactly (Tukey); a plain Holm over the k-1 comparisons with the leader would not
  hold, since the range of k equal means beats a Bonferroni t over k-1 comparisons far more often than
  alpha (0.16 for k = 5). When the truly best designs B are tied, the first of them to be tested
  still has all of B standing, and its gap to a leader in B is at most the range of B's means: at most
  alpha again (this is the closed-testing argument over the nested sets of designs ranked below each
  one). Measured (``tests/test_race.py``): 2,000 races of 4-6 equal designs to 10 seeds call some design
  worse in 2.7-3.9% of them; normal draws around the committed tables' means with each design's own sd
  (``benchmarks/race_replay.py --parametric``, the 8-seed tables) give 0-3.9% of claims against a truly
  lower leader.
- **Repeated looks: Bonferroni over a fixed maximum of looks.** Looks are at n = first_look .. max_seeds;
  each gets alpha / (max_seeds - first_look + 1) (0.05 / 8 = 0.00625 by default), so the chance of any
  false "significantly worse" over the whole race is at most alpha by the union bound, however the race
  ends. A race continued to more seeds is replayed with the larger maximum (a smaller alpha per look).
- **Equivalence** (ends the race): every pair of the remaining designs is shown within ``margin`` points
  of error by two one-sided tests (TOST) with the pooled variance at the look's alpha, i.e.
  range of the means + t(1 - alpha_look, df) * s * sqrt(2/n) < margin. An intersection-union test: no
  correction for the number of pairs is needed, and the pair with the largest true gap makes the bound.
  Default margin 0.005 (0.5 points): the size of the paper's largest gain of one unit over another at
  the same depth (CIFAR-10, ResNet-164: 5.93% -> 5.46%, Table 2); a tie within it would not change the
  paper's recommendation.
- **What it would take**, for a design tied with the leader when the race ends: the seeds per design n at
  which a race with max_seeds = n separates a gap of the observed size with the given power at its last
  look: P(t'(df, delta / (s sqrt(2/n))) > q(1 - alpha / looks(n), m, df) / sqrt(2)) >= power, with t' the
  noncentral t, df = (k-1)(n-1) and m the designs standing at its step (scipy.stats.nct).

    >>> verdict = race({"a": [0.020, 0.021, 0.019], "b": [0.080, 0.082, 0.079], "c": [0.090, 0.088, 0.091]})
    >>> verdict.status, verdict.leader, sorted(verdict.departed)
    ('one remains', 'a', ['b', 'c'])
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np
from scipy import optimize, special, stats

__all__ = ["MARGIN", "RACE_TEST", "BaselineStatement", "Departure", "RaceRules", "Verdict", "baseline_statement",
           "pooled_variance", "race", "race_test", "range_sf", "seeds_needed", "step_down"]

MARGIN = 0.005  # points of error: see the module docstring
STATUSES = ("racing", "one remains", "equivalent", "max seeds", "epochs")
_MAX_SEEDS_NEEDED = 100_000  # beyond this a gap is reported as not separable (None)
_REFINE_BELOW = 200  # seeds: the normal approximation is refined with the t below this


@dataclass(frozen=True)
class RaceRules:
    """The race's settings: familywise alpha, equivalence margin (points of error; 0: never), the first look
    (seeds per design), the maximum seeds per design, and the power for "what it would take"."""

    alpha: float = 0.05
    margin: float = MARGIN
    first_look: int = 3
    max_seeds: int = 10
    power: float = 0.8

    def __post_init__(self):
        if not 0 < self.alpha < 1 or not 0 < self.power < 1:
            raise ValueError(f"alpha {self.alpha} and power {self.power} must lie between 0 and 1")
        if self.margin < 0:
            raise ValueError(f"margin {self.margin} must be >= 0 (points of error)")
        if not 2 <= self.first_look <= self.max_seeds:
            raise ValueError(f"need 2 <= first_look ({self.first_look}) <= max_seeds ({self.max_seeds})")

    @property
    def looks(self) -> int:
        return self.max_seeds - self.first_look + 1

    @property
    def look_alpha(self) -> float:
        """Alpha per look: Bonferroni over the looks."""
        return self.alpha / self.looks


def race_test(rules: RaceRules = RaceRules()) -> str:
    """The tests in two lines (the README's statement)."""
    return (f"A design leaves the race when it is significantly worse than the leader: step-down against the "
            f"leader with Tukey's studentized range, seed-to-seed variance pooled over the race's designs "
            f"(design x repeat residual, paired by repeat), alpha {rules.alpha:g} split over {rules.looks} "
            f"looks ({rules.first_look}-{rules.max_seeds} seeds; Bonferroni, {rules.look_alpha:.4g} each).\n"
            f"The race ends when one design remains, when all pairs left are within {rules.margin * 100:g} "
            f"points of error (TOST, same variance and alpha), or at {rules.max_seeds} seeds or the epoch "
            f"budget; a tie states the seeds per design for {rules.power:.0%} power at the gap observed.")


RACE_TEST = race_test()


# ---- the statistics of one look ------------------------------------------------------------------
def pooled_variance(rows: np.ndarray) -> tuple[float, int]:
    """Residual mean square and its df of a (designs x repeats) table: the two-way layout without
    interaction, df = (k-1)(n-1)."""
    k, n = rows.shape
    residual = rows - rows.mean(1, keepdims=True) - rows.mean(0, keepdims=True) + rows.mean()
    df = (k - 1) * (n - 1)
    return float((residual ** 2).sum() / df), df


_Z, _WZ = np.polynomial.hermite_e.hermegauss(96)  # Gauss-Hermite nodes for the weight exp(-z^2 / 2)
_WZ = _WZ / math.sqrt(2 * math.pi)
_U, _WU = np.polynomial.legendre.leggauss(128)  # Gauss-Legendre on the probability scale of s
_U, _WU = (_U + 1) / 2, _WU / 2


def _range_tail(w: np.ndarray, m: int) -> np.ndarray:
    """P(range of m standard normals > w)."""
    inside = special.ndtr(_Z[None, :]) - special.ndtr(_Z[None, :] - w[:, None])
    return 1 - m * (inside ** (m - 1) * _WZ).sum(1)


def range_sf(q: float, m: int, df: float) -> float:
    """The studentized range's survival function for m means and df (may be inf), by quadrature: within
    0.2% of scipy.stats.studentized_range, which integrates adaptively and is a hundred times slower."""
    if math.isinf(df):
        return float(_range_tail(np.array([q]), m)[0])
    s = np.sqrt(stats.chi2.ppf(_U, df) / df)
    return float((_range_tail(q * s, m) * _WU).sum())


@lru_cache(maxsize=4096)
def _range_quantile(alpha: float, m: int, df: float) -> float:
    """The studentized range's upper alpha quantile for m means; for two means it is sqrt(2) times the
    two-sided t quantile."""
    if m == 2:
        return math.sqrt(2) * float(stats.t.ppf(1 - alpha / 2, df))
    return float(optimize.brentq(lambda q: range_sf(q, m, df) - alpha, 0.0, 1000.0, xtol=1e-10))


def _q(gap: float, s2: float, n: int) -> float:
    """The studentized gap: gap / (s / sqrt(n)); inf (nan) for a positive (zero) gap without spread."""
    if s2 > 0:
        return gap / math.sqrt(s2 / n)
    return math.inf if gap > 0 else math.nan


@dataclass(frozen=True)
class Departure:
    """A design that left the race: at which look (seeds per design), behind which leader, by how much
    (points of error), its studentized gap q and the designs standing (m) and df of its step."""

    look: int
    leader: str
    gap: float
    q: float
    m: int
    df: int

    @property
    def p(self) -> float:
        """The step's p-value (studentized range), before the Bonferroni over looks."""
        return range_sf(self.q, self.m, self.df) if math.isfinite(self.q) else 0.0


def step_down(means: dict[str, float], s2: float, df: int, n: int, alpha: float) -> list[tuple[str, float, int]]:
    """The designs significantly worse than the leader (lowest mean) at one look, as (design, q, m), worst
    first: the step-down with the studentized range of the m designs still standing (module docstring)."""
    order = sorted(means, key=means.get)
    leader, worse = order[0], []
    for m, design in zip(range(len(order), 1, -1), reversed(order[1:])):
        q = _q(means[design] - means[leader], s2, n)
        if not q > _range_quantile(alpha, m, df):  # nan (no gap, no spread) stays
            break
        worse.append((design, q, m))
    return worse


def _equivalent(means: dict[str, float], s2: float, df: int, n: int, rules: RaceRules) -> bool:
    """TOST on every pair of the remaining designs: range + t(1 - alpha_look, df) * se < margin."""
    spread = max(means.values()) - min(means.values())
    se = math.sqrt(2 * s2 / n)
    return spread + float(stats.t.ppf(1 - rules.look_alpha, df)) * se < rules.margin


# ---- what it would take --------------------------------------------------------------------------
def _power(gap: float, s2: float, n: int, k: int, m: int, rules: RaceRules) -> float:
    df = (k - 1) * (n - 1)
    looks = max(n - rules.first_look + 1, 1)
    critical = _range_quantile(rules.alpha / looks, m, df) / math.sqrt(2)
    return float(stats.nct.sf(critical, df, gap / math.sqrt(2 * s2 / n)))


def seeds_needed(gap: float, s2: float, k: int, m: int, rules: RaceRules = RaceRules()) -> int | None:
    """Seeds per design for a race of k designs to separate ``gap`` (points of error) at ``rules.power``,
    the design being tested with m designs standing; None when no number of seeds would (a zero gap)."""
    if gap <= 0 or s2 <= 0:
        return None if gap <= 0 else rules.first_look
    z_power = float(stats.norm.ppf(rules.power))
    n = rules.first_look
    for _ in range(4):  # the normal approximation, its alpha per look following n
        looks = max(n - rules.first_look + 1, 1)
        critical = _range_quantile(rules.alpha / looks, m, math.inf) / math.sqrt(2)
        n = max(rules.first_look, math.ceil(2 * s2 * (critical + z_power) ** 2 / gap ** 2))
        if n > _MAX_SEEDS_NEEDED:
            return None
    if n > _REFINE_BELOW:  # the noncentral t is the normal there to within a seed or two
        return n
    while n > rules.first_look and _power(gap, s2, n - 1, k, m, rules) >= rules.power:
        n -= 1
    while _power(gap, s2, n, k, m, rules) < rules.power:
        n += 1
        if n > _MAX_SEEDS_NEEDED:
            return None
    return n


# ---- the baseline statement ----------------------------------------------------------------------
@dataclass(frozen=True)
class BaselineStatement:
    """The winner (the leader) against the baseline. ``outcome``: "beats" (the baseline left the race),
    "no design beats it" (it is still in the race, not alone), "baseline wins" (it alone remains).
    ``delta``: the baseline's mean error minus the other design's (points; > 0: the other is better),
    the other being the leader, or the runner-up when the baseline leads; a 95% interval (paired, pooled
    variance, not corrected for the race's looks) on n seeds each."""

    baseline: str
    other: str
    outcome: str
    delta: float
    low: float
    high: float
    n: int
    label: str = "the paper's unit"

    @property
    def text(self) -> str:
        interval = (f"{self.delta * 100:+.2f} points (95% interval {self.low * 100:+.2f} to "
                    f"{self.high * 100:+.2f}, n = {self.n} seeds each)")
        if self.outcome == "beats":
            return f"The winner beats {self.label}: {self.label}'s error minus the winner's is {interval}."
        if self.outcome == "baseline wins":
            return f"{self.label[0].upper()}{self.label[1:]} wins: its error minus the runner-up's is {interval}."
        return f"No design beats {self.label}: its error minus the leader's is {interval}."


def baseline_statement(errors: dict[str, list[float]], verdict: Verdict, baseline: str,
                       label: str = "the paper's unit") -> BaselineStatement | None:
    """The statement for ``baseline`` in a race's verdict; None when it is not in the race or no look was made."""
    if baseline not in errors or verdict.leader is None or len(verdict.ranking) < 2 or not verdict.look:
        return None
    other = verdict.leader if verdict.leader != baseline else next(d for d in verdict.ranking if d != baseline)
    n = min(verdict.seeds[baseline], verdict.seeds[other])
    designs = [d for d in errors if len(errors[d]) >= n]
    s2, df = pooled_variance(np.array([errors[d][:n] for d in designs], dtype=float))
    delta = float(np.mean(errors[baseline][:n]) - np.mean(errors[other][:n]))
    half = float(stats.t.ppf(0.975, df)) * math.sqrt(2 * s2 / n)
    if baseline in verdict.departed:
        outcome = "beats"
    elif verdict.remaining == [baseline]:
        outcome = "baseline wins"
    else:
        outcome = "no design beats it"
    return BaselineStatement(baseline, other, outcome, delta, delta - half, delta + half, n, label)


# ---- the race ------------------------------------------------------------------------------------
@dataclass
class Verdict:
    """Where a race stands after the looks its table allows. ``status``: "racing" (train ``to_train``:
    design -> the repeat index to train next), or why it ended: "one remains", "equivalent", "max seeds",
    "epochs". ``seeds``: the repeats of each design the race used; ``sd``/``df``: the pooled seed-to-seed
    sd at the last look (``look`` seeds per design; 0 before the first); ``seeds_needed``: per design tied
    with the leader at the end of a race that ran out of budget, the seeds per design that would separate
    it (None: not separable, e.g. equal means). Plain data: ``to_dict`` / ``from_dict`` round-trip JSON."""

    status: str
    leader: str | None
    ranking: list[str]
    means: dict[str, float | None]  # over ``seeds`` repeats; None: not trained yet
    seeds: dict[str, int]
    remaining: list[str]
    departed: dict[str, Departure] = field(default_factory=dict)
    look: int = 0
    sd: float | None = None
    df: int = 0
    seeds_needed: dict[str, int | None] = field(default_factory=dict)
    to_train: dict[str, int] = field(default_factory=dict)
    baseline: BaselineStatement | None = None
    rules: RaceRules = RaceRules()

    @property
    def ended(self) -> bool:
        return self.status != "racing"

    def to_dict(self) -> dict:
        d = asdict(self)
        for name, departure in self.departed.items():
            d["departed"][name]["p"] = departure.p
            if math.isinf(departure.q):  # a gap without spread: JSON has no infinity
                d["departed"][name]["q"] = None
        if self.baseline is not None:
            d["baseline"]["text"] = self.baseline.text
        d["test"] = race_test(self.rules)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Verdict:
        d = {k: v for k, v in d.items() if k != "test"}
        d["departed"] = {name: Departure(**{**{k: v for k, v in dep.items() if k != "p"},
                                            "q": math.inf if dep["q"] is None else dep["q"]})
                         for name, dep in d["departed"].items()}
        if d.get("baseline") is not None:
            d["baseline"] = BaselineStatement(**{k: v for k, v in d["baseline"].items() if k != "text"})
        d["rules"] = RaceRules(**d["rules"])
        return cls(**d)


def _check(errors: dict[str, list[float]]) -> None:
    if not errors:
        raise ValueError("a race needs at least one design")
    for design, values in errors.items():
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{design}: errors must be finite (score a diverged run as chance error)")


def _look(errors, remaining: list[str], n: int, rules: RaceRules):
    """One look on the first n repeats: (means, s2, df, departures as (design, q, m))."""
    rows = np.array([errors[d][:n] for d in remaining], dtype=float)
    means = dict(zip(remaining, rows.mean(1).tolist()))
    s2, df = pooled_variance(rows)
    return means, s2, df, step_down(means, s2, df, n, rules.look_alpha)


def _replay_looks(errors, rules: RaceRules):
    """Every look the table allows: (status, remaining, departures, last look, its means, s2, df); the race
    waits (stops looking) where a design still in it lacks the look's repeat."""
    remaining, departed = list(errors), {}
    means, s2, df, look = {}, math.nan, 0, 0
    for n in range(rules.first_look, rules.max_seeds + 1):
        if len(remaining) < 2 or any(len(errors[d]) < n for d in remaining):
            break
        means, s2, df, worse = _look(errors, remaining, n, rules)
        look, leader = n, min(means, key=means.get)
        for design, q, m in worse:
            departed[design] = Departure(n, leader, means[design] - means[leader], q, m, df)
        remaining = [d for d in remaining if d not in departed]
        if len(remaining) >= 2 and rules.margin > 0 and _equivalent(
                {d: means[d] for d in remaining}, s2, df, n, rules):
            return "equivalent", remaining, departed, look, means, s2, df
    if len(remaining) == 1:
        status = "one remains"
    else:
        status = "max seeds" if look == rules.max_seeds else "racing"
    return status, remaining, departed, look, means, s2, df


def _seeds_needed(means, remaining, s2: float, look: int, rules: RaceRules) -> dict[str, int | None]:
    order = sorted(remaining, key=means.get)
    return {d: seeds_needed(means[d] - means[order[0]], s2, len(order), m, rules)
            for m, d in enumerate(order[1:], 2)}


def race(errors: dict[str, list[float]], rules: RaceRules = RaceRules(), baseline: str | None = None,
         epochs_left: float | None = None, seed_epochs: float = 1.0, what_it_would_take: bool = True) -> Verdict:
    """The verdict of a race on ``errors`` (design -> errors by repeat; repeats paired across designs).

    ``baseline``: a design of the race whose statement is made (the paper's unit), or None.
    ``epochs_left``: the epoch budget left to the race (None: unbounded); the race ends ("epochs") when
    its next round, ``seed_epochs`` per design trained, does not fit. ``what_it_would_take``: False skips
    ``seeds_needed`` (a simulation of many races does not need it)."""
    _check(errors)
    status, remaining, departed, look, _, s2, df = _replay_looks(errors, rules)
    seeds = {d: departed[d].look if d in departed else look or len(errors[d]) for d in errors}
    means = {d: float(np.mean(errors[d][:n])) if n else None for d, n in seeds.items()}
    to_train = {}
    if status == "racing":
        fewest = min(len(errors[d]) for d in remaining)
        to_train = {d: fewest for d in remaining if len(errors[d]) == fewest}
        if epochs_left is not None and len(to_train) * seed_epochs > epochs_left:
            status, to_train = "epochs", {}
    ranking = sorted(means, key=lambda d: (d in departed, math.inf if means[d] is None else means[d]))
    verdict = Verdict(status=status, leader=ranking[0] if ranking else None, ranking=ranking, means=means,
                      seeds=seeds, remaining=remaining, departed=departed, look=look,
                      sd=math.sqrt(s2) if look else None, df=df, to_train=to_train, rules=rules)
    if what_it_would_take and status in ("max seeds", "epochs") and look and len(remaining) > 1:
        verdict.seeds_needed = _seeds_needed(means, remaining, s2, look, rules)
    if baseline is not None:
        verdict.baseline = baseline_statement(errors, verdict, baseline)
    return verdict
