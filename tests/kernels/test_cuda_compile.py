"""CUDA compile-only check: the torch-free kernel header builds with plain nvcc (no GPU needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HEADER = Path(__file__).resolve().parents[2] / "csrc" / "cuda" / "group_norm_silu_kernels.cuh"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cuda_kernels_compile_with_nvcc(tmp_path):
    src = tmp_path / "check.cu"
    src.write_text(
        f'#include "{HEADER}"\n'
        "namespace sc = shapflow::cuda;\n"
        "template __global__ void sc::group_norm_silu_fwd<float, float>(const float*, const float*, const float*,"
        " float*, float*, float*, int64_t, int32_t, int32_t, float, bool);\n"
        "template __global__ void sc::group_norm_silu_bwd<double, double>(const double*, const double*,"
        " const double*, const double*, const double*, const double*, double*, double*, double*, int64_t, int32_t,"
        " int32_t, bool);\n")
    result = subprocess.run(["nvcc", "-arch=sm_90", "-c", str(src), "-o", str(tmp_path / "check.o")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
