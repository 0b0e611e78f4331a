"""timm's model conventions on every registered network (resnas.zoo.ZOO and resnas_spec): FX tracing and
TorchScript, finite eval outputs at initialization, gradient checkpointing, feature extraction, and
timm's standard constructor arguments (zero_init_last, drop_rate, drop_path_rate, device, dtype)."""

import itertools
from types import SimpleNamespace

import pytest
import timm
import torch
import torch.fx
from timm.layers import DropPath
from timm.models import get_notrace_functions, get_notrace_modules

from resnas import PLACEMENTS, ArchSpec, build
from resnas.probe import probe
from resnas.train import _model as train_model
from resnas.units import ResidualUnit, ZeroPad
from resnas.zoo import ZOO, resolve_model

# torch's own notices when scripting (the deprecation, and one about GraphModule.__init__'s annotations)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning",
                                        "ignore:The TorchScript type system:UserWarning")
# As timm's tests/test_models.py: the legacy executor is too slow to compile large models for a test.
torch._C._jit_set_profiling_executor(True)
torch._C._jit_set_profiling_mode(False)

# resnas_spec runs on tiny specs: every placement with both units, and every shortcut kind.
TINY = "widths=4-8-16"
SPECS = [f"depth={8 if unit == 'basic' else 11},unit={unit},act={act},{TINY}"
         for unit, act in itertools.product(["basic", "bottleneck"], PLACEMENTS)]
SPECS += [f"depth=8,act=original,shortcut={s},{TINY}" for s in (
    "scaling,scale=0.5,f_scale=0.5", "exclusive_gate", "shortcut_gate", "conv1x1", "dropout")]
MODELS = [pytest.param((name, {}), id=name) for name in ZOO]
MODELS += [pytest.param(("resnas_spec", dict(spec=s)), id=f"resnas_spec[{s}]") for s in SPECS]
# torch.jit.script of a traced net costs a few ms per module, more for the long forward of a deep graph:
# measured here 2-4 s for each 54-unit CIFAR net and ResNet-101..200 and 13-25 s for each 1001-layer net,
# about 50 s for the zoo. So every registered net is traced at its full depth and the traced module checked
# against it, and the script check runs on the same spec (same stem, units, placement, shortcuts, head:
# the code TorchScript compiles) with at most SCRIPT_UNITS units per stage.
SCRIPT_UNITS = 2


def _create(name: str, kwargs: dict, **extra) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, **kwargs, **extra)


def _input(model: torch.nn.Module) -> torch.Tensor:
    """1 image: 64 px for the ImageNet layout (2x2 at the last stage), 16 px for CIFAR (4x4)."""
    size = 64 if model.spec.layout == "imagenet" else 16
    return torch.randn(1, model.spec.in_chans, size, size, generator=torch.Generator().manual_seed(1))


def _units(model: torch.nn.Module) -> list[ResidualUnit]:
    return [m for m in model.modules() if isinstance(m, ResidualUnit)]


class _Tracer(torch.fx.Tracer):
    """torch.fx with the leaf modules and functions timm registers as not traceable (as timm's tests)."""

    def __init__(self):
        super().__init__(autowrap_functions=tuple(get_notrace_functions()), param_shapes_constant=True)
        self.leaves = tuple(get_notrace_modules())

    def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, qualname)


def _fx(model: torch.nn.Module) -> torch.fx.GraphModule:
    return torch.fx.GraphModule(model, _Tracer().trace(model))


# ---- every registered model -----------------------------------------------------------------------
@pytest.fixture(scope="module", params=MODELS)
def registered(request):
    """(name, kwargs, the model in eval mode at init): module scope, so pytest runs the tests of one model
    one after the other and builds each model once. Tests leave it as they found it."""
    name, kwargs = request.param
    return name, kwargs, _create(name, kwargs).eval()


def test_fx_traced_and_scripted_model_gives_the_eager_output(registered):
    _, _, model = registered
    x = _input(model)
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(_fx(model)(x), expected)
        layers = tuple(min(n, SCRIPT_UNITS) for n in model.spec.layers)
        if layers != model.spec.layers:
            model = _create("resnas_spec", dict(spec=str(model.spec.replace(layers=layers)))).eval()
            expected = model(x)
        scripted = torch.jit.script(_fx(model))
        assert torch.allclose(scripted(x), expected, rtol=1e-4, atol=1e-5)


