"""Hostile input (issue 14, items 6 and 8): one line on stderr starting with "error:", bounded in length,
exit code 2, never a traceback, and nothing written to the user's study or files."""

import resource
import shutil
import subprocess
import sys

import optuna
import pytest
from sqlalchemy.engine import make_url

import resnas.kept
import resnas.space
from resnas.cli import main
from resnas.config import Search
from resnas.runners import run_search
from resnas.space import SpaceError, load_space, parse_space
from resnas.spec import MAX_DEPTH, ArchSpec, short_repr
from resnas.storage import artifact_root, local_file, mask_url, open_storage

LINE = 400  # the longest error line a user should get

TINY = """
name: tiny
dataset: digits
sampler: grid
pruner: none
epochs: {min: 1, max: 1}
seed: 5
recipe: {batch_size: 128, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  act: [original]
"""


def _one_line(err: str) -> str:
    assert err.startswith("error:") and err.count("\n") == 1 and len(err) < LINE, err[:LINE]
    assert "Traceback" not in err
    return err


def _space_error(text: str) -> str:
    with pytest.raises(SpaceError) as e:
        parse_space(text)
    message = str(e.value)
    assert message.startswith("<space>: ") and "\n" not in message and len(message) < LINE, message[:LINE]
    return message


def _laughs(levels: int) -> str:
    """A "billion laughs": each level an anchored list of nine aliases of the level below (9**levels x's)."""
    rows = ["&l0 [x, x, x, x, x, x, x, x, x]"]
    rows += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "space:\n  depth:\n    - [" + ", ".join(rows) + "]\n"


def _limit_memory() -> None:  # a failing loader must not take the machine down with it
    resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))


# ---- YAML spaces: size, aliases, syntax -------------------------------------------------------------
def test_an_alias_bomb_is_refused_naming_the_limit():
    message = _space_error(_laughs(7))  # 4.8 million x's from 300 bytes
    assert "aliases expanded" in message and "1 MiB" in message


def test_a_few_aliases_still_load():
    space = parse_space("recipe: &r {batch_size: 64}\nspace: {depth: &d [8], act: &a [original, preact]}\n")
    assert space.choices["act"] == ("original", "preact") and space.recipe == {"batch_size": 64}


def test_an_alias_bomb_file_is_one_line_in_the_cli_and_creates_no_study(tmp_path):
    bomb = tmp_path / "laughs.yaml"
    bomb.write_text(_laughs(9))  # 387 million x's: gigabytes, or a 2 GB error line, before
    run = subprocess.run([sys.executable, "-m", "resnas", "search", "--space", str(bomb), "--storage",
                          f"sqlite:///{tmp_path}/x.db"], capture_output=True, text=True, timeout=300,
                         preexec_fn=_limit_memory, cwd=tmp_path)
    assert run.returncode == 2 and run.stdout == ""
    assert _one_line(run.stderr).startswith(f"error: {bomb}: with its aliases expanded")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["laughs.yaml"]


