"""resnas.racing: the race after a search's budget, on tiny digits studies: it ends with a stored verdict, its
repeats are paired, the paper's unit joins when the sampler never drew it (skipped when the space lacks it), a
larger --max-seeds continues it without retraining, `resnas best` (--json too) carries the verdict, and
`resnas export` writes a model card stating it."""

import json

import pytest
import timm
from huggingface_hub import ModelCard

from resnas.cli import main
from resnas.config import Search, SearchError
from resnas.designs import stored_verdict
from resnas.racing import race_table
from resnas.recipe import design_seed
from resnas.space import parse_space

from _tinygrid import GRID, _search, _study

PAPER = "act=preact,shortcut=identity"


def _race_runs(study):
    return [t for t in study.get_trials(deepcopy=False) if str(t.user_attrs.get("job", "")).startswith("race:")]


def test_the_race_ends_with_a_verdict_on_paired_seeds_and_a_larger_max_seeds_continues_it(tmp_path, capsys,
                                                                                          monkeypatch):
    db = tmp_path / "r.db"
    assert _search(tmp_path, db, "--confirm", "2", "--max-seeds", "3") == 0
    study = _study(db)
    verdict, race = stored_verdict(study)
    assert verdict is not None and verdict.status != "racing" and verdict.look == 3
    assert PAPER in race["baseline"] and race["baseline"] in race["designs"] and len(race["designs"]) in (2, 3)
    table = race_table(study, race["designs"], 2)
    assert all(len(table[d]) == 3 for d in verdict.remaining)  # every design still in it ran 3 seeds
    for t in study.get_trials(deepcopy=False):  # paired: repeat r trains every design with one seed
        assert t.user_attrs["seed"] == design_seed(5, t.user_attrs.get("repeat") or 0)
    runs = _race_runs(study)
    assert all(t.user_attrs["job"] == f"race:{t.user_attrs['spec']}:{t.user_attrs['repeat']}" for t in runs)
    assert {t.user_attrs["repeat"] for t in runs} == {1, 2}  # repeat 0 is each design's search trial
    assert verdict.baseline is not None and verdict.baseline.n == 3

    done = {t.number: t.value for t in study.get_trials(deepcopy=False)}
    assert _search(tmp_path, db, "--confirm", "2", "--max-seeds", "4") == 0
    study = _study(db)
    again, _ = stored_verdict(study)
    assert {t.number: t.value for t in study.trials if t.number in done} == done  # nothing retrained
    added = [t for t in study.trials if t.number not in done]
    assert {t.user_attrs["repeat"] for t in added} == ({3} if verdict.status == "max seeds" else set())
    jobs = [t.user_attrs["job"] for t in _race_runs(study)]
    assert len(jobs) == len(set(jobs))  # each run of the race once
    assert again.rules.max_seeds == 4 and again.status != "racing"
    capsys.readouterr()
    assert main(["best", "--storage", f"sqlite:///{db}", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"]["status"] == again.status and out["baseline"] == race["baseline"]
    assert out["delta_vs_baseline"] == pytest.approx(again.baseline.delta)
    assert out["delta_vs_baseline_interval"] == pytest.approx([again.baseline.low, again.baseline.high])

    monkeypatch.setenv("COLUMNS", "80")
    assert main(["best", "--storage", f"sqlite:///{db}"]) == 0  # the verdict under the table
    shown = capsys.readouterr().out
    assert "race: " in shown and again.baseline.text.split(":")[0].split()[0] in shown
    assert max(len(line) for line in shown.splitlines()) <= 80, shown  # wrapped at words, not by the terminal
    folder = tmp_path / "net"
    assert main(["export", "--storage", f"sqlite:///{db}", "--output", str(folder)]) == 0
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "timm" and card.data.datasets == ["digits"] and "timm" in card.data.tags
    assert "## The verdict" in card.text and again.baseline.text in card.text and "Tukey" in card.text
    assert timm.create_model(f"local-dir:{folder}", pretrained=True).spec is not None


def test_the_paper_unit_joins_the_race_when_the_sampler_never_drew_it(tmp_path, capsys):
    db = tmp_path / "b.db"
    space = GRID.replace("sampler: grid", "sampler: random").replace("seed: 5", "seed: 5\ntrials: 2") \
        .replace("act: [original, preact]", "act: [original, preact, relu_preact]")
    assert _search(tmp_path, db, "--confirm", "1", "--max-seeds", "2", "--seed", "14", text=space) == 0
    study = _study(db)
    drawn = [t for t in study.trials if "repeat" not in t.user_attrs]
    assert len(drawn) == 2 and not any(PAPER in t.user_attrs["spec"] for t in drawn)  # the draw missed it
    baseline = [t for t in study.trials if PAPER in t.user_attrs["spec"]]
    assert sorted(t.user_attrs["repeat"] for t in baseline) == [0, 1]  # trained on the race's seeds
    assert all(t.user_attrs["seed"] == design_seed(14, t.user_attrs["repeat"]) for t in baseline)
    verdict, race = stored_verdict(study)
    assert verdict.status != "racing" and verdict.seeds[race["baseline"]] == 2 and verdict.baseline is not None
    assert "the paper's unit" in capsys.readouterr().out


def test_the_baseline_is_skipped_when_the_space_lacks_it(tmp_path, capsys):
    db = tmp_path / "s.db"
    assert _search(tmp_path, db, "--confirm", "2", "--max-seeds", "2",
                   text=GRID.replace("act: [original, preact]", "act: [original]")) == 0
    verdict, race = stored_verdict(_study(db))
    assert race["baseline"] is None and race["note"].startswith("no baseline: the space lacks the paper's unit")
    assert len(race["designs"]) == 2 and verdict.baseline is None and verdict.status != "racing"
    assert "no baseline" in capsys.readouterr().out


def test_bad_race_settings_are_refused_in_one_line(tmp_path, capsys):
    space = parse_space(GRID, source="g.yaml")
    for kwargs, start in [(dict(margin=-0.001), "margin:"), (dict(max_seeds=1), "max-seeds:"),
                          (dict(baseline="depth=seven"), "baseline:")]:
        with pytest.raises(SearchError, match=f"^{start}"):
            Search(space, **kwargs)
    assert _search(tmp_path, tmp_path / "x.db", "--baseline", "depth=seven") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "baseline:" in err


def test_worker_processes_race_in_rounds_each_run_once(tmp_path):
    db = tmp_path / "w.db"
    assert _search(tmp_path, db, "--confirm", "1", "--max-seeds", "2", "--workers", "2") == 0
    study = _study(db)
    verdict, race = stored_verdict(study)
    assert verdict.status != "racing" and all(n == 2 for n in verdict.seeds.values())
    jobs = [t.user_attrs["job"] for t in _race_runs(study) if t.user_attrs.get("status") != "surplus"]
    assert len(jobs) == len(set(jobs)) == len(race["designs"])  # one more seed each, none trained twice
