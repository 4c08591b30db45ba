#!/usr/bin/env bash
# Every GPU measurement of issues 20-21 in one go (about 5 minutes on an H200): kernel contracts on the device,
# the batched population vs the in-place walk, and the step cost at 1.7B and 7B. Results land in $OUT (default
# benchmarks/results), logs beside them.   usage: OUT=/some/dir bash benchmarks/gpu_all.sh
set -u
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-.}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu_all.log"
python -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu_all.log"
python benchmarks/gpu_kernel_check.py 2>&1 | tee -a "$OUT/gpu_all.log"
python benchmarks/gpu_noise_kernel.py "$OUT/gpu_noise_kernel.json" 2>&1 | tee -a "$OUT/gpu_all.log"
python benchmarks/gpu_population.py --config 1.7b --dtype bfloat16 --sizes 8 32 --profile --out "$OUT/gpu_population.json" 2>&1 | tee -a "$OUT/gpu_all.log"
python benchmarks/gpu_step.py --config 1.7b --paths kernel --out "$OUT/gpu_step_1.7b.json" 2>&1 | grep -v "^\s*$" | tee -a "$OUT/gpu_all.log"
python benchmarks/gpu_step.py --config 7b --paths kernel --modes bf16-masters,bf16-nomasters --repeats 2 --out "$OUT/gpu_step_7b.json" 2>&1 | grep -v "^\s*$" | tee -a "$OUT/gpu_all.log"
