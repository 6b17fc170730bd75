"""C++ CPU kernels of shapflow::group_norm_silu against the eager reference (fp32 <= 1e-5)."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from shapflow.kernels import backend_info, group_norm_silu, group_norm_silu_reference
from shapflow.kernels.ops import _ensure_cpp_registered
from shapflow.kernels.registration import fold_affine

# The grad_fn of the op's output: the C++ torch::autograd::Function of csrc/group_norm_silu_autograd.cpp.
CPP_NODE = "torch::autograd::CppNode<shapflow::(anonymous namespace)::GroupNormSiluFunction>"

pytestmark = pytest.mark.skipif(not _ensure_cpp_registered(), reason="C++ extension not built")

# the last holds 16,128 values: two parallel chunks of groups (kGrainValues, csrc/cpu/group_norm_silu.cpp)
SHAPES = [(1, 15, 7, 5), (3, 9, 5, 3), (2, 90, 8, 30), (4, 8, 8, 4), (2, 7, 2, 7), (7, 9, 16, 3)]


def _leaves(n, c, h, dtype=torch.float32, per_sample=True):
    g = torch.Generator().manual_seed(n * 1000 + c * 10 + h)
    x = torch.randn(n, c, h, h, generator=g, dtype=dtype) * 2 + 0.5
    w, b = torch.randn(c, generator=g, dtype=dtype), torch.randn(c, generator=g, dtype=dtype)
    extra = [torch.randn(n, c, generator=g, dtype=dtype) for _ in range(2)] if per_sample else [None, None]
    return [t if t is None else t.requires_grad_(True) for t in (x, w, b, *extra)]


@pytest.mark.parametrize(("n", "c", "h", "g"), SHAPES)
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("silu", [True, False])
def test_forward_and_gradients_match_eager(n, c, h, g, per_sample, silu):
    x, w, b, sc, sh = _leaves(n, c, h, per_sample=per_sample)
    y = group_norm_silu(x, w, b, g, scale=sc, shift=sh, silu=silu, backend="cpp")
    y0 = group_norm_silu_reference(x, w, b, g, scale=sc, shift=sh, silu=silu)
    assert (y - y0).abs().max().item() <= 1e-5
    leaves = [t for t in (x, w, b, sc, sh) if t is not None]
    dy = torch.randn_like(y)
    for got, want in zip(torch.autograd.grad(y, leaves, dy), torch.autograd.grad(y0, leaves, dy), strict=True):
        assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())


def _eager(x, weight, bias, num_groups, **kwargs):
    """The reference with weight ones where only a bias is given: F.group_norm's CPU backward fails with
    weight=None and a bias ("tensor does not have a device", torch 2.13)."""
    if weight is None and bias is not None:
        weight = torch.ones_like(bias)
    return group_norm_silu_reference(x, weight, bias, num_groups, **kwargs)


@pytest.mark.parametrize("given", ["wbst", "wb", "st", "ws", "bt", "wbs", "t", ""])
def test_affine_op_gradients_match_eager_and_gradcheck(given):
    """Any subset of weight (w), bias (b), scale (s), shift (t): gradients of x, weight, bias and temb through
    the C++ folding equal eager's and pass gradcheck (float64); x and scale/shift are non-contiguous."""
    g = torch.Generator().manual_seed(len(given))
    x = torch.randn(2, 6, 4, 3, generator=g, dtype=torch.float64).transpose(2, 3).requires_grad_(True)
    w, b = (torch.randn(6, generator=g, dtype=torch.float64).requires_grad_(True) for _ in range(2))
    temb = torch.randn(2, 12, generator=g, dtype=torch.float64).requires_grad_(True)

    def run(fn, x, w, b, temb):
        scale, shift = temb.chunk(2, dim=1)  # (N, C) views of the time embedding, as ResnetBlock2D passes them
        return fn(x, w if "w" in given else None, b if "b" in given else None, 3,
                  scale=scale if "s" in given else None, shift=shift if "t" in given else None)

    inputs = (x, w, b, temb)
    y, y0 = run(partial(group_norm_silu, backend="cpp"), *inputs), run(_eager, *inputs)
    assert (y - y0).abs().max().item() <= 1e-12
    dy = torch.randn_like(y0)
    grads, grads0 = (torch.autograd.grad(out, inputs, dy, allow_unused=True) for out in (y, y0))
    for got, want in zip(grads, grads0, strict=True):
        assert (got is None and want is None) or (got - want).abs().max().item() <= 1e-12 * max(
            1.0, want.abs().max().item())
    assert torch.autograd.gradcheck(partial(run, partial(group_norm_silu, backend="cpp")), inputs)


