"""resnas.recipe: the seeds a design trains with."""

from resnas.recipe import design_seed


def test_repeat_seeds_differ_and_repeat_zero_keeps_the_design_seed():
    spec = "layout=cifar,depth=8"
    seeds = {design_seed(5, spec, r) for r in range(4)}
    assert len(seeds) == 4
    assert design_seed(5, spec) == design_seed(5, spec, 0)
