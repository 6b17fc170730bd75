"""Does bf16 sFT agree with fp32 sFT, and what do bf16 and stacked coalitions cost, on this machine?

Loads a use case's study (stages from the cache, trained once if missing), draws ``--coalitions`` seeded
coalitions of mixed sizes, and evaluates each by sFT + sampling + scoring in fp32 and in bf16 (autocast, fp32
master weights) side by side, coalition by coalition, so both precisions share the machine's slow spells. Prints
the Pearson and Spearman correlations of the utilities, their largest difference, and the time ratio bf16 / fp32
(training, sampling, total). ``--stack K,...`` then times the first K coalitions one at a time against stacked
(``Study.evaluate_many``: one vmapped training loop, one vmapped DDIM loop) in fp32, with the largest utility
difference, alternating which goes first from K to K.

    python benchmarks/precision.py --use-case digits --coalitions 10 --overrides sampling.num_images=256 \
        --stack 4,8 --json precision_cpu.json
    python benchmarks/precision.py --device cuda ...   # the same on a GPU (benchmarks/gpu_check.sh)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import stats

# diffusers probes for a top-level package named "kernels": keep this folder (which holds
# benchmarks/kernels.py) off sys.path so that the probe does not import that script.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def coalitions(n: int, count: int, seed: int) -> list[np.ndarray]:
    """``count`` seeded coalitions with sizes spread over 1..n-1 (utilities then spread too)."""
    rng = np.random.default_rng(seed)
    masks = []
    for index in range(count):
        size = 1 + (index * (n - 2)) // max(count - 1, 1)
        mask = np.zeros(n, bool)
        mask[rng.choice(n, size, replace=False)] = True
        masks.append(mask)
    return masks


def on_device(study, device: str, precision: str):
    """A copy of ``study`` whose stages sit on ``device`` and whose config runs ``precision``."""
    import copy

    stages = {name: copy.deepcopy(models) for name, models in study.stages.items()}
    for models in stages.values():
        models.model.to(device)
        models.sample_state = {k: v.to(device) for k, v in models.sample_state.items()}
        models.ema = None if models.ema is None else {k: v.to(device) for k, v in models.ema.items()}
    cfg = replace(study.cfg, precision=precision)
    return replace(study, ctx=replace(study.ctx, cfg=cfg), stages=stages)


def timed(fn):
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    began = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - began


def compare_precisions(study, masks: list[np.ndarray], device: str, other: str) -> dict:
    """fp32 against ``other`` on every coalition, interleaved: utilities, correlations, time ratios."""
    studies = {p: on_device(study, device, p) for p in ("fp32", other)}
    utilities = {p: [] for p in studies}
    seconds = {p: {"train_seconds": 0.0, "sample_seconds": 0.0, "total": 0.0} for p in studies}
    for index, mask in enumerate(masks):
        for p in (("fp32", other) if index % 2 == 0 else (other, "fp32")):
            result, total = timed(lambda p=p, mask=mask: studies[p].evaluate(mask))
            utilities[p].append(result.utility)
            for key in ("train_seconds", "sample_seconds"):
                seconds[p][key] += result.timings[key]
            seconds[p]["total"] += total
        print(f"  coalition {index} (size {int(mask.sum())}): fp32 {utilities['fp32'][-1]:.5f}  "
              f"{other} {utilities[other][-1]:.5f}", flush=True)
    a, b = np.array(utilities["fp32"]), np.array(utilities[other])
    return {"precision": other, "device": device, "coalitions": len(masks), "pearson": float(np.corrcoef(a, b)[0, 1]),
            "spearman": float(stats.spearmanr(a, b)[0]), "max_abs_diff": float(np.abs(a - b).max()),
            "utility_range_fp32": float(a.max() - a.min()), "utilities": utilities, "seconds": seconds,
            "time_ratio": {k: seconds[other][k] / seconds["fp32"][k] for k in seconds["fp32"]}}


def compare_stacking(study, masks: list[np.ndarray], device: str, stacks: list[int]) -> list[dict]:
    """For each K: the first K coalitions one at a time against stacked (fp32), in alternating order."""
    study = on_device(study, device, "fp32")
    rows = []
    for turn, k in enumerate(stacks):
        chosen = masks[:k]
        runs = {"lone": lambda chosen=chosen: [study.evaluate(m) for m in chosen],
                "stacked": lambda chosen=chosen: study.evaluate_many(chosen)}
        results, seconds = {}, {}
        for name in (("lone", "stacked") if turn % 2 == 0 else ("stacked", "lone")):
            results[name], seconds[name] = timed(runs[name])
        diffs = [abs(a.utility - b.utility) for a, b in zip(results["lone"], results["stacked"], strict=True)]
        image_diffs = [float((a.images - b.images).abs().max())
                       for a, b in zip(results["lone"], results["stacked"], strict=True)]
        rows.append({"stack": k, "device": device, "lone_seconds": seconds["lone"],
                     "stacked_seconds": seconds["stacked"], "speedup": seconds["lone"] / seconds["stacked"],
                     "max_utility_diff": max(diffs), "max_image_diff": max(image_diffs)})
        print(f"  K={k}: one at a time {seconds['lone']:.1f}s, stacked {seconds['stacked']:.1f}s, "
              f"speedup {rows[-1]['speedup']:.2f}x, max |utility diff| {max(diffs):.2e}, "
              f"max |image diff| {max(image_diffs):.2e}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--use-case", default="digits")
    ap.add_argument("--overrides", nargs="*", default=[], help="config overrides, e.g. sampling.num_images=256")
    ap.add_argument("--coalitions", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="bf16", help="the precision compared with fp32 (bf16 or tf32)")
    ap.add_argument("--stack", default="", help="comma list of K to time stacked against one at a time")
    ap.add_argument("--skip-precision", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    import torch

    from shapflow.config import load_use_case
    from shapflow.utility import load_study

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_use_case(args.use_case, args.overrides)
    print(f"use case {cfg.name}: sft {cfg.sft.steps} steps x batch {cfg.sft.batch_size}, sampling "
          f"{cfg.sampling.num_images} images x {cfg.sampling.num_inference_steps} steps; device {args.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    study = load_study(cfg)
    masks = coalitions(study.data.n_contributors, args.coalitions, args.seed)
    out: dict = {"use_case": cfg.name, "overrides": args.overrides, "device": args.device}
    if not args.skip_precision:
        print(f"== fp32 vs {args.precision}: {len(masks)} coalitions", flush=True)
        row = out["precision"] = compare_precisions(study, masks, args.device, args.precision)
        ratio = row["time_ratio"]
        print(f"Pearson {row['pearson']:.4f}  Spearman {row['spearman']:.4f}  max |diff| {row['max_abs_diff']:.4f} "
              f"(fp32 utility range {row['utility_range_fp32']:.4f})\ntime {args.precision} / fp32: train "
              f"{ratio['train_seconds']:.2f}  sample {ratio['sample_seconds']:.2f}  total {ratio['total']:.2f}")
    stacks = [int(k) for k in args.stack.split(",") if k]
    if stacks:
        print(f"== stacked vs one at a time (fp32), K in {stacks}", flush=True)
        if max(stacks) > len(masks):
            masks = coalitions(study.data.n_contributors, max(stacks), args.seed)
        out["stacking"] = compare_stacking(study, masks, args.device, stacks)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
