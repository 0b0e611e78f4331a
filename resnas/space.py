"""Search spaces: a YAML file -> validated ``Space`` -> ``trial.suggest_*`` calls -> ``ArchSpec``.

A space is define-by-run (Optuna's style): ``Space.suggest(trial)`` asks for the unit, depth,
activation placement and shortcut kind, and for a kind's own parameters only when that kind is
chosen. The grid of a grid space is enumerated by walking the very same function, so the grid and
the sampled space can never disagree.

    >>> space = load_space("paper_table2")
    >>> len(space.grid_points())
    10
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .data import DATASETS
from .errors import did_you_mean, one_line
from .recipe import SCHEDULES, SEED_MAX, Recipe
from .spec import (
    ACT_LETTERS,
    ACTS,
    IMAGENET_LAYERS,
    LAYOUTS,
    SHORTCUTS,
    UNITS,
    ArchSpec,
    default_shortcut,
    short_repr,
    shortcut_params,
)

__all__ = ["DEFAULT_TRIALS", "Range", "Space", "SpaceError", "builtin_spaces", "compact_spec", "fixed_fields",
           "load_space", "parse_space"]

SAMPLERS = ("tpe", "random", "grid", "nsga2")
PRUNERS = ("hyperband", "successive_halving", "median", "none")
OBJECTIVES = ("val_error", "params", "macs")
TOP_KEYS = ("name", "description", "dataset", "sampler", "pruner", "objectives", "epochs", "trials", "seed",
            "recipe", "space")
SPACE_KEYS = ("layout", "stem", "unit", "depth", "act", "shortcut", "width", "widths", "down")
# a space's recipe may set every field of Recipe but its schedule's length, which is the space's epochs.max
RECIPE_KEYS = tuple(f.name for f in dataclasses.fields(Recipe) if f.name != "schedule_epochs")
# a space file is a few hundred bytes: 1 MiB as written, and with its aliases expanded (a "billion laughs"
# of ten lines stands for gigabytes)
MAX_SPACE_SIZE = 2**20
MAX_POINTS = 100_000  # points of a space (each range at both ends): each is checked when the space loads


DEFAULT_TRIALS = 10  # the search's target for a space that names no ``trials:``


class SpaceError(ValueError):
    """A search space that cannot be used; the message is one line naming the file and the key."""


@dataclass(frozen=True)
class Range:
    """A numeric range of a conditional parameter: ``{low: -8, high: 0, step: 1, log: false}``."""

    low: float
    high: float
    step: float | None = None
    log: bool = False

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


Values = tuple | Range  # a list of choices or a range


@dataclass(frozen=True)
class Space:
    """A validated search space: its sampler, pruner, objectives, epoch budget, recipe and choices."""
    name: str
    description: str = ""
    dataset: str = "digits"
    sampler: str = "tpe"
    pruner: str = "hyperband"
    objectives: tuple[str, ...] = ("val_error",)
    min_epochs: int = 1
    max_epochs: int = 10
    trials: int | None = None
    seed: int = 0
    recipe: dict[str, Any] = field(default_factory=dict)
    # the design choices: name -> Values; ``depth`` may be a dict unit -> Values; ``shortcut`` a dict
    # kind -> (dict param -> Values, or a tuple of explicit rows)
    choices: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def directions(self) -> list[str]:
        return ["minimize"] * len(self.objectives)

    def suggest(self, trial, **fixed: Any) -> ArchSpec:
        """Turn ``trial`` (an optuna Trial, FixedTrial or anything with suggest_*) into an ArchSpec.

        ``fixed`` fields (such as ``in_chans`` and ``num_classes`` from the data) are set as given.
        """
        c, d = self.choices, {}
        d["layout"] = c["layout"]
        if c.get("stem"):
            d["stem"] = c["stem"]
        if d["layout"] == "cifar":
            d["unit"] = _pick(trial, "unit", c["unit"])
        depth = c["depth"]
        if isinstance(depth, dict):
            d["depth"] = _pick(trial, f"{d['unit']}_depth", depth[d["unit"]])
        else:
            d["depth"] = _pick(trial, "depth", depth)
        d["act"] = _pick(trial, "act", c["act"])
        kinds = c["shortcut"]
        d["shortcut"] = _pick(trial, "shortcut", tuple(kinds))
        params = kinds[d["shortcut"]]
        if isinstance(params, tuple):  # explicit rows, e.g. Table 1's (lambda, lambda_F) pairs
            labels = tuple(_row_label(r) for r in params)
            row = params[labels.index(_pick(trial, f"{d['shortcut']}.row", labels))]
            d.update(row)
        else:  # named per kind: the two gates' b_g are different parameters to a sampler
            for name, values in params.items():
                d[name] = _pick(trial, f"{d['shortcut']}.{name}", values)
        for name in ("width", "down"):
            if name in c:
                d[name] = _pick(trial, name, c[name])
        if "widths" in c:
            labels = tuple("-".join(map(str, w)) for w in c["widths"])
            d["widths"] = _pick(trial, "widths", labels)
        return ArchSpec.from_dict({**d, **fixed})

    def grid_points(self) -> list[dict[str, Any]]:
        """Every point of the space as Optuna params (for ``study.enqueue_trial``), in a stable order."""
        return [params for params, _ in _walk(self.suggest)]

    def params_of(self, spec: ArchSpec | str, **fixed: Any) -> dict[str, Any] | None:
        """The Optuna params of ``spec`` when the space holds it (its lists, a range at either end), else None."""
        for end in (0, 1):
            try:
                found = [p for p, s in _walk(lambda t: self.suggest(t, **fixed), end) if str(s) == str(spec)]
            except (SpaceError, ValueError):  # a combination that is no spec
                return None
            if found:
                return found[0]
        return None

    def specs(self, **fixed: Any) -> list[ArchSpec]:
        """The ArchSpec of every grid point."""
        return [spec for _, spec in _walk(lambda t: self.suggest(t, **fixed))]


DATA_FIELDS = ("in_chans", "num_classes")  # set by the data set: the same in every trial of a study


def compact_spec(spec: ArchSpec | str, space: Space | None = None) -> str:
    """The fields of ``spec`` that its space varies (the space's fixed choices and the data's fields left
    out), floats at the space's step or to 4 significant digits: a spec that a table row can hold.

        >>> compact_spec("depth=14,act=preact,shortcut=scaling,scale=0.925596638292661,widths=8-16-32,in_chans=1",
        ...              load_space("default"))
        'depth=14,act=preact,shortcut=scaling,scale=0.9256,f_scale=1'
    """
    return ",".join(_split_spec(spec, space)[0])


def fixed_fields(spec: ArchSpec | str, space: Space | None = None) -> str:
    """What ``compact_spec`` leaves out of ``spec``: the space's fixed choices and the data's fields."""
    return ",".join(_split_spec(spec, space)[1])


def _split_spec(spec: ArchSpec | str, space: Space | None) -> tuple[list[str], list[str]]:
    try:
        spec = ArchSpec.parse(spec) if isinstance(spec, str) else spec
    except ValueError:  # not a spec resnas wrote: shown as it is
        return [str(spec)], []
    shown, left = [], []
    tokens = [t for t in str(spec).split(",") if t.partition("=")[0] not in shortcut_params()]
    at = [t.partition("=")[0] for t in tokens].index("shortcut") + 1
    # the kind's parameters as str(spec) gives them, and one the space varies at its default too (gate_bias=-6)
    tokens[at:at] = [f"{p.name}={value}" for p, (_, value) in zip(SHORTCUTS[spec.shortcut].params,
                                                                   spec.shortcut_params)
                     if value != p.default or (space and not _single(_values_of(space, spec.shortcut, p.name)))]
    for token in tokens:
        key = token.partition("=")[0]
        values = _values_of(space, spec.shortcut, key)
        if key in DATA_FIELDS or (values is not None and _single(values)):
            left.append(token)
        elif key in shortcut_params() or key == "width":
            step = values.step if isinstance(values, Range) else None
            shown.append(f"{key}={_short_float(getattr(spec, key), step)}")
        else:
            shown.append(token)
    return shown, left


def _values_of(space: Space | None, kind: str, key: str) -> Values | None:
    """The values ``space`` allows for a spec field (of shortcut ``kind``); None when unknown."""
    if space is None:
        return None
    c = space.choices
    if key in ("layout", "stem"):
        return (c.get(key),)
    if key in ("depth", "layers"):
        depth = c["depth"]
        if isinstance(depth, dict):
            return depth if any(isinstance(v, Range) for v in depth.values()) else \
                tuple({v for values in depth.values() for v in values})
        return depth
    if key == "shortcut":
        return tuple(c["shortcut"])
    if key in shortcut_params():
        params = c["shortcut"].get(kind, {})
        if isinstance(params, tuple):  # explicit rows
            return tuple({row.get(key) for row in params})
        return params.get(key, ())
    return c.get(key, ())  # a field the space does not name is the same in all its specs


def _single(values: Any) -> bool:
    return not isinstance(values, (Range, dict)) and len(values) <= 1


def _short_float(value: float, step: float | None) -> str:
    """``value`` at the decimals of ``step`` (a range's grid), else to 4 significant digits."""
    if step:
        decimals = max(0, -Decimal(repr(float(step))).normalize().as_tuple().exponent)
        text = f"{round(value, decimals) + 0.0:.{decimals}f}"  # + 0.0: never "-0"
    else:
        text = f"{value:.4g}"
    return text.rstrip("0").rstrip(".") if "." in text and "e" not in text else text


def _pick(trial, name: str, values: Values):
    if isinstance(values, Range):
        return values.suggest(trial, name)
    if len(values) == 1:  # a fixed choice is not a parameter
        return values[0]
    return trial.suggest_categorical(name, list(values))


def _row_label(row: dict[str, Any]) -> str:
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


class _Walker:
    """A trial that answers suggest_categorical from a path of choice indices (depth-first enumeration);
    ranges answer their low or high end (``end``), or are refused in a grid."""

    def __init__(self, path: list[int], end: int | None = None):
        self.path, self.pos, self.params, self.sizes, self.end = path, 0, {}, [], end

    def suggest_categorical(self, name: str, choices: list):
        if self.pos == len(self.path):
            self.path.append(0)
        self.sizes.append(len(choices))
        value = choices[self.path[self.pos]]
        self.pos += 1
        self.params[name] = value
        return value

    def suggest_float(self, name: str, low: float, high: float, **_: Any) -> float:
        if self.end is None:
            raise SpaceError(f"{name}: a grid needs a list of values, not a range")
        return (low, high)[self.end]


def _walk(fn, end: int | None = None) -> list[tuple[dict[str, Any], Any]]:
    out, path = [], []
    while True:
        if len(out) == MAX_POINTS:
            raise SpaceError(f"space: more than {MAX_POINTS} points (the product of its choices); make it smaller")
        walker = _Walker(path, end)
        out.append((walker.params, fn(walker)))
        del path[walker.pos:]
        # advance the path like an odometer over the choices this branch asked for
        while path and path[-1] + 1 >= walker.sizes[len(path) - 1]:
            path.pop()
        if not path:
            return out
        path[-1] += 1


# ---- loading and validation ---------------------------------------------------------------------
def builtin_dir() -> Path:
    """search_spaces/ inside the installed wheel, or beside the package in a source checkout."""
    packaged = Path(str(resources.files("resnas"))) / "search_spaces"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "search_spaces"


def builtin_spaces() -> dict[str, Path]:
    """The spaces shipped in the package (``search_spaces/*.yaml``), by name."""
    return {p.stem: p for p in sorted(builtin_dir().glob("*.yaml"))}


def load_space(name_or_path: str | Path) -> Space:
    """A built-in space by name (``default``) or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        spaces = builtin_spaces()
        if str(name_or_path) not in spaces:
            raise SpaceError(f"space: unknown space {short_repr(str(name_or_path))}; allowed: {', '.join(spaces)} "
                             f"or a path to a .yaml file{did_you_mean(name_or_path, spaces)}")
        path = spaces[str(name_or_path)]
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SPACE_SIZE + 1)  # never more: --space may name any file
    except OSError as e:
        raise SpaceError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_SPACE_SIZE:
        raise SpaceError(f"{path}: larger than the limit of 1 MiB for a space file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpaceError(f"{path}: not UTF-8 text (byte {e.start})") from None
    return parse_space(text, source=str(path), default_name=path.stem)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that counts the size of the document with its aliases expanded, as it reads it
    (an alias adds the size of what it names), and refuses a document above MAX_SPACE_SIZE."""

    def compose_document(self):
        self.sizes: dict[int, int] = {}  # id(node) -> its size expanded
        return super().compose_document()

    def compose_node(self, parent, index):
        alias = self.check_event(yaml.AliasEvent)
        node = super().compose_node(parent, index)
        if alias:  # sized where its anchor was read
            return node
        if isinstance(node, yaml.ScalarNode):
            size = len(node.value) + 1
        else:  # an alias inside its own anchor counts 1 (not yet sized)
            children = [n for item in node.value for n in (item if isinstance(item, tuple) else (item,))]
            size = 1 + sum(self.sizes.get(id(n), 1) for n in children)
        if size > MAX_SPACE_SIZE:
            raise SpaceError(f"with its aliases expanded, the file is larger than the limit of 1 MiB (line "
                             f"{node.start_mark.line + 1})")
        self.sizes[id(node)] = size
        return node


def _load_yaml(text: str) -> Any:
    """The YAML document of ``text`` (PyYAML's safe loader), bounded in size, or a one-line SpaceError."""
    if len(text) > MAX_SPACE_SIZE:
        raise SpaceError("larger than the limit of 1 MiB for a space file")
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {_line_of(text, mark)}" if mark is not None else ""
        reason = getattr(e, "problem", None) or getattr(e, "reason", None)
        context, opened = getattr(e, "context", None), getattr(e, "context_mark", None)
        if reason and context and opened is not None:  # where the unclosed [ { or quote began
            reason += f" ({context} from line {_line_of(text, opened)})"
        raise SpaceError(f"not valid YAML{where}{f': {one_line(reason)}' if reason else ''}") from None
    except SpaceError:  # the loader's own, a ValueError too
        raise
    except RecursionError:
        raise SpaceError("values nested too deeply") from None
    except ValueError as e:  # from a constructor: int() of over 4300 digits, a date such as 2024-13-01
        raise SpaceError(f"not valid YAML: {one_line(str(e).split(';')[0])}") from None


def _line_of(text: str, mark: yaml.Mark) -> int:
    """The 1-based line of PyYAML's ``mark``; one at the end of the file is on the line after the last
    newline, which no editor shows: the last line with text instead."""
    if not text[mark.index:].strip():
        return max(1, len(text[:mark.index].rstrip().splitlines()))
    return mark.line + 1


def parse_space(text: str, source: str = "<space>", default_name: str = "space") -> Space:
    """A ``Space`` from YAML text; every mistake is a one-line ``SpaceError`` naming ``source`` and the key."""
    try:
        return _build(_load_yaml(text), source, default_name)
    except SpaceError as e:
        raise SpaceError(f"{source}: {e}") from None
    except ValueError as e:  # from ArchSpec validation of the space's points
        raise SpaceError(f"{source}: space: {e}") from None


def _build(raw: Any, source: str, default_name: str) -> Space:
    raw = _mapping(raw, "top level", TOP_KEYS)
    space = _mapping(raw.get("space"), "space", SPACE_KEYS)
    choices = _choices(space)
    epochs = _mapping(raw.get("epochs", {}), "epochs", ("min", "max"))
    max_epochs = _integer(epochs.get("max", 10), "epochs.max", 1)
    min_epochs = _integer(epochs.get("min", 1), "epochs.min", 1)
    if min_epochs > max_epochs:
        raise SpaceError(f"epochs.min: {short_repr(min_epochs)} is above epochs.max {short_repr(max_epochs)}")
    objectives = _list(raw.get("objectives", ["val_error"]), "objectives")
    for o in objectives:
        _one_of(o, "objectives", OBJECTIVES)
    if objectives[0] != "val_error" or len(set(objectives)) != len(objectives) or len(objectives) > 2:
        raise SpaceError("objectives: must be [val_error] or [val_error, params|macs]")
    sampler = _one_of(raw.get("sampler", "nsga2" if len(objectives) == 2 else "tpe"), "sampler", SAMPLERS)
    pruner = _one_of(raw.get("pruner", "hyperband"), "pruner", PRUNERS)
    if len(objectives) == 2 and pruner != "none":
        raise SpaceError("pruner: Optuna cannot prune multi-objective studies; allowed with two objectives: none")
    recipe = _mapping(raw.get("recipe", {}), "recipe", RECIPE_KEYS)
    _check_recipe(recipe)
    trials = raw.get("trials")
    out = Space(
        name=_string(raw.get("name", default_name), "name"),
        description=_string(raw.get("description", ""), "description"),
        dataset=_one_of(raw.get("dataset", "digits"), "dataset", DATASETS),
        sampler=sampler, pruner=pruner, objectives=tuple(objectives),
        min_epochs=min_epochs, max_epochs=max_epochs,
        trials=None if trials is None else _integer(trials, "trials", 1),
        seed=_integer(raw.get("seed", 0), "seed", 0, SEED_MAX),
        recipe=dict(recipe), choices=choices, source=source,
    )
    _check_points(out)
    return out


def _check_recipe(recipe: dict) -> None:
    """Each value of its field's type (a one-line error naming the key), then Recipe's own checks of the ranges."""
    defaults = {f.name: f.default for f in dataclasses.fields(Recipe)}
    values = {k: _recipe_value(v, f"recipe.{k}", defaults[k]) for k, v in recipe.items()}
    try:
        Recipe(**values)
    except (TypeError, ValueError) as e:
        raise SpaceError(f"recipe: {one_line(str(e))}") from None


def _recipe_value(value: Any, key: str, default: Any) -> Any:
    """``value`` as the type of its field's default (a milestones list as a tuple)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SpaceError(f"{key}: {short_repr(value)} is not true or false")
        return value
    if isinstance(default, int):
        return _integer(value, key, 0)
    if isinstance(default, float):
        return _number(value, key)
    if isinstance(default, tuple):
        return tuple(_number(v, key) for v in _list(value, key))
    return _one_of(value, key, SCHEDULES)  # the one text field


def _choices(space: dict) -> dict[str, Any]:
    layout = _one_of(space.get("layout", "cifar"), "space.layout", LAYOUTS)
    c: dict[str, Any] = {"layout": layout}
    if "stem" in space:
        c["stem"] = _one_of(space["stem"], "space.stem", LAYOUTS)
    if layout == "cifar":
        c["unit"] = tuple(_one_of(u, "space.unit", UNITS) for u in _list(space.get("unit", ["basic"]), "space.unit"))
    elif "unit" in space:
        raise SpaceError("space.unit: the ImageNet layout takes its unit from the depth; remove unit")
    if "depth" not in space:
        raise SpaceError("space.depth: missing; give a list of depths (or unit -> list)")
    depth = space["depth"]
    if isinstance(depth, dict):
        if layout != "cifar":
            raise SpaceError("space.depth: a per-unit mapping needs layout cifar")
        _mapping(depth, "space.depth", UNITS)
        missing = [u for u in c["unit"] if u not in depth]
        if missing:
            raise SpaceError(f"space.depth: no depths for unit {missing[0]}")
        c["depth"] = {u: tuple(_integer(v, f"space.depth.{u}", 3) for v in _list(depth[u], f"space.depth.{u}"))
                      for u in c["unit"]}
    else:
        c["depth"] = tuple(_integer(v, "space.depth", 3) for v in _list(depth, "space.depth"))
        if layout == "imagenet":
            for v in c["depth"]:
                _one_of(v, "space.depth", tuple(IMAGENET_LAYERS))
    acts = _list(space.get("act", ["preact"]), "space.act")
    c["act"] = tuple(ACT_LETTERS.get(_one_of(a, "space.act", ACTS + tuple(ACT_LETTERS)), a) for a in acts)
    c["shortcut"] = _shortcuts(space.get("shortcut", [default_shortcut()]))
    if "width" in space:
        c["width"] = tuple(_number(v, "space.width") for v in _list(space["width"], "space.width"))
    if "widths" in space:
        c["widths"] = tuple(tuple(_integer(x, "space.widths", 1) for x in _list(w, "space.widths"))
                            for w in _list(space["widths"], "space.widths"))
    if "down" in space:
        downs = _list(space["down"], "space.down")
        c["down"] = tuple(_one_of(v, "space.down", ("projection", "zeropad")) for v in downs)
    _unique(c)
    return c


def _shortcuts(raw: Any) -> dict[str, Any]:
    """``[identity, conv1x1]`` or ``{scaling: {scale: [0, 0.5]}, exclusive_gate: {gate_bias: {low: -8, high: 0}}}``;
    each kind's keys are its row's parameters (``SHORTCUTS``)."""
    if isinstance(raw, list):
        for k in raw:
            if not isinstance(k, Hashable):  # [[identity]]: one line naming the kinds, not a TypeError
                _one_of(k, "space.shortcut", tuple(SHORTCUTS))
        raw = {k: {} for k in raw}
    kinds = _mapping(raw, "space.shortcut", SHORTCUTS)
    if not kinds:
        raise SpaceError("space.shortcut: empty; allowed: " + ", ".join(SHORTCUTS))
    out: dict[str, Any] = {}
    for kind, params in kinds.items():
        key = f"space.shortcut.{kind}"
        if isinstance(params, list):  # explicit rows
            rows = tuple(dict(_mapping(r, key, SHORTCUTS[kind].param_names)) for r in params)
            if not rows:
                raise SpaceError(f"{key}: an empty list of rows")
            out[kind] = tuple({p: _number(v, f"{key}.{p}") for p, v in r.items()} for r in rows)
            continue
        params = _mapping(params or {}, key, SHORTCUTS[kind].param_names)
        out[kind] = {p: _values(v, f"{key}.{p}") for p, v in params.items()}
    return out


def _values(raw: Any, key: str) -> Values:
    if isinstance(raw, dict):
        r = _mapping(raw, key, ("low", "high", "step", "log"))
        if "low" not in r or "high" not in r:
            raise SpaceError(f"{key}: a range needs low and high")
        low, high = _number(r["low"], f"{key}.low"), _number(r["high"], f"{key}.high")
        if low >= high:
            raise SpaceError(f"{key}: low {low:g} must be below high {high:g}")
        step = None if r.get("step") is None else _number(r["step"], f"{key}.step")
        log = r.get("log", False)
        if not isinstance(log, bool) or (log and (low <= 0 or step is not None)):
            raise SpaceError(f"{key}.log: must be true or false; log needs low > 0 and no step")
        if step is not None and step <= 0:
            raise SpaceError(f"{key}.step: must be > 0")
        return Range(low, high, step, log)
    return tuple(_number(v, key) for v in _list(raw, key))


def _unique(c: dict[str, Any]) -> None:
    for name, values in c.items():
        if isinstance(values, tuple) and len(set(map(str, values))) != len(values):
            raise SpaceError(f"space.{name}: a value is listed twice")


def _check_points(space: Space) -> None:
    """Every point of the space (each range at both ends) must be a valid ArchSpec; a grid must be listed."""
    for end in (None,) if space.sampler == "grid" else (0, 1):
        _walk(space.suggest, end)


# ---- small typed readers: each error names the key and what is allowed ---------------------------
def _mapping(raw: Any, key: str, allowed: tuple) -> dict:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpaceError(f"{key}: expected a mapping, got {type(raw).__name__}")
    for k in raw:
        if k not in allowed:
            raise SpaceError(f"{key}: unknown key {short_repr(k)}; allowed: {', '.join(map(str, allowed))}"
                             f"{did_you_mean(k, allowed)}")
    return raw


def _list(raw: Any, key: str) -> list:
    if not isinstance(raw, list):
        raw = [raw]
    if not raw:
        raise SpaceError(f"{key}: an empty list")
    return raw


def _one_of(value: Any, key: str, allowed: tuple):
    if isinstance(value, bool) or not isinstance(value, Hashable) or value not in allowed:  # a list, dict, set
        raise SpaceError(f"{key}: {short_repr(value)} is not allowed; allowed: {', '.join(map(str, allowed))}")
    return value


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise SpaceError(f"{key}: expected text, got {type(value).__name__}")
    return value


def _integer(value: Any, key: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise SpaceError(f"{key}: {short_repr(value)} is not an integer {allowed}")
    return value


def _number(value: Any, key: str) -> float:
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an int beyond a float's range
        number = math.inf
    if not math.isfinite(number):
        raise SpaceError(f"{key}: {short_repr(value)} is not a finite number")
    return number
