"""``shapflow models``: the registered models (<use_case>-full, <use_case>-pruned): list, load, alias, check."""

from __future__ import annotations

import json
from pathlib import Path

import click
from safetensors.torch import save_file

from shapflow.generation.grids import image_grid
from shapflow.tracking import list_versions, load_registered, open_tracker, set_alias
from shapflow.utility import load_scorer
from shapflow.utility.deploy import MAX_SEED, seed_image, seed_properties

__all__ = ["models_group"]


@click.group("models")
def models_group() -> None:
    """Registered models (<use_case>-full, <use_case>-pruned): list, load, alias, check."""


@models_group.command("list")
def models_list() -> None:
    """List registered models, their versions and aliases.  Example: shapflow models list"""
    for name, version, run_id, aliases in list_versions(open_tracker()):
        click.echo(f"{name}/{version}\trun {run_id}\taliases {','.join(aliases) or '-'}")


@models_group.command("load")
@click.argument("ref")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Copy the model folder (safetensors or PEFT adapter files + stage.json) here.")
def models_load(ref: str, out: Path | None) -> None:
    """Load NAME@ALIAS (or NAME@latest, NAME/VERSION) and print its summary.

    \b
    Example:  shapflow models load digits-pruned@latest --out pruned/
    """
    loaded = load_registered(ref, out)
    click.echo(f"{ref}: version {loaded.version} (run {loaded.run_id}), use case {loaded.cfg.name}, "
               f"model family {loaded.family.name}" + (f"; files in {out}" if out else ""))


@models_group.command("alias")
@click.argument("name")
@click.argument("alias")
@click.option("--version", required=True, help="Model version to point the alias at.")
def models_alias(name: str, alias: str, version: str) -> None:
    """Point ALIAS of registered model NAME at a version.

    \b
    Example:  shapflow models alias digits-pruned prod --version 1
    """
    set_alias(open_tracker(), name, alias, version)
    click.echo(f"{name}@{alias} -> version {version}")


@models_group.command("check")
@click.argument("ref")
@click.option("--seed", type=click.IntRange(min=0, max=MAX_SEED), default=None,
              help="Sample with sampling.seed=SEED instead of the use case's fixed seed.")
@click.option("--image", "image_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the seed's image (the first image of its noise, sampled alone: what the MLflow "
                   "model's predict returns for that seed) as safetensors {image: (C, H, W) float32 in [-1, 1]}, "
                   "and as a PNG beside it.")
def models_check(ref: str, seed: int | None, image_path: Path | None) -> None:
    """Deployment check: load REF, sample with the use case's fixed seed (or --seed), score, print the properties.

    \b
    Example:  shapflow models check digits-pruned@latest
              shapflow models check digits-pruned@prod --seed 7 --image seed7.safetensors
    """
    loaded = load_registered(ref)
    seed = loaded.cfg.sampling.seed if seed is None else seed
    click.echo(json.dumps(seed_properties(loaded, load_scorer(loaded.cfg), seed), indent=1))
    if image_path is not None:
        image = seed_image(loaded, seed).contiguous()
        image_path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"image": image}, str(image_path), metadata={"ref": ref, "seed": str(seed)})
        image_grid(image[None], image_path.with_suffix(".png"), nrow=1)
        click.echo(f"image of seed {seed}: {image_path} (and {image_path.with_suffix('.png')})", err=True)
