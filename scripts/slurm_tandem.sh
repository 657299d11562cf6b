#!/bin/bash
# tandem on several nodes under Slurm: one torchrun per node, one process per GPU (or per CPU slot).
#
#   sbatch --nodes 2 scripts/slurm_tandem.sh run configs/default.yaml --out runs/run --set train.fsdp=true
#
# Every argument is passed to `tandem` unchanged. --out and data.cache_dir must be on a filesystem every node
# sees: rank 0 writes the token cache and the outputs, and every rank writes its shards of each checkpoint.
# A killed job resumes with the same command plus --resume, on any number of nodes.
# CPU nodes: delete the --gpus-per-node line and set TANDEM_PROCS_PER_NODE (processes per node; gloo carries them).
#SBATCH --job-name=tandem
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: sbatch [--nodes N] scripts/slurm_tandem.sh COMMAND CONFIG [tandem options]" >&2
    exit 2
fi
# Processes per node: the GPUs Slurm gave this node, or TANDEM_PROCS_PER_NODE (e.g. on CPU nodes).
PROCS="${TANDEM_PROCS_PER_NODE:-${SLURM_GPUS_ON_NODE:-1}}"
# The first node of the allocation hosts the rendezvous.
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
PORT="${TANDEM_PORT:-29500}"

srun --kill-on-bad-exit=1 torchrun \
    --nnodes "$SLURM_JOB_NUM_NODES" \
    --nproc_per_node "$PROCS" \
    --rdzv_id "$SLURM_JOB_ID" \
    --rdzv_backend c10d \
    --rdzv_endpoint "$HEAD:$PORT" \
    -m tandem "$@"
