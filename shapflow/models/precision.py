"""The arithmetic a model runs in: one context manager for the training loop's forward + loss and the sampler.

``precision`` (the use case's ``precision`` field, ``config.PRECISIONS``):

- ``fp32``: nothing changes (torch's defaults: fp32 matmuls; on CUDA cuDNN may already run convolutions in
  TF32, torch's default since 1.7). Bit-identical to the code before this setting existed.
- ``tf32``: on CUDA, matmuls (linear layers, attention) and cuDNN convolutions in TF32, within the context
  only; a no-op on CPU (oneDNN's own reduced-precision modes are left off).
- ``bf16``: ``torch.autocast`` to bfloat16 on the model's device. Weights, gradients, the optimizer and the EMA
  stay fp32 (autocast casts per op); the caller computes the loss and the sampler's update in fp32.
- ``auto``: ``config.PRECISION_AUTO[device type]``, a precision measured faster than fp32 there (fp32 otherwise).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from shapflow.config import PRECISION_AUTO, PRECISIONS

__all__ = ["compute_precision", "resolve_precision"]


def resolve_precision(precision: str, device_type: str) -> str:
    """The concrete precision (fp32, tf32 or bf16) that ``precision`` runs on ``device_type`` ('cpu', 'cuda')."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is invalid: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return PRECISION_AUTO.get(device_type, "fp32")
    return precision


@contextmanager
def _tf32_on_cuda() -> Iterator[None]:
    """CUDA matmuls and cuDNN convolutions in TF32 inside the block; the previous settings restored after."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = matmul.fp32_precision, conv.fp32_precision
    matmul.fp32_precision, conv.fp32_precision = "tf32", "tf32"
    try:
        yield
    finally:
        matmul.fp32_precision, conv.fp32_precision = before


@contextmanager
def compute_precision(precision: str, device: torch.device | str) -> Iterator[str]:
    """Run the block's forward passes at ``precision`` on ``device``; yields the concrete precision.

    Wrap the model call only (forward, and the loss's inputs): backward runs outside, in the dtypes autocast
    recorded, and every parameter update stays fp32.
    """
    device_type = torch.device(device).type
    concrete = resolve_precision(precision, device_type)
    if concrete == "bf16":
        with torch.autocast(device_type, dtype=torch.bfloat16):
            yield concrete
    elif concrete == "tf32" and device_type == "cuda":
        with _tf32_on_cuda():
            yield concrete
    else:
        yield concrete
