"""The project's own promises: CI runs exactly the README's test command."""

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.S)


def test_ci_runs_the_readme_test_command_verbatim():
    main_job, test_cmd = _readme_commands()[:2]
    assert "pytest" in test_cmd and "resnas" in main_job
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci_lines


def test_package_is_typed_and_registers_with_timm():
    import timm

    import resnas

    assert (Path(resnas.__file__).parent / "py.typed").exists()
    assert {"preact_resnet200", "preact_resnet1001", "resnas_spec"} <= set(timm.list_models("*resn*"))


def _si(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([MG])", text).groups()
    return float(number) * {"M": 1e6, "G": 1e9}[unit]


def test_readme_models_table_matches_the_zoo():
    import timm
    import torch

    from resnas.network import count_macs, count_params
    from resnas.zoo import ZOO

    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| ([\d,]+) \| ([\d.]+[MG])[^|]*\|([^|]*)\|",
                      (ROOT / "README.md").read_text(), flags=re.M)
    assert {name for name, _, _, _ in rows} == set(ZOO)
    # the paper's 6.61% original ResNet-110 is He et al. 2015's: zero-padded identity shortcuts (option A)
    quoted = [name for name, _, _, paper in rows if paper.strip().startswith("6.61")]
    assert quoted and all(ZOO[name].down == "zeropad" and ZOO[name].act == "original" for name in quoted), quoted
    for name, params, macs, _ in rows:
        with torch.device("meta"):  # shapes only: the ImageNet nets cost nothing to count
            model = timm.create_model(name)
        assert count_params(model) == int(params.replace(",", "")), name
        measured = count_macs(model, model.pretrained_cfg["input_size"])
        assert abs(measured - _si(macs)) / measured < 0.001, (name, measured)


def test_the_readme_says_how_to_start_and_stop_the_tests_postgresql():
    readme = (ROOT / "README.md").read_text()  # issue 24: 5 tests skipped and nobody said why
    tests = readme[readme.index("Tests (this exact line"):readme.index("## The CLI at a glance")]
    assert 'eval "$(.ci/postgres)"' in tests and "apt" in tests and 'eval "$RESNAS_TEST_POSTGRES_STOP"' in tests
    assert "RESNAS_TEST_POSTGRES_STOP=" in (ROOT / ".ci" / "postgres").read_text()


def test_ci_postgres_stop_leaves_no_server_and_no_data_behind(pg_url):  # pg_url: where .ci/postgres runs
    # each run left an 88 MB data directory in /tmp; CI machines share a disk that once filled up
    started = subprocess.run([str(ROOT / ".ci" / "postgres")], capture_output=True, text=True, timeout=300, check=True)
    env = dict(line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines())
    data = re.search(r"-D (\S+)", env["RESNAS_TEST_POSTGRES_STOP"]).group(1)
    assert Path(data).is_dir()
    subprocess.run(["bash", "-c", 'eval "$RESNAS_TEST_POSTGRES_STOP"'], check=True, timeout=120,
                   env={**os.environ, "RESNAS_TEST_POSTGRES_STOP": env["RESNAS_TEST_POSTGRES_STOP"].strip("'")})
    assert not Path(data).exists()
