"""Where the time of one sFT step and one sampling step goes, by op (torch.profiler).

Profiles the pruned digits UNet and the pruned cifar20-architecture UNet (eager, and with
``--backend`` the fused kernels), and with ``--throughput`` also prints seconds per sFT step
(batch 128) and per 100-step DDIM batch (batch 256) of the unpruned cifar20 UNet.

    python benchmarks/profile_unet.py --device cpu
    python benchmarks/profile_unet.py --device cuda --backend auto --throughput
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/kernels.py shares its name with the Hugging Face `kernels` package that diffusers
# probes for: keep this folder off sys.path so that the probe does not import it.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from diffusers import DDIMScheduler  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from shapflow.kernels import optimize  # noqa: E402
from shapflow.testing.workloads import (  # noqa: E402
    build_cifar20_unet,
    build_digits_unet,
    make_sampling_step,
    make_sft_step,
)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def profile_step(step, device: str, title: str, rows: int) -> None:
    """Run ``step`` twice to warm up, profile two more runs, print the top ops by self time."""
    for _ in range(2):
        step()
    _sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(2):
            step()
        _sync(device)
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    print(f"\n=== {title} (2 steps) ===")
    print(prof.key_averages().table(sort_by=key, row_limit=rows))


def cifar20_throughput(device: str, backend: str) -> None:
    """Seconds per sFT step (batch 128) and per 100-step DDIM batch (batch 256), unpruned cifar20."""
    unet = optimize(build_cifar20_unet(pruned=False).to(device), backend)
    step = make_sft_step(unet, 128)
    for _ in range(3):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(10):
        step()
    _sync(device)
    sft = (time.perf_counter() - t0) / 10
    sched = DDIMScheduler(num_train_timesteps=1000)
    sched.set_timesteps(100)
    unet.eval()

    def sample() -> torch.Tensor:
        x = torch.randn(256, 3, 32, 32, device=device, generator=torch.Generator(device).manual_seed(0))
        with torch.no_grad():
            for t in sched.timesteps:
                x = sched.step(unet(x, t.to(device)).sample, t, x).prev_sample
        return x

    sample()
    _sync(device)
    t0 = time.perf_counter()
    sample()
    _sync(device)
    ddim = time.perf_counter() - t0
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"\ncifar20 (unpruned, 35.7M params, backend={backend}, {name}): "
          f"{sft:.4f} s per sFT step (batch 128, fwd+bwd+AdamW); "
          f"{ddim:.3f} s per sampled batch (100 DDIM steps, batch 256)")


def main() -> None:
    """Parse arguments and print the profiles (and throughput figures)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--backend", default="eager", help="kernels backend to profile: eager|auto|cpp|triton")
    ap.add_argument("--rows", type=int, default=15, help="ops shown per profile")
    ap.add_argument("--models", default="digits,cifar20", help="comma list of pruned models to profile ('' for none)")
    ap.add_argument("--throughput", action="store_true", help="also time the unpruned cifar20 UNet")
    args = ap.parse_args()
    cpu = args.device == "cpu"
    models = {"digits_pruned": (build_digits_unet, 128, 512),
              "cifar20_pruned": (build_cifar20_unet, 8 if cpu else 128, 8 if cpu else 256)}
    chosen = [m for m in args.models.split(",") if m]
    for name, (builder, sft_batch, sample_batch) in models.items():
        if name.split("_")[0] not in chosen:
            continue
        unet = optimize(builder().to(args.device), args.backend)
        profile_step(make_sft_step(unet, sft_batch), args.device,
                     f"{name} sFT step, batch {sft_batch}, {args.device}, backend={args.backend}", args.rows)
        profile_step(make_sampling_step(unet, sample_batch), args.device,
                     f"{name} sampling step, batch {sample_batch}, {args.device}, backend={args.backend}", args.rows)
    if args.throughput:
        cifar20_throughput(args.device, args.backend)


if __name__ == "__main__":
    main()
