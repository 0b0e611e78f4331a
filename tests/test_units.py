"""The residual units of Fig. 2 and Fig. 4: every combination runs, and each row does what its
equation says."""

import itertools

import pytest
import torch

from resnas import PLACEMENTS, SHORTCUTS, ArchSpec, build
from resnas.units import ResidualUnit

TINY = dict(layers=(1, 2, 1), widths=(4, 8, 16))


@pytest.mark.parametrize("unit, act, shortcut", list(itertools.product(["basic", "bottleneck"], PLACEMENTS, SHORTCUTS)))
def test_every_combination_trains_with_finite_values(unit, act, shortcut):
    torch.manual_seed(0)
    model = build(ArchSpec(unit=unit, act=act, shortcut=shortcut, **TINY))
    x = torch.randn(4, 3, 16, 16)
    out = model(x)
    loss = torch.nn.functional.cross_entropy(out, torch.arange(4))
    loss.backward()
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def _zero_branch(unit: ResidualUnit) -> ResidualUnit:
    last_conv = [m for m in unit.F if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.zeros_(last_conv.weight)
    return unit


@pytest.mark.parametrize("kind", ["basic", "bottleneck"])
def test_full_preactivation_with_zero_branch_is_exact_identity(kind):
    """Eq. 3-4: h and f are identities, so x_{l+1} = x_l when F = 0."""
    unit = _zero_branch(ResidualUnit(64, 64, unit=kind, mid_chs=16, act="preact")).train()
    x = torch.randn(2, 64, 8, 8)
    assert torch.equal(unit(x), x)


def test_original_unit_with_zero_branch_is_not_identity():
    """Fig. 4a: the ReLU after the addition (f) still changes the signal."""
    unit = _zero_branch(ResidualUnit(16, 16, act="original")).train()
    x = torch.randn(2, 16, 8, 8)
    out = unit(x)
    assert not torch.equal(out, x)
    assert torch.equal(out, x.clamp(min=0))


def test_relu_preact_does_not_modify_shortcut_input_in_place():
    unit = ResidualUnit(16, 16, act="relu_preact")
    x = torch.randn(2, 16, 8, 8)
    before = x.clone()
    unit(x)
    assert torch.equal(x, before)


@pytest.mark.parametrize("unit, act", list(itertools.product(["basic", "bottleneck"], PLACEMENTS)))
@pytest.mark.parametrize("in_chs, stride", [(16, 1), (8, 2)])
def test_no_unit_modifies_its_input_in_place(unit, act, in_chs, stride):
    """The input is the previous unit's output: a feature timm returns, the tensor a gradient checkpoint keeps."""
    block = ResidualUnit(in_chs, 16, stride, unit=unit, mid_chs=4, act=act).train()
    x = torch.randn(2, in_chs, 8, 8)
    before = x.clone()
    block(x)
    assert torch.equal(x, before)


def _unit(shortcut, **kw):
    return _zero_branch(ResidualUnit(8, 8, act="preact", shortcut=shortcut, **kw))


def test_constant_scaling_multiplies_both_paths():
    x = torch.randn(2, 8, 4, 4)
    assert torch.allclose(_unit("scaling", scale=0.5)(x), 0.5 * x)
    assert torch.equal(_unit("scaling", scale=0.0)(x), torch.zeros_like(x))  # (0, 1): a plain net
    unit = ResidualUnit(8, 8, act="preact", shortcut="scaling", scale=0.0, f_scale=0.5).eval()
    plain = ResidualUnit(8, 8, act="preact").eval()
    plain.load_state_dict(unit.state_dict())
    assert torch.allclose(unit(x), 0.5 * (plain(x) - x), atol=1e-6)


def test_gates_open_and_close_with_their_bias():
    x = torch.randn(2, 8, 4, 4)
    # b_g = -20: g ~ 0, so (1 - g) h(x) passes the shortcut whole
    assert torch.allclose(_unit("exclusive_gate", gate_bias=-20.0)(x), x, atol=1e-5)
    # b_g = +20: g ~ 1, the shortcut is closed
    assert torch.allclose(_unit("shortcut_gate", gate_bias=20.0)(x), torch.zeros_like(x), atol=1e-5)
    gate = _unit("exclusive_gate").shortcut.gate
    assert torch.all(gate.bias == -6.0) and gate.kernel_size == (1, 1)


def test_dropout_shortcut_expectation_is_one_minus_p():
    unit = _unit("dropout", drop=0.5)
    x = torch.ones(4, 8, 16, 16)
    torch.manual_seed(0)
    out = unit.train()(x)
    assert set(out.unique().tolist()) == {0.0, 1.0}
    assert abs(out.mean().item() - 0.5) < 0.03
    assert torch.equal(unit.eval()(x), 0.5 * x)


def test_conv1x1_shortcut_on_every_unit_and_projection_only_when_needed():
    spec = ArchSpec(layers=(2, 2, 2), widths=(4, 8, 16), shortcut="conv1x1")
    units = [u for stage in build(spec).stages for u in stage]
    assert all(isinstance(u.shortcut.h, torch.nn.Sequential) for u in units)
    units = [u for stage in build(spec.replace(shortcut="identity")).stages for u in stage]
    assert [isinstance(u.shortcut.h, torch.nn.Identity) for u in units] == [True, True, False, True, False, True]


def test_dimension_changing_preact_unit_projects_the_preactivated_input():
    """Sec. 4.1: one BN-ReLU before the split into F and the projection."""
    unit = ResidualUnit(16, 32, stride=2, act="preact").eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        expected = unit.shortcut.h(unit.pre(x)) + unit.F(unit.pre(x))
        assert torch.allclose(unit(x), expected)
        # an ordinary unit feeds the raw x to its identity shortcut
        plain = ResidualUnit(16, 16, act="preact").eval()
        assert torch.allclose(plain(x), x + plain.F(plain.pre(x)))


def test_zeropad_option_a_has_no_parameters_and_pads_channels():
    unit = ResidualUnit(16, 32, stride=2, act="original", down="zeropad")
    assert sum(p.numel() for p in unit.shortcut.parameters()) == 0
    out = unit.shortcut.h(torch.ones(1, 16, 8, 8))
    assert out.shape == (1, 32, 4, 4) and out[:, :16].eq(1).all() and out[:, 16:].eq(0).all()


@pytest.mark.parametrize("act, proj_bn", [("original", True), ("preact", False)])
def test_projection_norm_follows_placement(act, proj_bn):
    unit = ResidualUnit(16, 32, stride=2, act=act)
    assert hasattr(unit.shortcut.h, "norm") == proj_bn
