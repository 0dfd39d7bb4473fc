#!/bin/bash
# A ziggurat job on SLURM: N parts as one job array, then the ending run once they all succeeded.
#
#   bash slurm-array.sh recipe.yaml 64
#
# Each array task runs part ${SLURM_ARRAY_TASK_ID} of N (1-based here: --array=1-N). A task that
# fails or is preempted can be resubmitted alone (sbatch --array=17 ...): the part resumes. The
# output is a folder on the cluster's shared file system (or an s3:// URL); each part keeps its
# own ledger in node-local state ($ZIGGURAT_STATE_DIR) and publishes it under the output's
# .ziggurat/parts/, so no SQLite file is shared between nodes.
set -euo pipefail
RECIPE=${1:?usage: slurm-array.sh RECIPE N}
N=${2:?usage: slurm-array.sh RECIPE N}

parts=$(sbatch --parsable --job-name=ziggurat-parts --array=1-"$N" \
    --cpus-per-task=4 --mem=8G --time=12:00:00 \
    --wrap="ZIGGURAT_STATE_DIR=\${TMPDIR:-/tmp}/ziggurat-state ziggurat execute $RECIPE --no-progress -w 4 --part \${SLURM_ARRAY_TASK_ID}/$N")

sbatch --job-name=ziggurat-end --dependency=afterok:"$parts" \
    --cpus-per-task=4 --mem=8G --time=4:00:00 \
    --wrap="ZIGGURAT_STATE_DIR=\${TMPDIR:-/tmp}/ziggurat-state ziggurat execute $RECIPE --no-progress -w 4"
echo "parts: job $parts (array 1-$N); the ending run waits for all of them"
