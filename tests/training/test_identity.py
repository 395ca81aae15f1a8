"""Split-latent identity training (`--condition identity` on unlabelled faces): loss, augmentation, run, resume."""
import json

import numpy as np
import pytest
import torch

from facegan.errors import FaceganError
from facegan.training.identity import augment_for_recogniser, contrastive_hinge, pair_masks
from facegan.training.loop import train

IDENTITY = {"condition": "identity", "identity_dim": 16, "every": 1, "identities": 4, "per_identity": 3, "lr": 0.003}


def test_contrastive_hinge_on_known_distances():
    # Two identities, two images each; distances: same pairs 0.3 and 0.8, different pairs all 1.0 or 0.55.
    descriptors = torch.tensor([[0.0, 0.0], [0.3, 0.0], [0.0, 1.0], [0.0, 1.8]])
    groups = torch.tensor([0, 0, 1, 1])
    loss, same, different = contrastive_hinge(descriptors, groups, threshold=0.6, margin=0.1)
    # same: d=0.3 (under 0.5: 0), d=0.8 (0.3 over); different: 1.0, 1.8, 1.044, 1.825 (all beyond 0.7: 0)
    assert loss.item() == pytest.approx(0.3 / 2, abs=1e-5)
    assert same.item() == pytest.approx((0.3 + 0.8) / 2, abs=1e-5)
    far = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.5, 0.0], [0.5, 0.0]])
    loss, _, different = contrastive_hinge(far, groups, threshold=0.6, margin=0.1)
    assert different.item() == pytest.approx(0.5, abs=1e-4) and loss.item() == pytest.approx(0.2, abs=1e-4)


def test_pair_masks_count_each_pair_once():
    same, different = pair_masks(torch.tensor([0, 0, 0, 1, 1]))
    assert int(same.sum()) == 3 + 1 and int(different.sum()) == 6


def test_recogniser_augmentation_is_random_seeded_and_differentiable():
    images = (torch.rand(6, 3, 16, 16) * 2 - 1).requires_grad_(True)
    first = augment_for_recogniser(images, torch.Generator().manual_seed(1))
    again = augment_for_recogniser(images, torch.Generator().manual_seed(1))
    other = augment_for_recogniser(images, torch.Generator().manual_seed(2))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == images.shape and first.min() >= -1 and first.max() <= 1
    assert (first - images).abs().mean() > 0.02  # it changes what the recogniser sees
    first.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def _identity_config(tiny_config, data, out, kimg=0.128, **identity):
    return tiny_config(data, out, kimg=kimg, identity={**IDENTITY, **identity})


def _descriptor_gaps(generator, identity_dim, identities=16, per_identity=4):
    """Mean same- and different-identity distances, by dlib (used in training) and by normalised-pixel cosine (not used).

    Images come from z = [identity part, nuisance part] as `Generator.z_for_identity` draws them, so a
    plain generator can be measured the same way (its identity_dim is only a way of reading its z).
    """
    from facegan.faces.dlib_resnet import DlibResNetRecogniser
    from facegan.models.export import Generator

    reader = Generator(generator.module, generator.config, {"identity": {"identity_dim": identity_dim}})
    images = np.concatenate([reader.sample_identity(100 + i, range(10 * i, 10 * i + per_identity)) for i in range(identities)])
    groups = np.repeat(np.arange(identities), per_identity)
    same = (groups[:, None] == groups[None]) & ~np.eye(len(groups), dtype=bool)
    different = groups[:, None] != groups[None]
    embedded = DlibResNetRecogniser().embed(images)
    dlib = np.linalg.norm(embedded[:, None] - embedded[None], axis=-1)
    pixels = images.reshape(len(images), -1).astype(np.float64)
    pixels -= pixels.mean(axis=1, keepdims=True)
    pixels /= np.linalg.norm(pixels, axis=1, keepdims=True)
    cosine = pixels @ pixels.T
    return {"dlib_gap": dlib[different].mean() - dlib[same].mean(), "cosine_gap": cosine[same].mean() - cosine[different].mean(),
            "dlib_same": dlib[same].mean(), "dlib_different": dlib[different].mean()}


def test_split_latent_training_makes_identity_codes_consistent(faces16, tiny_config, tmp_path):
    """Against the same GAN trained without the identity loss (same seeds): the identity codes separate more.

    A plain generator already gives images of one identity code some likeness (they share 16 of z's
    128 entries); the identity loss must widen that gap, in dlib's space and in a pixel measure it never saw.
    """
    import facegan

    identity_run, plain_run = tmp_path / "identity", tmp_path / "plain"
    # 80 steps at identity lr 0.01. At 40 steps the default 0.003 moved dlib's gap by less than the run-to-run noise of
    # float kernels on one CPU, and 0.03 (which fixed that) collapsed the codes on another (gap 0.0075 vs 0.0075 plain);
    # on the latter, 80 steps at 0.01 gave 0.0089 vs 0.0030 (cosine 0.067 vs 0.035), at 0.003 the same.
    result = train(_identity_config(tiny_config, faces16, identity_run, kimg=0.64, lr=0.01), progress=False)
    train(tiny_config(faces16, plain_run, kimg=0.64), progress=False)
    assert {"id_loss", "id_same", "id_diff"} <= set(result.last_stats)
    generator = facegan.load_generator(identity_run)
    assert generator.identity_aware and generator.identity_dim == 16
    trained = _descriptor_gaps(generator, 16)
    plain = _descriptor_gaps(facegan.load_generator(plain_run), 16)
    print(f"identity loss: {trained}; plain: {plain}")
    assert trained["dlib_same"] < trained["dlib_different"]
    assert trained["dlib_gap"] > plain["dlib_gap"] + 0.003
    assert trained["cosine_gap"] > plain["cosine_gap"] + 0.01  # a measure the training never used agrees


