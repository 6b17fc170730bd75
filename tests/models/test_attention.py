"""Attention runs through SDPA in every model shapflow builds or loads, and survives vmap (stacked training)."""

import copy

import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from shapflow.attribution import load_config
from shapflow.config import DiffusionConfig, ModelConfig, TrainConfig
from shapflow.data import load_digits_market
from shapflow.models import build_unet, load_unet, save_unet
from shapflow.models.attention import VmapAttnProcessor, attention_processors, sdpa_attention, vmap_safe_attention
from shapflow.models.sd_lora import load_sd_components
from shapflow.training import Member, train, train_many

# The cifar20 architecture (an attention down block, an attention up block with two layers, the mid-block
# attention), at small widths.
ATTENTION_MODEL = ModelConfig(sample_size=8, in_channels=1, block_out_channels=(8, 16), norm_num_groups=4,
                              add_attention=True, attention_head_dim=4,
                              down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                              up_block_types=("AttnUpBlock2D", "UpBlock2D"))


def test_built_and_loaded_unets_run_sdpa(tmp_path):
    model = build_unet(ATTENTION_MODEL)
    processors = attention_processors(model)
    assert len(processors) == 4 and set(processors.values()) == {"AttnProcessor2_0"}
    save_unet(model, tmp_path)
    assert set(attention_processors(load_unet(tmp_path)[0]).values()) == {"AttnProcessor2_0"}
    assert attention_processors(build_unet(ModelConfig())) == {}  # the digits UNet has no attention


def test_the_stable_diffusion_unet_runs_sdpa():
    cfg = load_config("artworks", tiny=True)
    components = load_sd_components(cfg.assets.stable_diffusion)
    assert set(attention_processors(components.unet).values()) == {"AttnProcessor2_0"}


def test_classic_attention_is_switched_to_sdpa_with_the_same_values():
    model = build_unet(ATTENTION_MODEL, seed=1).eval()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 900])
    expected = model(x, t).sample
    for layer in model.modules():
        if hasattr(layer, "set_processor"):
            layer.set_processor(AttnProcessor())
    assert set(attention_processors(model).values()) == {"AttnProcessor"}
    classic = model(x, t).sample
    sdpa_attention(model)
    assert set(attention_processors(model).values()) == {"AttnProcessor2_0"}
    assert torch.allclose(classic, expected, atol=1e-5) and torch.allclose(model(x, t).sample, expected, atol=1e-6)


def test_vmapped_attention_unets_match_one_at_a_time():
    models = [build_unet(ATTENTION_MODEL, seed=s) for s in (1, 2)]
    params, buffers = torch.func.stack_module_state(models)
    base = vmap_safe_attention(copy.deepcopy(models[0]).to("meta"))
    assert set(attention_processors(base).values()) == {VmapAttnProcessor.__name__}
    x, t = torch.randn(2, 3, 1, 8, 8), torch.randint(0, 1000, (2, 3))

    def one(p, b, xk, tk):
        return torch.func.functional_call(base, (p, b), (xk, tk)).sample

    stacked = torch.func.vmap(one)(params, buffers, x, t)
    for k, model in enumerate(models):
        assert torch.allclose(stacked[k], model(x[k], t[k]).sample, atol=1e-5)


def test_stacked_training_of_an_attention_unet_matches_lone_runs():
    """Before VmapAttnProcessor, train_many of any UNet with attention (cifar20's) failed inside vmap."""
    data = load_digits_market(0)
    recipe, diffusion = TrainConfig(steps=3, batch_size=8), DiffusionConfig()
    start = build_unet(ATTENTION_MODEL, seed=1)
    subsets = [data.subset(torch.arange(data.n_contributors).numpy() % 2 == k) for k in (0, 1)]
    lone = [train(copy.deepcopy(start), subset, recipe, diffusion) for subset in subsets]
    stacked = train_many([Member(copy.deepcopy(start), subset, recipe.seed) for subset in subsets], recipe, diffusion)
    for a, b in zip(lone, stacked, strict=True):
        assert max(abs(x - y) for x, y in zip(a.losses, b.losses, strict=True)) < 1e-5
    assert set(attention_processors(stacked[0].model).values()) == {AttnProcessor2_0.__name__}  # only the vmapped copy
