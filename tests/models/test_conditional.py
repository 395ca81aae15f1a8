"""Identity-conditional networks and the embedding mode of `--condition identity` on tiny labelled shapes."""
import json

import numpy as np
import pytest
import torch

from facegan.models.conditional import COVARIANCE_RIDGE, ConditionalGenerator, ProjectionDiscriminator, fit_gaussian
from facegan.models.config import ModelConfig

COLOURS = [(220, 40, 40), (40, 200, 60), (50, 80, 230), (230, 210, 40)]


def shapes_dataset(path, per_identity=24, size=16, seed=0):
    """Four identities of coloured shapes (disc, square, bar, cross), each image moved, resized and re-lit at random."""
    from facegan.data.dataset import FaceDataset

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, labels = [], []
    for identity, colour in enumerate(COLOURS):
        for _ in range(per_identity):
            cx, cy = rng.uniform(5, size - 5, 2)
            r = rng.uniform(2.5, 4.0)
            masks = [(xx - cx) ** 2 + (yy - cy) ** 2 < r * r, (abs(xx - cx) < r) & (abs(yy - cy) < r),
                     (abs(xx - cx) < r) & (abs(yy - cy) < r / 3), ((abs(xx - cx) < r / 3) | (abs(yy - cy) < r / 3)) & (abs(xx - cx) < r) & (abs(yy - cy) < r)]
            image = np.full((size, size, 3), rng.uniform(60, 120), dtype=np.float64)
            image[masks[identity]] = np.array(colour) * rng.uniform(0.8, 1.1)
            images.append(np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8))
            labels.append(identity)
    manifest = {"source": "test:shapes", "source_kind": "builtin", "identity_names": [f"shape{i}" for i in range(len(COLOURS))]}
    FaceDataset(np.stack(images), manifest, identity=np.array(labels, dtype=np.int64)).save(path)
    return path


@pytest.fixture(scope="module")
def shapes16(tmp_path_factory):
    return shapes_dataset(tmp_path_factory.mktemp("data") / "shapes16")


def _model(**updates):
    return ModelConfig(**{"resolution": 16, "channels": 3, "z_dim": 32, "g_channels": 16, "d_channels": 16, "min_channels": 8, **updates})


def _networks(config, count=5, dim=8):
    from facegan.models import build_discriminator, build_generator

    torch.manual_seed(0)
    return ConditionalGenerator(config, count, dim, build_generator(config)), ProjectionDiscriminator(config, count, build_discriminator(config))


