#!/usr/bin/env bash
# One SLURM array task = one machine searching the shared study; all tasks share one PostgreSQL study.
#   export RESNAS_STORAGE=postgresql://USER:PASSWORD@DB_HOST:5432/resnas
#   sbatch --array=0-7 examples/cluster/slurm_search.sh
#SBATCH --job-name=resnas
#SBATCH --nodes=1
#SBATCH --gres=gpu:8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --output=resnas-%A_%a.log
set -euo pipefail
: "${RESNAS_STORAGE:?set RESNAS_STORAGE to the shared PostgreSQL URL}"
SPACE=${SPACE:-paper_table2}
DATA_DIR=${DATA_DIR:-/shared/data}
GPUS=${SLURM_GPUS_ON_NODE:-8}
# each array task trains one trial at a time on all of its node's GPUs; rank 0 talks to the study
srun accelerate launch --multi_gpu --num_processes "$GPUS" --main_process_port $((29500 + SLURM_ARRAY_TASK_ID)) \
    -m resnas search --space "$SPACE" --dataset cifar10 --data-dir "$DATA_DIR" --study "${SPACE}-cifar10" \
    --heartbeat 120  # no index needed: candidates follow trial numbers, so the tasks draw different ones
