"""ArchSpec: every design choice of one residual network, as data.

A spec round-trips losslessly to a short string and to a dict::

    >>> spec = ArchSpec.cifar(110, act="original", shortcut="scaling", scale=0.5, f_scale=0.5)
    >>> str(spec)
    'layout=cifar,depth=110,unit=basic,act=original,shortcut=scaling,scale=0.5,f_scale=0.5'
    >>> ArchSpec.parse(str(spec)) == spec
    True

Invalid specs raise ``ValueError`` naming the field and the values it allows.
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ACTS", "ACT_LETTERS", "CONVS_PER_UNIT", "IMAGENET_LAYERS", "LAYOUTS", "MAX_DEPTH", "PLACEMENTS",
           "SHORTCUTS", "UNITS", "ArchSpec", "Param", "Placement", "Shortcut", "default_shortcut", "register_shortcut",
           "short_repr", "shortcut_params"]


@dataclass(frozen=True)
class Placement:
    """Where BN and ReLU sit around the addition: one column of Fig. 4, a row of Table 2."""

    letter: str  # its name in Fig. 4, an alias in specs (act=e)
    pre: str  # at the start of F (pre-activation)
    end: str  # after the last conv of F
    post: str  # after the addition: f in Eq. 2
    final: str  # after the last unit, before pooling
    proj_bn: bool  # BN on a projection shortcut, so both branches reach the sum alike


# The activation axis, one row per placement; between the convs of F it is always BN-ReLU.
PLACEMENTS = {
    "original": Placement("a", pre="", end="bn", post="relu", final="", proj_bn=True),
    "bn_after_add": Placement("b", pre="", end="", post="bn_relu", final="", proj_bn=False),
    "relu_before_add": Placement("c", pre="", end="bn_relu", post="", final="", proj_bn=True),
    "relu_preact": Placement("d", pre="relu", end="bn", post="", final="relu", proj_bn=True),
    "preact": Placement("e", pre="bn_relu", end="", post="", final="bn_relu", proj_bn=False),
}
ACTS = tuple(PLACEMENTS)
ACT_LETTERS = {p.letter: name for name, p in PLACEMENTS.items()}
UNITS = ("basic", "bottleneck")
LAYOUTS = ("cifar", "imagenet")
DOWNSAMPLES = ("projection", "zeropad")

DEFAULT_WIDTHS = {"cifar": (16, 32, 64), "imagenet": (64, 128, 256, 512)}
# ImageNet stage layouts by depth (He et al. 2015 Table 1; ResNet-200 from the paper, Sec. 5).
IMAGENET_LAYERS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
CONVS_PER_UNIT = {"basic": 2, "bottleneck": 3}
WIDTH_RANGE = (0.0, 16.0)  # multiplier in (0, 16]
# Sizes a spec may ask for, checked before anything is built (depth=6000002 was a MemoryError after a
# minute of building): far above the paper's nets (1001 layers, ResNet-200's 65M weights).
MAX_DEPTH = 10_000  # weighted layers
MAX_WIDTH = 16_384  # a stage's width
MAX_CHANNELS = 1_000_000  # in_chans and num_classes
MAX_WEIGHTS = 10**10  # 40 GB of float32 weights

_SHORT = reprlib.Repr()  # a repr that stops early: a quoted value may be a megabyte, or contain itself
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 60, 60


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (ending in ...), for error lines that quote a user's value."""
    try:
        text = _SHORT.repr(value)
    except ValueError:  # an int of more digits than Python converts to text
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---- the shortcut axis: one row per kind ---------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One parameter of a shortcut kind: a spec field (``scale=0.5``) and a key of a YAML space."""

    name: str
    default: float
    low: float
    high: float
    meaning: str
    high_open: bool = False  # the range is [low, high)

    def check(self, value: Any) -> float:
        """``value`` as a float in the range, or a one-line ValueError naming the range."""
        value = _float(self.name, value)
        _in_range(self.name, value, self.low, self.high, self.high_open)
        return value


@dataclass(frozen=True)
class Shortcut:
    """One shortcut kind h: a row of Fig. 2 / Table 1 (``resnas.units`` holds the paper's rows).

    ``module(h, **params)`` is the unit's sum of h and F, a module called as ``module(x, F(x))``; with
    ``weights_on_x`` it is ``module(h, in_chs, out_chs, stride, **params)`` (the gates' W_g acts on x).
    ``projection``: h is a 1x1 conv on every unit, not only where the dimension changes. ``factor(module,
    x)``: the kind's factor on h in the shortcut-only term of Eq. 5 (None: undefined), ``term_source``
    how the probe obtains it. ``label(**params)``: the variant's name in the paper's tables.
    """

    name: str
    module: Callable[..., Any]
    label: Callable[..., str]
    params: tuple[Param, ...] = ()
    factor: Callable[[Any, Any], float] | None = None
    term_source: str = "undefined"
    weights_on_x: bool = False
    projection: bool = False

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


# name -> row, in the order of Fig. 2; the first row is a spec's default. Filled by resnas.units (which
# importing any part of resnas imports), so that this module needs no torch.
SHORTCUTS: dict[str, Shortcut] = {}


def register_shortcut(row: Shortcut) -> Shortcut:
    """Add a shortcut kind: a spec's ``shortcut=``, its parameters spec fields and YAML space keys, a unit,
    a probe term. ``del SHORTCUTS[row.name]`` takes it out again. The table is per process: processes
    started afresh (``--workers``, distributed ranks) know only the rows of the modules they import."""
    if row.name in SHORTCUTS:
        raise ValueError(f"shortcut: {row.name!r} is a registered kind already")
    known = shortcut_params()
    for p in row.params:
        if p.name in _FIELDS or p.name == "depth":
            raise ValueError(f"{p.name}: is a spec field; a shortcut parameter needs another name")
        if p.name in known and known[p.name] != p:
            raise ValueError(f"{p.name}: a parameter of {' and '.join(_kinds_of(p.name))} already, with "
                             "another default or range; give it another name")
    SHORTCUTS[row.name] = row
    return row


def shortcut_params() -> dict[str, Param]:
    """Every parameter of the registered shortcut kinds, by name, in the table's order."""
    return {p.name: p for row in SHORTCUTS.values() for p in row.params}


def default_shortcut() -> str:
    """A spec's shortcut kind when none is given: the first row, the paper's identity (Fig. 2a)."""
    return next(iter(SHORTCUTS))


def _kinds_of(param: str) -> list[str]:
    return [row.name for row in SHORTCUTS.values() if param in row.param_names]


def _choices(name: str, value: Any, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: {short_repr(value)} is not allowed; allowed: {', '.join(map(str, allowed))}")


def _in_range(name: str, value: float, lo: float, hi: float, hi_open: bool = False) -> None:
    bad = not math.isfinite(value) or value < lo or (value >= hi if hi_open else value > hi)
    if bad:
        bracket = ")" if hi_open else "]"
        raise ValueError(f"{name}: {short_repr(value)} is out of range; allowed: [{lo:g}, {hi:g}{bracket}")


def cifar_layers(depth: int, unit: str) -> tuple[int, int, int]:
    """Units per stage of a CIFAR net: depth = 6n+2 (basic) or 9n+2 (bottleneck)."""
    _choices("unit", unit, UNITS)
    per = 3 * CONVS_PER_UNIT[unit]
    n, rest = divmod(depth - 2, per)
    if rest or n < 1:
        examples = ", ".join(str(per * k + 2) for k in (1, 2, 3, 18))
        raise ValueError(
            f"depth: {short_repr(depth)} is not {per}n+2 for {unit} CIFAR units; allowed: {examples}, ... (any n >= 1)"
        )
    return (n, n, n)


def imagenet_layers(depth: int) -> tuple[str, tuple[int, ...]]:
    """Unit type and units per stage of the ImageNet net of a depth (18, 34, 50, 101, 152, 200)."""
    if depth not in IMAGENET_LAYERS:
        raise ValueError(
            f"depth: {short_repr(depth)} has no ImageNet layout; allowed: {', '.join(map(str, IMAGENET_LAYERS))}"
            " (or give layers=a-b-c-d)"
        )
    return IMAGENET_LAYERS[depth]


@dataclass(frozen=True)
class ArchSpec:
    """One network of the paper's design space.

    ``layers`` are the units per stage, ``widths`` the (bottleneck) widths of the stages before the
    ``width`` multiplier. The shortcut kind's parameters (its row's ``params`` in ``SHORTCUTS``: for
    scaling ``scale``, lambda on h, and ``f_scale``, lambda on F) are given and read like fields,
    ``ArchSpec(shortcut="scaling", scale=0.5).scale``, and kept in ``shortcut_params``, so a new kind's
    parameter needs no field here. A parameter of another kind reads as its default, and may be given
    only at its default.
    """

    layout: str = "cifar"
    layers: tuple[int, ...] = (18, 18, 18)
    unit: str = "basic"
    act: str = "preact"
    shortcut: str = ""  # "" means default_shortcut()
    shortcut_params: tuple[tuple[str, float], ...] = ()  # (name, value) of each of the kind's parameters
    down: str = "projection"
    widths: tuple[int, ...] = field(default=())  # () means the layout's default
    width: float = 1.0
    stem: str = ""  # "" means the layout's own stem
    in_chans: int = 3
    num_classes: int = 10

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def cifar(cls, depth: int, unit: str = "basic", **kwargs: Any) -> ArchSpec:
        """A CIFAR net (3 stages, 16/32/64 widths) of ``depth``: ``ArchSpec.cifar(164, "bottleneck", act="preact")``."""
        _choices("unit", unit, UNITS)
        return cls(layout="cifar", layers=cifar_layers(depth, unit), unit=unit, **kwargs)

    @classmethod
    def imagenet(cls, depth: int, **kwargs: Any) -> ArchSpec:
        """An ImageNet net (7x7 stem, 4 stages, 1000 classes) of ``depth``: ``ArchSpec.imagenet(200)``."""
        unit, layers = imagenet_layers(depth)
        kwargs.setdefault("num_classes", 1000)
        return cls(layout="imagenet", layers=layers, unit=unit, **kwargs)

    def __init__(self, **values: Any) -> None:
        """The fields by name, and the shortcut kind's parameters by theirs (``scale=0.5``)."""
        params = dict(values.pop("shortcut_params", ()))
        for f in dataclasses.fields(self):
            if f.name != "shortcut_params":
                object.__setattr__(self, f.name, values.pop(f.name, f.default))
        object.__setattr__(self, "shortcut_params", {**params, **values})  # checked in __post_init__
        self.__post_init__()

    def __getattr__(self, name: str) -> float:
        """A shortcut parameter by name (``spec.scale``): this kind's value, another kind's default."""
        param = shortcut_params().get(name)
        if param is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return dict(self.__dict__.get("shortcut_params", ())).get(name, param.default)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # normalise in place: the dataclass is frozen
        set_(self, "act", ACT_LETTERS.get(self.act, self.act))
        if self.shortcut == "":
            set_(self, "shortcut", default_shortcut())
        _choices("layout", self.layout, LAYOUTS)
        _choices("unit", self.unit, UNITS)
        _choices("act", self.act, ACTS + tuple(ACT_LETTERS))
        _choices("shortcut", self.shortcut, tuple(SHORTCUTS))
        _choices("down", self.down, DOWNSAMPLES)
        set_(self, "stem", self.stem or self.layout)
        _choices("stem", self.stem, LAYOUTS)
        set_(self, "layers", _int_tuple("layers", self.layers))
        set_(self, "widths", _int_tuple("widths", self.widths) or DEFAULT_WIDTHS[self.layout])
        if not self.layers or any(n < 1 for n in self.layers):
            raise ValueError(f"layers: {short_repr(self.layers)} must be one or more positive unit counts per stage")
        if self.depth > MAX_DEPTH:
            raise ValueError(f"depth: {short_repr(self.depth)} is above the limit of {MAX_DEPTH} layers")
        if len(self.widths) != len(self.layers) or any(not 1 <= w <= MAX_WIDTH for w in self.widths):
            raise ValueError(f"widths: {short_repr(self.widths)} must be {len(self.layers)} positive widths up to "
                             f"{MAX_WIDTH}, one per stage of layers")
        known = shortcut_params()
        for name in self.shortcut_params:
            if name not in known:
                raise ValueError(f"spec: unknown field {short_repr(name)}; allowed: {', '.join(sorted(_keys()))}")
        given = {name: known[name].check(value) for name, value in dict(self.shortcut_params).items()}
        set_(self, "width", _float("width", self.width))
        _in_range("width", self.width, *WIDTH_RANGE)
        if self.width == 0:
            raise ValueError("width: 0.0 is out of range; allowed: (0, 16]")
        row = SHORTCUTS[self.shortcut]
        for name, value in given.items():
            if name not in row.param_names and value != known[name].default:
                kinds = " or ".join(_kinds_of(name))
                raise ValueError(f"{name}: only applies to shortcut={kinds}, not {self.shortcut}")
        set_(self, "shortcut_params", tuple((p.name, given.get(p.name, p.default)) for p in row.params))
        if self.down == "zeropad" and self.unit != "basic":
            raise ValueError("down: zeropad (option A) needs unit=basic; allowed for bottleneck: projection")
        for name in ("in_chans", "num_classes"):
            value = getattr(self, name)
            lowest = 1 if name == "in_chans" else 0
            if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= MAX_CHANNELS:
                raise ValueError(f"{name}: {short_repr(value)} must be an integer >= {lowest}, at most {MAX_CHANNELS}")
        if self._weights() > MAX_WEIGHTS:
            raise ValueError(f"spec: about {self._weights():.3g} weights, above the limit of {MAX_WEIGHTS:.0e}; "
                             "lower depth, widths, width or num_classes")

    def _weights(self) -> float:
        """About how many weights the net allocates (at most 3x3 convs in every unit, the stem, the fc)."""
        convs = sum(n * CONVS_PER_UNIT[self.unit] * 9 * w * w for n, w in zip(self.layers, self.stage_widths))
        features = self.stage_widths[-1] * (4 if self.unit == "bottleneck" else 1)
        return float(convs + 49 * self.in_chans * self.stage_widths[0] + features * self.num_classes)

    # ---- derived ------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Weighted layers: convs of the units + conv1 + fc (the paper's ResNet-N naming)."""
        return CONVS_PER_UNIT[self.unit] * sum(self.layers) + 2

    @property
    def stage_widths(self) -> tuple[int, ...]:
        """The width of each stage after the ``width`` multiplier (bottleneck outputs are 4x these)."""
        return tuple(max(1, round(w * self.width)) for w in self.widths)

    @property
    def preact(self) -> bool:
        """Activation placements (d) and (e) move the activation into F (pre-activation)."""
        return PLACEMENTS[self.act].pre != ""

    # ---- round trips --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (lists for tuples); ``ArchSpec.from_dict`` reads it back."""
        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "shortcut_params":  # flat, every kind's parameters: scale=..., gate_bias=...
                d.update({name: getattr(self, name) for name in shortcut_params()})
            else:
                d[f.name] = getattr(self, f.name)
        d["layers"], d["widths"] = list(self.layers), list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchSpec:
        """A spec from a mapping of fields (``depth`` accepted); unknown or bad fields raise a one-line ValueError."""
        if not isinstance(d, dict):
            raise ValueError(f"spec: expected a mapping, got {type(d).__name__}")
        d = dict(d)
        if d.get("layout") == "imagenet":
            d.setdefault("num_classes", 1000)  # ImageNet nets default to its 1000 classes
        unknown = sorted(map(str, set(d) - _keys()))
        if unknown:
            raise ValueError(f"spec: unknown field {short_repr(unknown[0])}; allowed: {', '.join(sorted(_keys()))}")
        if "depth" in d:
            if "layers" in d:
                raise ValueError("depth: give depth or layers, not both")
            depth = _int("depth", d.pop("depth"))
            layout = d.get("layout", "cifar")
            _choices("layout", layout, LAYOUTS)
            if layout == "cifar":
                d["layers"] = cifar_layers(depth, d.get("unit", "basic"))
            else:
                unit, d["layers"] = imagenet_layers(depth)
                if d.setdefault("unit", unit) != unit:
                    raise ValueError(f"unit: ImageNet depth {depth} uses {unit} units; give layers= for "
                                     f"{short_repr(d['unit'])}")
        return cls(**d)

    def __str__(self) -> str:
        parts = [f"layout={self.layout}", self._depth_token(), f"unit={self.unit}", f"act={self.act}",
                 f"shortcut={self.shortcut}"]
        parts += [f"{p.name}={_fmt(value)}" for p, (_, value) in zip(SHORTCUTS[self.shortcut].params,
                                                                       self.shortcut_params) if value != p.default]
        defaults = {**_DEFAULTS, "widths": DEFAULT_WIDTHS[self.layout], "stem": self.layout,
                    "num_classes": 1000 if self.layout == "imagenet" else _DEFAULTS["num_classes"]}
        for name in ("down", "widths", "width", "stem", "in_chans", "num_classes"):
            value = getattr(self, name)
            if value != defaults[name]:
                parts.append(f"{name}={_fmt(value)}")
        return ",".join(parts)

    def _depth_token(self) -> str:
        if self.layout == "cifar" and len(set(self.layers)) == 1 and len(self.layers) == 3:
            return f"depth={self.depth}"
        if self.layout == "imagenet" and IMAGENET_LAYERS.get(self.depth) == (self.unit, self.layers):
            return f"depth={self.depth}"
        return f"layers={_fmt(self.layers)}"

    @classmethod
    def parse(cls, text: str) -> ArchSpec:
        """Parse the ``key=value,...`` string of ``str(spec)``."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("spec: empty spec string; expected key=value pairs such as 'depth=110,act=preact'")
        d: dict[str, Any] = {}
        keys = _keys()
        for token in text.strip().split(","):
            key, sep, value = token.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key:
                raise ValueError(f"spec: {short_repr(token)} is not key=value")
            if key not in keys:
                raise ValueError(f"spec: unknown field {short_repr(key)}; allowed: {', '.join(sorted(keys))}")
            if key in d:
                raise ValueError(f"{key}: given twice")
            d[key] = _PARSERS[key](key, value) if key in _PARSERS else value
        return cls.from_dict(d)

    def replace(self, **changes: Any) -> ArchSpec:
        """A copy with some fields changed, validated like a new spec."""
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name for f in dataclasses.fields(ArchSpec)}
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ArchSpec)}


def _keys() -> set[str]:
    """What a spec string or dict may name: the fields (shortcut parameters flat), and depth."""
    return (_FIELDS - {"shortcut_params"}) | {"depth"} | set(shortcut_params())


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name}: {short_repr(value)} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{name}: {short_repr(value)} is not an integer") from None


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name}: {short_repr(value)} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {short_repr(value)} is not a number") from None


def _int_tuple(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        value = [v for v in value.replace("x", "-").split("-") if v.strip()] if value.strip() else []
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name}: {short_repr(value)} is not a list of integers such as 3-4-6-3")
    return tuple(_int(name, v) for v in value)


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return "-".join(map(str, value))
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


_PARSERS = {
    "depth": _int,
    "layers": _int_tuple,
    "widths": _int_tuple,
    "in_chans": _int,
    "num_classes": _int,
    "width": _float,
}
