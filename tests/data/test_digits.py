import numpy as np
import pytest
import torch

from shapflow.data import MARKET, load_digits_classes, load_digits_market


def test_market_is_seeded_and_documented():
    first, second = load_digits_market(0), load_digits_market(0)
    assert torch.equal(first.images, second.images)
    assert not torch.equal(first.images, load_digits_market(1).images)
    assert first.n_contributors == len(MARKET) == 16
    assert first.counts().tolist() == [r.size for r in MARKET]
    assert all("degradation" in info and info["expect"] for info in first.info)
    assert first.images.min() >= -1 and first.images.max() <= 1


def test_market_structure_redundancy_and_complementarity():
    data = load_digits_market(0)
    index = {name: i for i, name in enumerate(data.names)}
    twin_a = data.images[data.contributor == index["twin-a"]]
    twin_b = data.images[data.contributor == index["twin-b"]]
    assert (twin_a - twin_b).abs().mean() < 0.05  # near-copies
    holders_of_eights = [i for i, info in enumerate(data.info) if 8 in info["classes"]]
    assert holders_of_eights == [index["eights"]]  # nobody else has the scarce class


def test_subset_keeps_global_indices_and_rejects_bad_masks():
    data = load_digits_market(0)
    mask = np.zeros(16, bool)
    mask[[2, 5]] = True
    part = data.subset(mask)
    assert set(part.contributor.unique().tolist()) == {2, 5}
    assert part.names == data.names
    with pytest.raises(ValueError, match="16 entries"):
        data.subset(np.ones(3, bool))
    with pytest.raises(ValueError, match="empty coalition"):
        data.subset(np.zeros(16, bool))


def test_classes_use_case():
    data = load_digits_classes()
    assert data.n_contributors == 10 and len(data) == 1797