def test_a_file_above_the_size_limit_is_one_line_without_reading_it_all(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("space: {depth: [8]}\n" + "#" * (2**20 + 10) + "\n")
    with pytest.raises(SpaceError, match=f"^{big}: larger than the limit of 1 MiB"):
        load_space(big)
    _space_error("#" * (2**20 + 1))


def test_a_yaml_syntax_error_gives_its_line_and_reason():
    message = _space_error("name: x\nspace: {depth: [8]\n")
    assert message.startswith("<space>: not valid YAML at line 2: ") and "expected ',' or '}'" in message


@pytest.mark.parametrize("text, start", [
    ("space: {depth: " + "[" * 5000 + "8" + "]" * 5000 + "}", "<space>: values nested too deeply"),
    ("space: {depth: [" + "9" * 5000 + "]}", "<space>: not valid YAML: Exceeds the limit (4300 digits)"),
    ("space: {depth: [8]}\x00", "<space>: not valid YAML"),
])
def test_malformed_yaml_is_one_line(text, start):
    assert _space_error(text).startswith(start)


def test_a_binary_file_is_one_line(tmp_path):
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(SpaceError, match=f"^{binary}: not UTF-8 text"):
        load_space(binary)


# ---- nested and mistyped values: the key, what was found, what is allowed ----------------------------
@pytest.mark.parametrize("text, start", [
    ("space: {depth: [8], act: [[original]]}", "space.act: ['original'] is not allowed; allowed: original"),
    ("space: {depth: [8], act: [{a: 1}]}", "space.act: {'a': 1} is not allowed; allowed: original"),
    ("space: {depth: [8], act: [!!set {preact: null}]}", "space.act: {'preact'} is not allowed"),
    ("space: {depth: [8], act: &a [*a]}", "space.act: [[[[...]]]] is not allowed"),
    ("space: {depth: [8], unit: [[basic]]}", "space.unit: ['basic'] is not allowed; allowed: basic"),
    ("space: {depth: [8], shortcut: [[identity]]}", "space.shortcut: ['identity'] is not allowed; allowed: identity"),
    ("space: {depth: [8], shortcut: {scaling: {scale: [[0.5]]}}}", "space.shortcut.scaling.scale: [0.5] is not"),
    ("space: {depth: [[8]]}", "space.depth: [8] is not an integer >= 3"),
    ("space: {depth: {basic: [[8]]}}", "space.depth.basic: [8] is not an integer >= 3"),
    ("space: {depth: [8], widths: [[4, [8], 16]]}", "space.widths: [8] is not an integer >= 1"),
    ("space: {depth: [8], down: [[zeropad]]}", "space.down: ['zeropad'] is not allowed; allowed: projection"),
    ("space: {depth: [8], layout: [cifar]}", "space.layout: ['cifar'] is not allowed; allowed: cifar"),
    ("dataset: [digits]\nspace: {depth: [8]}", "dataset: ['digits'] is not allowed; allowed: digits"),
    ("sampler: {grid: 1}\nspace: {depth: [8]}", "sampler: {'grid': 1} is not allowed; allowed: tpe"),
    ("objectives: [[val_error]]\nspace: {depth: [8]}", "objectives: ['val_error'] is not allowed; allowed: val_error"),
    ("recipe: {lr: [1]}\nspace: {depth: [8]}", "recipe.lr: [1] is not a finite number"),
    ("recipe: {nesterov: [1]}\nspace: {depth: [8]}", "recipe.nesterov: [1] is not true or false"),
    ("recipe: {milestones: [[0.5]]}\nspace: {depth: [8]}", "recipe.milestones: [0.5] is not a finite number"),
    ("recipe: {batch_size: 1.5}\nspace: {depth: [8]}", "recipe.batch_size: 1.5 is not an integer >= 0"),
    ("recipe: {schedule: [step]}\nspace: {depth: [8]}", "recipe.schedule: ['step'] is not allowed; allowed: step"),
    ("seed: 4294967296\nspace: {depth: [8]}", "seed: 4294967296 is not an integer in [0, 4294967295]"),
    ("space: {depth: [1" + "0" * 300 + "]}", "space: depth: 100000000000000000"),  # the number cut short
    ("space: {depth: [8], width: [1" + "0" * 400 + "]}", "space.width: 100000000000000000"),  # beyond a float
])
def test_a_nested_or_mistyped_value_is_one_line_naming_the_key(text, start):
    assert _space_error(text).startswith(f"<space>: {start}")


def test_nested_values_in_the_cli_are_one_line_and_create_no_study(tmp_path, capsys):
    space = tmp_path / "bad.yaml"
    space.write_text("name: n\nspace:\n  depth: [8]\n  act: [[original]]\n")
    assert main(["search", "--space", str(space), "--storage", f"sqlite:///{tmp_path}/x.db"]) == 2
    assert "space.act: ['original'] is not allowed" in _one_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


@pytest.mark.parametrize("text", [
    "space: {depth: [8], act: ['%s']}",
    "space: {depth: [8], shortcut: ['%s']}",
    "space:\n  depth: [8]\n  ? '%s'\n  : 1\n",  # a long key: explicit (implicit ones stop at 1024)
    "space: {depth: ['%s']}",
    "dataset: '%s'\nspace: {depth: [8]}",
    "recipe: {schedule: '%s'}\nspace: {depth: [8]}",
])
def test_a_long_value_is_quoted_short(text):
    assert "yyy..." in _space_error(text % ("y" * 100_000))


def test_short_repr_cuts_with_dots_and_keeps_short_values():
    assert short_repr("preact") == "'preact'" and short_repr([1, [2]]) == "[1, [2]]"
    long = short_repr(["x" * 1000] * 1000)
    assert len(long) <= 60 and long.endswith("...")
    nested = []
    for _ in range(10_000):  # deeper than Python's recursion limit
        nested = [nested]
    assert len(short_repr(nested)) <= 60


def test_a_space_with_too_many_points_is_refused_before_walking_them_all(monkeypatch):
    monkeypatch.setattr(resnas.space, "MAX_POINTS", 50)
    depths = ", ".join(str(6 * n + 2) for n in range(1, 11))
    message = _space_error(f"space: {{depth: [{depths}], act: [a, b, c, d, e], down: [projection, zeropad]}}")
    assert "more than 50 points" in message


# ---- sizes that allocate: depth, widths, classes --------------------------------------------------
@pytest.mark.parametrize("text, start", [
    ("depth=6000002", f"depth: 6000002 is above the limit of {MAX_DEPTH} layers"),
    ("layers=100000-1-1", f"depth: 200006 is above the limit of {MAX_DEPTH} layers"),
    ("depth=20,widths=16-32-1000000", "widths: (16, 32, 1000000) must be 3 positive widths up to 16384"),
    ("depth=20,num_classes=10000000000", "num_classes: 10000000000 must be an integer >= 0, at most 1000000"),
    ("depth=20,in_chans=10000000000", "in_chans: 10000000000 must be an integer >= 1, at most 1000000"),
    ("depth=9998,widths=4096-4096-4096", "spec: about 1.51e+12 weights, above the limit of 1e+10"),
    ("depth=" + "9" * 5000, "depth: '99999999999"),
    ("act=" + "z" * 100_000, "act: 'zzzzzzz"),
    ("z" * 100_000 + "=1", "spec: unknown field 'zzzz"),
])
def test_a_spec_beyond_the_limits_is_one_bounded_line(text, start):
    with pytest.raises(ValueError) as e:
        ArchSpec.parse(text)
    message = str(e.value)
    assert message.startswith(start) and "\n" not in message and len(message) < LINE, message[:LINE]


def test_the_limits_are_far_above_the_papers_nets():
    assert ArchSpec.parse(f"depth={MAX_DEPTH - 2}").depth == MAX_DEPTH - 2  # 6n+2, not built
    assert ArchSpec.parse("depth=1001,unit=bottleneck").depth == 1001
    assert ArchSpec.imagenet(200, width=4).depth == 200


def test_summary_of_a_huge_depth_is_one_line_before_building(capsys):
    with pytest.raises(ValueError):  # first, or a missing limit builds the net: 20 GB, a minute
        ArchSpec.parse("depth=6000002")
    assert main(["summary", "depth=6000002"]) == 2
    assert _one_line(capsys.readouterr().err) == f"error: depth: 6000002 is above the limit of {MAX_DEPTH} layers\n"


def test_a_huge_depth_in_a_space_is_one_line_and_creates_no_study(tmp_path, capsys):
    space = tmp_path / "deep.yaml"
    space.write_text("name: deep\nspace: {depth: [6000002]}\n")
    with pytest.raises(SpaceError):  # first, or a missing limit trains the net
        load_space(space)
    assert main(["search", "--space", str(space), "--storage", f"sqlite:///{tmp_path}/x.db"]) == 2
    assert "depth: 6000002 is above the limit" in _one_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.yaml"]


# ---- storages: the dashboard, URLs with odd characters ----------------------------------------------
def test_dashboard_on_an_unreachable_postgresql_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["dashboard", "--storage", "postgresql://u:s3cr3t@127.0.0.1:1/x"]) == 2
    err = _one_line(capsys.readouterr().err)
    assert err.startswith("error: storage: cannot open postgresql://u:***@127.0.0.1:1/x") and "s3cr3t" not in err
    assert list(tmp_path.iterdir()) == []  # no resnas-artifacts folder either


