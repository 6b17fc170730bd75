"""Side-by-side timings of eager PyTorch, torch.compile and shapflow's fused kernels.

Rows: op level (fused GroupNorm+SiLU forward and forward+backward; on CUDA also the Triton
implicit-GEMM conv against cuDNN) and whole steps (sFT step, sampling step) of the pruned digits
and cifar20 UNets; the sFT step also with torch's default (unfused) AdamW instead of the training
loop's fused one. Each row's ratio is eager_time / backend_time from the same run (> 1: faster);
backends are timed round-robin, so they share the machine's slow spells. The op rows' forward+backward
also time ``autograd_floor`` (torch.autograd.grad of one value): the engine's fixed cost, which no kernel removes.

    python benchmarks/kernels.py --device cpu --json kernels_cpu.json
    python benchmarks/kernels.py --device cuda --json kernels_gpu.json --compile-models digits
"""

from __future__ import annotations

import sys
from pathlib import Path

# This script shares its name with the Hugging Face `kernels` package that diffusers probes for:
# keep the script's folder off sys.path so that the probe does not import this file.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from shapflow.kernels import available_backends, group_norm_silu, optimize  # noqa: E402
from shapflow.testing.workloads import (  # noqa: E402
    build_cifar20_unet,
    build_digits_unet,
    make_sampling_step,
    make_sft_step,
)

# (name, N, C, H, G) on GPU; CPU uses the same shapes with a smaller batch. The batch-1 row does almost no
# work: it is each backend's fixed cost per call (dispatch, allocation, autograd), which no kernel shortens.
GN_SHAPES = [("gn_digits_batch1_8x8x8", 1, 8, 8, 4), ("gn_digits_8x8x8", 128, 8, 8, 4),
             ("gn_cifar_90x32x32", 128, 90, 32, 30), ("gn_cifar_180x16x16", 128, 180, 16, 30)]


# The fwd+bwd rows' reference: torch.autograd.grad of one value times 1, the engine's fixed cost per call;
# eager time / its time bounds the ratio any GroupNorm+SiLU kernel could reach in that row.
AUTOGRAD_FLOOR = "autograd_floor"


