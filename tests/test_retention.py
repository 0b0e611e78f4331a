"""Weights of exactly the top k trials, and studies written by earlier resnas resuming and exporting."""

import optuna
import timm
from optuna.trial import TrialState

from resnas.config import Search
from resnas.designs import ranked_trials
from resnas.kept import WEIGHTS_TOP_K, kept_files, weights_kept
from resnas.record import TrialRecord
from resnas.results import export_trial
from resnas.runners import run_search
from resnas.space import parse_space
from resnas.storage import artifact_root, open_storage

# a float parameter: every trial is a new design; one epoch, no pruning: every trial completes
SPACE = """
name: topk
dataset: digits
sampler: random
pruner: none
epochs: {min: 1, max: 1}
trials: 8
seed: 5
recipe: {batch_size: 128, warmup_iters: 0}
space:
  widths: [[4, 8, 16]]
  depth: [8]
  act: [preact]
  shortcut: {scaling: {scale: {low: 0.1, high: 1.0}}}
"""


def test_exactly_the_top_k_completed_trials_keep_weights(tmp_path):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    study = run_search(Search(parse_space(SPACE, source="topk.yaml"), storage=url, heartbeat=None, confirm=0))
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 8 and WEIGHTS_TOP_K == 3
    top = ranked_trials(study)[:WEIGHTS_TOP_K]  # the ranking `resnas best` shows
    assert {t.number for t in study.trials if weights_kept(study, url, t)} == {t.number for t in top}
    root = artifact_root(url)
    files = {p.name for p in root.iterdir() if p.is_file()}
    assert files == {i for t in top for i in kept_files(study, url, t).values()}
    assert len(files) == 2 * WEIGHTS_TOP_K
    # a trial that left the top k (its files listed by Optuna, removed) exports by retraining; one in it, from
    # its own weights
    storage = open_storage(url)
    left = next(t.number for t in done if optuna.artifacts.get_all_artifact_meta(t, storage=storage)
                and not weights_kept(study, url, t))
    assert export_trial(study, url, left, tmp_path / "left")[1].endswith(f"trial {left} kept no weights")
    assert export_trial(study, url, top[0].number, tmp_path / "best")[1] == f"trial {top[0].number}'s own weights"


def test_a_study_written_with_the_old_record_resumes_and_exports(tmp_path):
    """Trials written as resnas wrote them before resnas.record: raw Optuna calls, the same keys."""
    space = parse_space(SPACE.replace("trials: 8", "trials: 2"), source=str(tmp_path / "topk.yaml"))
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = optuna.create_study(study_name="topk", storage=url)
    for key, value in dict(space="topk", space_file=str(tmp_path / "topk.yaml"), dataset="digits",
                           objectives=["val_error"], max_epochs=1, recipe={"batch_size": 128, "warmup_iters": 0},
                           seed=5).items():
        old.set_user_attr(key, value)
    draws = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    specs = []
    for _ in range(3):
        trial = draws.ask()
        specs.append(str(space.suggest(trial, in_chans=1, num_classes=10)))
        draws.tell(trial, 0.5)
    common = dict(timm=f"timm.create_model('resnas_spec', spec='{specs[0]}')", device="cpu", params=1234, macs=5678)
    old.add_trial(optuna.trial.create_trial(
        value=0.3, params=draws.trials[0].params, distributions=draws.trials[0].distributions,
        user_attrs=dict(common, spec=specs[0], status="ok", reason="trained 1 epochs", epochs=1, seconds=1.0,
                        val_error=[0.3], train_loss=[1.0], epoch_seconds=[1.0], probe_gain=0.1, checkpoint_of=0,
                        seed=123)))
    old.add_trial(optuna.trial.create_trial(
        state=TrialState.PRUNED, params=draws.trials[1].params, distributions=draws.trials[1].distributions,
        user_attrs=dict(common, spec=specs[1], status="pruned", reason="probe: |gain| 9.00 > 4")))
    old.add_trial(optuna.trial.create_trial(
        state=TrialState.FAIL, params=draws.trials[2].params, distributions=draws.trials[2].distributions,
        user_attrs=dict(common, spec=specs[2], status="failed", reason="interrupted", checkpoint_of=2, seed=7)))

    study = run_search(Search(space, storage=url, heartbeat=None, confirm=0, more=2))  # the interrupted trial first
    trials = study.trials
    assert len(trials) == 5 and [t.state for t in trials[3:]] == [TrialState.COMPLETE] * 2
    retry = TrialRecord.from_trial(trials[3])
    assert retry.retry_of == 2 and retry.checkpoint_of == 2 and retry.spec == specs[2] and retry.status == "ok"
    folder, how = export_trial(study, url, 0, tmp_path / "net")  # kept no weights: retrained with its seed
    assert how == "retrained for 1 epochs: trial 0 kept no weights"
    assert str(timm.create_model(f"local-dir:{folder}", pretrained=True).spec) == specs[0]
