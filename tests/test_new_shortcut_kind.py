"""A shortcut kind added from this file alone, as one row and one small module: a learned scalar on the
shortcut, y = alpha * h(x) + F(x), alpha starting at the kind's parameter ``alpha_init``. It then is a spec
field, a YAML space key, a unit, a probe term and a searched design, with nothing else edited."""

import pytest
import torch
import torch.nn as nn
from optuna.trial import TrialState

from resnas.config import Search
from resnas.data import load_data
from resnas.network import build
from resnas.probe import probe
from resnas.runners import run_search
from resnas.space import SpaceError, load_space, parse_space
from resnas.spec import ArchSpec
from resnas.units import SHORTCUTS, Param, Shortcut, register_shortcut


class LearnedScalar(nn.Module):
    """alpha * h(x) + F(x), alpha a learned scalar."""

    def __init__(self, h: nn.Module, alpha_init: float):
        super().__init__()
        self.h = h
        self.alpha = nn.Parameter(torch.tensor(alpha_init))

    def forward(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return self.alpha * self.h(x) + f


ROW = Shortcut(
    "learned_scalar", LearnedScalar, label=lambda alpha_init: f"learned scalar, alpha_0 {alpha_init:g}",
    params=(Param("alpha_init", 1.0, 0.0, 1.5, "alpha at initialization"),),
    factor=lambda m, x: m.alpha.item(), term_source="alpha per unit, at initialization, units 1 .. L-1",
)

SPACE = """
name: learned
dataset: digits
sampler: random
pruner: none
epochs: {min: 1, max: 1}
trials: 2
seed: 0
recipe: {batch_size: 128, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  shortcut:
    learned_scalar: {alpha_init: {low: 0.25, high: 1.0}}
"""


@pytest.fixture(autouse=True)
def kind():
    register_shortcut(ROW)
    yield ROW
    del SHORTCUTS[ROW.name]


def test_spec_strings_round_trip_and_name_the_range():
    spec = ArchSpec.parse("depth=8,shortcut=learned_scalar,alpha_init=0.25")
    assert str(spec) == "layout=cifar,depth=8,unit=basic,act=preact,shortcut=learned_scalar,alpha_init=0.25"
    assert ArchSpec.parse(str(spec)) == spec and ArchSpec.from_dict(spec.to_dict()) == spec
    assert spec.alpha_init == 0.25 and spec.to_dict()["alpha_init"] == 0.25
    assert str(ArchSpec.cifar(8, shortcut="learned_scalar")).endswith("shortcut=learned_scalar")  # default left out
    assert ArchSpec.cifar(8).alpha_init == 1.0  # another kind's parameter reads as its default
    with pytest.raises(ValueError, match=r"^alpha_init: 2\.0 is out of range; allowed: \[0, 1\.5\]$"):
        ArchSpec.parse("depth=8,shortcut=learned_scalar,alpha_init=2")
    with pytest.raises(ValueError, match="^alpha_init: only applies to shortcut=learned_scalar, not scaling$"):
        ArchSpec(shortcut="scaling", alpha_init=0.5)
    with pytest.raises(ValueError, match="^shortcut: 'learned' is not allowed; allowed: .*, learned_scalar$"):
        ArchSpec(shortcut="learned")


def test_the_unit_starts_at_alpha_init_and_learns_it():
    model = build(ArchSpec.cifar(8, shortcut="learned_scalar", alpha_init=0.5, in_chans=1))
    shortcuts = [u.shortcut for stage in model.stages for u in stage]
    assert all(isinstance(s, LearnedScalar) and s.alpha.item() == 0.5 for s in shortcuts)
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    assert all(s.alpha.grad is not None for s in shortcuts)


def test_yaml_space_searches_its_parameter_as_a_float_range(tmp_path):
    path = tmp_path / "learned.yaml"
    path.write_text(SPACE)
    space = load_space(path)
    assert space.choices["shortcut"]["learned_scalar"]["alpha_init"].high == 1.0
    with pytest.raises(SpaceError, match=r"alpha_init: 3\.0 is out of range; allowed: \[0, 1\.5\]"):
        parse_space(SPACE.replace("high: 1.0", "high: 3.0"))
    with pytest.raises(SpaceError, match="space.shortcut.learned_scalar: unknown key 'alpha'; allowed: alpha_init"):
        parse_space(SPACE.replace("alpha_init:", "alpha:"))


def test_probe_takes_the_term_from_the_row():
    x, y = next(iter(load_data("digits").loader("val", batch_size=16)))
    r = probe(ArchSpec.cifar(14, act="original", shortcut="learned_scalar", alpha_init=0.5, in_chans=1), x, y)
    assert r.units == 6 and r.shortcut_term == pytest.approx(0.5 ** 5)  # units 1 .. L-1
    assert r.term_source == ROW.term_source


def test_a_search_trains_the_new_kind(tmp_path):
    path = tmp_path / "learned.yaml"
    path.write_text(SPACE)
    study = run_search(Search(load_space(path), storage=f"sqlite:///{tmp_path / 's.db'}", confirm=0))
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        spec = ArchSpec.parse(t.user_attrs["spec"])
        assert spec.shortcut == "learned_scalar" and spec.alpha_init == t.params["learned_scalar.alpha_init"]
        assert 0.25 <= spec.alpha_init <= 1.0


@pytest.mark.parametrize("row, message", [
    (ROW, "shortcut: 'learned_scalar' is a registered kind already"),
    (Shortcut("wide", LearnedScalar, label=str, params=(Param("width", 1.0, 0, 2, "clash"),)), "width: is a spec field"),
    (Shortcut("loud", LearnedScalar, label=str, params=(Param("scale", 1.0, 0, 9, "another range"),)),
     "scale: a parameter of scaling already, with another default or range"),
])
def test_a_row_that_clashes_is_refused(row, message):
    with pytest.raises(ValueError, match=message):
        register_shortcut(row)
    assert list(SHORTCUTS)[-1] == ROW.name
