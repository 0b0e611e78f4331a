"""resnas.probe: the paper's gradient argument (Eq. 4-8) measured at initialization, and `resnas probe`."""

import json
import math

import pytest
import torch

from resnas.cli import main
from resnas.data import load_data
from resnas.network import build
from resnas.probe import against_reference, plot, probe, reference
from resnas.spec import ArchSpec
from resnas.units import Gate

# ResNet-110 as He et al. 2015 built it for CIFAR: original units, zero-padded (option A) downsampling,
# so the identity net is an identity path end to end.
FAILING = {
    "scaling 0.5": dict(shortcut="scaling", scale=0.5),
    "exclusive gate b_g=0": dict(shortcut="exclusive_gate", gate_bias=0.0),
    "1x1 conv": dict(shortcut="conv1x1"),
}


def _spec(depth, act="original", **kw):
    return ArchSpec.cifar(depth, act=act, down="zeropad", in_chans=1, **kw)


@pytest.fixture(scope="module")
def batch():
    x, y = next(iter(load_data("digits").loader("val", batch_size=16)))
    return x, y


@pytest.fixture(scope="module")
def gains(batch):
    """gain of each variant at 6, 18 and 54 units (ResNet-14, -38, -110)."""
    variants = {"identity": {}, "preact": dict(act="preact"), **FAILING}
    return {(name, depth): probe(_spec(depth, **kw), *batch).gain
            for name, kw in variants.items() for depth in (14, 38, 110)}


def test_identity_and_preact_propagate_within_three_orders(gains):
    for name in ("identity", "preact"):
        assert all(abs(gains[name, d]) < 3 for d in (14, 38, 110)), name


@pytest.mark.parametrize("name", list(FAILING))
def test_failing_shortcuts_lose_three_orders_more_than_identity(gains, name):
    assert abs(gains[name, 110]) >= abs(gains["identity", 110]) + 3
    assert gains[name, 110] > 0  # with BN the gradient explodes toward the input rather than vanishing


@pytest.mark.parametrize("name", list(FAILING))
def test_failing_gain_grows_with_depth(gains, name):
    assert gains[name, 14] < gains[name, 38] < gains[name, 110]
    # and faster than identity's
    assert gains[name, 110] - gains[name, 14] > gains["identity", 110] - gains["identity", 14] + 2


def test_result_records_every_unit_and_the_shortcut_term(batch):
    r = probe(_spec(14, shortcut="scaling", scale=0.5), *batch)
    assert r.units == 6 and len(r.act_norms) == 6
    assert r.shortcut_term == pytest.approx(0.5 ** 5)  # x_L back to x_1 crosses units 1 .. L-1
    assert r.gain == pytest.approx(math.log10(r.grad_norms[0] / r.grad_norms[-1]))
    assert r.ratio == pytest.approx(r.grad_norms[0] / r.grad_norms[-1])
    assert r.slope < 0  # the gradient falls from the first unit to the last
    d = r.to_dict()
    assert json.loads(json.dumps(d))["grad_norms"] == list(r.grad_norms) and d["spec"] == str(r.spec)


def test_gate_term_is_measured_and_conv1x1_has_none(batch):
    open_gate = probe(_spec(14, shortcut="shortcut_gate", gate_bias=0.0), *batch)
    closed_gate = probe(_spec(14, shortcut="shortcut_gate", gate_bias=-6.0), *batch)
    assert 0.5 ** 5 * 0.5 < open_gate.shortcut_term < 0.5 ** 5 * 2  # 1 - sigmoid(~0) = ~0.5 per unit
    assert closed_gate.shortcut_term > 0.9  # 1 - sigmoid(-6) = 0.9975 per unit
    assert probe(_spec(14, shortcut="conv1x1"), *batch).shortcut_term is None
    assert probe(_spec(14, shortcut="dropout", drop=0.5), *batch).shortcut_term == pytest.approx(0.5 ** 5)
    assert probe(_spec(14), *batch).shortcut_term == 1.0


def _tiny(shortcut, **kw):
    return ArchSpec.cifar(14, act="original", widths=(4, 8, 16), in_chans=1, shortcut=shortcut, **kw)


