import torch

from shapflow.config import DiffusionConfig, ModelConfig, SampleConfig
from shapflow.generation.ddim import initial_noise, sample
from shapflow.models import build_unet


def test_common_random_numbers_do_not_depend_on_batch_size():
    model = build_unet(ModelConfig(), seed=2)
    diffusion = DiffusionConfig()
    whole = sample(model, SampleConfig(num_images=6, num_inference_steps=3, batch_size=6), diffusion)
    split = sample(model, SampleConfig(num_images=6, num_inference_steps=3, batch_size=4), diffusion)
    assert torch.allclose(whole, split, atol=1e-5)
    assert whole.min() >= -1 and whole.max() <= 1


def test_same_noise_for_every_model_and_prefix_stable():
    cfg = SampleConfig(num_images=8, seed=5)
    noise = initial_noise(cfg, (1, 8, 8))
    assert torch.equal(noise[:4], initial_noise(cfg, (1, 8, 8), num_images=4))
    other = sample(build_unet(ModelConfig(), seed=9), SampleConfig(num_images=2, num_inference_steps=2),
                   DiffusionConfig())
    again = sample(build_unet(ModelConfig(), seed=9), SampleConfig(num_images=2, num_inference_steps=2),
                   DiffusionConfig())
    assert torch.equal(other, again)
