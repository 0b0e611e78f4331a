"""Gradient propagation at initialization: the paper's Eq. 4-8 argument, measured.

With identity shortcuts ``dE/dx_l = dE/dx_L * (1 + d/dx_l sum F)`` (Eq. 5): the gradient of the last
unit reaches every earlier unit unchanged. A scaled shortcut multiplies that term by ``prod lambda``
(Eq. 7); gates and 1x1 convs obstruct it (Sec. 3.2). ``probe`` measures, on one batch of real data at
initialization and in training mode, the norm of ``dE/dx_l`` and of ``x_l`` at the input of every
residual unit l, and sums them up as

- ``gain``: log10(|dE/dx_1| / |dE/dx_L|), first unit over last. Its yardstick is not 0 but the gain
  of the paper's design of the same depth and widths, the identity-shortcut, full pre-activation net
  (``reference(spec)``): that net itself gains about 2 decades over 54 units, inside the stages where
  BN renormalises. A design is read by its gain minus the reference's (``against_reference``;
  ``gain_vs_reference`` in ``resnas probe``, which ranks by its size);
- ``slope``: the least-squares slope of log10 |dE/dx_l| over the unit index l (per unit);
- ``shortcut_term``: the shortcut-only term of Eq. 5 over the span the gain measures, from x_L back to
  x_1: the product of the shortcut factors of units 1 .. L-1 (unit L's shortcut lies past x_L), i.e.
  1 for identity, lambda^(L-1) for scaling, (1 - p)^(L-1) for dropout (its expectation), the product
  of the measured mean of 1 - g(x) on the batch of units 1 .. L-1 for the gates, and None for the 1x1
  conv shortcut (a matrix, not a factor).

What it shows, honestly: with BatchNorm in every F, the failing shortcuts do not make the gradient
*vanish* toward the input, as the BN-free reading of Eq. 7 suggests; it *explodes* toward the input
(gain >> 0). BN divides by the batch statistics of its input, and a shortcut that shrinks the signal
(x_l shrinks with lambda^l) makes the following BNs amplify the gradient by the inverse factor. What
the probe measures is the size of the departure from the reference net's gain, in either direction.
Measured here (54 basic original-activation units, widths 16-32-64, digits 8x8, batch 32): gain about
2 for identity and full pre-activation (the reference), 5-6 for scaling 0.5, exclusive gating
b_g = 0 and the 1x1 conv shortcut, i.e. 3-4 decades past the reference (README "Probe and reproduce"
has the table). The distance ranks designs; it is not a verdict: the shortcut-only gate at b_g = 0
(+3.1) trained to 12.86% in the paper, dropout (+1.2) failed.

The probe runs with gradient checkpointing switched off (and the model's setting restored after):
checkpointing recomputes the units in backward, which would run the hooks twice (they also keep
the first call of each unit only).

    >>> import torch
    >>> from resnas.spec import ArchSpec
    >>> x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    >>> r = probe(ArchSpec.cifar(14, act="original", shortcut="scaling", scale=0.5, in_chans=1), x, y)
    >>> len(r.grad_norms), r.shortcut_term  # 0.5 ** 5: the 5 shortcuts between x_1 and x_6
    (6, 0.03125)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import install_hint
from .network import build
from .spec import ArchSpec, default_shortcut
from .units import SHORTCUTS, ResidualUnit, Shortcut
from .zoo import spec_of

__all__ = ["ProbeResult", "against_reference", "labelled_specs", "plot", "probe", "pyplot", "rank_probes", "reference"]


@dataclass(frozen=True)
class ProbeResult:
    """Per-unit gradient and activation norms at initialization, and their summary figures."""

    spec: str
    grad_norms: tuple[float, ...]  # |dE/dx_l|, l = 1 .. L (inputs of the units)
    act_norms: tuple[float, ...]  # |x_l|
    gain: float  # log10(|dE/dx_1| / |dE/dx_L|); read it against probe(reference(spec)).gain, not 0
    slope: float  # least-squares slope of log10 |dE/dx_l| per unit
    shortcut_term: float | None  # prod of the shortcut factors of units 1 .. L-1 (Eq. 5, the gain's span)
    term_source: str
    loss: float

    @property
    def ratio(self) -> float:
        """|dE/dx_1| / |dE/dx_L| (10 ** gain)."""
        return 10.0 ** self.gain

    @property
    def units(self) -> int:
        return len(self.grad_norms)

    def to_dict(self) -> dict:
        return {**asdict(self), "grad_norms": list(self.grad_norms), "act_norms": list(self.act_norms),
                "ratio": self.ratio, "units": self.units}


def probe(model: ArchSpec | str | nn.Module, batch: torch.Tensor, labels: torch.Tensor | None = None, *,
          seed: int = 0) -> ProbeResult:
    """Probe ``model`` (a spec, its string, or a built ResNet) on ``batch`` at initialization.

    A spec is built (seeded with ``seed``) for the batch's channels; ``labels`` default to random
    classes drawn with ``seed``. The module's train/eval mode, BN statistics and gradient checkpointing
    setting are restored afterwards.

        >>> r = probe("depth=8,act=preact,in_chans=1", torch.randn(4, 1, 8, 8))
        >>> r.units, r.shortcut_term, abs(r.gain) < 3
        (3, 1.0, True)
    """
    if not isinstance(model, nn.Module):
        spec = ArchSpec.parse(model) if isinstance(model, str) else model
        torch.manual_seed(seed)
        model = build(spec.replace(in_chans=batch.shape[1]))
    units = [m for m in model.modules() if isinstance(m, ResidualUnit)]
    if not units:
        raise ValueError("model: has no residual units to probe")
    param = next(model.parameters())
    batch = batch.to(param.device, param.dtype)
    if labels is None:
        g = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, model.num_classes, (len(batch),), generator=g)
    was_training, buffers = model.training, [b.clone() for b in model.buffers()]
    # Gradient checkpointing runs the units again in backward, hooks included: the probe runs without it.
    checkpointing = [(m, m.grad_checkpointing) for m in model.modules()
                     if isinstance(getattr(m, "grad_checkpointing", None), bool)]
    model.train()
    inputs: dict[nn.Module, torch.Tensor] = {}  # x_l per unit, in the order the units ran
    keep: dict[nn.Module, float] = {}  # the shortcut's factor on h per unit (the row's ``factor``)
    spec = getattr(model, "spec", None)
    row = SHORTCUTS.get(spec.shortcut) if spec is not None else None
    handles = [u.register_forward_pre_hook(_record(u, inputs)) for u in units]
    if row is not None and row.factor is not None:
        handles += [u.shortcut.register_forward_hook(_keep_factor(u, row, keep)) for u in units]
    try:
        for m, _ in checkpointing:
            m.grad_checkpointing = False
        loss = F.cross_entropy(model(batch), labels.to(param.device))
        xs = list(inputs.values())
        grads = tuple(g.norm().item() for g in torch.autograd.grad(loss, xs))  # leaves no .grad behind
    finally:
        for h in handles:
            h.remove()
        for m, enabled in checkpointing:
            m.grad_checkpointing = enabled
        with torch.no_grad():  # training mode updated the BN running statistics: put them back
            for saved, b in zip(buffers, model.buffers()):
                b.copy_(saved)
        model.train(was_training)
    acts = tuple(x.detach().norm().item() for x in xs)
    # The gain spans x_1 .. x_L: the shortcuts of units 1 .. L-1 (unit L's lies past x_L).
    term = math.prod((keep[u] for u in list(inputs)[:-1]), start=1.0) if keep else None
    return ProbeResult(str(spec) if spec is not None else type(model).__name__, grads, acts,
                       gain=_log_ratio(grads[0], grads[-1]), slope=_slope(grads), shortcut_term=term,
                       term_source=row.term_source if row is not None else "unknown", loss=loss.item())


def _record(unit: nn.Module, inputs: dict):
    """A pre-hook keeping x_l, the unit's input, from the unit's first call only (idempotent)."""

    def hook(_, args: tuple) -> tuple | None:
        if unit in inputs:
            return None
        # x_l is kept apart from what the unit sees: an in-place pre-activation would overwrite it.
        inputs[unit] = x = args[0].clone()
        return (x.clone(), *args[1:])

    return hook


def _keep_factor(unit: nn.Module, row: Shortcut, keep: dict):
    """A hook on a unit's shortcut keeping its factor on h (``row.factor`` of the module and the x it
    sees: lambda for scaling, the mean of 1 - g(x) over the batch for a gate), from the first call only."""

    def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if unit not in keep:
            keep[unit] = row.factor(module, args[0].detach())

    return hook


def _log_ratio(a: float, b: float) -> float:
    if a == 0 and b == 0:
        return 0.0
    if a == 0 or b == 0 or not (math.isfinite(a) and math.isfinite(b)):
        return math.inf if b == 0 or not math.isfinite(a) else -math.inf
    return math.log10(a / b)


def _slope(norms: tuple[float, ...]) -> float:
    """Least-squares slope of log10 norm against the unit index."""
    y = torch.tensor([math.log10(max(n, 1e-300)) for n in norms], dtype=torch.float64)
    if len(y) < 2:
        return 0.0
    x = torch.arange(len(y), dtype=torch.float64)
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


def reference(spec: ArchSpec) -> ArchSpec:
    """The identity-shortcut, full pre-activation net of ``spec``'s depth and widths: the paper's
    proposal, whose gain the other designs are measured against.

        >>> str(reference(ArchSpec.cifar(110, act="original", shortcut="scaling", scale=0.5)))
        'layout=cifar,depth=110,unit=basic,act=preact,shortcut=identity'
    """
    return spec.replace(act="preact", shortcut=default_shortcut(), shortcut_params=())


def against_reference(specs: list[ArchSpec], batch: torch.Tensor, labels: torch.Tensor | None = None, *,
                      seed: int = 0) -> list[tuple[ProbeResult, ProbeResult]]:
    """Each spec's probe beside its reference's (``reference(spec)``), every distinct net probed once:
    a spec that is its own reference gets the same result twice, so its gain_vs_reference is 0.

        >>> x = torch.randn(4, 1, 8, 8)
        >>> [(r.gain - ref.gain == 0, ref.spec == r.spec) for r, ref in
        ...  against_reference([ArchSpec.cifar(8, in_chans=1), ArchSpec.cifar(8, act="original", in_chans=1)], x)]
        [(True, True), (False, False)]
    """
    todo = {str(s): s for s in specs} | {str(r): r for r in map(reference, specs)}
    done = {key: probe(s, batch, labels, seed=seed) for key, s in todo.items()}
    return [(done[str(s)], done[str(reference(s))]) for s in specs]


def rank_probes(pairs: list[tuple[ProbeResult, ProbeResult]]) -> list[dict]:
    """Probe results (``against_reference``'s pairs) as rows, closest to their reference first.

    The headline: gain minus the gain of the reference, the identity-shortcut, full pre-activation net of
    the same depth and widths (0 for the reference itself); variants are ranked by its size.
    """
    rows = [{"spec": r.spec, "gain_vs_reference": r.gain - ref.gain, "reference": ref.spec,
             "reference_gain": ref.gain, **r.to_dict(), "distance": abs(r.gain - ref.gain)} for r, ref in pairs]
    return sorted(rows, key=lambda d: d["distance"])


def short_labels(specs: list[str]) -> list[str]:
    """Each spec string without the key=value tokens every spec shares (legend and table labels).

        >>> short_labels(["depth=8,act=original", "depth=8,act=preact"])
        ['act=original', 'act=preact']
    """
    tokens = [s.split(",") for s in specs]
    common = set.intersection(*map(set, tokens)) if len(specs) > 1 else set()
    return [",".join(t for t in ts if t not in common) or s for ts, s in zip(tokens, specs)]


def labelled_specs(names: tuple[str, ...] | list[str], drawn: list[ArchSpec] = (), **fixed) -> dict:
    """The specs to probe by their strings, each with its label: the registered names or spec strings as typed
    (with ``fixed`` fields set), then ``drawn`` (a space's points), labelled by the tokens that set them apart.

        >>> list(labelled_specs(["depth=8,act=original"]).values())[0][1]
        'depth=8,act=original'
    """
    labelled = {}
    for name in names:
        spec = spec_of(name).replace(**fixed)
        labelled.setdefault(str(spec), (spec, name))
    for spec, label in zip(drawn, short_labels([str(s) for s in drawn])):
        labelled.setdefault(str(spec), (spec, label))
    if not labelled:
        raise ValueError("probe: give one or more specs (or registered names), or --space NAME|FILE")
    return labelled




def pyplot():
    """matplotlib.pyplot on the files-only Agg backend; without matplotlib, an ImportError naming the extra
    (``resnas probe --plot`` calls it before computing anything, as Optuna's visualization checks first)."""
    try:
        import matplotlib  # deferred: an optional dependency, only for --plot
    except ImportError:
        raise ImportError(f"plot: needs matplotlib (optional): {install_hint('plot')}") from None
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    return plt


def plot(results: list[ProbeResult], path: str, title: str = "", labels: list[str] | None = None,
         references: list[ProbeResult] = ()) -> list[str]:
    """log10 |dE/dx_l| against the unit index l, one line per result (named by ``labels``, default: the
    specs without their shared tokens) and a dashed one per reference net the gains are measured against
    (one not among ``results``), saved as an image at ``path``; returns the lines' labels."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    shown = {r.spec for r in results}
    lines = [(r, f"{label} (gain {r.gain:.1f})", "-")
             for r, label in zip(results, labels or short_labels([r.spec for r in results]))]
    lines += [(r, f"reference: identity, full pre-activation, {r.units} units (gain {r.gain:.1f})", "--")
              for r in {ref.spec: ref for ref in references if ref.spec not in shown}.values()]
    for r, label, style in lines:
        ax.plot(range(1, r.units + 1), [math.log10(max(g, 1e-300)) for g in r.grad_norms], style, label=label)
    ax.set_xlabel("unit l")
    ax.set_ylabel("log10 |dE/dx_l|")
    ax.set_title(title or "gradient at initialization (He et al. 2016, Eq. 5)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [label for _, label, _ in lines]
