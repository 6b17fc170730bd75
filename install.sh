#!/usr/bin/env bash
# Install shapflow for use into ./.venv (idempotent): torch pinned to 2.13.0, then the package itself, which
# builds the C++ ops extension (CUDA too when CUDA torch and CUDA_HOME exist). No test extras: CI and the test
# command use .ci/install. Scale-out extras afterwards: .venv/bin/pip install -e ".[scaleout]"
# Usage: bash install.sh            (another interpreter: PYTHON=python3.11 bash install.sh)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
say() { echo "install.sh: $*"; }
if [ -x .venv/bin/python ]; then
  say "reusing $(pwd)/.venv ($(.venv/bin/python --version 2>&1))"
else
  say "creating $(pwd)/.venv with $PYTHON ($("$PYTHON" --version 2>&1))"
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
say "upgrading pip, setuptools, wheel"
python -m pip install --quiet --upgrade pip setuptools wheel
say "installing torch==2.13.0"
python -m pip install --quiet torch==2.13.0
say "installing shapflow (editable; builds the C++ ops extension, a few minutes the first time)"
python -m pip install --quiet --no-build-isolation -e .
# A dependency must not have replaced the pinned torch
python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
python - <<'PY'
import torch

import shapflow

try:  # the prebuilt extension only: never JIT-build here
    from shapflow import _C
    ops = f"built, CUDA kernels: {'yes' if _C.build_info()['with_cuda'] else 'no'}"
except ImportError as err:
    ops = f"not built ({err}); the first use JIT-builds it with ninja, or falls back to eager"
print(f"install.sh: shapflow {shapflow.__version__}, torch {torch.__version__}; ops extension {ops}")
PY
say "done. Next: . .venv/bin/activate && export MLFLOW_TRACKING_URI=sqlite:///mlruns.db && mlflow run . -e attribute -P use_case=digits --env-manager local"