def _gate_factors(model, batch):
    """mean 1 - g(x) of every unit's gate on ``batch`` in training mode, in unit order, measured apart."""
    gates = [m.gate for m in model.modules() if isinstance(m, Gate)]
    factors = []
    handles = [g.register_forward_hook(lambda _, a, out: factors.append((1 - torch.sigmoid(out)).mean().item()))
               for g in gates]
    with torch.no_grad():
        model.train()(batch[0])
    for h in handles:
        h.remove()
    assert len(factors) == len(gates) == 6
    return factors


@pytest.mark.parametrize("shortcut", ["shortcut_gate", "exclusive_gate"])
def test_gate_term_is_the_product_over_the_units_the_gain_spans(batch, shortcut):
    torch.manual_seed(0)
    model = build(_tiny(shortcut, gate_bias=0.0))
    factors = _gate_factors(model, batch)
    r = probe(model, *batch)
    assert r.units == 6
    assert r.shortcut_term == pytest.approx(math.prod(factors[:-1]), rel=1e-5)  # units 1 .. L-1, not L
    assert r.shortcut_term != pytest.approx(math.prod(factors), rel=1e-3)


@pytest.mark.parametrize("shortcut, kw", [("shortcut_gate", dict(gate_bias=0.0)), ("identity", {}),
                                          ("scaling", dict(scale=0.5))])
def test_probe_does_not_depend_on_gradient_checkpointing(batch, shortcut, kw):
    torch.manual_seed(0)
    model = build(_tiny(shortcut, **kw))
    plain = probe(model, *batch)
    model.set_grad_checkpointing(True)
    checkpointed = probe(model, *batch)
    assert model.grad_checkpointing is True  # the model's own setting is restored
    assert checkpointed.units == plain.units == 6
    assert checkpointed.grad_norms == pytest.approx(plain.grad_norms, rel=1e-5)
    assert checkpointed.act_norms == pytest.approx(plain.act_norms, rel=1e-5)
    assert checkpointed.gain == pytest.approx(plain.gain, abs=1e-6)
    assert checkpointed.shortcut_term == pytest.approx(plain.shortcut_term, rel=1e-5)
    model.set_grad_checkpointing(False)
    assert probe(model, *batch).shortcut_term == pytest.approx(plain.shortcut_term, rel=1e-5)
    assert model.grad_checkpointing is False


def test_probe_of_a_built_model_keeps_its_mode_and_weights(batch):
    model = build(_spec(8)).eval()
    before = [p.clone() for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    r1, r2 = probe(model, *batch), probe(model, *batch)
    assert not model.training and r1.gain == pytest.approx(r2.gain)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers()))


# ---- resnas probe ---------------------------------------------------------------------------------
SMALL = ["depth=14,act=original,down=zeropad", "depth=14,act=original,down=zeropad,shortcut=scaling,scale=0.5",
         "depth=14,act=original,down=zeropad,shortcut=conv1x1"]