@pytest.mark.parametrize("url, masked", [
    ("postgresql://u:RETPW@RETPW@host/db", "postgresql://u:***@host/db"),
    ("postgresql://u:pw@host:5432/db", "postgresql://u:***@host:5432/db"),
    ("postgresql://u:a:b:c@host/db", "postgresql://u:***@host/db"),
    ("postgresql://u:p/w@h@host/db", "postgresql://u:***@host/db"),
    ("postgresql://u:p?w@host/db", "postgresql://u:***@host/db"),
    ("postgresql://u:pw@host/db?sslmode=require&application_name=a@b&c=@",
     "postgresql://u:***@host/db?sslmode=require&application_name=a@b&c=@"),
    ("postgresql://u:RET@PW@/db?host=/var/run/postgresql", "postgresql://u:***@/db?host=/var/run/postgresql"),
    ("postgresql://u:pw@h1:5432,h2:5433/db", "postgresql://u:***@h1:5432,h2:5433/db"),
    ("mysql+pymysql://u:p@ss@[::1]:3306/db?charset=utf8mb4", "mysql+pymysql://u:***@[::1]:3306/db?charset=utf8mb4"),
    ("postgresql://u@host/db", "postgresql://u@host/db"),
    ("postgresql://host:5432/db", "postgresql://host:5432/db"),
    ("postgresql://me@corp@host/db", "postgresql://me@corp@host/db"),
    ("sqlite:///a#b?c/x.db", "sqlite:///a#b?c/x.db"),
    ("journal:///runs/s.log", "journal:///runs/s.log"),
    ("grpc://node1:13000", "grpc://node1:13000"),
    ("not a url", "not a url"),
])
def test_mask_url_hides_every_character_of_the_password(url, masked):
    assert mask_url(url) == masked


