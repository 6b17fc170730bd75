"""CUDA compile-only checks (no GPU needed): the torch-free kernel header alone, the launchers with torch."""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
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
        " float*, float*, float*, int64_t, int64_t, int32_t, int32_t, float, bool);\n"
        "template __global__ void sc::group_norm_silu_bwd<double, double>(const double*, const double*,"
        " const double*, const double*, const double*, const double*, double*, double*, double*, int64_t, int64_t,"
        " int32_t, int32_t, bool);\n")
    result = subprocess.run(["nvcc", "-arch=sm_90", "-c", str(src), "-o", str(tmp_path / "check.o")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cuda_launchers_compile_against_torch_headers(tmp_path):
    """The launchers (csrc/cuda/group_norm_silu.cu: checks, dtype dispatch, kernel launches) compile against this
    torch's headers, so a change to them is compiled here although no CUDA torch can link them.

    A CPU torch wheel lacks the one header that torch's CUDA build generates (c10/cuda/impl/cuda_cmake_macros.h,
    which only says that c10_cuda is a shared library); the test writes it when it is missing."""
    from torch.utils.cpp_extension import include_paths

    torch_includes = include_paths()
    if not any((Path(p) / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").exists() for p in torch_includes):
        macros = tmp_path / "include" / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
        macros.parent.mkdir(parents=True)
        macros.write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    includes = [tmp_path / "include", *torch_includes, sysconfig.get_paths()["include"]]
    command = ["nvcc", "-arch=sm_90", "-std=c++20", "-DSHAPFLOW_WITH_CUDA=1", "-c", str(HEADER.with_name(
        "group_norm_silu.cu")), "-o", str(tmp_path / "launchers.o"), *(f"-I{p}" for p in includes)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
