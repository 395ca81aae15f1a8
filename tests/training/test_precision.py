"""bf16 autocast agrees with fp32 on tiny models: a forward pass and one training step (R1 stays fp32)."""
import pytest
import torch

from facegan.models import build_discriminator, build_generator
from facegan.models.config import ModelConfig
from facegan.training.loop import use_bf16
from tests.privacy.helpers import build_trainer

# bf16 keeps 8 bits of mantissa (relative step 2^-8 ~ 0.4%); through ten layers the errors add up to about
# one percent of a value's scale, so these bounds are ~3x what the current models show.
MAX_IMAGE_ERROR, MEAN_IMAGE_ERROR, LOGIT_ERROR, LOSS_RTOL = 0.2, 0.015, 0.03, 1e-2


@pytest.mark.parametrize("architecture, resolution", [("stable", 16), ("dcgan", 32)])
def test_bf16_forward_agrees_with_fp32(architecture, resolution):
    torch.manual_seed(0)
    config = ModelConfig(architecture=architecture, resolution=resolution, channels=1, g_channels=16 if architecture == "stable" else 32,
                         d_channels=16, min_channels=8, z_dim=32)
    generator, discriminator = build_generator(config).eval(), build_discriminator(config).eval()
    z = torch.randn(8, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        images, logits = generator(z), discriminator(generator(z))
        with torch.autocast("cpu", dtype=torch.bfloat16):  # works on any CPU (emulated without avx512_bf16)
            images_bf16, logits_bf16 = generator(z), discriminator(images)
    assert images_bf16.dtype == logits_bf16.dtype == torch.bfloat16  # autocast did engage: the comparison means something
    error = (images - images_bf16.float()).abs()
    assert 0 < error.max() < MAX_IMAGE_ERROR and error.mean() < MEAN_IMAGE_ERROR, (error.max(), error.mean())
    torch.testing.assert_close(logits_bf16.float(), logits, atol=LOGIT_ERROR, rtol=0)


def test_one_training_step_under_bf16_matches_fp32(faces16, tiny_config, tmp_path):
    stats = {}
    for bf16 in (False, True):
        trainer = build_trainer(tiny_config(faces16, tmp_path / "run"))
        trainer.bf16 = bf16  # force either path, whatever this CPU would pick
        stats[bf16] = [trainer.step() for _ in range(2)]
    for fp32_step, bf16_step in zip(stats[False], stats[True]):
        for name in ("loss_d", "loss_g"):
            assert float(bf16_step[name]) == pytest.approx(float(fp32_step[name]), rel=LOSS_RTOL), name
        assert bf16_step["loss_d"] != fp32_step["loss_d"]  # bf16 really ran
    assert stats[True][0]["r1"] == stats[False][0]["r1"]  # R1 is computed in fp32 (same weights at step 0): bit-identical


@pytest.mark.skipif(not torch.cpu._is_avx512_bf16_supported(), reason="this CPU has no native bf16; the trainer stays in fp32")
def test_trainer_picks_bf16_on_a_native_bf16_cpu(faces16, tiny_config, tmp_path):
    assert build_trainer(tiny_config(faces16, tmp_path / "run")).bf16
    assert not build_trainer(tiny_config(faces16, tmp_path / "run", runtime={"amp": False})).bf16
    assert use_bf16(tiny_config(faces16, tmp_path / "run"), torch.device("cpu"))
