"""The property networks load files with the real key names and shapes; the property maths is right."""

import json

import numpy as np
import pytest
import torch
from scipy import linalg

from shapflow.models.inception import FIDInceptionV3, load_fid_inception
from shapflow.models.vision import embed_images, load_image_encoder
from shapflow.properties.aesthetic import AestheticProperty, load_aesthetic_property, load_laion_head
from shapflow.properties.diversity import cluster_entropy_bits, fit_ward_centroids, load_diversity_property
from shapflow.properties.inception_score import InceptionProperty, frechet_distance_features, inception_score
from shapflow.standins.tiny import tiny_images, write_tiny_clip_vision, write_tiny_laion_head

# Facts of pt_inception-2015-12-05-6726825d.pth (pytorch-fid's FID weights), written down independently.
REAL_FID_KEYS = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3), "Conv2d_1a_3x3.bn.running_mean": (32,),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3), "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1), "Mixed_5d.branch3x3dbl_3.bn.running_var": (96,),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3), "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7), "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3), "Mixed_7b.branch3x3_2b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch3x3dbl_1.conv.weight": (448, 2048, 1, 1), "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "fc.weight": (1008, 2048), "fc.bias": (1008,),
}
REAL_FID_TENSORS, REAL_FID_PARAMETERS = 472, 23_850_960  # without num_batches_tracked; conv + bn affine + fc


@pytest.fixture(scope="module")
def fid_weights(tmp_path_factory):
    """A random state dict with the real file's keys and shapes (no num_batches_tracked, as in the 2015 port)."""
    generator = torch.Generator().manual_seed(0)
    shapes = {k: v.shape for k, v in FIDInceptionV3().state_dict().items() if not k.endswith("num_batches_tracked")}
    state = {k: torch.rand(shape, generator=generator) * 0.1 + (1.0 if k.endswith("running_var") else 0.0)
             for k, shape in shapes.items()}
    path = tmp_path_factory.mktemp("fid") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, path)
    return path, state


def test_fid_inception_has_the_real_files_keys_and_shapes():
    model = FIDInceptionV3()
    state = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert {k: state.get(k) for k in REAL_FID_KEYS} == REAL_FID_KEYS
    assert len(state) == REAL_FID_TENSORS and not any(k.startswith("AuxLogits") for k in state)
    assert sum(p.numel() for p in model.parameters()) == REAL_FID_PARAMETERS


def test_fid_inception_loads_the_weights_file_and_computes_features(fid_weights):
    path, state = fid_weights
    model = load_fid_inception(path, resize_to=75)
    assert torch.equal(model.Mixed_7c.branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"])
    features = model.features(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
    assert model.logits(features).shape == (2, 1008)


def test_fid_inception_rejects_a_wrong_file(tmp_path, fid_weights):
    _, state = fid_weights
    renamed = {("Mixed_5b.pool.conv.weight" if k == "Mixed_5b.branch_pool.conv.weight" else k): v
               for k, v in state.items()}
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(ValueError, match=r"missing \['Mixed_5b.branch_pool.conv.weight'\]"):
        load_fid_inception(tmp_path / "renamed.pth")
    torch.save(dict(state, **{"fc.weight": torch.zeros(1000, 2048)}), tmp_path / "imagenet-fc.pth")
    with pytest.raises(ValueError, match=r"wrong shapes \['fc.weight'\]"):
        load_fid_inception(tmp_path / "imagenet-fc.pth")
    with pytest.raises(FileNotFoundError, match="pytorch-fid"):
        load_fid_inception(tmp_path / "absent.pth")


def test_inception_score_and_frechet_distance_maths():
    assert inception_score(np.eye(8)) == pytest.approx(8.0)  # confident and evenly spread: IS = classes
    assert inception_score(np.tile([[0.7, 0.3]], (6, 1))) == pytest.approx(1.0)  # every image alike
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)), rng.normal(size=(30, 6)) + 0.5
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    reference = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(s1 + s2 - 2 * np.real(linalg.sqrtm(s1 @ s2)))
    assert frechet_distance_features(x, y) == pytest.approx(reference, rel=1e-6)  # n > d: eigh route
    wide_x, wide_y = x[:5], y[:4]  # n < d: the SVD route, compared with sqrtm
    s1, s2 = np.cov(wide_x, rowvar=False), np.cov(wide_y, rowvar=False)
    reference = (np.sum((wide_x.mean(0) - wide_y.mean(0)) ** 2)
                 + np.trace(s1 + s2 - 2 * np.real(linalg.sqrtm(s1 @ s2))))
    assert frechet_distance_features(wide_x, wide_y) == pytest.approx(reference, rel=1e-4)


