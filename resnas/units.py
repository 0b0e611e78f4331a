"""The paper's residual units: y = h(x) + F(x), x_next = f(y) (Eq. 1-2).

Activation placements (Fig. 4, Table 2) are the rows of ``spec.PLACEMENTS`` (pure data), the shortcut
kinds (Fig. 2, Table 1) the rows registered below; a unit is assembled from one row of each. A
shortcut kind is one ``Shortcut`` row (its module, its parameters with default, range and meaning, its
Eq. 5 factor, its label): the spec's fields and checks, the YAML spaces, the probe and ``resnas
reproduce`` read it from there, so a new kind is a row and a small module, added with
``register_shortcut``.
"""

from collections import OrderedDict
from collections.abc import Mapping
from functools import partial

import torch
import torch.nn as nn
from timm.layers import BatchNormAct2d, DropPath

from .spec import PLACEMENTS, SHORTCUTS, Param, Shortcut, register_shortcut

__all__ = ["Add", "Gate", "ResidualUnit", "ZeroPad", "conv", "norm_act"]


def norm_act(kind: str, chs: int, inplace: bool = True) -> nn.Module:
    """'' | 'relu' | 'bn' | 'bn_relu' as a module."""
    if kind == "bn_relu":
        return BatchNormAct2d(chs)
    if kind == "bn":
        return BatchNormAct2d(chs, apply_act=False)
    if kind == "relu":
        return nn.ReLU(inplace=inplace)
    return nn.Identity()


