"""SQLite storages shared by worker processes: an enqueued trial goes to exactly one of them."""

import multiprocessing as mp

import optuna

from resnas.storage import open_storage

WORKERS, TRIALS = 4, 60


def _pop(url: str, start, out) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name="queue", storage=open_storage(url))
    start.wait(60)  # all workers pop at once
    out.put([study._pop_waiting_trial_id() for _ in range(TRIALS // WORKERS)])


def test_workers_popping_enqueued_trials_at_once_never_take_the_same_one(tmp_path):
    # Optuna pops a trial by reading it WAITING, then writing RUNNING; without a write lock taken at the
    # start of the transaction two SQLite workers could both read it (measured: 37 distinct of 40 popped)
    url = f"sqlite:///{tmp_path}/q.db"
    study = optuna.create_study(study_name="queue", storage=open_storage(url))
    for i in range(TRIALS):
        study.enqueue_trial({"x": i}, skip_if_exists=False)
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_pop, args=(url, start, out)) for _ in range(WORKERS)]
    for w in workers:
        w.start()
    start.set()
    popped = [trial_id for _ in workers for trial_id in out.get(timeout=120)]
    for w in workers:
        w.join(30)
    assert None not in popped and len(popped) == TRIALS
    assert len(set(popped)) == TRIALS, f"{TRIALS - len(set(popped))} trials popped twice"
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    assert len(running) == TRIALS
