"""What one coalition costs in each paper use case, measured on the real architectures with random weights.

Builds each use case's model from its config (no download, no data): artworks = the UNet of
lambdalabs/miniSD-diffusers (Stable Diffusion 1.x UNet at a 32x32 latent, 256 px; config written below) with a
rank-256 LoRA on to_q/k/v/out (peft), rank-pruned to ``lora.lora_param_fraction_kept`` of its parameters;
celebahq = the latent UNet of usecases/celebahq.yaml; cifar20 = the DDPM of usecases/cifar20.yaml; the two UNets
pruned by ``prune.channel_fraction_removed``. Times one training step (forward, eps-MSE, backward, the training
loop's fused AdamW) and one sampling step (a forward under no_grad; with classifier-free guidance for
artworks) of the full model (what retraining runs) and of the pruned one (what sFT runs), with
time.perf_counter after warm-up, the median of a few repetitions.

Then projects the paper-scale cost: per coalition, sFT = sft.steps x step(pruned, sft.batch_size) and sampling =
ceil(num_images / batch) x num_inference_steps x step(pruned, sampling.batch_size); retraining =
train.steps x step(full, train.batch_size) and sampling with the full model; hours for a budget of 10 n
coalitions (shapflow's default; --budget). Steps measured at a smaller batch than the paper's (always on CPU)
are scaled linearly in the batch, which the output says. Not timed: VAE/VQ decoding, scoring, latent caching.

    python benchmarks/usecase_cost.py --json cost.json                 # CPU, reduced batches
    python benchmarks/usecase_cost.py --device cuda --json cost.json   # the paper's batches
    python benchmarks/usecase_cost.py --quick                          # batch 1, one repetition
"""

from __future__ import annotations

import sys
from pathlib import Path

# diffusers probes for a top-level package named "kernels": keep this folder (which holds benchmarks/kernels.py)
# off sys.path so that the probe does not import that script.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402

from shapflow.config import UseCaseConfig, load_use_case  # noqa: E402
from shapflow.models.unet import build_unet, count_parameters  # noqa: E402
from shapflow.testing.workloads import make_sampling_step, make_sft_step  # noqa: E402

USE_CASES = ("artworks", "celebahq", "cifar20")
CONTRIBUTORS = {"artworks": 258, "celebahq": 50, "cifar20": 20}  # n in the paper's setups
# What the paper reports (seconds per coalition, or the ratio retraining / sFT).
PAPER = {"artworks": "sFT 635 s per coalition vs retraining 11,818 s (18.6x)",
         "celebahq": "sFT 10.4x cheaper than retraining", "cifar20": "sFT 5.3x cheaper than retraining"}
# Measurement batches on CPU (train, sampling): the paper's do not fit a CPU's time.
CPU_BATCH = {"artworks": (1, 1), "celebahq": (2, 2), "cifar20": (8, 8)}
# lambdalabs/miniSD-diffusers' unet/config.json: Stable Diffusion 1.x at sample_size 32 (256 px images).
MINISD_UNET = {"sample_size": 32, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
               "block_out_channels": (320, 640, 1280, 1280), "cross_attention_dim": 768, "attention_head_dim": 8,
               "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                    "DownBlock2D"),
               "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
               "norm_num_groups": 32}
TEXT_TOKENS, TEXT_DIM = 77, 768  # CLIP ViT-L/14 text encoder output


def timed(step: Callable[[], torch.Tensor], device: torch.device, warmup: int, reps: int) -> float:
    """Median seconds of ``step`` over ``reps`` calls after ``warmup`` calls (synchronised on CUDA)."""
    def once() -> float:
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for _ in range(warmup):
        once()
    return statistics.median(once() for _ in range(reps))


def build_sd_lora(cfg: UseCaseConfig, seed: int = 0) -> torch.nn.Module:
    """The miniSD UNet (random weights) with the use case's LoRA, conditioned on a random caption embedding."""
    from diffusers import UNet2DConditionModel

    from shapflow.models.sd_lora import CaptionConditionedDenoiser, add_lora

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**MINISD_UNET)
        caption, uncond = torch.randn(2, 1, TEXT_TOKENS, TEXT_DIM)
    add_lora(unet, rank=cfg.lora.rank, alpha=cfg.lora.alpha, seed=seed)
    for name, param in unet.named_parameters():  # PEFT starts B at zero; random B gives the ranks an importance
        if ".lora_B." in name:
            torch.nn.init.normal_(param, std=1e-3)
    return CaptionConditionedDenoiser(unet, caption, uncond_embedding=uncond, guidance_scale=cfg.lora.guidance_scale)


