"""resnas.config: what a search refuses before any study, in the Python API as in the CLI; a search is frozen and picklable."""

import dataclasses
import pickle

import pytest

from resnas.config import Search, SearchError
from resnas.space import parse_space

from _tinygrid import GRID, TPE, _search


def test_the_python_api_refuses_what_the_cli_refuses_and_a_search_is_frozen_and_picklable():
    tpe, grid = parse_space(TPE, source="tpe.yaml"), parse_space(GRID, source="grid.yaml")
    refused = [(dict(space=tpe, budget_epochs=5), "budget-epochs: 5 leaves nothing for the search after the "
                "36 reserved for the race's first look (4 designs x 3 seeds x 3 epochs); raise it, or lower --confirm"),
               (dict(space=tpe, trials=3, more=2), "trials: --trials and --more both set the run's budget; give one, "
                "not both"),
               (dict(space=grid, more=1), f"more: space {grid.name} is a grid, whose points are its budget; "
                "--trials N runs the first N")]
    for kwargs, line in refused:
        with pytest.raises(SearchError) as e:
            Search(**kwargs)
        assert str(e.value) == line
    search = Search(tpe, trials=3, storage="sqlite:///x.db")
    assert pickle.loads(pickle.dumps(search)) == search  # what a worker process is handed
    with pytest.raises(dataclasses.FrozenInstanceError):
        search.trials = 4


@pytest.mark.parametrize("argv, message", [
    (["--seed", "-1"], "-1 is not in the range 0<=x<=4294967295"),
    (["--seed", "4294967296"], "4294967296 is not in the range 0<=x<=4294967295"),
])
def test_out_of_range_seeds_are_one_line_before_any_study(argv, message, tmp_path, capsys):
    db = tmp_path / "seed.db"
    assert _search(tmp_path, db, *argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not db.exists()