def test_cpp_path_runs_no_python_autograd():
    """The op's grad_fn is the C++ Function, mean/rstd are non-differentiable, and no node of the graph is a
    Python autograd.Function (torch.library.register_autograd would add one)."""
    x, w, b, sc, sh = _leaves(2, 6, 3)
    y = group_norm_silu(x, w, b, 3, scale=sc, shift=sh, backend="cpp")
    assert y.grad_fn.name() == CPP_NODE
    nodes, stack = [], [y.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None:
            nodes.append(node)
            stack.extend(child for child, _ in node.next_functions)
    assert not any(isinstance(node, torch.autograd.function.BackwardCFunction) for node in nodes)
    gamma, beta = fold_affine(x, w, b, sc, sh)
    _, mean, rstd = torch.ops.shapflow.group_norm_silu(x, gamma, beta, 3, 1e-5, True)
    assert not mean.requires_grad and not rstd.requires_grad


def test_forward_without_gradients_builds_no_node_and_gives_the_same_values():
    """Under no_grad, or with no input requiring grad, the op skips the autograd Function (a fast path for
    sampling) and returns exactly what the differentiable call returns."""
    x, w, b, _, _ = _leaves(3, 9, 5, per_sample=False)
    y, mean, rstd = torch.ops.shapflow.group_norm_silu(x, w, b, 3, 1e-5, True)
    assert y.grad_fn.name() == CPP_NODE
    with torch.no_grad():
        fast = torch.ops.shapflow.group_norm_silu(x, w, b, 3, 1e-5, True)
    frozen = torch.ops.shapflow.group_norm_silu(x.detach(), w.detach(), b.detach(), 3, 1e-5, True)
    for outputs in (fast, frozen):
        assert all(t.grad_fn is None and not t.requires_grad for t in outputs)
        for got, want in zip(outputs, (y, mean, rstd), strict=True):
            assert torch.equal(got, want.detach())


@pytest.mark.parametrize(("n", "c", "h", "g"), [(3, 9, 5, 3), (4, 16, 4, 4), (1, 7, 2, 7)])
def test_shared_affine_row_equals_per_sample_rows(n, c, h, g):
    """gamma/beta of shape (C,) give the same y as the same row repeated for every sample, and their
    gradients are the per-sample gradients summed over N."""
    x, w, b, _, _ = _leaves(n, c, h, dtype=torch.float64, per_sample=False)
    rows = [t.detach().expand(n, c).contiguous().requires_grad_(True) for t in (w, b)]
    y, _, _ = torch.ops.shapflow.group_norm_silu(x, w, b, g, 1e-5, True)
    y_rows, _, _ = torch.ops.shapflow.group_norm_silu(x, *rows, g, 1e-5, True)
    assert (y - y_rows).abs().max().item() <= 1e-12
    dy = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, w, b), dy)
    grads_rows = torch.autograd.grad(y_rows, (x, *rows), dy)
    assert (grads[0] - grads_rows[0]).abs().max().item() <= 1e-12
    for shared, per_sample in zip(grads[1:], grads_rows[1:], strict=True):
        assert shared.shape == (c,)
        assert (shared - per_sample.sum(0)).abs().max().item() <= 1e-12


def test_plain_group_norm_runs_the_kernel_alone():
    """Without scale/shift the weight and bias go straight into the kernel: the output's grad_fn is the C++
    Function and its inputs are the leaves themselves (no reshape/expand/copy node, forward or backward)."""
    x, w, b, _, _ = _leaves(4, 8, 8, per_sample=False)
    y = group_norm_silu(x, w, b, 4, backend="cpp")
    assert y.grad_fn.name() == CPP_NODE
    assert [type(child).__name__ for child, _ in y.grad_fn.next_functions[:3]] == ["AccumulateGrad"] * 3


@pytest.mark.parametrize(("n", "c", "h", "g", "shared"), [(2, 9, 3, 3, False), (1, 4, 2, 2, False),
                                                       (2, 9, 3, 3, True)])
def test_opcheck(n, c, h, g, shared):
    x, w, b, sc, sh = _leaves(n, c, h)
    affine = (w, b) if shared else fold_affine(x, w, b, sc, sh)
    gamma, beta = (t.detach().requires_grad_(True) for t in affine)
    torch.library.opcheck(torch.ops.shapflow.group_norm_silu.default, (x.detach().requires_grad_(True), gamma, beta,
                                                                       g, 1e-5, True))


@pytest.mark.parametrize("given", ["wbst", "bt"])
def test_opcheck_affine(given):
    """Schema, fake tensors and dynamic-shape AOT tracing of the composite op (non-contiguous x)."""
    x, w, b, sc, sh = _leaves(2, 6, 3)
    affine = [t if name in given else None for name, t in zip("wbst", (w, b, sc, sh), strict=True)]
    torch.library.opcheck(torch.ops.shapflow.group_norm_silu_affine.default,
                          (x.transpose(2, 3), *affine, 3, 1e-5, "s" in given))


def test_bad_inputs_raise_clear_errors():
    x = torch.randn(2, 6, 4, 4)
    gamma = torch.ones(2, 6)
    with pytest.raises(RuntimeError, match="must be positive and divide"):
        torch.ops.shapflow.group_norm_silu(x, gamma, gamma, 4, 1e-5, True)
    with pytest.raises(RuntimeError, match=r"gamma and beta must be \(C,\) = \(6,\) or \(N, C\)"):
        torch.ops.shapflow.group_norm_silu(x, torch.ones(5), torch.ones(5), 3, 1e-5, True)
    with pytest.raises(RuntimeError, match="gamma and beta must have one shape"):
        torch.ops.shapflow.group_norm_silu(x, torch.ones(6), gamma, 3, 1e-5, True)
    with pytest.raises(RuntimeError, match="contiguous"):
        torch.ops.shapflow.group_norm_silu(x.transpose(2, 3), gamma, gamma, 3, 1e-5, True)
    with pytest.raises(RuntimeError, match=r"weight must hold C = 6 values, got shape \[5\]"):
        torch.ops.shapflow.group_norm_silu_affine(x, torch.ones(5), None, None, None, 3, 1e-5, True)
    with pytest.raises(RuntimeError, match=r"shift must hold N \* C = 12 values"):
        torch.ops.shapflow.group_norm_silu_affine(x, None, None, None, torch.ones(2, 5), 3, 1e-5, True)


def test_backend_info_reports_the_extension():
    info = backend_info()
    assert info["extension"] in ("prebuilt", "jit")
    assert info["build_info"]["with_cuda"] in (True, False)
    assert info["auto_cpu"] in ("cpp", "eager")