def test_identity_section_is_saved_in_run_config_and_export(faces16, tiny_config, tmp_path):
    run = tmp_path / "run"
    train(_identity_config(tiny_config, faces16, run, kimg=0.016), progress=False)
    saved = json.loads((run / "config.json").read_text())
    assert saved["identity"]["condition"] == "identity" and saved["identity"]["mode"] == "split-latent"  # auto resolved
    exported = json.loads((run / "export" / "config.json").read_text())
    assert exported["identity"]["mode"] == "split-latent" and exported["identity"]["identity_dim"] == 16
    assert exported["identity"]["match_threshold"] == 0.6


def test_split_latent_resume_continues_exactly(faces16, tiny_config, tmp_path):
    from safetensors.torch import load_file

    straight, split = tmp_path / "straight", tmp_path / "split"
    train(_identity_config(tiny_config, faces16, straight, kimg=0.064), progress=False)
    train(_identity_config(tiny_config, faces16, split, kimg=0.032), progress=False)
    train(_identity_config(tiny_config, faces16, split, kimg=0.064), resume=True, progress=False)
    a, b = (load_file(str(path / "export" / "model.safetensors")) for path in (straight, split))
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def test_resume_refuses_a_changed_identity_setting(faces16, tiny_config, tmp_path):
    run = tmp_path / "run"
    train(_identity_config(tiny_config, faces16, run, kimg=0.016), progress=False)
    with pytest.raises(FaceganError, match="identity.weight"):
        train(_identity_config(tiny_config, faces16, run, kimg=0.032, weight=5.0), resume=True, progress=False)


def test_identity_update_is_a_descent_step_on_a_fixed_batch():
    """The gradient the identity loss sends to G is right: on one fixed batch a few updates separate the codes."""
    from facegan.faces.dlib_resnet import DlibResNetRecogniser
    from facegan.models import build_generator
    from facegan.models.config import ModelConfig

    torch.manual_seed(0)
    G = build_generator(ModelConfig(resolution=16, channels=1, z_dim=32, g_channels=16, min_channels=8))
    recogniser = DlibResNetRecogniser()
    groups = torch.arange(3).repeat_interleave(2)
    rng = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(3, 8, generator=rng)[groups], torch.randn(6, 24, generator=rng)], dim=1)
    optimizer = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.0, 0.99))
    losses = []
    for _ in range(8):
        loss, _, _ = contrastive_hinge(recogniser.embed_tensor(G(z)), groups, 0.6, 0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_plain_generator_has_no_identity_api(faces16, tiny_config, tmp_path):
    import facegan

    train(tiny_config(faces16, tmp_path / "plain", kimg=0.008), progress=False)
    generator = facegan.load_generator(tmp_path / "plain")
    assert not generator.identity_aware and generator.identity_dim == 0
    with pytest.raises(FaceganError, match="--condition identity"):
        generator.sample_identity(0, [1, 2])


def test_sample_identity_is_deterministic_and_varies_with_nuisance(faces16, tiny_config, tmp_path):
    import facegan

    train(_identity_config(tiny_config, faces16, tmp_path / "run", kimg=0.016), progress=False)
    generator = facegan.load_generator(tmp_path / "run")
    first = generator.sample_identity(7, [1, 2, 3])
    assert first.shape == (3, 16, 16, 1) and first.dtype == np.uint8
    assert np.array_equal(first, generator.sample_identity(7, [1, 2, 3]))
    assert not np.array_equal(first[0], first[1])  # other nuisance, other image
    z = generator.z_for_identity(7, [1, 2])
    assert torch.equal(z[0, :16], z[1, :16]) and not torch.equal(z[0, 16:], z[1, 16:])
    assert not torch.equal(generator.z_for_identity(8, [1])[0, :16], z[0, :16])
    assert generator.sample_identity(7, [1, 2, 3], truncation=0.5).shape == first.shape


def test_cli_condition_identity_trains_split_latent_and_with_dp(faces16, tmp_path, capsys):
    """`facegan train --condition identity` on unlabelled faces; with --dp-* too (the identity loss never sees real data)."""
    from facegan.cli.main import main

    tiny = ["--batch-size", "8", "--kimg", "0.016", "--no-progress", "--set", "model.g_channels=16", "--set", "model.d_channels=16",
            "--set", "model.min_channels=8", "--set", "runtime.tensorboard=false", "--set", "runtime.num_threads=1",
            "--set", "identity.identities=2", "--set", "identity.per_identity=2"]
    for name, extra in (("plain", []), ("private", ["--dp-epsilon", "10"])):
        assert main(["train", "--data", str(faces16), "--out", str(tmp_path / name), "--condition", "identity", *extra, *tiny]) == 0
        exported = json.loads((tmp_path / name / "export" / "config.json").read_text())
        assert exported["identity"]["mode"] == "split-latent"
        assert ("dp" in exported) == bool(extra)
