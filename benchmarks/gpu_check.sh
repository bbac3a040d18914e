#!/usr/bin/env bash
# GPU check for any CUDA machine: a thin wrapper of benchmarks/gpu_check.py (the steps,
# their budgets and the files it writes are described there and in benchmarks/README.md).
#   bash benchmarks/gpu_check.sh              # on the GPU machine: files under $OUT
#   bash benchmarks/gpu_check.sh --dry-run    # on the CPU with tiny sizes (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