def time_interleaved(fns: dict[str, Callable[[], object]], device: str, reps: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds of each ``fns[name]()`` over ``reps`` rounds, after ``warmup`` rounds.

    Each round runs every function once, in an order rotated from round to round, so that a slow
    spell of the machine (the other core busy, a frequency change) falls on all of them alike and
    the ratios stay comparable; on CUDA each call is synchronised.
    """
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + reps):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fns[name]()
            if device == "cuda":
                torch.cuda.synchronize()
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _eager_gn(x, w, b, g):
    return F.silu(F.group_norm(x, g, w, b, 1e-5))


def _gn_fns(backend: str) -> Callable:
    """The GroupNorm+SiLU function of a backend."""
    if backend == "eager":
        return _eager_gn
    if backend == "compile":
        return torch.compile(_eager_gn, dynamic=False)
    return lambda x, w, b, g: group_norm_silu(x, w, b, g, 1e-5, backend=backend)


def _gn_runner(fn: Callable, mode: str, x, w, b, g: int, dy) -> Callable[[], object]:
    """A no-argument closure running ``fn`` forward (no grad) or forward+backward."""
    if mode == "fwd":
        def run():
            with torch.no_grad():
                return fn(x, w, b, g)
    else:
        def run():
            return torch.autograd.grad(fn(x, w, b, g), (x, w, b), dy)
    return run


def bench_gn(device: str, backends: list[str], batch_div: int, reps: int) -> list[dict]:
    """Op-level rows for the fused GroupNorm+SiLU (fwd, and fwd+bwd) at the UNets' shapes."""
    rows = []
    for name, n, c, h, g in GN_SHAPES:
        x = torch.randn(max(n // batch_div, 1), c, h, h, device=device, requires_grad=True)
        w = torch.randn(c, device=device, requires_grad=True)
        b = torch.randn(c, device=device, requires_grad=True)
        dy = torch.randn_like(x)
        one = torch.ones(1, device=device, requires_grad=True)
        for mode in ("fwd", "fwd+bwd"):
            runners = {be: _gn_runner(_gn_fns(be), mode, x, w, b, g, dy) for be in backends}
            if mode == "fwd+bwd":  # what torch.autograd.grad costs by itself: its ratio caps every backend's
                runners[AUTOGRAD_FLOOR] = lambda one=one: torch.autograd.grad(one * 1.0, (one,), torch.ones_like(one))
            times = time_interleaved(runners, device, reps)
            rows += _rows(f"{name}:{mode}", device, times)
    return rows


def _load_sibling(name: str):
    """A module of this folder by file path (the folder itself is kept off sys.path, see the top)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_conv(device: str, reps: int) -> list[dict]:
    """Triton implicit-GEMM conv3x3 (+bias+residual+SiLU epilogue) vs cuDNN NCHW and channels-last."""
    triton_conv = _load_sibling("triton_conv")  # measured and rejected: kept beside its benchmark, not in shapflow
    conv3x3_nhwc, pack_conv3x3_weight = triton_conv.conv3x3_nhwc, triton_conv.pack_conv3x3_weight

    rows = []
    for cin, cout, h in ((90, 90, 32), (90, 180, 16), (180, 180, 8)):
        x = torch.randn(128, cin, h, h, device=device)
        wt, bias = torch.randn(cout, cin, 3, 3, device=device) * 0.05, torch.randn(cout, device=device)
        res = torch.randn(128, cout, h, h, device=device)
        x_cl, res_cl = x.to(memory_format=torch.channels_last), res.to(memory_format=torch.channels_last)
        x_nhwc, res_nhwc = x.permute(0, 2, 3, 1).contiguous(), res.permute(0, 2, 3, 1).contiguous()
        packed = pack_conv3x3_weight(wt)
        wt_cl = wt.to(memory_format=torch.channels_last)
        ref = F.silu(F.conv2d(x, wt, bias, padding=1) + res)
        got = conv3x3_nhwc(x_nhwc, packed, bias, res_nhwc, silu=True).permute(0, 3, 1, 2)
        err = ((got - ref).norm() / ref.norm()).item()
        fns = {
            "eager": lambda x=x, wt=wt, bias=bias, res=res: F.silu(F.conv2d(x, wt, bias, padding=1) + res),
            "eager_channels_last": lambda x=x_cl, wt=wt_cl, bias=bias, res=res_cl: F.silu(
                F.conv2d(x, wt, bias, padding=1) + res),
            "triton_igemm": lambda x=x_nhwc, p=packed, bias=bias, res=res_nhwc: conv3x3_nhwc(x, p, bias, res, True),
        }
        with torch.no_grad():
            times = time_interleaved(fns, device, reps)
        for row in _rows(f"conv3x3_{cin}to{cout}_{h}x{h}+bias+res+silu", device, times):
            row["rel_err_vs_eager"] = err
            rows.append(row)
    return rows


def _step_factory(kind: str) -> Callable:
    return make_sft_step if kind == "sft" else make_sampling_step


def bench_steps(device: str, backends: list[str], models: dict, compile_models: set[str]) -> list[dict]:
    """Whole-step rows: sFT step and sampling step per model, each backend on its own model copy.

    models: name -> (builder, sFT batch, sampling batch, timed rounds).
    """
    rows = []
    for name, (builder, sft_batch, sample_batch, reps) in models.items():
        base = builder().to(device)
        for kind, batch in (("sft", sft_batch), ("sampling", sample_batch)):
            steps = {}
            for be in backends:
                if be == "compile" and name not in compile_models:
                    continue
                unet = copy.deepcopy(base)
                if be == "compile":
                    unet = torch.compile(unet)
                elif be != "eager":
                    unet = optimize(unet, be)
                steps[be] = _step_factory(kind)(unet, batch)
            if kind == "sft":  # what fusing the training loop's AdamW gave (eager UNet, torch's default AdamW)
                steps["eager+unfused_adamw"] = make_sft_step(copy.deepcopy(base), batch, fused_optimizer=False)
            rows += _rows(f"{name}:{kind}_step(b={batch})", device, time_interleaved(steps, device, reps))
    return rows


def _rows(op: str, device: str, times: dict[str, float]) -> list[dict]:
    """One row per backend with seconds and ratio_vs_eager (eager_time / time)."""
    return [{"op": op, "device": device, "backend": be, "seconds": t, "ratio_vs_eager": times["eager"] / t}
            for be, t in times.items()]


def print_table(rows: list[dict]) -> None:
    """Print rows grouped by op: seconds and ratio per backend."""
    print(f"{'op / step':48s} {'device':6s} {'backend':20s} {'ms':>10s} {'x eager':>8s}")
    for r in rows:
        print(f"{r['op']:48s} {r['device']:6s} {r['backend']:20s} {r['seconds'] * 1e3:10.3f} "
              f"{r['ratio_vs_eager']:8.2f}")


def main() -> None:
    """Parse arguments, run the op and step benchmarks, print the table, write --json."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--json", help="write the rows (op, device, backend, seconds, ratio_vs_eager) here")
    ap.add_argument("--reps", type=int, default=None,
                    help="timed rounds of the op rows (default 200 cpu, 50 cuda); steps take a quarter, at least 5 "
                         "(cifar20 on CPU a twentieth, at least 10)")
    ap.add_argument("--compile-models", default="digits,cifar20",
                    help="comma list of models whose steps are also timed under torch.compile ('' for none)")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile everywhere")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: gn, conv, steps")
    args = ap.parse_args()
    dev, skip = args.device, set(filter(None, args.skip.split(",")))
    reps = args.reps or (200 if dev == "cpu" else 50)
    fused = list(available_backends(dev))
    backends = ["eager", *([] if args.no_compile else ["compile"]), *fused]
    cpu = dev == "cpu"
    step_reps = max(reps // 4, 5)  # a cifar20 step takes seconds on a CPU: fewer rounds there
    models = {"digits_pruned": (build_digits_unet, 128, 512, step_reps),
              "cifar20_pruned": (build_cifar20_unet, 8 if cpu else 128, 8 if cpu else 256,
                                 max(step_reps // 5, 10) if cpu else step_reps)}
    compile_models = set() if args.no_compile else {f"{m}_pruned" for m in args.compile_models.split(",") if m}
    print(f"device={dev} backends={backends} torch={torch.__version__} threads={torch.get_num_threads()}"
          + (f" gpu={torch.cuda.get_device_name()}" if not cpu else ""))
    sections = {
        "gn": lambda: bench_gn(dev, backends, 4 if cpu else 1, reps),
        "conv": lambda: bench_conv(dev, reps) if not cpu and "triton" in fused else [],
        "steps": lambda: bench_steps(dev, backends, models, compile_models),
    }
    rows = []
    for name, section in sections.items():
        if name in skip:
            continue
        rows += section()
        print_table(rows)
        if args.json:  # rewritten after each section so a run cut short keeps what it measured
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