def test_probe_cli_json_ranks_by_distance_from_the_preact_identity_net(capsys):
    assert main(["probe", *SMALL, "--batch-size", "16", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    variants = out["variants"]
    assert out["batch_size"] == 16 and len(variants) == 3
    assert {v["spec"] for v in variants} == {str(ArchSpec.parse(s).replace(in_chans=1)) for s in SMALL}
    distances = [v["distance"] for v in variants]
    assert distances == sorted(distances)
    ref = probe(ArchSpec.parse("depth=14,act=preact,down=zeropad,in_chans=1"),
                *next(iter(load_data("digits").loader("val", batch_size=16))))
    assert all(v["reference_gain"] == pytest.approx(ref.gain) for v in variants)
    assert all(v["reference"] == ref.spec for v in variants)
    assert all(v["gain_vs_reference"] == pytest.approx(v["gain"] - ref.gain) for v in variants)
    assert all(v["distance"] == pytest.approx(abs(v["gain_vs_reference"])) for v in variants)
    assert all(len(v["grad_norms"]) == v["units"] == 6 for v in variants)
    assert list(variants[0])[:3] == ["spec", "gain_vs_reference", "reference"]  # the headline figure first


def test_probe_cli_reference_row_is_zero_and_each_depth_has_its_reference(capsys):
    preact = "depth=14,act=preact,down=zeropad"
    assert main(["probe", preact, SMALL[1], "depth=8,act=original,down=zeropad", "--batch-size", "8",
                 "--json"]) == 0
    variants = {v["spec"]: v for v in json.loads(capsys.readouterr().out)["variants"]}
    ref14, ref8 = (str(reference(ArchSpec.parse(s).replace(in_chans=1))) for s in (preact, "depth=8,down=zeropad"))
    own = variants[ref14]
    assert own["reference"] == ref14 and own["gain_vs_reference"] == 0 and own["distance"] == 0
    assert own["reference_gain"] == own["gain"]
    assert variants[str(ArchSpec.parse(SMALL[1]).replace(in_chans=1))]["reference"] == ref14
    depth8 = variants[str(ArchSpec.parse("depth=8,act=original,down=zeropad").replace(in_chans=1))]
    assert depth8["reference"] == ref8 and depth8["gain_vs_reference"] != 0


def test_probe_cli_table_names_the_reference_and_leads_with_the_distance(capsys):
    preact = "depth=14,act=preact,down=zeropad"
    assert main(["probe", preact, SMALL[1], "--batch-size", "8", "--json"]) == 0
    rows = {v["spec"]: v for v in json.loads(capsys.readouterr().out)["variants"]}
    assert main(["probe", preact, SMALL[1], "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    ref = str(reference(ArchSpec.parse(preact).replace(in_chans=1)))
    assert "identity-shortcut, full pre-activation net of the same depth and widths" in out
    assert ref in out.replace("\n", "")  # the reference itself, spelled out
    header = next(line for line in out.splitlines() if "variant" in line)
    assert header.index("vs ref") < header.index("gain ") < header.index("ratio")
    scaled = rows[str(ArchSpec.parse(SMALL[1]).replace(in_chans=1))]
    assert f"{scaled['gain_vs_reference']:+.2f}" in out and f"{rows[ref]['gain_vs_reference']:+.2f}" in out
    assert "+0.00" in out


def test_probe_cli_table_and_plot(tmp_path, capsys):
    png = tmp_path / "probe.png"
    assert main(["probe", SMALL[0], SMALL[2], "--batch-size", "8", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "resnas probe on digits" in out and "shortcut=conv1x1" in out and f"plot: {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_probe_cli_space_grid_and_sample(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    space.write_text("name: s\nsampler: grid\npruner: none\nspace:\n  widths: [[4, 8, 16]]\n  depth: [8]\n"
                     "  act: [original, preact]\n  shortcut: [identity, conv1x1]\n")
    assert main(["probe", "--space", str(space), "--batch-size", "8", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["variants"]) == 4
    assert main(["probe", "--space", "default", "--samples", "3", "--batch-size", "8", "--json"]) == 0
    assert 1 <= len(json.loads(capsys.readouterr().out)["variants"]) <= 3


@pytest.mark.parametrize("args, message", [
    ([], "give one or more specs"),
    (["nonsense"], "unknown name 'nonsense'"),
    (["depth=7"], "depth: 7 is not 6n+2"),
    (["--space", "nope"], "unknown space 'nope'"),
    (["depth=8", "--plot", "/no/such/dir/p.png"], "folder /no/such/dir does not exist"),
])
def test_probe_cli_errors_are_one_line(args, message, capsys):
    assert main(["probe", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_the_plot_draws_the_reference_its_gains_are_measured_against(tmp_path):
    x = torch.randn(4, 1, 8, 8)  # issue 24: the headline's reference was not on the figure
    pairs = against_reference([ArchSpec.cifar(8, act="original", in_chans=1), ArchSpec.cifar(8, in_chans=1)], x)
    drawn = plot([r for r, _ in pairs[:1]], str(tmp_path / "p.png"), references=[ref for _, ref in pairs[:1]])
    assert len(drawn) == 2 and drawn[1].startswith("reference: identity, full pre-activation, 3 units")
    assert (tmp_path / "p.png").stat().st_size > 1000
    both = plot([r for r, _ in pairs], str(tmp_path / "q.png"), references=[ref for _, ref in pairs])
    assert len(both) == 2  # the reference already drawn as a result is not drawn twice
