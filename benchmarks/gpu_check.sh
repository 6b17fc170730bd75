#!/usr/bin/env bash
# One prepared GPU run (the lent device machine, or any CUDA box): build the CUDA extension,
# run the GPU tests, benchmark eager / torch.compile / C++-CUDA / Triton, time cifar20, profile, then bf16 vs fp32
# sFT and stacked vs one-at-a-time coalitions on digits, and the paper use cases' step costs.
# Every step has a timeout; together they cap the run at ~9.5 minutes after the build.
# Needs diffusers importable: on the device machine it travels as build/gpu_site (carried).
#   bash benchmarks/gpu_check.sh        # results under $OUT (default /tmp/shapflow_gpu)
set -uo pipefail
OUT=${OUT:-/tmp/shapflow_gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/build/gpu_site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export SHAPFLOW_CACHE_DIR=/tmp/shapflow-cache TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 TRITON_INTERPRET=0
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, triton, diffusers; print('torch', torch.__version__, 'triton', triton.__version__, 'diffusers', diffusers.__version__)"
echo "== build"; SECONDS=0
python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || tail -30 "$OUT/build.log"
grep -E "shapflow: building|error" "$OUT/build.log" | head -5; echo "build took ${SECONDS}s"
python3 -c "import shapflow.kernels as K; print(K.backend_info())"
echo "== gpu tests"
timeout 90 python3 -m pytest tests/kernels/test_gpu.py -m gpu -q -p no:cacheprovider 2>&1 | tail -8
echo "== benchmarks"
timeout 120 python3 benchmarks/kernels.py --device cuda --json "$OUT/kernels_gpu.json" --compile-models digits \
  --reps 40 > "$OUT/kernels_gpu.txt" 2>&1; echo "kernels.py rc=$?"
echo "== cifar20 throughput"
timeout 45 python3 benchmarks/profile_unet.py --device cuda --models '' --throughput --backend eager 2>&1 | tail -2
timeout 30 python3 benchmarks/profile_unet.py --device cuda --models '' --throughput --backend auto 2>&1 | tail -2
echo "== profile"
timeout 45 python3 benchmarks/profile_unet.py --device cuda --rows 12 > "$OUT/profile_gpu.txt" 2>&1
timeout 30 python3 benchmarks/profile_unet.py --device cuda --rows 12 --backend auto --models digits \
  > "$OUT/profile_gpu_fused.txt" 2>&1
echo "== precision and stacking (digits: bf16 vs fp32 utilities, stacked vs one at a time)"
timeout 90 python3 benchmarks/precision.py --device cuda --use-case digits --coalitions 8 --stack 8,32 \
  --json "$OUT/precision_digits.json" > "$OUT/precision_digits.txt" 2>&1; echo "precision.py rc=$?"
tail -20 "$OUT/precision_digits.txt"
echo "== use-case step costs (artworks, celebahq, cifar20 architectures, random weights, the paper's batches)"
timeout 60 python3 benchmarks/usecase_cost.py --device cuda --json "$OUT/usecase_cost.json" 2>&1 | tail -8
echo "== table"; tail -60 "$OUT/kernels_gpu.txt"
