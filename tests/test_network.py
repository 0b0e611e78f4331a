"""resnas.network: a spec built into the paper's net, its parameters and MACs counted as PAPER.md counts them."""

import pytest
import torch

from resnas.network import build, count_macs, count_params


@pytest.mark.parametrize("spec, params, macs", [
    ("depth=110,unit=basic,act=preact,down=zeropad", 1_727_962, None),  # option A
    ("depth=110,unit=basic,act=preact", 1_730_522, 253e6),  # 1x1 projection
    ("depth=164,unit=bottleneck,act=preact", 1_703_258, None),
    ("depth=1001,unit=bottleneck,act=preact", 10_327_706, 1.49e9),
], ids=["preact-110-option-a", "preact-110", "preact-164", "preact-1001"])
def test_build_gives_the_papers_parameter_counts_and_macs(spec, params, macs):
    with torch.device("meta"):  # shapes only: ResNet-1001 costs nothing to count
        model = build(spec)
    assert count_params(model) == params
    if macs:
        assert abs(count_macs(model, (3, 32, 32)) - macs) / macs < 0.01


def test_build_takes_classes_and_channels_and_gives_one_logit_row_per_image():
    model = build("depth=8,widths=4-8-16", num_classes=7, in_chans=1)
    assert str(model.spec).endswith("widths=4-8-16,in_chans=1,num_classes=7")
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 7)