@pytest.mark.parametrize("url", ["sqlite:///a#b?c/x.db", "sqlite:///p%20q.db", "sqlite:///d.db?timeout=5",
                                 "sqlite:///plain.db"])
def test_an_sqlite_file_and_its_artifacts_are_where_sqlalchemy_opens_it(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert local_file(url).name == make_url(url).database
    open_storage(url)
    created = [p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))]
    assert created == [local_file(url).name]  # the file SQLAlchemy opened is the one resnas names
    assert artifact_root(url) == local_file(url).parent / "resnas-artifacts"
    assert local_file("sqlite:////abs/dir/x.db") == local_file("sqlite:////abs/dir/x.db?mode=ro").parent / "x.db"


def test_journal_paths_are_taken_as_written():
    assert str(local_file("journal:///a#b?c/x.log")) == "a#b?c/x.log"
    assert artifact_root("journal:///a#b?c/x.log").as_posix() == "a#b?c/resnas-artifacts"


# ---- export when the kept weights are gone ----------------------------------------------------------
@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished one-trial study that kept its weights (resnas-artifacts beside the database)."""
    folder = tmp_path_factory.mktemp("searched")
    url = f"sqlite:///{folder / 't.db'}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    run_search(Search(parse_space(TINY, source="tiny.yaml"), storage=url, heartbeat=None, confirm=0))
    assert len([p for p in artifact_root(url).iterdir() if p.is_file()]) == 2
    return folder


def _copy(searched, tmp_path) -> str:
    shutil.copytree(searched, tmp_path / "s")
    return f"sqlite:///{tmp_path / 's' / 't.db'}"


def test_export_without_the_artifacts_folder_retrains(searched, tmp_path, capsys):
    url = _copy(searched, tmp_path)
    shutil.rmtree(artifact_root(url))
    assert main(["export", "--storage", url, "--output", str(tmp_path / "net")]) == 0
    assert "retrained for 1 epochs: trial 0 kept no weights" in capsys.readouterr().out
    assert (tmp_path / "net" / "model.safetensors").is_file()


def test_export_retrains_when_a_kept_file_goes_while_it_reads(searched, tmp_path, monkeypatch, capsys):
    url = _copy(searched, tmp_path)
    # another worker's top-k removes the file between the check and the download
    monkeypatch.setattr(resnas.kept, "kept_files", lambda study, url, trial: resnas.kept._artifacts(study, trial))
    next(p for p in artifact_root(url).iterdir() if p.is_file()).unlink()
    assert main(["export", "--storage", url, "--output", str(tmp_path / "net")]) == 0
    assert "retrained for 1 epochs" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "net").iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_an_unknown_huge_model_name_is_one_bounded_line(capsys):
    assert main(["summary", "x" * 100_000]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model: unknown name 'xxx") and err.count("\n") == 1 and len(err) < 400