def test_fit_gaussian_is_the_sample_mean_and_covariance_plus_ridge():
    table = torch.randn(12, 5, generator=torch.Generator().manual_seed(0))
    mean, covariance = fit_gaussian(table)
    expected = np.cov(table.numpy().astype(np.float64), rowvar=False) + COVARIANCE_RIDGE * np.eye(5)
    assert np.allclose(mean.numpy(), table.numpy().mean(0), atol=1e-6)
    assert np.allclose(covariance.numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("architecture", ["stable", "dcgan"])
def test_projection_logit_is_base_logit_plus_embedding_dot_features(architecture):
    config = _model(architecture=architecture, resolution=32, g_channels=32, d_channels=32) if architecture == "dcgan" else _model()
    _, D = _networks(config)
    D.eval()
    with torch.no_grad():
        D.embedding.weight.normal_()  # make the projection term large enough to see
        images = torch.rand(4, 3, config.resolution, config.resolution) * 2 - 1
        labels = torch.tensor([0, 1, 2, 4])
        base = D.base(images)
        features, _ = D.features(images)
        expected = base + (D.embedding.weight[labels] * features).sum(1)
        assert torch.allclose(D(images), base)  # no labels: the unconditional discriminator
        assert torch.allclose(D(images, labels), expected, atol=1e-5)
        assert not torch.allclose(D(images, labels), base)


def test_generator_uses_the_table_for_labels_and_the_fitted_gaussian_for_new_people():
    G, _ = _networks(_model())
    G.eval()
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        by_label = G(z, torch.tensor([0, 0, 3]))
        expected = G.base(torch.cat([G.embedding.weight[[0, 0, 3]], z[:, 8:]], 1))
        assert torch.equal(by_label, expected)
        mean, covariance = fit_gaussian(G.embedding.weight)
        identity = mean + z[:, :8] @ torch.linalg.cholesky(covariance.double()).float().T
        assert torch.allclose(G(z), G.base(torch.cat([identity, z[:, 8:]], 1)), atol=1e-5)
        G.embedding.weight.mul_(3.0)  # the table moves in training: saved buffers follow it
        state = G.state_dict()
        assert torch.allclose(state["identity_mean"], fit_gaussian(G.embedding.weight)[0])
        assert torch.allclose(state["identity_covariance"], fit_gaussian(G.embedding.weight)[1])


def test_embedding_mode_trains_from_labels_and_exports_new_identities(shapes16, tiny_config, tmp_path):
    import facegan
    from safetensors.torch import load_file

    run = tmp_path / "run"
    config = tiny_config(shapes16, run, kimg=0.48, identity={"condition": "identity", "identity_dim": 8},
                         model={"g_channels": 16, "d_channels": 16, "min_channels": 8, "z_dim": 32})
    result = train_config(config)
    assert np.isfinite(result.last_stats["loss_d"]) and "id_loss" not in result.last_stats
    saved = json.loads((run / "config.json").read_text())
    assert saved["identity"]["mode"] == "embedding"  # auto resolved from the labels
    exported = json.loads((run / "export" / "config.json").read_text())
    assert exported["identity"]["mode"] == "embedding" and exported["identity"]["num_identities"] == 4
    weights = load_file(str(run / "export" / "model.safetensors"))
    mean, covariance = fit_gaussian(weights["embedding.weight"])
    assert torch.allclose(weights["identity_mean"], mean) and torch.allclose(weights["identity_covariance"], covariance)
    generator = facegan.load_generator(run)
    assert isinstance(generator.module, ConditionalGenerator) and generator.identity_aware and generator.identity_dim == 8
    images = generator.sample_identity(3, range(6))
    assert images.shape == (6, 16, 16, 3) and np.array_equal(images, generator.sample_identity(3, range(6)))
    assert generator.sample(range(4)).shape == (4, 16, 16, 3)  # every plain sampler still works
    # The labels steer G: images of one training identity (different nuisance) are more alike than of two.
    module = generator.module
    z = torch.randn(4 * 6, 32, generator=torch.Generator().manual_seed(5))
    labels = torch.arange(4).repeat_interleave(6)
    with torch.no_grad():
        fakes = module(z, labels).flatten(1).double()
    fakes = (fakes - fakes.mean(1, keepdim=True)) / fakes.norm(dim=1, keepdim=True)
    cosine = (fakes @ fakes.T).numpy()
    groups = labels.numpy()
    same = (groups[:, None] == groups[None]) & ~np.eye(len(groups), dtype=bool)
    print(f"pixel cosine same label {cosine[same].mean():.3f}, different {cosine[groups[:, None] != groups[None]].mean():.3f}")
    assert cosine[same].mean() > cosine[groups[:, None] != groups[None]].mean() + 0.02


def test_embedding_mode_resume_continues_exactly(shapes16, tiny_config, tmp_path):
    from safetensors.torch import load_file

    def config(out, kimg):
        return tiny_config(shapes16, out, kimg=kimg, identity={"condition": "identity", "identity_dim": 8})

    train_config(config(tmp_path / "straight", 0.064))
    train_config(config(tmp_path / "split", 0.032))
    train_config(config(tmp_path / "split", 0.064), resume=True)
    a, b = (load_file(str(tmp_path / name / "export" / "model.safetensors")) for name in ("straight", "split"))
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def train_config(config, **options):
    from facegan.training.loop import train

    return train(config, progress=False, **options)
