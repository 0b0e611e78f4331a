"""A network assembled from an ArchSpec, with timm's model conventions.

CIFAR layout: 3x3 conv1 (16 channels), stages at 32/16/8 (Sec. 4.1); ImageNet layout: 7x7/2 conv1 and a
3x3/2 max pool, four stages (Sec. 5). Pre-activation nets put their first BN-ReLU right after conv1 and
an extra BN-ReLU after the last unit (Sec. 4.1, "first and last"), as in Kaiming's resnet-1k-layers.
"""

from collections import OrderedDict
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn as nn
from timm.layers import ClassifierHead, calculate_drop_path_rates
from timm.models import checkpoint_seq
from timm.models._features import feature_take_indices
from torch.utils.flop_counter import FlopCounterMode

from .spec import ArchSpec
from .units import PLACEMENTS, Gate, ResidualUnit, conv, norm_act

__all__ = ["ResNet", "build", "count_macs", "count_params"]

BOTTLENECK_EXPANSION = 4


class ResNet(nn.Module):
    """Any network of the paper's design space; ``spec`` says which.

    The other arguments are timm's: ``num_classes`` / ``in_chans`` override the spec's; ``drop_rate`` is
    dropout before the classifier; ``drop_path_rate`` stochastic depth on F, rising linearly from 0 at the
    first unit to ``drop_path_rate`` at the last; ``zero_init_last`` zeroes the last layer of every F so that
    each unit starts as its shortcut (timm's convention and the default of the ``resnas.zoo`` entries; off
    here, which is the paper's init, see ``init_weights``); ``device`` / ``dtype`` where the parameters are
    made. Any other argument is a TypeError.
    """

    def __init__(self, spec: ArchSpec | str, num_classes: int | None = None, in_chans: int | None = None,
                 global_pool: str = "avg", drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 zero_init_last: bool = False, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None):
        super().__init__()
        with torch.device(device) if device is not None else nullcontext():
            self._build(spec, num_classes, in_chans, global_pool, drop_rate, drop_path_rate)
            self.init_weights(zero_init_last=zero_init_last)
        if dtype is not None:
            self.to(dtype=dtype)

    def _build(self, spec: ArchSpec | str, num_classes: int | None, in_chans: int | None, global_pool: str,
               drop_rate: float, drop_path_rate: float) -> None:
        spec = ArchSpec.parse(spec) if isinstance(spec, str) else spec
        spec = spec.replace(num_classes=spec.num_classes if num_classes is None else num_classes,
                            in_chans=spec.in_chans if in_chans is None else in_chans)
        self.spec = spec
        self.num_classes, self.in_chans, self.drop_rate = spec.num_classes, spec.in_chans, drop_rate
        self.grad_checkpointing = False

        widths = spec.stage_widths
        out_mult = BOTTLENECK_EXPANSION if spec.unit == "bottleneck" else 1
        self.stem, stem_reduction = _stem(spec.stem, spec.in_chans, widths[0])
        self.feature_info = [dict(num_chs=widths[0], reduction=stem_reduction, module="stem.norm")]

        stages, in_chs, reduction = [], widths[0], stem_reduction * (2 if spec.stem == "imagenet" else 1)
        drop_path = iter(calculate_drop_path_rates(drop_path_rate, sum(spec.layers)))  # one rate per unit
        for i, (n, w) in enumerate(zip(spec.layers, widths)):
            stride = 1 if i == 0 else 2
            reduction *= stride
            units = [self._unit(in_chs if j == 0 else w * out_mult, w, stride if j == 0 else 1,
                                first=(i == 0 and j == 0), drop_path=next(drop_path)) for j in range(n)]
            stages.append(nn.Sequential(*units))
            in_chs = w * out_mult
            module = "norm" if i == len(spec.layers) - 1 else f"stages.{i}"
            self.feature_info.append(dict(num_chs=in_chs, reduction=reduction, module=module))
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = in_chs
        # the extra BN-ReLU of pre-activation nets; not in place on the last stage's output (a feature)
        self.norm = norm_act(PLACEMENTS[spec.act].final, in_chs, inplace=False)
        self.head = ClassifierHead(in_chs, spec.num_classes, pool_type=global_pool, drop_rate=drop_rate)

    def _unit(self, in_chs: int, w: int, stride: int, first: bool, drop_path: float) -> ResidualUnit:
        s = self.spec
        bottleneck = s.unit == "bottleneck"
        return ResidualUnit(
            in_chs, w * BOTTLENECK_EXPANSION if bottleneck else w, stride, unit=s.unit,
            mid_chs=w if bottleneck else None, act=s.act, shortcut=s.shortcut, down=s.down, first=first,
            # ImageNet follows fb.resnet.torch (stride on the 3x3, the paper's ResNet-200 and its 15G MACs);
            # CIFAR follows resnet-1k-layers, the paper's own code (stride on the first 1x1).
            stride_3x3=s.layout == "imagenet",
            drop_path=drop_path, **dict(s.shortcut_params),
        )

    def init_weights(self, zero_init_last: bool = False) -> None:
        """He normal (fan_out) for convs, no conv bias, BN at identity (Sec. 4 "init"): the paper's.

        ``zero_init_last``: then zero the last layer of every F (timm's convention), so that each unit
        starts as its shortcut and deep nets give finite outputs in eval mode at init (with fresh BN
        statistics the residual stream of the 333 units of ResNet-1001 overflows float32 otherwise).
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, Gate):
                m.reset_parameters()
            elif zero_init_last and isinstance(m, ResidualUnit):
                m.zero_init_last()

    # ---- timm conventions -------------------------------------------------------------------------
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r"^stem", blocks=r"^stages\.(\d+)" if coarse else [
            (r"^stages\.(\d+)\.(\d+)", None), (r"^norm", (99999,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            # per-unit checkpoints: only unit inputs are kept, which lets ResNet-1001 train
            x = checkpoint_seq(stage, x) if self.grad_checkpointing and not torch.jit.is_scripting() else stage(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False):
        """Features after the stem and after each stage (the last one after the final BN-ReLU)."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt: {output_fmt!r} is not supported; allowed: NCHW")
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        intermediates = []
        x = self.stem[:-1](x) if isinstance(self.stem[-1], nn.MaxPool2d) else self.stem(x)
        if 0 in take:
            intermediates.append(x)
        if isinstance(self.stem[-1], nn.MaxPool2d):
            x = self.stem[-1](x)
        last = len(self.stages)
        stages = self.stages[:max_index] if stop_early else self.stages
        for i, stage in enumerate(stages, start=1):
            x = checkpoint_seq(stage, x) if self.grad_checkpointing and not torch.jit.is_scripting() else stage(x)
            if i == last:
                x = self.norm(x)
            if i in take:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(self, indices: int | list[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        self.stages = self.stages[:max_index]
        if prune_norm or max_index < len(self.feature_info) - 1:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take


def _stem(kind: str, in_chans: int, chs: int) -> tuple[nn.Sequential, int]:
    """conv1 and its BN-ReLU (for pre-activation nets, the first unit's pre-activation)."""
    if kind == "cifar":
        return nn.Sequential(OrderedDict(conv=conv(in_chans, chs, 3), norm=norm_act("bn_relu", chs))), 1
    layers = OrderedDict(conv=conv(in_chans, chs, 7, stride=2), norm=norm_act("bn_relu", chs),
                         pool=nn.MaxPool2d(3, stride=2, padding=1))
    return nn.Sequential(layers), 2


def build(spec: ArchSpec | str, **kwargs: Any) -> ResNet:
    """The network of ``spec`` with the paper's init (a plain nn.Module; ``resnas.zoo`` gives the
    timm-registered one, with timm's ``zero_init_last=True`` by default)."""
    return ResNet(spec, **kwargs)


def count_params(model: nn.Module) -> int:
    """Number of parameters (conv + BN + FC), as PAPER.md counts them."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one image (conv + linear), counted by torch's FlopCounterMode."""
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    x = torch.zeros(1, *input_size, device=param.device, dtype=param.dtype)
    with FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2
