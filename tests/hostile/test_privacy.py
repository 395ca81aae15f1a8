"""Hostile inputs to private training: a DP config must never be trained without DP."""
import pytest
import torch

from facegan.errors import FaceganError
from tests.privacy.helpers import private_config


def test_training_loop_refuses_a_private_config_given_without_the_privacy_entry_point(faces16, tiny_config, tmp_path):
    """Training never imports privacy, so it cannot train privately itself: it refuses rather than train without DP."""
    from facegan.data.dataset import FaceDataset
    from facegan.training.distributed import DistributedContext
    from facegan.training.loop import make_trainer, train as train_without_privacy

    config = private_config(tiny_config, faces16, tmp_path / "run")
    with pytest.raises(FaceganError, match="asks for differential privacy; call facegan.train"):
        train_without_privacy(config, progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(FaceganError, match="asks for differential privacy"):
        make_trainer(config, FaceDataset.load(faces16), torch.device("cpu"), DistributedContext())
