import pytest
import torch

from shapflow.config import DiffusionConfig, ModelConfig, SampleConfig
from shapflow.generation import deadline as deadline_module
from shapflow.generation.ddim import initial_noise, sample
from shapflow.generation.deadline import DeadlineExceeded, check_deadline, deadline
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


def test_a_deadline_stops_sampling_between_steps_and_says_how_many_ran(monkeypatch):
    clock = iter(range(100))  # every reading of the clock is one second later
    monkeypatch.setattr(deadline_module.time, "monotonic", lambda: float(next(clock)))
    model = build_unet(ModelConfig(), seed=2)
    calls = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *args, **kwargs: calls.append(1) or forward(*args, **kwargs))
    with pytest.raises(DeadlineExceeded) as stopped, deadline(3.5):  # set at 0: steps at 1, 2, 3 run, 4 stops
        sample(model, SampleConfig(num_images=2, num_inference_steps=20), DiffusionConfig())
    assert stopped.value.steps == len(calls) == 3


def test_without_a_deadline_sampling_never_stops():
    check_deadline(step=True)  # no enclosing deadline: nothing to check, nothing raised
    images = sample(build_unet(ModelConfig(), seed=2), SampleConfig(num_images=2, num_inference_steps=2),
                    DiffusionConfig())
    assert images.shape[0] == 2
