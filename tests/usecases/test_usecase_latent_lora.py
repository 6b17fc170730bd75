"""Latent helpers, SD + LoRA, LoRA rank pruning and the asset check, on tiny stand-ins in the real layouts."""

import json

import pytest
import torch

from shapflow.config import DiffusionConfig, TrainConfig
from shapflow.data.assets import MissingAssetsError, check_assets, format_table, require_assets
from shapflow.models.latent import cached_latent_dataset, decode_latents, encode_latents, load_autoencoder
from shapflow.models.sd_lora import (
    CaptionConditionedDenoiser,
    add_lora,
    encode_caption,
    load_lora,
    load_sd_components,
    lora_disabled,
    lora_parameters,
    save_lora,
)
from shapflow.standins.tiny import tiny_images, write_tiny_assets, write_tiny_sd, write_tiny_vq
from shapflow.training.loop import train
from shapflow.training.prune_lora import prune_lora_ranks


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return write_tiny_sd(tmp_path_factory.mktemp("sd") / "stable-diffusion")


def test_vq_snapshot_loads_and_latents_are_cached_by_content(tmp_path):
    vq = load_autoencoder(write_tiny_vq(tmp_path / "ldm-celebahq-256"))
    assert type(vq).__name__ == "VQModel"
    data = tiny_images(3, 2, size=16)
    first = cached_latent_dataset(data, vq, folder=tmp_path / "latents")
    assert first.images.shape == (6, 3, 8, 8) and torch.equal(first.contributor, data.contributor)
    assert len(list((tmp_path / "latents").glob("*.safetensors"))) == 1
    again = cached_latent_dataset(data, vq, folder=tmp_path / "latents")
    assert torch.equal(again.images, first.images) and len(list((tmp_path / "latents").iterdir())) == 1
    cached_latent_dataset(tiny_images(3, 2, size=16, seed=5), vq, folder=tmp_path / "latents")
    assert len(list((tmp_path / "latents").glob("*.safetensors"))) == 2  # other images, other key
    decoded = decode_latents(vq, first.images)
    assert decoded.shape == (6, 3, 16, 16) and decoded.abs().max() <= 1.0
    with pytest.raises(FileNotFoundError, match="CompVis/ldm-celebahq-256"):
        load_autoencoder(tmp_path / "nothing")


def test_sd_kl_latents_are_scaled(sd_folder):
    vae = load_sd_components(str(sd_folder)).vae
    images = tiny_images(2, 1, size=16).images
    raw = vae.encode(images).latent_dist.mode()
    assert torch.allclose(encode_latents(vae, images), raw * vae.config.scaling_factor, atol=1e-6)