def test_eval_forward_at_init_is_finite(registered):
    _, _, model = registered
    with torch.no_grad():
        out = model(_input(model))
    assert out.shape == (1, model.num_classes) and torch.isfinite(out).all()


def test_grad_checkpointing_gives_the_plain_output_and_gradient(registered):
    _, _, model = registered
    x = _input(model).requires_grad_()
    results = []
    try:
        for enable in (False, True):
            model.set_grad_checkpointing(enable)
            out = model(x)
            results.append((out.detach(), *torch.autograd.grad(out.square().sum(), x)))
        final, _ = model.forward_intermediates(x.detach())  # checkpointed too
    finally:
        model.set_grad_checkpointing(False)
    (plain, plain_grad), (ckpt, ckpt_grad) = results
    assert torch.allclose(ckpt, plain, rtol=1e-4, atol=1e-5)
    assert torch.allclose(ckpt_grad, plain_grad, rtol=1e-4, atol=1e-5)
    assert torch.allclose(model.forward_head(final), plain, rtol=1e-4, atol=1e-5)


def test_features_only_and_forward_intermediates_are_each_feature_as_its_module_returned_it(registered):
    """Compared with a clone of each feature module's output taken (by a forward hook) before the next
    stage runs: a stage that changed its input in place would show."""
    name, kwargs, model = registered
    x = _input(model)
    seen = []
    hooks = [model.get_submodule(info["module"]).register_forward_hook(lambda m, i, o: seen.append(o.clone()))
             for info in model.feature_info]
    with torch.no_grad():
        try:
            model(x)
        finally:
            for h in hooks:
                h.remove()
        intermediates = model.forward_intermediates(x, intermediates_only=True)
        features = _create(name, kwargs, features_only=True).eval()(x)
    assert len(seen) == len(intermediates) == len(features) == len(model.feature_info)
    for i, (expected, a, b) in enumerate(zip(seen, intermediates, features)):
        assert torch.equal(a, expected), (i, model.feature_info[i]["module"])
        assert torch.equal(b, expected), (i, model.feature_info[i]["module"])


# ---- placement x unit: in-place activations ------------------------------------------------------
@pytest.mark.parametrize("unit, act", list(itertools.product(["basic", "bottleneck"], PLACEMENTS)))
def test_checkpointed_backward_gives_the_plain_gradients(unit, act):
    torch.manual_seed(0)
    spec = ArchSpec(layers=(2, 2, 2), widths=(4, 8, 16), unit=unit, act=act)
    a, b = build(spec), build(spec)
    b.load_state_dict(a.state_dict())
    b.set_grad_checkpointing(True)
    x, y = torch.randn(4, 3, 16, 16), torch.arange(4)
    losses = [torch.nn.functional.cross_entropy(m(x), y) for m in (a, b)]
    for loss in losses:
        loss.backward()
    assert torch.allclose(losses[0], losses[1])
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa.grad, pb.grad, rtol=1e-4, atol=1e-6), name


# ---- initialization: timm's zero_init_last, the paper's He init ----------------------------------
def _f_is_zero(model: torch.nn.Module) -> list[bool]:
    """For each unit: is F's output exactly 0 (train mode, random input)?"""
    out = []
    for u in _units(model):
        z = torch.randn(2, u.F.conv1.in_channels, 8, 8)
        out.append(not u.F.train()(z).any().item())
    return out


@pytest.mark.parametrize("spec", SPECS)
def test_timm_entries_start_every_unit_as_its_shortcut(spec):
    model = _create("resnas_spec", dict(spec=spec))
    assert all(_f_is_zero(model))
    paper = _create("resnas_spec", dict(spec=spec), zero_init_last=False)
    torch.manual_seed(0)
    for (k, v), w in zip(build(spec).state_dict().items(), paper.state_dict().values()):
        assert torch.equal(v, w), k  # zero_init_last=False is exactly resnas.build's (the paper's) init
    assert not any(_f_is_zero(paper))