def test_inception_property_scores_is_and_fid(fid_weights):
    network = load_fid_inception(fid_weights[0], resize_to=75)
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    scorer = InceptionProperty(network, name="fid", reference_images=images)
    values = scorer.score_all(images)
    assert values["fid"] == pytest.approx(0.0, abs=1e-3) and values["inception_score"] >= 1.0
    assert scorer.utility(values["fid"]) == -values["fid"] and not scorer.higher_is_better
    with pytest.raises(ValueError, match="needs reference images"):
        InceptionProperty(network, name="fid")


def test_laion_head_loads_the_real_format_and_rejects_others(tmp_path):
    state = {"weight": torch.randn(1, 768), "bias": torch.randn(1)}
    torch.save(state, tmp_path / "sa_0_4_vit_l_14_linear.pth")
    head = load_laion_head(tmp_path / "sa_0_4_vit_l_14_linear.pth")
    assert torch.equal(head.weight, state["weight"]) and torch.equal(head.bias, state["bias"])
    torch.save({"layers.0.weight": torch.randn(1024, 768)}, tmp_path / "mlp.pth")
    with pytest.raises(ValueError, match=r"not a Linear\(768, 1\) state dict"):
        load_laion_head(tmp_path / "mlp.pth")
    with pytest.raises(FileNotFoundError, match="aesthetic-predictor"):
        load_laion_head(tmp_path / "absent.pth")


def test_aesthetic_property_is_the_quantile_of_the_head_on_normalised_clip_embeddings(tmp_path):
    folder = write_tiny_clip_vision(tmp_path / "clip", projection_dim=768)  # real ViT-L/14 projection width
    head_path = write_tiny_laion_head(tmp_path / "head.pth", dim=768)
    prop = load_aesthetic_property(folder, head_path)
    images = tiny_images(2, 5, size=24).images
    with torch.no_grad():
        pixels = torch.nn.functional.interpolate((images + 1) / 2, size=(32, 32), mode="bicubic").clamp(0, 1)
        mean, std = torch.tensor(prop.encoder.mean).view(1, 3, 1, 1), torch.tensor(prop.encoder.std).view(1, 3, 1, 1)
        embeds = prop.encoder.model(pixel_values=(pixels - mean) / std).image_embeds
        manual = prop.head(embeds / embeds.norm(dim=1, keepdim=True)).squeeze(1).numpy()
    values = prop.score_all(images)
    assert prop.name == "aesthetic_p90"
    assert values["aesthetic_p90"] == pytest.approx(float(np.quantile(manual, 0.9)), rel=1e-5)
    with pytest.raises(ValueError, match="takes 768-d CLIP embeddings"):
        AestheticProperty(load_image_encoder(write_tiny_clip_vision(tmp_path / "small", projection_dim=16)),
                          prop.head)


def test_image_encoder_loader_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"config\.json and"):
        load_image_encoder(tmp_path / "empty")
    folder = write_tiny_clip_vision(tmp_path / "clip")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, model_type="vit")))
    with pytest.raises(ValueError, match="expected a CLIP or BLIP"):
        load_image_encoder(folder)


def test_cluster_entropy_is_zero_for_one_cluster_and_log2_k_for_even_spread():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 8)) * 10
    reference = np.concatenate([c + rng.normal(size=(5, 8)) * 0.1 for c in centres])
    centroids = fit_ward_centroids(reference, 20)
    even, proportions = cluster_entropy_bits(centres + 0.01, centroids)
    assert even == pytest.approx(np.log2(20)) and np.allclose(proportions, 1 / 20)
    assert cluster_entropy_bits(np.repeat(centres[:1], 7, 0), centroids)[0] == 0.0
    two, _ = cluster_entropy_bits(np.concatenate([np.repeat(centres[:1], 3, 0), np.repeat(centres[1:2], 1, 0)]),
                                  centroids)
    assert two == pytest.approx(-(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25)))
    with pytest.raises(ValueError, match="cannot form 20 clusters"):
        fit_ward_centroids(reference[:5], 20)


def test_diversity_property_with_a_clip_encoder(tmp_path):
    folder = write_tiny_clip_vision(tmp_path / "clip")
    data = tiny_images(4, 6, size=16)
    prop = load_diversity_property(folder, data.images, n_clusters=4)
    values = prop.score_all(data.images)
    assert 0.0 < values["cluster_entropy"] <= 2.0 and 1 <= values["clusters_occupied"] <= 4
    assert embed_images(prop.encoder, data.images[:3]).norm(dim=1).allclose(torch.ones(3))
