import json

import torch

from shapflow.config import ModelConfig, PruneConfig
from shapflow.models import build_unet, load_unet, save_unet
from shapflow.training.prune import prune_unet

ATTN = ModelConfig(sample_size=8, block_out_channels=(16, 32), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                   up_block_types=("AttnUpBlock2D", "UpBlock2D"), add_attention=True, attention_head_dim=4)


def _max_abs_diff(a, b):
    return max((a.state_dict()[k] - b.state_dict()[k]).abs().max().item() for k in a.state_dict())


def test_pruned_round_trip_is_exact_and_pickle_free(tmp_path):
    model, _ = prune_unet(build_unet(ATTN), PruneConfig(channel_fraction_removed=0.5))
    ema = {k: v + 1 for k, v in model.state_dict().items()}
    save_unet(model, tmp_path, ema=ema, extra={"stage": "prune"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ema.safetensors", "model.json", "model.safetensors"]
    json.loads((tmp_path / "model.json").read_text())  # plain JSON, no pickle anywhere
    loaded, loaded_ema, extra = load_unet(tmp_path)
    assert extra == {"stage": "prune"}
    assert _max_abs_diff(model, loaded) == 0
    assert all(torch.equal(ema[k], loaded_ema[k]) for k in ema)
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([1, 50, 900])
    with torch.no_grad():
        assert torch.equal(model(x, t).sample, loaded(x, t).sample)


def test_full_model_round_trip(tmp_path):
    model = build_unet(ModelConfig(), seed=3)
    save_unet(model, tmp_path)
    loaded, ema, _ = load_unet(tmp_path)
    assert ema is None and _max_abs_diff(model, loaded) == 0


def test_build_is_seeded():
    assert _max_abs_diff(build_unet(ModelConfig(), seed=1), build_unet(ModelConfig(), seed=1)) == 0
