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


@pytest.mark.parametrize(("use_case", "n", "blocks"), [("digits-48", 48, 3), ("digits-128", 128, 8)])
def test_scaled_markets_load_are_deterministic_and_keep_every_kind(use_case, n, blocks):
    from shapflow.config import load_use_case
    from shapflow.data import MARKETS, load_data

    cfg = load_use_case(use_case)
    first, second = load_data(cfg.data), load_data(cfg.data)
    assert first.n_contributors == n and torch.equal(first.images, second.images)
    assert torch.equal(first.contributor, second.contributor)
    assert len(set(first.names)) == n  # names unique
    assert first.counts().tolist() == [r.size for r in MARKETS[n]] and first.counts().min() >= 4
    kinds = [info["recipe"] for info in first.info]
    assert {kind: kinds.count(kind) for kind in set(kinds)} == {
        kind: blocks * [r.kind for r in MARKET].count(kind) for kind in {r.kind for r in MARKET}}
    holders_of_eights = [first.names[i] for i, info in enumerate(first.info) if 8 in info["classes"]]
    assert holders_of_eights == [f"eights-{b + 1}" for b in range(blocks)]  # only they hold the scarce class
    index = {name: i for i, name in enumerate(first.names)}
    for b in range(1, blocks + 1):  # each twin-b copies its own block's twin-a
        twin_a = first.images[first.contributor == index[f"twin-a-{b}"]]
        assert (twin_a - first.images[first.contributor == index[f"twin-b-{b}"]]).abs().mean() < 0.05
    noise = [first.info[index[f"noise-heavy-{b}"]]["param"] for b in range(1, blocks + 1)]
    assert noise == sorted(noise) and noise[0] < 0.6 < noise[-1]  # graded across blocks
    assert first.images.min() >= -1 and first.images.max() <= 1


def test_scaled_market_of_one_block_is_the_market():
    from shapflow.data.digits import scaled_market

    assert scaled_market(1) == MARKET
    with pytest.raises(ValueError, match="blocks"):
        scaled_market(0)
