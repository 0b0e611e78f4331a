"""resnas.recipe: the seeds a design trains with."""

import os
import subprocess
import sys

from resnas.recipe import design_seed


def test_repeat_seeds_differ_and_repeat_zero_is_the_default():
    seeds = {design_seed(5, r) for r in range(4)}
    assert len(seeds) == 4
    assert design_seed(5) == design_seed(5, 0) != design_seed(6)


def test_a_repeats_seed_is_the_same_in_every_process():
    code = "from resnas.recipe import design_seed; print(design_seed(5, 2))"
    other = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONHASHSEED="1"), check=True,
                           capture_output=True, text=True)  # another process, another salt for str hashes
    assert other.stdout.strip() == str(design_seed(5, 2))  # a retried trial resumes its run
    assert 0 <= design_seed(2**32 - 1) < 2**31
