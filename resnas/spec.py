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
from dataclasses import dataclass, field
from typing import Any

# Activation placements of Fig. 4 / Table 2, with the paper's letters as aliases.
ACTS = ("original", "bn_after_add", "relu_before_add", "relu_preact", "preact")
ACT_LETTERS = dict(zip("abcde", ACTS))
# Shortcut kinds of Fig. 2 / Table 1.
SHORTCUTS = ("identity", "scaling", "exclusive_gate", "shortcut_gate", "conv1x1", "dropout")
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

# Ranges of the shortcut parameters (Table 1 uses 0, 0.5, 1; > 1 is allowed to study explosion, Eq. 7).
SCALE_RANGE = (0.0, 2.0)
GATE_BIAS_RANGE = (-20.0, 20.0)
DROP_RANGE = (0.0, 1.0)  # p in [0, 1)
WIDTH_RANGE = (0.0, 16.0)  # multiplier in (0, 16]


def _choices(name: str, value: Any, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: {value!r} is not allowed; allowed: {', '.join(map(str, allowed))}")


def _in_range(name: str, value: float, lo: float, hi: float, hi_open: bool = False) -> None:
    bad = not math.isfinite(value) or value < lo or (value >= hi if hi_open else value > hi)
    if bad:
        bracket = ")" if hi_open else "]"
        raise ValueError(f"{name}: {value!r} is out of range; allowed: [{lo:g}, {hi:g}{bracket}")


def cifar_layers(depth: int, unit: str) -> tuple[int, int, int]:
    """Units per stage of a CIFAR net: depth = 6n+2 (basic) or 9n+2 (bottleneck)."""
    per = 3 * CONVS_PER_UNIT[unit]
    n, rest = divmod(depth - 2, per)
    if rest or n < 1:
        examples = ", ".join(str(per * k + 2) for k in (1, 2, 3, 18))
        raise ValueError(
            f"depth: {depth} is not {per}n+2 for {unit} CIFAR units; allowed: {examples}, ... (any n >= 1)"
        )
    return (n, n, n)


def imagenet_layers(depth: int) -> tuple[str, tuple[int, ...]]:
    """Unit type and units per stage of the ImageNet net of a depth (18, 34, 50, 101, 152, 200)."""
    if depth not in IMAGENET_LAYERS:
        raise ValueError(
            f"depth: {depth} has no ImageNet layout; allowed: {', '.join(map(str, IMAGENET_LAYERS))}"
            " (or give layers=a-b-c-d)"
        )
    return IMAGENET_LAYERS[depth]


@dataclass(frozen=True)
class ArchSpec:
    """One network of the paper's design space.

    ``layers`` are the units per stage, ``widths`` the (bottleneck) widths of the stages before the
    ``width`` multiplier. Shortcut parameters: ``scale`` is lambda on h and ``f_scale`` lambda on F
    (Fig. 2b), ``gate_bias`` the initial b_g of the gates (Fig. 2c/d), ``drop`` the dropout ratio
    on the shortcut (Fig. 2f). Each may differ from its default only for its own shortcut kind.
    """

    layout: str = "cifar"
    layers: tuple[int, ...] = (18, 18, 18)
    unit: str = "basic"
    act: str = "preact"
    shortcut: str = "identity"
    scale: float = 1.0
    f_scale: float = 1.0
    gate_bias: float = -6.0
    drop: float = 0.5
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

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # normalise in place: the dataclass is frozen
        set_(self, "act", ACT_LETTERS.get(self.act, self.act))
        _choices("layout", self.layout, LAYOUTS)
        _choices("unit", self.unit, UNITS)
        _choices("act", self.act, ACTS + tuple(ACT_LETTERS))
        _choices("shortcut", self.shortcut, SHORTCUTS)
        _choices("down", self.down, DOWNSAMPLES)
        set_(self, "stem", self.stem or self.layout)
        _choices("stem", self.stem, LAYOUTS)
        set_(self, "layers", _int_tuple("layers", self.layers))
        set_(self, "widths", _int_tuple("widths", self.widths) or DEFAULT_WIDTHS[self.layout])
        if not self.layers or any(n < 1 for n in self.layers):
            raise ValueError(f"layers: {self.layers!r} must be one or more positive unit counts per stage")
        if len(self.widths) != len(self.layers) or any(w < 1 for w in self.widths):
            raise ValueError(
                f"widths: {self.widths!r} must be {len(self.layers)} positive widths, one per stage of layers"
            )
        for name in ("scale", "f_scale", "gate_bias", "drop", "width"):
            set_(self, name, _float(name, getattr(self, name)))
        _in_range("scale", self.scale, *SCALE_RANGE)
        _in_range("f_scale", self.f_scale, *SCALE_RANGE)
        _in_range("gate_bias", self.gate_bias, *GATE_BIAS_RANGE)
        _in_range("drop", self.drop, *DROP_RANGE, hi_open=True)
        _in_range("width", self.width, *WIDTH_RANGE)
        if self.width == 0:
            raise ValueError("width: 0.0 is out of range; allowed: (0, 16]")
        for name, kinds in _PARAM_KINDS.items():
            if getattr(self, name) != _DEFAULTS[name] and self.shortcut not in kinds:
                raise ValueError(f"{name}: only applies to shortcut={' or '.join(kinds)}, not {self.shortcut}")
        if self.down == "zeropad" and self.unit != "basic":
            raise ValueError("down: zeropad (option A) needs unit=basic; allowed for bottleneck: projection")
        for name in ("in_chans", "num_classes"):
            value = getattr(self, name)
            lowest = 1 if name == "in_chans" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise ValueError(f"{name}: {value!r} must be an integer >= {lowest}")

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
        return self.act in ("relu_preact", "preact")

    # ---- round trips --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (lists for tuples); ``ArchSpec.from_dict`` reads it back."""
        d = dataclasses.asdict(self)
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
        unknown = sorted(map(str, set(d) - _KEYS))
        if unknown:
            raise ValueError(f"spec: unknown field {unknown[0]!r}; allowed: {', '.join(sorted(_KEYS))}")
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
                    raise ValueError(f"unit: ImageNet depth {depth} uses {unit} units; give layers= for {d['unit']}")
        return cls(**d)

    def __str__(self) -> str:
        parts = [f"layout={self.layout}", self._depth_token(), f"unit={self.unit}", f"act={self.act}",
                 f"shortcut={self.shortcut}"]
        defaults = {**_DEFAULTS, "widths": DEFAULT_WIDTHS[self.layout], "stem": self.layout,
                    "num_classes": 1000 if self.layout == "imagenet" else _DEFAULTS["num_classes"]}
        for name in ("scale", "f_scale", "gate_bias", "drop", "down", "widths", "width", "stem",
                     "in_chans", "num_classes"):
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
        for token in text.strip().split(","):
            key, sep, value = token.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key:
                raise ValueError(f"spec: {token!r} is not key=value")
            if key not in _KEYS:
                raise ValueError(f"spec: unknown field {key!r}; allowed: {', '.join(sorted(_KEYS))}")
            if key in d:
                raise ValueError(f"{key}: given twice")
            d[key] = _PARSERS[key](key, value) if key in _PARSERS else value
        return cls.from_dict(d)

    def replace(self, **changes: Any) -> ArchSpec:
        """A copy with some fields changed, validated like a new spec."""
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name for f in dataclasses.fields(ArchSpec)}
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ArchSpec)}
_KEYS = _FIELDS | {"depth"}  # what a spec string or dict may name
# Which shortcut kinds each parameter belongs to.
_PARAM_KINDS = {
    "scale": ("scaling",),
    "f_scale": ("scaling",),
    "gate_bias": ("exclusive_gate", "shortcut_gate"),
    "drop": ("dropout",),
}


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name}: {value!r} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not an integer") from None


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name}: {value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {value!r} is not a number") from None


def _int_tuple(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        value = [v for v in value.replace("x", "-").split("-") if v.strip()] if value.strip() else []
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name}: {value!r} is not a list of integers such as 3-4-6-3")
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
    "scale": _float,
    "f_scale": _float,
    "gate_bias": _float,
    "drop": _float,
    "width": _float,
}
