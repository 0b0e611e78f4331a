#!/usr/bin/env bash
# One worker process per GPU, all on one study: each worker trains its own trials on its own GPU, and
# Optuna's storage hands out the trials (resnas.runners.run_workers). More trials in parallel than
# examples/multi_gpu_trial.sh, each one slower; the better choice when candidates are small.
#
#   bash examples/workers.sh                                      # one worker per GPU of this machine
#   DEVICES=cuda:0,cuda:2 SPACE=full bash examples/workers.sh     # the GPUs you name
#   WORKERS=2 TRIALS=2 EPOCHS=1 bash examples/workers.sh          # no GPU: 2 CPU worker processes
#
# Environment: DEVICES (cuda:0,cuda:1,... or cpu,cpu), else WORKERS (default: the GPUs here, or 1; N workers
# on N GPUs when there are, else N CPU processes), SPACE (default), TRIALS (the space's), EPOCHS (the space's), CONFIRM (3),
# DATASET and DATA_DIR, STORAGE (sqlite:///resnas.db; WAL mode lets the workers share it), STUDY.
# More machines on one study: the same command with a PostgreSQL --storage (examples/cluster/).
set -euo pipefail

search=(--space "${SPACE:-default}" --storage "${STORAGE:-sqlite:///resnas.db}")
if [[ -n ${DEVICES:-} ]]; then
    search+=(--devices "$DEVICES")
    echo "workers: one per device of $DEVICES"
else
    WORKERS=${WORKERS:-$(python -c "import torch; print(max(1, torch.cuda.device_count()))")}
    search+=(--workers "$WORKERS")
    echo "workers: $WORKERS"
fi
if [[ -n ${TRIALS:-} ]]; then search+=(--trials "$TRIALS"); fi
if [[ -n ${EPOCHS:-} ]]; then search+=(--epochs "$EPOCHS"); fi
if [[ -n ${CONFIRM:-} ]]; then search+=(--confirm "$CONFIRM"); fi  # best designs racing the paper's unit [3]
if [[ -n ${MAX_SEEDS:-} ]]; then search+=(--max-seeds "$MAX_SEEDS"); fi  # the race's seeds per design at most [10]
if [[ -n ${DATASET:-} ]]; then search+=(--dataset "$DATASET"); fi
if [[ -n ${DATA_DIR:-} ]]; then search+=(--data-dir "$DATA_DIR"); fi
if [[ -n ${STUDY:-} ]]; then search+=(--study "$STUDY"); fi

resnas search "${search[@]}"
