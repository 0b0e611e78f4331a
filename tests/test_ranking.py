"""resnas.ranking: designs ranked by mean error, ties a one-sided Welch test against the best."""

import statistics

import pytest
from scipy import stats

from resnas.ranking import Design, rank_designs, significantly_worse


def test_ties_are_a_one_sided_welch_test_against_the_best():
    a, b, c = [0.10, 0.11, 0.12], [0.105, 0.125, 0.115], [0.20, 0.21, 0.22]
    ranked = rank_designs([Design("c", c, [2]), Design("b", b, [1]), Design("a", a, [0]), Design("lucky", [0.01], [3])])
    # confirmed designs first by mean: a single lucky seed does not outrank a confirmed mean
    assert [d.spec for d in ranked] == ["a", "b", "c", "lucky"]
    assert [d.tied for d in ranked] == [True, True, False, None]
    p_b = stats.ttest_ind(b, a, equal_var=False, alternative="greater").pvalue
    p_c = stats.ttest_ind(c, a, equal_var=False, alternative="greater").pvalue
    assert p_b >= 0.05 > p_c
    assert ranked[0].mean == pytest.approx(0.11) and ranked[0].sd == pytest.approx(statistics.stdev(a))
    assert ranked[3].n == 1 and ranked[3].sd is None


def test_ties_without_spread_and_single_seeds():
    assert significantly_worse([0.2, 0.2], [0.1, 0.1]) is True
    assert significantly_worse([0.1, 0.1], [0.1, 0.1]) is False
    assert significantly_worse([0.3], [0.1, 0.1]) is None
    ranked = rank_designs([Design("x", [0.3], [1]), Design("y", [0.2], [0])])  # an old single-seed study
    assert [d.spec for d in ranked] == ["y", "x"] and [d.tied for d in ranked] == [True, None]