def test_lora_trains_only_lora_weights_through_the_one_training_loop(sd_folder):
    components = load_sd_components(str(sd_folder))
    config = add_lora(components.unet, rank=4)
    assert set(config.target_modules) == {"to_q", "to_k", "to_v", "to_out.0"}
    trainable = [n for n, p in components.unet.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    denoiser = CaptionConditionedDenoiser(components.unet, encode_caption(components, "a post-impressionist painting"))
    base = {n: p.detach().clone() for n, p in components.unet.named_parameters() if not p.requires_grad}
    before = [p.detach().clone() for p in lora_parameters(components.unet)]
    latents = torch.randn(4, 4, 8, 8)
    data = tiny_images(2, 2, size=8)
    data = type(data)(latents, data.contributor, data.names, data.info)
    result = train(denoiser, data, TrainConfig(steps=2, batch_size=2, lr=1e-2), DiffusionConfig(num_train_timesteps=50))
    assert len(result.losses) == 2 and result.ema is None
    assert any(not torch.equal(a, b) for a, b in zip(before, lora_parameters(components.unet), strict=True))
    assert all(torch.equal(p, base[n]) for n, p in components.unet.named_parameters() if n in base)


def test_guidance_and_lora_switch(sd_folder):
    components = load_sd_components(str(sd_folder))
    add_lora(components.unet, rank=4)
    cond, uncond = encode_caption(components, "a painting"), encode_caption(components, "")
    guided = CaptionConditionedDenoiser(components.unet, cond, uncond_embedding=uncond, guidance_scale=3.0).eval()
    plain = CaptionConditionedDenoiser(components.unet, cond).eval()
    uncond_only = CaptionConditionedDenoiser(components.unet, uncond).eval()
    x, t = torch.randn(2, 4, 8, 8), torch.tensor(5)
    with torch.no_grad():
        expected = uncond_only(x, t).sample + 3.0 * (plain(x, t).sample - uncond_only(x, t).sample)
        assert torch.allclose(guided(x, t).sample, expected, atol=1e-5)
        for p in lora_parameters(components.unet):
            p.normal_()
        with lora_disabled(components.unet):
            base_out = plain(x, t).sample
        assert not torch.allclose(plain(x, t).sample, base_out)
    fresh = CaptionConditionedDenoiser(load_sd_components(str(sd_folder)).unet, cond).eval()
    with torch.no_grad():
        assert torch.allclose(fresh(x, t).sample, base_out, atol=1e-6)
    with pytest.raises(ValueError, match="needs the empty caption"):
        CaptionConditionedDenoiser(components.unet, cond, guidance_scale=2.0)


def test_lora_rank_pruning_keeps_the_fraction_and_the_function_and_reloads(sd_folder, tmp_path):
    components = load_sd_components(str(sd_folder))
    add_lora(components.unet, rank=8, alpha=4.0)
    denoiser = CaptionConditionedDenoiser(components.unet, encode_caption(components, "a painting")).eval()
    with torch.no_grad():  # ranks 0, 2, 4, 6 contribute nothing (B columns zero): pruning must remove exactly them
        for module in components.unet.modules():
            if hasattr(module, "lora_B") and "default" in module.lora_B:
                module.lora_A["default"].weight.normal_()
                module.lora_B["default"].weight.normal_()
                module.lora_B["default"].weight[:, ::2] = 0
        x, t = torch.randn(2, 4, 8, 8), torch.tensor([3, 9])
        before = denoiser(x, t).sample
    report = prune_lora_ranks(components.unet, lora_param_fraction_kept=0.5)
    assert (report.rank_before, report.rank_after) == (8, 4)
    assert report.as_dict()["lora_param_fraction_kept"] == pytest.approx(0.5)
    with torch.no_grad():
        assert torch.allclose(denoiser(x, t).sample, before, atol=1e-5)
    save_lora(components.unet, tmp_path / "lora")
    saved = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert saved["r"] == 4 and saved["lora_alpha"] == pytest.approx(2.0)  # alpha / r kept at 0.5
    reloaded = load_sd_components(str(sd_folder))
    load_lora(reloaded.unet, tmp_path / "lora")
    with torch.no_grad():
        out = CaptionConditionedDenoiser(reloaded.unet, denoiser.caption).eval()(x, t).sample
    assert torch.allclose(out, before, atol=1e-5)
    with pytest.raises(ValueError, match="fraction of LoRA parameters to KEEP"):
        prune_lora_ranks(components.unet, lora_param_fraction_kept=0.0)


def test_sd_loader_fails_fast_on_an_incomplete_snapshot(tmp_path):
    (tmp_path / "sd" / "unet").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="missing: vae, text_encoder, tokenizer"):
        load_sd_components(str(tmp_path / "sd"))


@pytest.mark.parametrize("use_case", ["cifar20", "celebahq", "artworks"])
def test_asset_check_lists_missing_assets_with_layout_and_source(use_case, tmp_path):
    statuses = check_assets(use_case, {})
    assert statuses and not any(s.found for s in statuses)
    table = format_table(statuses)
    assert all(s.key in table for s in statuses) and "MISSING" in table and "obtain:" in table
    with pytest.raises(MissingAssetsError, match="nothing was started"):
        require_assets(use_case, {})
    assert all(s.found for s in check_assets(use_case, {}, tiny=True))


def test_asset_check_accepts_the_stand_ins_in_real_layouts_and_flags_bad_ones(tmp_path):
    paths = write_tiny_assets("artworks", tmp_path)
    statuses = {s.key: s for s in check_assets("artworks", paths)}
    assert all(s.found for s in statuses.values()), format_table(list(statuses.values()))
    broken = dict(paths, artbench_metadata=str(tmp_path / "labels.csv"), stable_diffusion="nobody/nothing")
    (tmp_path / "labels.csv").write_text("image,identity\n")
    statuses = {s.key: s for s in check_assets("artworks", broken)}
    assert "CSV header lacks name, artist" in statuses["artbench_metadata"].detail
    assert not statuses["stable_diffusion"].found and "cache" in statuses["stable_diffusion"].detail
    with pytest.raises(ValueError, match="unknown asset key"):
        check_assets("artworks", {"sd": "x"})
