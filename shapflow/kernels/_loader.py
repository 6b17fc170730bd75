"""Find the C++/CUDA ops extension: prebuilt ``shapflow._C``, else a ninja JIT build, else none.

The JIT build compiles the sources under ``csrc/`` (located from this file) into
``$SHAPFLOW_CACHE_DIR/extensions/<tag>`` (default ``~/.cache/shapflow``), with the CUDA sources
only when torch is a CUDA build, a GPU is visible and ``CUDA_HOME`` is set. When nothing can be
loaded, callers fall back to eager PyTorch and ONE warning says why.
"""

from __future__ import annotations

import functools
import glob
import os
import warnings
from pathlib import Path
from types import ModuleType

import torch

from shapflow.cache import cache_dir

__all__ = ["load_error", "load_extension"]

_CSRC = Path(__file__).resolve().parents[2] / "csrc"
_state: dict[str, str | None] = {"source": None, "error": None}


def _jit_build() -> ModuleType:
    """Compile ``csrc/`` with ninja via torch.utils.cpp_extension.load and return the module."""
    from torch.utils import cpp_extension

    sources = sorted(glob.glob(str(_CSRC / "*.cpp")) + glob.glob(str(_CSRC / "cpu" / "*.cpp")))
    if not sources:
        raise FileNotFoundError(f"no C++ sources under {_CSRC} (is this an installed copy without csrc/?)")
    cuda_sources = sorted(glob.glob(str(_CSRC / "cuda" / "*.cu")))
    with_cuda = bool(cuda_sources) and torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    with_cuda = with_cuda and torch.cuda.is_available()
    tag = f"torch{torch.__version__.replace('+', '_')}-{'cuda' if with_cuda else 'cpu'}"
    build_dir = cache_dir("extensions", tag)
    return cpp_extension.load(
        name="shapflow_C",
        sources=sources + (cuda_sources if with_cuda else []),
        extra_cflags=["-O3", "-fopenmp", f"-DSHAPFLOW_WITH_CUDA={int(with_cuda)}"],
        extra_cuda_cflags=["-O3", "--use_fast_math", f"-DSHAPFLOW_WITH_CUDA={int(with_cuda)}"],
        extra_ldflags=["-fopenmp"],
        build_directory=str(build_dir),
        with_cuda=with_cuda,
        verbose=False,
    )


@functools.cache
def load_extension() -> ModuleType | None:
    """Return the loaded ops module (its import registers ``torch.ops.shapflow``), or None."""
    try:
        from shapflow import _C  # type: ignore[attr-defined]

        _state["source"] = "prebuilt"
        return _C
    except ImportError as exc:
        prebuilt_error = exc
    if os.environ.get("SHAPFLOW_NO_JIT") == "1":
        _state["error"] = f"no prebuilt shapflow._C ({prebuilt_error}) and SHAPFLOW_NO_JIT=1"
    else:
        try:
            module = _jit_build()
            _state["source"] = "jit"
            return module
        except Exception as exc:  # no compiler, no headers, build error: all mean "fall back"
            _state["error"] = f"no prebuilt shapflow._C and the JIT build failed: {type(exc).__name__}: {exc}"
    warnings.warn(
        f"shapflow.kernels: C++ ops unavailable, using eager PyTorch instead ({_state['error']}). "
        "Build them with `pip install --no-build-isolation -e .` or install a C++ compiler and ninja.",
        RuntimeWarning,
        stacklevel=2,
    )
    return None


def load_error() -> tuple[str | None, str | None]:
    """(source, error) of the last load: source is 'prebuilt', 'jit' or None."""
    return _state["source"], _state["error"]
