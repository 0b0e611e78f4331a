"""ArchSpec: round trips and the one-line errors of invalid specs."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resnas.cli import main
from resnas.spec import ACTS, SHORTCUTS, ArchSpec


def _params(shortcut):
    """A strategy per parameter of the kind, over its row's range."""
    return {p.name: st.floats(p.low, p.high, exclude_max=p.high_open) for p in SHORTCUTS[shortcut].params}


@st.composite
def specs(draw):
    layout = draw(st.sampled_from(["cifar", "imagenet"]))
    unit = draw(st.sampled_from(["basic", "bottleneck"]))
    shortcut = draw(st.sampled_from(list(SHORTCUTS)))
    n_stages = 3 if layout == "cifar" else 4
    kw = {name: draw(s) for name, s in _params(shortcut).items()}
    return ArchSpec(
        layout=layout, unit=unit, shortcut=shortcut, **kw,
        layers=tuple(draw(st.lists(st.integers(1, 40), min_size=n_stages, max_size=n_stages))),
        act=draw(st.sampled_from(ACTS)),
        down=draw(st.sampled_from(["projection", "zeropad"] if unit == "basic" else ["projection"])),
        width=draw(st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0, 4.0])),
        stem=draw(st.sampled_from(["", "cifar", "imagenet"])),
        in_chans=draw(st.integers(1, 4)),
        num_classes=draw(st.integers(0, 1000)),
    )


@given(specs())
@settings(max_examples=300, deadline=None)
def test_string_and_dict_round_trip(spec):
    assert ArchSpec.parse(str(spec)) == spec
    assert ArchSpec.from_dict(spec.to_dict()) == spec
    assert "," in str(spec) and " " not in str(spec)


def test_paper_string_is_short_and_readable():
    spec = ArchSpec.cifar(110, "basic", act="original", shortcut="scaling", scale=0.5, f_scale=0.5)
    assert str(spec) == "layout=cifar,depth=110,unit=basic,act=original,shortcut=scaling,scale=0.5,f_scale=0.5"
    assert str(ArchSpec.imagenet(200)) == "layout=imagenet,depth=200,unit=bottleneck,act=preact,shortcut=identity"


def test_depth_and_letters():
    assert ArchSpec.cifar(164, "bottleneck").layers == (18, 18, 18)
    assert ArchSpec.cifar(1001, "bottleneck").layers == (111, 111, 111)
    assert ArchSpec.cifar(110).depth == 110
    assert ArchSpec.imagenet(200).layers == (3, 24, 36, 3)
    assert ArchSpec.parse("depth=20,act=b").act == "bn_after_add"
    assert ArchSpec.parse("layout=imagenet,depth=50").num_classes == 1000
    assert ArchSpec.parse("layout=imagenet,layers=2-2-2-2").depth == 18


@pytest.mark.parametrize("make, field, allowed", [
    (lambda: ArchSpec.cifar(111), "depth", "8, 14, 20"),
    (lambda: ArchSpec.cifar(30, "bottleneck"), "depth", "11, 20, 29"),
    (lambda: ArchSpec.imagenet(77), "depth", "18, 34, 50, 101, 152, 200"),
    (lambda: ArchSpec(act="post"), "act", "original, bn_after_add"),
    (lambda: ArchSpec(shortcut="highway"), "shortcut", "identity, scaling, exclusive_gate"),
    (lambda: ArchSpec(unit="wide"), "unit", "basic, bottleneck"),
    (lambda: ArchSpec(layout="mnist"), "layout", "cifar, imagenet"),
    (lambda: ArchSpec(shortcut="scaling", scale=2.5), "scale", "[0, 2]"),
    (lambda: ArchSpec(shortcut="scaling", f_scale=-1), "f_scale", "[0, 2]"),
    (lambda: ArchSpec(shortcut="dropout", drop=1.0), "drop", "[0, 1)"),
    (lambda: ArchSpec(shortcut="exclusive_gate", gate_bias=float("nan")), "gate_bias", "[-20, 20]"),
    (lambda: ArchSpec(scale=0.5), "scale", "shortcut=scaling"),
    (lambda: ArchSpec(drop=0.1), "drop", "shortcut=dropout"),
    (lambda: ArchSpec(gate_bias=0), "gate_bias", "exclusive_gate or shortcut_gate"),
    (lambda: ArchSpec(unit="bottleneck", down="zeropad"), "down", "projection"),
    (lambda: ArchSpec(down="optionA"), "down", "projection, zeropad"),
    (lambda: ArchSpec(widths=(16, 32)), "widths", "3 positive widths"),
    (lambda: ArchSpec(layers=(0, 1, 1)), "layers", "positive"),
    (lambda: ArchSpec(width=0), "width", "(0, 16]"),
    (lambda: ArchSpec(in_chans=0), "in_chans", ">= 1"),
    (lambda: ArchSpec.parse("depth=20,colour=red"), "spec", "unknown field 'colour'; allowed: act"),
    (lambda: ArchSpec.from_dict({"depth": 20, "colour": "red"}), "spec", "unknown field 'colour'; allowed: act"),
    (lambda: ArchSpec.parse("depth=twenty"), "depth", "not an integer"),
    (lambda: ArchSpec.parse("depth=20,depth=32"), "depth", "twice"),
    (lambda: ArchSpec.parse("depth=20,layers=1-1-1"), "depth", "not both"),
    (lambda: ArchSpec.parse("depth=20,act"), "spec", "key=value"),
    (lambda: ArchSpec.parse(""), "spec", "key=value"),
    (lambda: ArchSpec.parse("shortcut=scaling,scale=abc"), "scale", "not a number"),
])
def test_invalid_spec_names_field_and_allowed(make, field, allowed):
    with pytest.raises(ValueError) as e:
        make()
    msg = str(e.value)
    assert msg.startswith(f"{field}:") and allowed in msg and "\n" not in msg


@given(st.text(max_size=60))
@settings(max_examples=300, deadline=None)
def test_any_text_parses_or_gives_one_line_value_error(text):
    try:
        ArchSpec.parse(text)
    except ValueError as e:
        assert "\n" not in str(e) and ":" in str(e)


def test_an_unknown_unit_with_a_depth_is_one_line(capsys):
    assert main(["summary", "unit=zzz,depth=20"]) == 2
    err = capsys.readouterr().err
    assert "unit: 'zzz'" in err and "basic" in err and len(err.splitlines()) == 1
