"""The trial record: stored keys and values as every earlier resnas wrote them."""

import doctest

import optuna
import pytest

import resnas.record
import resnas.storage
from resnas import train
from resnas.record import ARTIFACT_FILES, StudyRecord, TrialRecord, status_of
from resnas.status import Status


def test_statuses_are_one_enumeration_of_the_stored_strings():
    assert [s.value for s in Status] == ["running", "ok", "pruned", "diverged", "oom", "stopped", "failed",
                                         "duplicate", "lost", "surplus"]
    assert set(train.STATUSES) <= {s.value for s in Status}  # the trainer's statuses are record statuses
    assert Status.OK == "ok" and f"{Status.PRUNED}" == "pruned" and str(Status.LOST) == "lost"


def test_record_round_trips_through_an_optuna_trial():
    study = optuna.create_study()
    trial = study.ask()
    record = TrialRecord(spec="depth=8", status=Status.OK, reason="trained 1 epochs", epochs=1, val_error=[0.25])
    record.save(trial)
    study.tell(trial, 0.25)
    frozen = study.trials[0]
    assert frozen.user_attrs == {"spec": "depth=8", "status": "ok", "reason": "trained 1 epochs", "epochs": 1,
                                 "val_error": [0.25]}  # kept files are Optuna's artifacts (resnas.kept), not here
    back = TrialRecord.from_trial(frozen)
    assert back == record and back.status is Status.OK
    assert ARTIFACT_FILES == ("model.safetensors", "config.json")


def test_old_and_foreign_trials_read_with_defaults():
    record = TrialRecord.from_user_attrs({"spec": "depth=8", "status": "something new", "extra": 1})
    assert record.status == "something new" and record.seed is None and record.val_error == []
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"status": "running"}))
    study.add_trial(optuna.trial.create_trial(value=1.0))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                              user_attrs={"status": "failed", "reason": "interrupted"}))
    assert [status_of(t) for t in study.trials] == [Status.LOST, "complete", Status.FAILED]
    assert StudyRecord.from_study(study) == StudyRecord()


@pytest.mark.parametrize("names, attrs", [(("status", "reason"), {"status": "failed"}), (("seed",), {})])
def test_save_writes_only_the_named_fields_that_are_set(names, attrs):
    study = optuna.create_study()
    trial = study.ask()
    TrialRecord(status=Status.FAILED, spec="x").save(trial, *names)
    assert trial.user_attrs == attrs


def test_docstring_examples_run():
    assert doctest.testmod(resnas.record).failed == 0 and doctest.testmod(resnas.storage).failed == 0
