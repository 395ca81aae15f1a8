"""The default architecture: shapes, per-sample independence, spectral norm, DP-compatible options."""
import pytest
import torch

from facegan.models import ModelConfig, build_discriminator, build_generator


@pytest.mark.parametrize("resolution, channels", [(8, 1), (16, 3), (32, 1), (64, 3)])
def test_shapes(resolution, channels):
    config = ModelConfig(resolution=resolution, channels=channels, g_channels=16, d_channels=16, min_channels=8)
    generator, discriminator = build_generator(config), build_discriminator(config)
    images = generator(torch.randn(4, config.z_dim))
    assert images.shape == (4, channels, resolution, resolution)
    assert discriminator(images).shape == (4,)


def test_generator_output_does_not_depend_on_batch():
    torch.manual_seed(0)
    generator = build_generator(ModelConfig(resolution=16, channels=1, g_channels=16, min_channels=8)).eval()
    z = torch.randn(6, 128)
    with torch.no_grad():
        assert torch.allclose(generator(z)[2:3], generator(z[2:3]), atol=1e-5)


def test_discriminator_keeps_signal_at_init():
    """He init: logits must vary with the input, or D learns nothing for thousands of steps."""
    torch.manual_seed(0)
    discriminator = build_discriminator(ModelConfig(resolution=32, channels=1, spectral_norm=False))
    logits = discriminator(torch.rand(16, 1, 32, 32) * 2 - 1)
    assert logits.std() > 1e-2


def test_spectral_norm_bounds_every_layer():
    discriminator = build_discriminator(ModelConfig(resolution=16, channels=1, d_channels=16, min_channels=8))
    discriminator(torch.randn(4, 1, 16, 16))  # one power iteration in train mode
    wrapped = [m for m in discriminator.modules() if hasattr(m, "parametrizations")]
    assert len(wrapped) >= 5
    for module in wrapped:
        weight = module.weight.detach().flatten(1)
        assert torch.linalg.matrix_norm(weight, ord=2) < 1.5  # ~1 after power iteration


def test_group_norm_option_has_no_batch_coupling():
    config = ModelConfig(resolution=16, channels=1, d_channels=16, min_channels=8, spectral_norm=False, d_norm="group", minibatch_std=False)
    discriminator = build_discriminator(config).eval()
    x = torch.randn(5, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(discriminator(x)[1:2], discriminator(x[1:2]), atol=1e-5)


def test_dp_declaration_names_the_unsafe_setting_and_its_fix():
    """`stable` declares spectral norm and minibatch std DP-unsafe, and nothing else; `dcgan` is always safe."""
    from facegan.models import get_architecture

    declared = get_architecture("stable").dp_safe
    spectral = declared(ModelConfig(spectral_norm=True, minibatch_std=False))
    assert "spectral norm" in spectral.reason and spectral.fix == "--set model.spectral_norm=false"
    mixing = declared(ModelConfig(spectral_norm=False, minibatch_std=True))
    assert "minibatch-std" in mixing.reason and mixing.fix == "--set model.minibatch_std=false"
    assert declared(ModelConfig(spectral_norm=False, minibatch_std=False, d_norm="group")) is None
    assert get_architecture("dcgan").dp_safe(ModelConfig(architecture="dcgan", spectral_norm=True, minibatch_std=True)) is None


def test_architecture_registry_refuses_duplicates_and_unknown_names():
    from facegan.errors import FaceganError
    from facegan.models import always_dp_safe, available_architectures, get_architecture, register_architecture, unregister_architecture

    assert {"dcgan", "stable"} <= set(available_architectures())
    with pytest.raises(FaceganError, match="'stable' is already registered"):
        register_architecture("stable", generator=get_architecture("dcgan").generator, discriminator=get_architecture("dcgan").discriminator,
                              dp_safe=always_dp_safe)
    assert get_architecture("stable").generator.__name__ == "StableGenerator"  # the original is kept
    with pytest.raises(FaceganError, match="dp_safe must be a function"):
        register_architecture("toy", generator=lambda c: None, discriminator=lambda c: None, dp_safe=True)
    assert "toy" not in available_architectures()
    register_architecture("toy", generator=get_architecture("stable").generator, discriminator=get_architecture("stable").discriminator,
                          dp_safe=always_dp_safe)
    try:
        config = ModelConfig(architecture="toy", resolution=8, channels=1, g_channels=8, min_channels=8)
        assert type(build_generator(config)).__name__ == "StableGenerator"
    finally:
        unregister_architecture("toy")
    with pytest.raises(FaceganError, match="unknown model.architecture 'toy'.*known: dcgan, stable"):
        build_generator(ModelConfig(architecture="toy", resolution=8, channels=1))
