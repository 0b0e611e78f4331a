"""Search spaces: YAML -> Space -> trial.suggest_* -> ArchSpec, with one-line errors."""

import subprocess
import sys

import optuna
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resnas.space import SpaceError, builtin_spaces, load_space, parse_space
from resnas.spec import ArchSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

MINIMAL = """
name: tiny
space:
  depth: [8]
  act: [original, preact]
  shortcut:
    identity: {}
    scaling: {scale: {low: 0.0, high: 1.0}, f_scale: [0.5, 1.0]}
    exclusive_gate: {gate_bias: [-6.0, 0.0]}
"""


def test_builtin_spaces_load_and_describe_themselves():
    spaces = builtin_spaces()
    assert set(spaces) == {"default", "paper_table1", "paper_table2", "depth", "full"}
    for name in spaces:
        space = load_space(name)
        assert space.name == name and len(space.description) > 20


def test_paper_table1_grid_is_exactly_the_papers_rows():
    specs = load_space("paper_table1").specs()
    rows = {(s.shortcut, s.scale, s.f_scale, s.gate_bias, s.drop) for s in specs}
    assert len(specs) == len(rows) == 11
    assert {("scaling", 0.0, 1.0), ("scaling", 0.5, 1.0), ("scaling", 0.5, 0.5)} == {
        r[:3] for r in rows if r[0] == "scaling"}
    assert {r[3] for r in rows if r[0] == "exclusive_gate"} == {0.0, -6.0, -7.0}
    assert {r[3] for r in rows if r[0] == "shortcut_gate"} == {0.0, -6.0}
    assert all(s.depth == 110 and s.act == "original" and s.unit == "basic" for s in specs)


def test_paper_table2_grid_is_five_placements_at_110_and_164():
    specs = load_space("paper_table2").specs()
    assert sorted((s.unit, s.depth, s.act) for s in specs) == sorted(
        (u, d, a) for u, d in (("basic", 110), ("bottleneck", 164))
        for a in ("original", "bn_after_add", "relu_before_add", "relu_preact", "preact"))


def test_grid_points_replay_through_enqueued_optuna_trials():
    space = load_space("paper_table1")
    study = optuna.create_study()
    for params in space.grid_points():
        study.enqueue_trial(params)
    got = [space.suggest(study.ask()) for _ in space.grid_points()]
    assert got == space.specs()


def test_conditional_parameters_only_for_their_kind():
    space = parse_space(MINIMAL)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    kinds = set()
    for _ in range(40):
        trial = study.ask()
        spec = space.suggest(trial, in_chans=1)
        kinds.add(spec.shortcut)
        assert ("scaling.scale" in trial.params) == (spec.shortcut == "scaling")
        assert ("exclusive_gate.gate_bias" in trial.params) == (spec.shortcut == "exclusive_gate")
        assert spec.in_chans == 1 and spec.depth == 8
        study.tell(trial, 0.5)
    assert kinds == {"identity", "scaling", "exclusive_gate"}


def test_fixed_trial_gives_the_spec():
    space = parse_space(MINIMAL)
    spec = space.suggest(optuna.trial.FixedTrial(
        {"act": "original", "shortcut": "scaling", "scaling.scale": 0.5, "scaling.f_scale": 0.5}))
    assert spec == ArchSpec.cifar(8, act="original", shortcut="scaling", scale=0.5, f_scale=0.5)


def test_sampled_space_defaults():
    space = load_space("default")
    assert (space.sampler, space.pruner, space.objectives, space.dataset) == \
        ("tpe", "none", ("val_error",), "digits")  # no pruner: the replay's choice (test_bench_replay)
    assert space.min_epochs < space.max_epochs
    assert parse_space(MINIMAL + "objectives: [val_error, params]\npruner: none\n").sampler == "nsga2"


