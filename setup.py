"""Build and install shapflow: the Python package and its C++ (and, when possible, CUDA) ops.

The CPU extension always builds from ``csrc/*.cpp`` and ``csrc/cpu/*.cpp``. The CUDA sources in
``csrc/cuda/`` build only when torch is a CUDA build and ``CUDA_HOME`` is set, or when
``SHAPFLOW_FORCE_CUDA=1``; the decision is printed and recorded in ``shapflow._C.build_info()``.
Set ``SHAPFLOW_NO_EXTENSION=1`` to skip the extension (the Python side then JIT-builds it with
ninja on first use, or falls back to eager PyTorch).
"""

from __future__ import annotations

import glob
import os

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _extensions() -> tuple[list, dict]:
    """Return (ext_modules, cmdclass) for the ops extension, printing the CPU/CUDA decision."""
    if os.environ.get("SHAPFLOW_NO_EXTENSION") == "1":
        print("shapflow: SHAPFLOW_NO_EXTENSION=1, not building the C++ extension")
        return [], {}
    import torch
    from torch.utils import cpp_extension

    cpu_sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    cpu_sources += sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    cuda_sources = sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
    if not cpu_sources:
        print("shapflow: no C++ sources found, not building the extension")
        return [], {}
    force_cuda = os.environ.get("SHAPFLOW_FORCE_CUDA") == "1"
    cuda_toolchain = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    with_cuda = bool(cuda_sources) and (force_cuda or cuda_toolchain)
    print(f"shapflow: building the ops extension with CUDA={'yes' if with_cuda else 'no'} "
          f"(torch.version.cuda={torch.version.cuda}, CUDA_HOME={cpp_extension.CUDA_HOME}, force={force_cuda})")
    define_macros = [("SHAPFLOW_WITH_CUDA", "1" if with_cuda else "0")]
    extra = {"cxx": ["-O3", "-std=c++17", "-fopenmp"], "nvcc": ["-O3", "--use_fast_math"]}
    if with_cuda:
        ext = cpp_extension.CUDAExtension(
            "shapflow._C", cpu_sources + cuda_sources, define_macros=define_macros,
            extra_compile_args=extra, extra_link_args=["-fopenmp"])
    else:
        ext = cpp_extension.CppExtension(
            "shapflow._C", cpu_sources, define_macros=define_macros,
            extra_compile_args={"cxx": extra["cxx"]}, extra_link_args=["-fopenmp"])
    return [ext], {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()

setup(
    name="shapflow",
    version="0.1.0",
    description="Shapley values of data contributors for global properties of diffusion models",
    packages=find_packages(include=["shapflow", "shapflow.*"]),
    package_data={"shapflow": ["usecases/*.yaml", "evaluation/fixtures/*.json", "evaluation/fixtures/*.jsonl",
                               "attribution/tradeoff/*.json"]},
    python_requires=">=3.10",
    install_requires=[
        "torch==2.13.0",
        "diffusers>=0.30",
        "peft>=0.12",
        "torch-pruning>=1.4",
        "triton",
        "ninja",
        "pybind11",
        "click>=8.1",
        "mlflow>=2.16",
        "numpy",
        "scipy",
        "scikit-learn",
        "scikit-image",
        "pyyaml",
        "safetensors",
        "pillow",
        "matplotlib",
        "tqdm",
        "transformers",
    ],
    extras_require={"test": ["pytest", "ruff", "playwright", "ray==2.60.0", "psycopg2-binary", "psutil"],
                    "bench": ["shapiq"], "scaleout": ["ray==2.60.0", "psycopg2-binary"]},
    entry_points={"console_scripts": ["shapflow=shapflow.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
