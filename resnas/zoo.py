"""timm registrations: the paper's networks by name, and ``resnas_spec`` for any ArchSpec string.

    >>> import timm, resnas
    >>> model = timm.create_model("preact_resnet164")                       # CIFAR, 10 classes
    >>> model = timm.create_model("preact_resnet200", num_classes=100)      # ImageNet layout
    >>> model = timm.create_model("resnas_spec", spec="depth=20,act=preact,in_chans=1")

Like timm's ResNets, these entries zero the last layer of every F (``zero_init_last=True``), so that every
unit starts as its shortcut and even ResNet-1001 gives finite outputs in eval mode at init;
``zero_init_last=False`` gives the paper's initialization, that of ``resnas.build``.
"""

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, create_model, generate_default_cfgs, register_model

from .errors import did_you_mean
from .network import ResNet
from .spec import ArchSpec, short_repr

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "ZOO", "input_cfg", "resnas_spec", "resolve_model", "spec_of"]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

# name -> spec; one row per registered network.
ZOO: dict[str, ArchSpec] = {
    "preact_resnet110": ArchSpec.cifar(110, "basic", act="preact"),
    "preact_resnet164": ArchSpec.cifar(164, "bottleneck", act="preact"),
    "preact_resnet1001": ArchSpec.cifar(1001, "bottleneck", act="preact"),
    # The original units (Fig. 4a) at the same depths: the paper's baselines in Tables 2-4.
    "original_resnet110": ArchSpec.cifar(110, "basic", act="original"),
    # He et al. 2015's ResNet-110: zero-padded identity shortcuts (option A), the paper's 6.61% baseline.
    "original_resnet110_zeropad": ArchSpec.cifar(110, "basic", act="original", down="zeropad"),
    "original_resnet164": ArchSpec.cifar(164, "bottleneck", act="original"),
    "original_resnet1001": ArchSpec.cifar(1001, "bottleneck", act="original"),
    **{f"preact_resnet{d}": ArchSpec.imagenet(d, act="preact") for d in (18, 34, 50, 101, 152, 200)},
}


def input_cfg(spec: ArchSpec) -> dict[str, Any]:
    """The pretrained_cfg entries describing the input a spec's layout expects."""
    if spec.stem == "cifar":
        return dict(input_size=(spec.in_chans, 32, 32), pool_size=(8, 8), crop_pct=1.0,
                    **_stats(CIFAR10_MEAN, CIFAR10_STD, spec.in_chans), num_classes=spec.num_classes)
    return dict(input_size=(spec.in_chans, 224, 224), pool_size=(7, 7), crop_pct=0.875,
                **_stats(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, spec.in_chans), num_classes=spec.num_classes)


def _stats(mean: tuple, std: tuple, in_chans: int) -> dict[str, tuple]:
    """RGB statistics, or their channel average repeated for another number of input channels."""
    if in_chans == len(mean):
        return dict(mean=tuple(mean), std=tuple(std))
    return dict(mean=(sum(mean) / len(mean),) * in_chans, std=(sum(std) / len(std),) * in_chans)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return dict(url="", interpolation="bilinear", first_conv="stem.conv", classifier="head.fc",
                license="mit", paper_ids="arXiv:1603.05027", **kwargs)


default_cfgs = generate_default_cfgs({
    **{name: _cfg(**input_cfg(spec)) for name, spec in ZOO.items()},
    # num_classes -1: taken from the spec rather than the cfg (see resnas_spec)
    "resnas_spec": _cfg(**{**input_cfg(ArchSpec()), "num_classes": -1}),
})


def _create(variant: str, spec: ArchSpec, pretrained: bool = False, **kwargs: Any) -> ResNet:
    n_features = len(spec.layers) + 1
    kwargs.setdefault("zero_init_last", True)  # timm's default; False: the paper's init
    return build_model_with_cfg(
        ResNet, variant, pretrained, spec=spec,
        feature_cfg=dict(flatten_sequential=True, out_indices=tuple(range(n_features))), **kwargs,
    )


def _register(name: str) -> None:
    def entry(pretrained: bool = False, **kwargs: Any) -> ResNet:
        return _create(name, ZOO[name], pretrained, **kwargs)

    entry.__name__ = name
    entry.__doc__ = f"{name}: {ZOO[name]}"
    entry.__module__ = __name__
    globals()[name] = register_model(entry)


for _name in ZOO:
    _register(_name)


@register_model
def resnas_spec(pretrained: bool = False, spec: str | ArchSpec = "", **kwargs: Any) -> ResNet:
    """Any ArchSpec, given as its string (how searched and exported designs are rebuilt)."""
    spec = ArchSpec.parse(spec) if isinstance(spec, str) else spec
    kwargs.setdefault("num_classes", spec.num_classes)
    kwargs.setdefault("in_chans", spec.in_chans)
    if kwargs.get("pretrained_cfg") is None:  # not loaded from a local-dir config: describe the spec's input
        overlay = input_cfg(spec.replace(num_classes=kwargs["num_classes"], in_chans=kwargs["in_chans"]))
        kwargs["pretrained_cfg_overlay"] = {**overlay, **(kwargs.get("pretrained_cfg_overlay") or {})}
    return _create("resnas_spec", spec, pretrained, **kwargs)


def spec_of(name_or_spec: str) -> ArchSpec:
    """The spec of a registered name (``preact_resnet164``) or of a spec string (``depth=20,act=preact``);
    a one-line ValueError for anything else.

        >>> spec_of("preact_resnet164").depth, spec_of("depth=20").depth
        (164, 20)
    """
    if name_or_spec in ZOO:
        return ZOO[name_or_spec]
    if "=" in name_or_spec:
        return ArchSpec.parse(name_or_spec)
    raise ValueError(f"model: unknown name {short_repr(name_or_spec)}; allowed: {', '.join(ZOO)} or a spec string "
                     f"such as 'depth=20,act=preact'{did_you_mean(name_or_spec, ZOO)}")


def resolve_model(name_or_spec: str, **kwargs: Any) -> ResNet:
    """A registered name (``preact_resnet164``) or an ArchSpec string (``depth=20,act=preact``) as a network.

    With the paper's initialization (``zero_init_last=False``) unless ``kwargs`` say otherwise, as
    ``resnas.build``, the search and ``resnas reproduce`` do; a one-line ValueError for an unknown name.

        >>> resolve_model("depth=8,widths=8-16-32").spec.depth
        8
    """
    kwargs.setdefault("zero_init_last", False)
    spec = spec_of(name_or_spec)
    if name_or_spec in ZOO:
        return create_model(name_or_spec, **kwargs)
    return create_model("resnas_spec", spec=str(spec), **kwargs)
