import torch
from diffusers.models.attention_processor import Attention

from shapflow.config import DiffusionConfig, ModelConfig, PruneConfig, TrainConfig
from shapflow.data import load_digits_market
from shapflow.generation.ddim import sample
from shapflow.models import build_unet, count_parameters
from shapflow.training.loop import train
from shapflow.training.prune import prune_unet
from tests.models.test_io import ATTN


def test_half_the_channels_removed_keeps_groupnorm_valid():
    model = build_unet(ModelConfig())
    before = count_parameters(model)
    model, report = prune_unet(model, PruneConfig(channel_fraction_removed=0.5))
    assert report.params_before == before and report.params_after == count_parameters(model)
    assert report.params_after < 0.4 * before and report.macs_after < report.macs_before
    assert report.block_out_channels_after == (8, 16)
    assert model.conv_out.out_channels == 1
    for module in model.modules():
        if isinstance(module, torch.nn.GroupNorm):
            assert module.num_channels % module.num_groups == 0
            assert module.num_channels // module.num_groups >= 2


def test_attention_pruned_head_consistently():
    model, _ = prune_unet(build_unet(ATTN), PruneConfig(channel_fraction_removed=0.5))
    attentions = [m for m in model.modules() if isinstance(m, Attention)]
    assert attentions
    for attn in attentions:
        assert attn.to_q.out_features == attn.to_k.out_features == attn.to_v.out_features == attn.inner_dim
        assert attn.inner_dim % attn.heads == 0
    out = model(torch.randn(2, 1, 8, 8), torch.tensor([3, 700])).sample
    assert out.shape == (2, 1, 8, 8)


def test_taylor_pruned_model_trains_and_samples():
    data = load_digits_market(0)
    diffusion = DiffusionConfig()
    model, _report = prune_unet(build_unet(ModelConfig()), PruneConfig(importance="taylor", taylor_batches=1),
                               data=data, diffusion=diffusion)
    result = train(model, data, TrainConfig(steps=3, batch_size=16), diffusion)
    assert len(result.losses) == 3 and all(torch.isfinite(torch.tensor(result.losses)))
    from shapflow.config import SampleConfig

    images = sample(result.model, SampleConfig(num_images=4, num_inference_steps=2), diffusion)
    assert images.shape == (4, 1, 8, 8) and torch.isfinite(images).all()
