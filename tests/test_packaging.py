"""The project's own promises: CI runs exactly the README's test command."""

import re
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
