#!/usr/bin/env bash
# GPU checks for a lent device machine: gpu-marked tests, the speed benchmark, time to 99%.
# Run from the repository root with the MNIST files in data/mnist (git-ignored), e.g.
#   PYTHONPATH=src bash benchmarks/gpu_check.sh
set -uo pipefail
out="${OUT:-.}"
data="${DATA:-data/mnist}"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
python3 -m pytest -q -m gpu tests/test_graph.py 2>&1 | tail -20 | tee "$out/gpu_tests.txt"
python3 benchmarks/speed.py --data "$data" --device cuda --subset 0 --rounds 5 \
    --precision 32 auto --time-to-accuracy 2>&1 | tee "$out/speed_gpu.jsonl"
