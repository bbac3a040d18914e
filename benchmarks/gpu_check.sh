#!/usr/bin/env bash
# GPU checks for a lent device machine: gpu-marked tests, the speed benchmark, time to 99%,
# and with BEST_SEEDS set, the issue-6 accuracy run of the best recipe (seeds, TTA, ensemble).
# Run from the repository root with the MNIST files in data/mnist (git-ignored), e.g.
#   PYTHONPATH=src bash benchmarks/gpu_check.sh
#   PYTHONPATH=src BEST_SEEDS="0 1 2 3 4" bash benchmarks/gpu_check.sh
# DDP over NCCL needs two GPUs or more; a one-GPU machine cannot check it.
set -uo pipefail
out="${OUT:-.}"
data="${DATA:-data/mnist}"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
python3 -m pytest -q -m gpu tests/test_graph.py 2>&1 | tail -20 | tee "$out/gpu_tests.txt"
python3 benchmarks/speed.py --data "$data" --device cuda --subset 0 --rounds 5 \
    --precision 32 auto --time-to-accuracy 2>&1 | tee "$out/speed_gpu.jsonl"
if [ -n "${BEST_SEEDS:-}" ]; then
    # shellcheck disable=SC2086  # one argument per seed
    python3 benchmarks/accuracy.py --data "$data" --device cuda --recipe best \
        --seeds $BEST_SEEDS --tta --ensemble --save-models "$out/best_models" 2>&1 \
        | tee "$out/best_gpu.jsonl"
    python3 benchmarks/ensemble.py --data "$data" --tta "$out"/best_models/*.safetensors 2>&1 \
        | tee "$out/best_ensemble_gpu.jsonl"
fi
