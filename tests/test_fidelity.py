"""resnas.fidelity: the rank agreement of two rungs, and min_epochs raised where they disagree."""

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from resnas.config import Search
from resnas.fidelity import FIDELITY_LOW, FidelityCheck, check_fidelity
from resnas.space import parse_space
from resnas.study import rungs

from _tinygrid import GRID

SH = GRID.replace("pruner: none", "pruner: successive_halving").replace("epochs: {min: 1, max: 2}",
                                                                          "epochs: {min: 1, max: 9}")


def _synthetic(pairs):
    """A study whose designs reached epochs 1 and 3 with the given errors."""
    study = optuna.create_study()
    dist = {"d": CategoricalDistribution(list(range(len(pairs))))}
    for i, (e1, e3) in enumerate(pairs):
        study.add_trial(create_trial(params={"d": i}, distributions=dist, value=e3, state=TrialState.COMPLETE,
                                     intermediate_values={1: e1, 3: e3}))
    return study


def test_fidelity_fires_where_rungs_disagree_and_raises_min_epochs():
    search = Search(parse_space(SH), trials=10)
    assert rungs(1, 9) == [1, 3, 9]
    disagree = _synthetic([(0.1, 0.6), (0.2, 0.5), (0.3, 0.4), (0.4, 0.3), (0.5, 0.2), (0.6, 0.1)])
    check = FidelityCheck(search)
    check(disagree, disagree.trials[-1])
    recorded = disagree.user_attrs["fidelity"]
    assert recorded["spearman"] == pytest.approx(-1.0) and recorded["designs"] == 6
    assert recorded["min_epochs"] == 3 < search.min_epochs + 3
    assert isinstance(disagree.pruner, optuna.pruners.SuccessiveHalvingPruner)
    assert disagree.pruner._min_resource == 3  # the remaining trials are compared from epoch 3 on
    assert check_fidelity(disagree, search) is None  # made once per study


def test_fidelity_stays_silent_where_rungs_agree_and_waits_for_enough_designs():
    search = Search(parse_space(SH), trials=10)
    agree = _synthetic([(0.1 * i, 0.05 * i + 0.01) for i in range(1, 7)])
    result = check_fidelity(agree, search)
    assert result is not None and result.spearman == pytest.approx(1.0) and not result.raised
    assert "kept" in result.line() and agree.user_attrs["fidelity"]["min_epochs"] == 1
    few = _synthetic([(0.1, 0.6), (0.2, 0.5), (0.3, 0.4), (0.4, 0.3), (0.5, 0.2)])
    assert check_fidelity(few, search) is None and "fidelity" not in few.user_attrs
    assert FIDELITY_LOW == 0.5


def test_a_worker_takes_the_raised_min_epochs_from_the_study():
    search = Search(parse_space(SH), trials=10)
    study = _synthetic([(0.1, 0.6), (0.2, 0.5), (0.3, 0.4), (0.4, 0.3), (0.5, 0.2), (0.6, 0.1)])
    check_fidelity(study, search)  # made by another process
    other = optuna.load_study(study_name=study.study_name, storage=study._storage)
    FidelityCheck(search).apply(other)
    assert other.pruner._min_resource == 3