def prune(name: str, cfg: UseCaseConfig, model: torch.nn.Module) -> torch.nn.Module:
    """The use case's pruning, in place: LoRA ranks for artworks, UNet channels otherwise."""
    if name == "artworks":
        from shapflow.training.prune_lora import prune_lora_ranks

        prune_lora_ranks(model.unet, cfg.lora.lora_param_fraction_kept)
        return model
    from shapflow.training.prune import prune_unet

    return prune_unet(model, cfg.prune)[0]


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def measure(name: str, device: torch.device, batches: tuple[int, int], warmup: int, reps: int) -> dict:
    """Step times (s) of the full and the pruned model of ``name`` at ``batches`` = (train, sampling)."""
    cfg = load_use_case(name)
    model = build_sd_lora(cfg) if name == "artworks" else build_unet(cfg.model)
    model = model.to(device)
    train_batch, sample_batch = batches
    row: dict = {"use_case": name, "measured_batch": {"train": train_batch, "sampling": sample_batch}}
    for kind in ("full", "pruned"):
        if kind == "pruned":
            model = prune(name, cfg, model.cpu()).to(device)
        row[kind] = {"parameters": count_parameters(model), "trainable": trainable(model),
                     "train_step_s": timed(make_sft_step(model, train_batch), device, warmup, reps),
                     "sampling_step_s": timed(make_sampling_step(model, sample_batch), device, warmup, reps)}
        model.zero_grad(set_to_none=True)
        print(f"  {name} {kind}: {row[kind]}", flush=True)
    return row


def project(name: str, row: dict, budget: int | None) -> dict:
    """Paper-scale seconds per coalition and hours per budget, step times scaled linearly to the paper's batches."""
    cfg = load_use_case(name)
    measured = row["measured_batch"]

    def train_seconds(kind: str, recipe) -> float:
        return recipe.steps * row[kind]["train_step_s"] * recipe.batch_size / measured["train"]

    def sampling_seconds(kind: str) -> float:
        s = cfg.sampling
        per_batch = row[kind]["sampling_step_s"] * s.batch_size / measured["sampling"]
        return math.ceil(s.num_images / s.batch_size) * s.num_inference_steps * per_batch

    coalitions = budget or 10 * CONTRIBUTORS[name]
    sft, retrain = train_seconds("pruned", cfg.sft), train_seconds("full", cfg.train)
    sample_sft, sample_retrain = sampling_seconds("pruned"), sampling_seconds("full")
    return {"coalitions": coalitions, "sft_s": sft, "sampling_sft_s": sample_sft, "retrain_s": retrain,
            "sampling_retrain_s": sample_retrain,
            "sft_hours": coalitions * (sft + sample_sft) / 3600,
            "retrain_hours": coalitions * (retrain + sample_retrain) / 3600,
            "ratio_training": retrain / sft, "ratio_with_sampling": (retrain + sample_retrain) / (sft + sample_sft),
            "scaled_from_batch": measured != {"train": cfg.sft.batch_size, "sampling": cfg.sampling.batch_size},
            "recipe": {"sft_steps": cfg.sft.steps, "train_steps": cfg.train.steps, "batch": cfg.sft.batch_size,
                       "num_images": cfg.sampling.num_images, "ddim_steps": cfg.sampling.num_inference_steps,
                       "sampling_batch": cfg.sampling.batch_size}, "paper": PAPER[name]}


def report(rows: list[dict]) -> None:
    """The projection table, one line per use case, the paper's figures beside it."""
    print(f"\n{'use case':<10}{'sFT s/S':>10}{'sample s/S':>12}{'retrain s/S':>13}{'sFT h':>9}{'retrain h':>11}"
          f"{'ratio train':>13}{'ratio +sample':>15}   paper")
    for row in rows:
        p = row["projection"]
        print(f"{row['use_case']:<10}{p['sft_s']:>10.0f}{p['sampling_sft_s']:>12.0f}{p['retrain_s']:>13.0f}"
              f"{p['sft_hours']:>9.1f}{p['retrain_hours']:>11.1f}{p['ratio_training']:>12.1f}x"
              f"{p['ratio_with_sampling']:>14.1f}x   {p['paper']}")
    print("s/S: seconds per coalition at the paper's recipe; h: hours for the budget (coalitions column of --json); "
          "ratio: retraining / sFT.")
    if any(row["projection"]["scaled_from_batch"] for row in rows):
        print("NOTE: steps were measured at smaller batches than the paper's and scaled linearly in the batch "
              "(measured_batch in --json).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--use-case", action="append", choices=USE_CASES, help="repeatable; default: all three")
    parser.add_argument("--device", default="cpu", help="cpu (reduced batches) or cuda (the paper's batches)")
    parser.add_argument("--train-batch", type=int, help="measurement batch of a training step")
    parser.add_argument("--sampling-batch", type=int, help="measurement batch of a sampling step")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--budget", type=int, help="coalitions per study (default 10 n)")
    parser.add_argument("--quick", action="store_true", help="batch 1, one warm-up, one repetition")
    parser.add_argument("--json", type=Path, help="write the measurements and projections here")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA build of torch and a visible GPU")
    warmup, reps = (1, 1) if args.quick else (args.warmup, args.reps)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} threads, device {device}, load average {load:.1f} at start")
    rows = []
    for name in args.use_case or USE_CASES:
        cfg = load_use_case(name)
        paper = (cfg.sft.batch_size, cfg.sampling.batch_size)
        default = (1, 1) if args.quick else (paper if device.type == "cuda" else CPU_BATCH[name])
        batches = (args.train_batch or default[0], args.sampling_batch or default[1])
        row = measure(name, device, batches, warmup, reps)
        row["projection"] = project(name, row, args.budget)
        rows.append(row)
    report(rows)
    if args.json:
        args.json.write_text(json.dumps({"device": str(device), "torch": torch.__version__, "warmup": warmup,
                                         "reps": reps, "load_average_at_start": load, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