def test_zero_init_last_zeroes_the_last_layer_of_f_only():
    model = timm.create_model("original_resnet164")  # F ends in a BN: its weight is zeroed
    unit = model.stages[1][0]
    assert not unit.F.norm3.weight.any() and unit.F.norm2.weight.eq(1).all() and unit.F.conv3.weight.any()
    model = timm.create_model("preact_resnet164")  # F ends in a conv: its weight is zeroed
    unit = model.stages[1][0]
    assert not unit.F.conv3.weight.any() and unit.F.conv2.weight.any()
    assert unit.shortcut.h.conv.weight.any()  # the projection shortcut keeps its He init


def test_trainer_search_probe_and_cli_keep_the_papers_init():
    spec = f"depth=8,{TINY}"
    assert not any(_f_is_zero(build(spec)))
    net, _ = train_model(spec, SimpleNamespace(input_size=(1, 8, 8), num_classes=3))  # resnas.train and the search
    assert not any(_f_is_zero(net))
    assert not any(_f_is_zero(resolve_model("preact_resnet110")))  # resnas train / summary
    assert not any(_f_is_zero(resolve_model(spec)))
    # the probe's gradient at init: identical to that of resnas.build's network
    batch = torch.randn(4, 1, 8, 8)
    torch.manual_seed(0)
    built = build(ArchSpec.parse(spec).replace(in_chans=1))
    assert probe(spec + ",in_chans=1", batch).grad_norms == probe(built, batch).grad_norms


# ---- timm's constructor arguments ----------------------------------------------------------------
def test_drop_path_rate_is_stochastic_depth_on_f_rising_linearly_over_all_units():
    model = timm.create_model("preact_resnet110", drop_path_rate=0.1, zero_init_last=False)  # F != 0 at init
    units = _units(model)
    rates = [u.drop_path.drop_prob if isinstance(u.drop_path, DropPath) else 0.0 for u in units]
    assert rates == pytest.approx(torch.linspace(0, 0.1, 54).tolist())
    assert isinstance(units[-1].drop_path, DropPath) and units[-1].drop_path.drop_prob == pytest.approx(0.1)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(model.train()(x), model(x))
        assert torch.equal(model.eval()(x), model(x))
        plain = timm.create_model("preact_resnet110", zero_init_last=False).train()
        assert not any(isinstance(m, DropPath) for m in plain.modules())
        assert torch.equal(plain(x), plain(x))  # train-mode BN alone is deterministic


def test_drop_path_drops_f_before_the_shortcut_adds():
    x = torch.randn(2, 8, 4, 4)
    unit = ResidualUnit(8, 8, act="preact", drop_path=1.0)
    assert torch.equal(unit.train()(x), x)  # F always dropped: the identity shortcut alone
    assert not torch.allclose(unit.eval()(x), x)


def test_drop_rate_is_dropout_before_the_classifier():
    model = timm.create_model("resnas_spec", spec=f"depth=8,{TINY}", drop_rate=0.5)
    assert model.head.drop.p == 0.5
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(model.train()(x), model(x))
        assert torch.equal(model.eval()(x), model(x))


def test_unknown_constructor_arguments_are_rejected():
    with pytest.raises(TypeError, match="drop_blok_rate"):
        timm.create_model("preact_resnet110", drop_blok_rate=0.1)
    with pytest.raises(TypeError, match="widht"):
        build(f"depth=8,{TINY}", widht=2)


def test_device_and_dtype_arguments():
    model = timm.create_model("resnas_spec", spec=f"depth=8,{TINY}", device="meta")
    assert all(p.is_meta for p in model.parameters())
    model = timm.create_model("resnas_spec", spec=f"depth=8,{TINY}", dtype=torch.float64).eval()
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert model(torch.randn(1, 3, 16, 16, dtype=torch.float64)).dtype == torch.float64


# ---- the zoo -------------------------------------------------------------------------------------
def test_option_a_baseline_resnet110_is_registered():
    """The paper's 6.61% original ResNet-110 is He et al. 2015's: zero-padded identity shortcuts (option A)."""
    model = timm.create_model("original_resnet110_zeropad")
    assert model.spec == ArchSpec.cifar(110, act="original", down="zeropad")
    kinds = [type(u.shortcut.h) for u in _units(model)]
    assert kinds.count(ZeroPad) == 2 and kinds.count(torch.nn.Identity) == 52
    kinds = [type(u.shortcut.h) for u in _units(timm.create_model("original_resnet110"))]
    assert kinds.count(torch.nn.Sequential) == 2 and kinds.count(torch.nn.Identity) == 52  # 1x1 projections
