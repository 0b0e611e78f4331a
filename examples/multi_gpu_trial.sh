#!/usr/bin/env bash
# One trial of a search trained on several GPUs at once with `accelerate launch`: every process builds the
# same candidate and trains it on its share of each batch (metrics gathered over all of them); the first
# process asks Optuna for the candidate and records the trial (resnas.runners.run_distributed).
#
#   bash examples/multi_gpu_trial.sh                                          # all the GPUs of this machine
#   NUM_PROCESSES=4 SPACE=paper_table2 DATASET=cifar10 DATA_DIR=~/data bash examples/multi_gpu_trial.sh
#   NUM_PROCESSES=2 ACCELERATE_USE_CPU=1 EPOCHS=1 bash examples/multi_gpu_trial.sh   # no GPU: 2 CPU processes
#
# Environment: NUM_PROCESSES (default: the GPUs here, or 1), SPACE (default), TRIALS (1), EPOCHS (the space's), CONFIRM (3: the best
# designs trained again with 2 more seeds, on all processes too),
# DATASET and DATA_DIR (the space's), STORAGE (sqlite:///resnas.db), STUDY (the space's name),
# MAIN_PROCESS_PORT (29500; 0 picks a free one). Run it again to add trials to the same study.
set -euo pipefail

NUM_PROCESSES=${NUM_PROCESSES:-$(python -c "import torch; print(max(1, torch.cuda.device_count()))")}

search=(--space "${SPACE:-default}" --trials "${TRIALS:-1}" --storage "${STORAGE:-sqlite:///resnas.db}")
if [[ -n ${EPOCHS:-} ]]; then search+=(--epochs "$EPOCHS"); fi
if [[ -n ${CONFIRM:-} ]]; then search+=(--confirm "$CONFIRM"); fi
if [[ -n ${MAX_SEEDS:-} ]]; then search+=(--max-seeds "$MAX_SEEDS"); fi
if [[ -n ${DATASET:-} ]]; then search+=(--dataset "$DATASET"); fi
if [[ -n ${DATA_DIR:-} ]]; then search+=(--data-dir "$DATA_DIR"); fi
if [[ -n ${STUDY:-} ]]; then search+=(--study "$STUDY"); fi

# --mixed_precision no only quiets accelerate's defaults warning: the trainer asks for bf16 itself on GPUs
# that have it. ACCELERATE_USE_CPU=1 in the environment makes the processes CPU processes (gloo).
launch=(--num_processes "$NUM_PROCESSES" --num_machines 1 --mixed_precision no --dynamo_backend no
        --main_process_port "${MAIN_PROCESS_PORT:-29500}")
if (( NUM_PROCESSES > 1 )); then launch+=(--multi_gpu); fi

echo "accelerate launch --num_processes $NUM_PROCESSES: each trial trained on all of them together"
accelerate launch "${launch[@]}" -m resnas search "${search[@]}"