@pytest.mark.parametrize("text, message", [
    ("space: {depth: [8]}\nbogus: 1", "<space>: top level: unknown key 'bogus'; allowed: name, description"),
    ("space: {depth: [8], colour: red}", "<space>: space: unknown key 'colour'; allowed: layout, stem"),
    ("space: {depth: [8], shortcut: [highway]}", "<space>: space.shortcut: unknown key 'highway'; allowed: identity"),
    ("space: {depth: [8], act: [post]}", "<space>: space.act: 'post' is not allowed; allowed: original"),
    ("space: {depth: [9]}", "<space>: space: depth: 9 is not 6n+2 for basic CIFAR units"),
    ("space: {depth: [8], shortcut: {scaling: {scale: [3.0]}}}", "<space>: space: scale: 3.0 is out of range"),
    ("space: {depth: [8], shortcut: {scaling: {scale: {low: 1, high: 0}}}}", "space.shortcut.scaling.scale: low 1 must be below"),
    ("space: {depth: [8], shortcut: {scaling: {lambda: [1]}}}", "space.shortcut.scaling: unknown key 'lambda'; allowed: scale, f_scale"),
    ("sampler: grid\nspace: {depth: [8], shortcut: {scaling: {scale: {low: 0, high: 1}}}}", "scaling.scale: a grid needs a list"),
    ("sampler: bayes\nspace: {depth: [8]}", "<space>: sampler: 'bayes' is not allowed; allowed: tpe, random, grid, nsga2"),
    ("epochs: {min: 5, max: 2}\nspace: {depth: [8]}", "<space>: epochs.min: 5 is above epochs.max 2"),
    ("objectives: [val_error, params]\nspace: {depth: [8]}", "<space>: pruner: Optuna cannot prune multi-objective"),
    ("space: {act: [preact]}", "<space>: space.depth: missing"),
    ("space: [1, 2]", "<space>: space: expected a mapping, got list"),
    ("space: {depth: [8]\n", "<space>: not valid YAML at line"),
    ("- just\n- a list", "<space>: top level: expected a mapping, got list"),
    ("space: {depth: [8, 8]}", "<space>: space.depth: a value is listed twice"),
    ("dataset: mnist\nspace: {depth: [8]}", "<space>: dataset: 'mnist' is not allowed; allowed: digits"),
])
def test_bad_space_is_one_line_naming_key_and_allowed(text, message):
    with pytest.raises(SpaceError) as e:
        parse_space(text)
    assert str(e.value).startswith(message) or message in str(e.value)
    assert "\n" not in str(e.value)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(SpaceError, match="^space: unknown space 'nope'; allowed: default"):
        load_space("nope")
    with pytest.raises(SpaceError, match="missing.yaml: cannot read"):
        load_space(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("space: {depth: [8], act: [x]}")
    with pytest.raises(SpaceError, match=f"^{bad}: space.act: 'x' is not allowed"):
        load_space(bad)


def test_yaml_is_loaded_safely(tmp_path):
    with pytest.raises(SpaceError, match="not valid YAML"):
        parse_space("space: !!python/object/apply:os.system ['echo pwned']")


KEYS = st.sampled_from(["name", "space", "depth", "act", "shortcut", "scaling", "scale", "low", "high", "epochs",
                        "min", "max", "sampler", "grid", "unit", "widths", "width", "recipe", "lr", "objectives", "x"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 200), st.floats(allow_nan=True), st.text(max_size=8),
                    st.sampled_from(["preact", "identity", "scaling", "basic", "bottleneck", "grid", "digits"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                      max_leaves=12)


@given(st.dictionaries(KEYS, VALUES, max_size=6))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_yaml_gives_a_space_or_one_line_error(doc):
    try:
        parse_space(yaml.safe_dump(doc))
    except SpaceError as e:
        assert "\n" not in str(e) and str(e).startswith("<space>: ")


def test_bad_recipe_is_a_space_error():
    with pytest.raises(SpaceError, match="^<space>: recipe: lr: -1"):
        parse_space("recipe: {lr: -1}\nspace: {depth: [8]}")


def test_wheel_ships_the_search_spaces(tmp_path):
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(root)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("resnas-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for space in ("default", "paper_table1", "paper_table2", "depth", "full"):
        assert f"resnas/search_spaces/{space}.yaml" in names
    assert "resnas/py.typed" in names
