"""The loss registry: each loss's parts add up to its discriminator loss; duplicates are refused."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facegan.errors import FaceganError
from facegan.training.losses import (
    AdversarialLoss,
    available_losses,
    discriminator_loss,
    generator_loss,
    get_loss,
    register_loss,
    unregister_loss,
)

logits = st.lists(st.floats(-30, 30, allow_nan=False, width=32), min_size=1, max_size=16).map(torch.tensor)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(kind=st.sampled_from(sorted(available_losses())), real=logits, fake=logits)
def test_per_sample_real_losses_average_to_the_real_part_of_the_discriminator_loss(kind, real, fake):
    """DP clips each real face's loss gradient: those per-face losses must be exactly what plain training averages."""
    loss = get_loss(kind)
    per_sample = loss.real_sample_losses(real)
    assert per_sample.shape == real.shape
    total = discriminator_loss(kind, real, fake)
    assert (total - loss.fake_batch_loss(fake)).item() == pytest.approx(per_sample.mean().item(), rel=1e-5, abs=1e-5)
    # One face's loss depends on that face alone (no batch coupling).
    assert loss.real_sample_losses(real[:1]).item() == pytest.approx(per_sample[0].item(), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("kind, real, fake, expected_d, expected_g", [
    # softplus(-1) + softplus(-1) = 2 log(1 + e^-1); G: softplus(1).
    ("logistic", 1.0, -1.0, 2 * 0.31326168751822286, 1.3132616875182228),
    ("hinge", 0.5, -0.25, 0.5 + 0.75, 0.25),
])
def test_registered_losses_keep_their_formulas(kind, real, fake, expected_d, expected_g):
    d = discriminator_loss(kind, torch.tensor([real]), torch.tensor([fake]))
    assert d.item() == pytest.approx(expected_d, rel=1e-6)
    assert generator_loss(kind, torch.tensor([fake])).item() == pytest.approx(expected_g, rel=1e-6)


def test_registry_refuses_a_duplicate_name_and_names_the_known_ones():
    original = get_loss("hinge")
    with pytest.raises(FaceganError, match="'hinge' is already registered"):
        register_loss(AdversarialLoss("hinge", torch.abs, torch.abs, lambda fake: fake.mean()))
    assert get_loss("hinge") is original
    with pytest.raises(FaceganError, match="unknown loss.kind 'wasserstein' .known: logistic, hinge"):
        get_loss("wasserstein")
    register_loss(AdversarialLoss("wasserstein", lambda real: -real, lambda fake: fake, lambda fake: -fake.mean()))
    try:
        assert discriminator_loss("wasserstein", torch.tensor([2.0]), torch.tensor([1.0])).item() == -1.0
    finally:
        unregister_loss("wasserstein")
    assert "wasserstein" not in available_losses()


def test_no_training_module_imports_privacy():
    """Layers: privacy composes training, so training must not import privacy (not even lazily)."""
    import ast
    from pathlib import Path

    import facegan.training

    offenders = []
    for path in Path(facegan.training.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            offenders += [f"{path.name}: {name}" for name in names if name == "facegan.privacy" or name.startswith("facegan.privacy.")]
    assert offenders == []