def conv(in_chs: int, out_chs: int, k: int, stride: int = 1) -> nn.Conv2d:
    """A k x k convolution without bias ('same' padding), as in the paper's nets."""
    return nn.Conv2d(in_chs, out_chs, k, stride=stride, padding=k // 2, bias=False)


# ---- shortcuts h (Fig. 2) ------------------------------------------------------------------------
class ZeroPad(nn.Module):
    """Option A of He et al. 2015: subsample and zero-pad the channels (parameter-free)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__()
        self.pad, self.stride = out_chs - in_chs, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, 0, self.pad))


def projection(in_chs: int, out_chs: int, stride: int, bn: bool) -> nn.Module:
    """The 1x1 projection shortcut (option B) of a unit that changes dimension, followed by a BN when ``bn``."""
    layers = OrderedDict(conv=conv(in_chs, out_chs, 1, stride))
    if bn:
        layers["norm"] = norm_act("bn", out_chs)
    return nn.Sequential(layers)


class Add(nn.Module):
    """h(x) + F(x) with h the identity, or a projection / 1x1 conv (Fig. 2a, 2e)."""

    def __init__(self, h: nn.Module):
        super().__init__()
        self.h = h

    def forward(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return self.h(x) + f


class Scaling(Add):
    """lambda * h(x) + lambda_F * F(x) (Fig. 2b); lambda = 0 is a plain net."""

    def __init__(self, h: nn.Module, scale: float, f_scale: float):
        super().__init__(h)
        self.scale, self.f_scale = scale, f_scale

    def forward(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return self.scale * self.h(x) + self.f_scale * f

    def extra_repr(self) -> str:
        return f"scale={self.scale}, f_scale={self.f_scale}"


class Gate(Add):
    """(1 - g) h(x) + g F(x) (exclusive, Fig. 2c) or (1 - g) h(x) + F(x) (shortcut-only, Fig. 2d),
    g = sigmoid(W_g x + b_g) with W_g a 1x1 conv."""

    def __init__(self, h: nn.Module, in_chs: int, out_chs: int, stride: int, gate_bias: float,
                 exclusive: bool):
        super().__init__(h)
        self.exclusive = exclusive
        # No BN on the gate: b_g's initial value is the knob Table 1 searches, BN would re-centre it.
        self.gate = nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=True)
        self.gate_bias = gate_bias
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.gate.bias, self.gate_bias)

    def forward(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate(x))
        return (1 - g) * self.h(x) + (g * f if self.exclusive else f)

    @torch.no_grad()
    def keep(self, x: torch.Tensor) -> float:
        """The mean of 1 - g(x) over ``x``: the gate's factor on h (Eq. 5)."""
        return (1 - torch.sigmoid(self.gate(x))).mean().item()


class Dropout(Add):
    """dropout(h(x)) + F(x) (Fig. 2f). Unscaled Bernoulli mask in training and (1 - p) at test, so the
    shortcut carries the expected scale lambda = 1 - p the paper's analysis uses (Sec. 3.1)."""

    def __init__(self, h: nn.Module, drop: float):
        super().__init__(h)
        self.p = drop

    def forward(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        hx = self.h(x)
        if self.training:
            hx = hx * torch.empty_like(hx).bernoulli_(1 - self.p)
        else:
            hx = hx * (1 - self.p)
        return hx + f

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _scaling_label(scale: float, f_scale: float) -> str:
    return f"constant scaling {scale:g} / {f_scale:g}" + (" (plain net)" if scale == 0 else "")


# Table 1 uses lambda 0, 0.5, 1; > 1 is allowed to study explosion (Eq. 7).
SCALE = Param("scale", 1.0, 0.0, 2.0, "lambda, the constant on h (Eq. 7)")
F_SCALE = Param("f_scale", 1.0, 0.0, 2.0, "lambda_F, the constant on F")
GATE_BIAS = Param("gate_bias", -6.0, -20.0, 20.0, "b_g, the gate's initial bias: g = sigmoid(W_g x + b_g)")
DROP = Param("drop", 0.5, 0.0, 1.0, "p, the dropout ratio on h", high_open=True)

# The shortcut kinds of Fig. 2 / Table 1, one row each; the first is a spec's default.
_GATED = "mean 1 - g(x) per unit, measured, units 1 .. L-1"
for _row in (
    Shortcut("identity", Add, label=lambda: "original (identity)", factor=lambda m, x: 1.0,
             term_source="1 per unit"),  # (a)
    Shortcut("scaling", Scaling, label=_scaling_label, params=(SCALE, F_SCALE), factor=lambda m, x: m.scale,
             term_source="lambda per unit (Eq. 7), units 1 .. L-1"),  # (b)
    Shortcut("exclusive_gate", partial(Gate, exclusive=True),
             label=lambda gate_bias: f"exclusive gating, b_g {gate_bias:g}",
             params=(GATE_BIAS,), factor=Gate.keep, term_source=_GATED, weights_on_x=True),  # (c)
    Shortcut("shortcut_gate", partial(Gate, exclusive=False),
             label=lambda gate_bias: f"shortcut-only gating, b_g {gate_bias:g}",
             params=(GATE_BIAS,), factor=Gate.keep, term_source=_GATED, weights_on_x=True),  # (d)
    Shortcut("conv1x1", Add, label=lambda: "1x1 conv shortcut", factor=None,
             term_source="undefined (a 1x1 conv is a matrix)", projection=True),  # (e)
    Shortcut("dropout", Dropout, label=lambda drop: f"dropout shortcut {drop:g}", params=(DROP,),
             factor=lambda m, x: 1 - m.p, term_source="1 - p per unit (expected mask), units 1 .. L-1"),  # (f)
):
    register_shortcut(_row)


# ---- the unit ------------------------------------------------------------------------------------
class ResidualUnit(nn.Module):
    """One residual unit: a row of Table 2 (``act``) crossed with a row of Table 1 (``shortcut``).

    ``first``: the network's first unit, whose pre-activation is the stem's BN-ReLU right after conv1.
    Units that change dimension apply their pre-activation once, before splitting into F and h.
    ``drop_path``: stochastic depth, F's output dropped (per sample) before the shortcut adds it.
    ``params``: the shortcut kind's own parameters (``scale=0.5``); the row's defaults where not given.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, *, unit: str = "basic",
                 mid_chs: int | None = None, act: str = "preact", shortcut: str = "identity",
                 down: str = "projection", first: bool = False, stride_3x3: bool = True,
                 drop_path: float = 0.0, **params: float):
        super().__init__()
        p, row = PLACEMENTS[act], SHORTCUTS[shortcut]
        changes_dim = stride != 1 or in_chs != out_chs
        self.shared_pre = changes_dim or first
        # Never in place on x: x is the previous unit's output (a feature timm returns, the input a
        # gradient checkpoint keeps) and, in units that keep their dimension, the identity shortcut's input.
        self.pre = nn.Identity() if first else norm_act(p.pre, in_chs, inplace=False)
        self.F = _branch(unit, in_chs, mid_chs or out_chs, out_chs, stride, p.end, stride_3x3)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if row.projection or (changes_dim and down == "projection"):
            h = projection(in_chs, out_chs, stride, p.proj_bn)
        elif changes_dim:
            h = ZeroPad(in_chs, out_chs, stride)
        else:
            h = nn.Identity()
        self.shortcut = _shortcut(row, h, in_chs, out_chs, stride, params)
        self.post = norm_act(p.post, out_chs)  # in place on the sum, a tensor of this unit's own

    def zero_init_last(self) -> None:
        """Zero F's last layer (its last BN's weight, or its last conv's when F ends in a conv): F(x) = 0,
        so the unit starts as its shortcut (timm's ``zero_init_last``)."""
        last = self.F[-1]
        nn.init.zeros_(last.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shared_pre:
            x = self.pre(x)
            f = self.F(x)
        else:
            f = self.F(self.pre(x))
        return self.post(self.shortcut(x, self.drop_path(f)))


def _shortcut(row: Shortcut, h: nn.Module, in_chs: int, out_chs: int, stride: int,
              params: Mapping[str, float]) -> nn.Module:
    """The row's module with exactly its own parameters (the row's defaults where not given)."""
    unknown = sorted(set(params) - set(row.param_names))
    if unknown:
        raise TypeError(f"{unknown[0]}: not a parameter of shortcut={row.name}; allowed: "
                        f"{', '.join(row.param_names) or 'none'}")
    kw = {p.name: params.get(p.name, p.default) for p in row.params}
    return row.module(h, in_chs, out_chs, stride, **kw) if row.weights_on_x else row.module(h, **kw)


def _branch(unit: str, in_chs: int, mid_chs: int, out_chs: int, stride: int, end: str,
            stride_3x3: bool) -> nn.Sequential:
    """F without its pre-activation: convs joined by BN-ReLU, then the placement's ``end``."""
    if unit == "basic":
        shapes = [(in_chs, out_chs, 3, stride), (out_chs, out_chs, 3, 1)]
    else:
        s1, s3 = (1, stride) if stride_3x3 else (stride, 1)
        shapes = [(in_chs, mid_chs, 1, s1), (mid_chs, mid_chs, 3, s3), (mid_chs, out_chs, 1, 1)]
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, (cin, cout, k, s) in enumerate(shapes, start=1):
        layers[f"conv{i}"] = conv(cin, cout, k, s)
        kind = "bn_relu" if i < len(shapes) else end
        if kind:
            layers[f"norm{i}"] = norm_act(kind, cout)
    return nn.Sequential(layers)
