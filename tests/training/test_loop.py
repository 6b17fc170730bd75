import pytest
import torch

from shapflow.config import DiffusionConfig, EMAConfig, ModelConfig, TrainConfig
from shapflow.data import load_digits_market
from shapflow.models import build_unet
from shapflow.training.loop import TrainResult, sampling_state, train

DIFFUSION = DiffusionConfig()


@pytest.fixture(scope="module")
def data():
    return load_digits_market(0)


def _train(data, **kwargs) -> TrainResult:
    return train(build_unet(ModelConfig()), data, TrainConfig(batch_size=16, **kwargs), DIFFUSION)


def test_training_is_deterministic(data):
    first, second = _train(data, steps=4), _train(data, steps=4)
    assert first.losses == second.losses
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(),
                                                  second.model.state_dict().values(), strict=True))
    assert _train(data, steps=4, seed=1).losses != first.losses


def test_loss_decreases_on_digits(data):
    result = _train(data, steps=120, lr=3e-3, warmup_steps=10)
    assert sum(result.losses[-20:]) / 20 < 0.7 * sum(result.losses[:5]) / 5


def test_ema_off_samples_raw_weights(data):
    result = _train(data, steps=2)
    assert result.ema is None
    state = sampling_state(result, TrainConfig(steps=2))
    assert all(torch.equal(state[k], v) for k, v in result.model.state_dict().items())


def test_fresh_ema_starts_from_current_weights_and_lags(data):
    model = build_unet(ModelConfig())
    start = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(steps=3, batch_size=16, ema=EMAConfig(decay=0.9, sample_with_ema=True))
    result = train(model, data, cfg, DIFFUSION)
    key = "conv_in.weight"
    raw, ema = result.model.state_dict()[key], result.ema[key]
    # after 3 steps the EMA is 0.9^3 = 73% the starting weights: between start and raw
    expected_gap = (raw - start[key]).abs().mean()
    assert 0 < (ema - start[key]).abs().mean() < expected_gap
    assert sampling_state(result, cfg) is result.ema


def test_continue_ema_needs_and_uses_upstream_ema(data):
    cfg = TrainConfig(steps=1, batch_size=16, ema=EMAConfig(decay=0.99, init="continue"))
    with pytest.raises(ValueError, match="continue needs the upstream"):
        train(build_unet(ModelConfig()), data, cfg, DIFFUSION)
    upstream = {k: torch.zeros_like(v) for k, v in build_unet(ModelConfig()).state_dict().items()}
    result = train(build_unet(ModelConfig()), data, cfg, DIFFUSION, ema_init=upstream)
    # one step of decay 0.99 from zeros: 1% of the raw weights
    key = "conv_in.weight"
    assert torch.allclose(result.ema[key], 0.01 * result.model.state_dict()[key], atol=1e-6)
