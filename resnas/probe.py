"""Gradient propagation at initialization: the paper's Eq. 4-8 argument, measured.

With identity shortcuts ``dE/dx_l = dE/dx_L * (1 + d/dx_l sum F)`` (Eq. 5): the gradient of the last
unit reaches every earlier unit unchanged. A scaled shortcut multiplies that term by ``prod lambda``
(Eq. 7); gates and 1x1 convs obstruct it (Sec. 3.2). ``probe`` measures, on one batch of real data at
initialization and in training mode, the norm of ``dE/dx_l`` and of ``x_l`` at the input of every
residual unit l, and sums them up as

- ``gain``: log10(|dE/dx_1| / |dE/dx_L|), first unit over last; 0 is perfect propagation;
- ``slope``: the least-squares slope of log10 |dE/dx_l| over the unit index l (per unit);
- ``shortcut_term``: the shortcut-only term of Eq. 5, the product over units of the shortcut's factor:
  1 for identity, lambda for scaling, 1 - p for dropout (its expectation), the measured mean of
  1 - g(x) on the batch for the gates, and None for the 1x1 conv shortcut (a matrix, not a factor).

What it shows, honestly: with BatchNorm in every F, the failing shortcuts do not make the gradient
*vanish* toward the input, as the BN-free reading of Eq. 7 suggests; it *explodes* toward the input
(gain >> 0). BN divides by the batch statistics of its input, and a shortcut that shrinks the signal
(x_l shrinks with lambda^l) makes the following BNs amplify the gradient by the inverse factor. What
the probe measures is the size of the departure from the identity net's gain, in either direction.
Measured here (54 basic original-activation units, widths 16-32-64, digits 8x8, batch 32): gain about
2 for identity and full pre-activation, 5-7 for scaling 0.5, exclusive gating b_g = 0 and the 1x1 conv
shortcut (README "Probe and reproduce" has the table). The gain ranks designs; it is not a verdict:
the shortcut-only gate at b_g = 0 (gain 5.1) trained to 12.86% in the paper, dropout (3.2) failed.

    >>> import torch
    >>> from resnas.spec import ArchSpec
    >>> x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    >>> r = probe(ArchSpec.cifar(14, act="original", shortcut="scaling", scale=0.5, in_chans=1), x, y)
    >>> len(r.grad_norms), r.shortcut_term
    (6, 0.015625)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .network import build
from .spec import ArchSpec
from .units import Gate, ResidualUnit

# How the shortcut-only term of Eq. 5 is obtained for each kind.
TERM_SOURCES = {
    "identity": "1 per unit",
    "scaling": "lambda per unit (Eq. 7)",
    "dropout": "1 - p per unit (expected mask)",
    "exclusive_gate": "mean 1 - g(x) per unit, measured",
    "shortcut_gate": "mean 1 - g(x) per unit, measured",
    "conv1x1": "undefined (a 1x1 conv is a matrix)",
}


@dataclass(frozen=True)
class ProbeResult:
    """Per-unit gradient and activation norms at initialization, and their summary figures."""

    spec: str
    grad_norms: tuple[float, ...]  # |dE/dx_l|, l = 1 .. L (inputs of the units)
    act_norms: tuple[float, ...]  # |x_l|
    gain: float  # log10(|dE/dx_1| / |dE/dx_L|)
    slope: float  # least-squares slope of log10 |dE/dx_l| per unit
    shortcut_term: float | None  # prod over units of the shortcut factor (Eq. 5)
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
    classes drawn with ``seed``. The module's train/eval mode is restored afterwards.

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
    model.train()
    inputs, keep = [], []
    handles = [u.register_forward_pre_hook(lambda _, args: _record(args, inputs)) for u in units]
    handles += [m.register_forward_hook(lambda m, args, out: keep.append(_shortcut_factor(m, out)))
                for m in _gate_convs(model)]
    try:
        loss = F.cross_entropy(model(batch), labels.to(param.device))
        grads = tuple(g.norm().item() for g in torch.autograd.grad(loss, inputs))  # leaves no .grad behind
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():  # training mode updated the BN running statistics: put them back
            for saved, b in zip(buffers, model.buffers()):
                b.copy_(saved)
        model.train(was_training)
    acts = tuple(x.detach().norm().item() for x in inputs)
    spec = getattr(model, "spec", None)
    return ProbeResult(str(spec) if spec is not None else type(model).__name__, grads, acts,
                       gain=_log_ratio(grads[0], grads[-1]), slope=_slope(grads),
                       shortcut_term=_shortcut_term(spec, len(units), keep),
                       term_source=TERM_SOURCES.get(getattr(spec, "shortcut", ""), "unknown"), loss=loss.item())


def _record(args: tuple, inputs: list) -> tuple:
    # x_l is kept apart from what the unit sees: an in-place pre-activation would overwrite it.
    x = args[0].clone()
    inputs.append(x)
    return (x.clone(), *args[1:])


def _gate_convs(model: nn.Module) -> list[nn.Module]:
    return [m.gate for m in model.modules() if isinstance(m, Gate)]


def _shortcut_factor(_, out: torch.Tensor) -> float:
    """The mean of 1 - g(x) over the batch: the gate's factor on the shortcut."""
    return (1 - torch.sigmoid(out.detach())).mean().item()


def _shortcut_term(spec: ArchSpec | None, n_units: int, gate_factors: list[float]) -> float | None:
    if spec is None or spec.shortcut == "conv1x1":
        return None
    if spec.shortcut in ("exclusive_gate", "shortcut_gate"):
        return math.prod(gate_factors)
    factor = {"identity": 1.0, "scaling": spec.scale, "dropout": 1 - spec.drop}[spec.shortcut]
    return factor ** n_units


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
    d = ArchSpec()
    return spec.replace(act="preact", shortcut="identity", scale=d.scale, f_scale=d.f_scale,
                        gate_bias=d.gate_bias, drop=d.drop)


def short_labels(specs: list[str]) -> list[str]:
    """Each spec string without the key=value tokens every spec shares (legend and table labels).

        >>> short_labels(["depth=8,act=original", "depth=8,act=preact"])
        ['act=original', 'act=preact']
    """
    tokens = [s.split(",") for s in specs]
    common = set.intersection(*map(set, tokens)) if len(specs) > 1 else set()
    return [",".join(t for t in ts if t not in common) or s for ts, s in zip(tokens, specs)]


def plot(results: list[ProbeResult], path: str, title: str = "") -> None:
    """log10 |dE/dx_l| against the unit index l, one line per result, saved as an image at ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r, label in zip(results, short_labels([r.spec for r in results])):
        ax.plot(range(1, r.units + 1), [math.log10(max(g, 1e-300)) for g in r.grad_norms],
                label=f"{label} (gain {r.gain:.1f})")
    ax.set_xlabel("unit l")
    ax.set_ylabel("log10 |dE/dx_l|")
    ax.set_title(title or "gradient at initialization (He et al. 2016, Eq. 5)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
