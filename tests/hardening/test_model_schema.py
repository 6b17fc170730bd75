"""model.json is checked against a schema before anything is built: each tampering is refused naming the field."""

import json
import shutil

import pytest
import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file, save_file

from shapflow.config import ModelConfig, PruneConfig, available_use_cases, load_use_case
from shapflow.models import build_unet, load_unet, save_unet
from shapflow.models.schema import CONFIG_RULES, MAX_PARAMETERS, check_model_folder
from shapflow.training.prune import prune_unet

ATTN = ModelConfig(sample_size=8, block_out_channels=(16, 32), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                   up_block_types=("AttnUpBlock2D", "UpBlock2D"), add_attention=True, attention_head_dim=4)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A pruned attention UNet (with EMA) saved by save_unet."""
    folder = tmp_path_factory.mktemp("pruned")
    model, _ = prune_unet(build_unet(ATTN), PruneConfig(channel_fraction_removed=0.5))
    save_unet(model, folder, ema=model.state_dict(), extra={"stage": "prune"})
    return folder


@pytest.fixture
def tampered(saved, tmp_path):
    """A copy of ``saved`` whose model.json was changed by ``edit(meta)``."""
    def make(edit):
        folder = tmp_path / "model"
        shutil.copytree(saved, folder)
        meta = json.loads((folder / "model.json").read_text())
        edit(meta)
        (folder / "model.json").write_text(json.dumps(meta))
        return folder
    return make


def test_a_pruned_unet_passes_and_round_trips(saved):
    files = check_model_folder(saved)
    assert files.extra == {"stage": "prune"} and files.ema is not None
    model, ema, _ = load_unet(saved)
    assert set(ema) == set(model.state_dict())
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([1, 500])
    with torch.no_grad():
        assert model(x, t).sample.shape == x.shape


def _set(module: str, attr: str, value):
    return lambda meta: meta["widths"].setdefault(module, {}).__setitem__(attr, value)


@pytest.mark.parametrize(("edit", "field", "why"), [
    (_set("conv_in", "forward", 1), "widths['conv_in'].forward", "is not a shape attribute of Conv2d"),
    (_set("conv_in", "__class__", "x"), "widths['conv_in'].__class__", "is not a shape attribute"),
    (_set("evil", "in_channels", 3), "widths['evil']", "names no module"),
    (_set("time_proj", "in_channels", 3), "widths['time_proj'].in_channels", "is not a shape attribute"),
    (_set("conv_in", "out_channels", 2**40), "widths['conv_in'].out_channels", "must be an integer in [1, 65536]"),
    (_set("conv_in", "out_channels", -8), "widths['conv_in'].out_channels", "must be an integer in [1, 65536]"),
    (_set("conv_in", "out_channels", True), "widths['conv_in'].out_channels", "must be an integer"),
    (_set("conv_in", "out_channels", [8]), "widths['conv_in'].out_channels", "must be an integer"),
    (_set("conv_norm_out", "num_groups", 3), "widths['conv_norm_out'].num_channels", "not divisible by num_groups = 3"),
    (_set("mid_block.attentions.0", "inner_dim", 7), "widths['mid_block.attentions.0'].inner_dim",
     "is not divisible by heads"),
    (lambda meta: meta["widths"]["mid_block.resnets.0.conv1"].update(in_channels=65536, out_channels=65536),
     "widths", "implies"),
    (_set("conv_in", "out_channels", 12), "conv_in.bias.shape", "does not match model.json's widths"),
    (lambda meta: meta["config"].__setitem__("forward", 1), "config.forward", "is not a UNet2DModel config key"),
    (lambda meta: meta["config"].__setitem__("_private", 1), "config._private", "is not a UNet2DModel config key"),
    (lambda meta: meta["config"].__setitem__("act_fn", "os.system"), "config.act_fn", "must be one of"),
    (lambda meta: meta["config"].__setitem__("layers_per_block", 10**6), "config.layers_per_block", "[1, 16]"),
    (lambda meta: meta["config"].__setitem__("norm_eps", float("nan")), "config.norm_eps", "must be a number"),
    (lambda meta: meta["config"].__setitem__("block_out_channels", [16384, 32768]), "config", "implies"),
    (lambda meta: meta["config"].__setitem__("block_out_channels", [16]), "config", "does not build"),
    (lambda meta: meta.__setitem__("format", "other/1"), "format", "is not 'shapflow-unet/1'"),
    (lambda meta: meta.__setitem__("code", "import os"), "keys", "must be format, config, widths"),
    (lambda meta: meta.__setitem__("widths", []), "widths", "must be a JSON object"),
])
def test_tampering_is_refused_naming_the_field(tampered, edit, field, why):
    folder = tampered(edit)
    with pytest.raises(ValueError, match="model") as refused:
        load_unet(folder)
    message = str(refused.value)
    assert str(folder) in message and f"{field} " in message and why in message, message


def _rewrite_weights(folder, change):
    state = load_file(folder / "model.safetensors")
    change(state)
    save_file(state, folder / "model.safetensors")


@pytest.mark.parametrize(("change", "field", "why"), [
    (lambda s: s.__setitem__("conv_in.weight", torch.zeros(1024, 1, 3, 3)), "conv_in.weight.shape", "does not match"),
    (lambda s: s.__setitem__("conv_in.weight", s["conv_in.weight"].to(torch.int32)), "conv_in.weight.dtype",
     "is not a dtype"),
    (lambda s: s.__setitem__("extra.weight", torch.zeros(2)), "tensors", "unexpected ['extra.weight']"),
    (lambda s: s.pop("conv_in.bias"), "tensors", "missing ['conv_in.bias']"),
])
def test_tensors_that_disagree_with_the_widths_are_refused_before_loading(tampered, change, field, why):
    folder = tampered(lambda meta: None)
    _rewrite_weights(folder, change)
    with pytest.raises(ValueError, match=r"model\.safetensors") as refused:
        load_unet(folder)
    assert f"{field} = " in str(refused.value) and why in str(refused.value), str(refused.value)


def test_an_oversized_tensor_file_is_refused_by_its_header(tampered):
    folder = tampered(lambda meta: None)
    header = json.dumps({"conv_in.weight": {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 2**42]}})
    (folder / "ema.safetensors").write_bytes(len(header).to_bytes(8, "little") + header.encode())
    with pytest.raises(ValueError, match=r"ema\.safetensors"):
        load_unet(folder)


def test_every_unet_config_key_has_a_rule():
    """A diffusers upgrade that adds a config key must add its rule, or save_unet would write unloadable files."""
    with torch.device("meta"):
        config = UNet2DModel().config
    assert set(config) - {"_use_default_values"} <= set(CONFIG_RULES)


@pytest.mark.parametrize("name", available_use_cases())
def test_shipped_use_cases_fit_under_the_cap(name):
    with torch.device("meta"):
        unet = build_unet(load_use_case(name).model)
    assert sum(p.numel() for p in unet.parameters()) <= MAX_PARAMETERS
