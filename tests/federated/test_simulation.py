"""Flower's simulation engine (Ray): plain FedAvg, SecAgg+ (the server sees only the sum) and client-level DP."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facegan.data.partition import load_partitions
from facegan.federated import secure
from facegan.federated.engine import federated_train
from facegan.federated.local import train_round
from facegan.federated.server import FederatedServer
from facegan.run import Run

# Tests that start many processes and pick free ports (Flower, Ray, torchrun/gloo) run on one xdist worker, one
# at a time (`--dist loadgroup` in `make test`): concurrently, one's free port could be taken by the other's.
pytestmark = pytest.mark.xdist_group("processes")


def test_secure_aggregation_hands_the_strategy_only_the_sum(clients2, tiny_settings, tmp_path, monkeypatch):
    seen = []
    original = secure._recording_fedavg

    def recording():
        cls = original()

        class Spy(cls):
            def aggregate_fit(self, server_round, results, failures):
                out = super().aggregate_fit(server_round, results, failures)
                seen.append([list(params) for params in self.received])
                return out

        return Spy

    monkeypatch.setattr(secure, "_recording_fedavg", recording)
    settings = tiny_settings(clients2, tmp_path / "secure", rounds=1, engine="simulation", secure_aggregation=True)
    summary = federated_train(settings)
    assert summary["rounds"] == 1 and len(seen) == 1

    # The same round without SecAgg+ (plain FedAvg on the same engine): the reference aggregate.
    federated_train(tiny_settings(clients2, tmp_path / "plain", rounds=1, engine="simulation"))
    plain = torch.load(Run(tmp_path / "plain").state_path, weights_only=True)
    arrays, _ = FederatedServer(settings).start()
    keys = list(arrays)
    expected = {key: plain[key.split(".", 1)[0]][key.split(".", 1)[1]].numpy() for key in keys}

    received = seen[0]
    assert len(received) == 2
    for params in received[1:]:  # every "result" the strategy got is the same vector: the unmasked sum
        for a, b in zip(received[0], params):
            np.testing.assert_array_equal(a, b)
    clipping = secure.clipping_range_for(arrays)
    step = 2 * clipping / secure.QUANTIZATION_RANGE  # one quantisation level
    worst = max(float(np.max(np.abs(value.reshape(np.shape(expected[key])) - expected[key]))) for key, value in zip(keys, received[0]))
    assert worst <= 20 * step, (worst, step)
    # ... and never one client's own parameters: each client's round-1 update (recomputed here) is far from it.
    for index, path in enumerate(load_partitions(clients2)):
        own = train_round(settings["train"], str(path), index, arrays, settings["local_kimg"], settings["local_kimg"])
        distance = max(float(np.max(np.abs(value.reshape(own.arrays[key].shape) - own.arrays[key]))) for key, value in zip(keys, received[0]))
        assert distance > 10 * max(worst, step)
    state = torch.load(Run(tmp_path / "secure").state_path, weights_only=True)
    for key in keys:
        prefix, name = key.split(".", 1)
        np.testing.assert_allclose(state[prefix][name].numpy(), expected[key], atol=20 * step)


def test_client_level_dp_reports_flowers_epsilon_and_the_run_is_a_run(clients2, tiny_settings, tmp_path):
    import dp_accounting

    settings = tiny_settings(clients2, tmp_path / "user", rounds=2, engine="simulation", dp_epsilon=5.0, dp_level="client",
                             dp_clip=0.5)
    federated_train(settings)
    run = Run(tmp_path / "user")
    stats = run.read_stats()
    assert [row["round"] for row in stats] == [1, 2]
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(settings["dp_noise_multiplier"]), 2)
    assert stats[-1]["epsilon"] == pytest.approx(accountant.get_epsilon(settings["dp_delta_client"]), rel=1e-4)
    assert stats[-1]["epsilon"] <= 5.0 + 1e-6
    export = json.loads((run.export_dir / "config.json").read_text())
    assert export["differential_privacy"]["level"].startswith("client")
    assert export["differential_privacy"]["epsilon"] == pytest.approx(stats[-1]["epsilon"], rel=1e-6)
    assert (run.round_export_dir(1) / "model.safetensors").is_file() and (run.round_export_dir(2) / "model.safetensors").is_file()
    clients = [json.loads(line) for line in run.client_stats_path.read_text().splitlines()]
    assert sorted((c["round"], int(c["partition-id"])) for c in clients) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    # A resumed run restores Flower's accountant: one more round composes onto the two already spent.
    from facegan.config import save_json

    save_json({**json.loads(run.federated_path.read_text()), "rounds": 3}, run.federated_path)
    federated_train(resume_dir=run.path)
    accountant.compose(dp_accounting.GaussianDpEvent(settings["dp_noise_multiplier"]), 1)
    assert run.read_stats()[-1]["round"] == 3
    assert run.read_stats()[-1]["epsilon"] == pytest.approx(accountant.get_epsilon(settings["dp_delta_client"]), rel=1e-4)
    # The report card shows the federation next to the usual GAN sections.
    from facegan.report.card import build_report

    page = build_report(run.path).read_text()
    assert "Federated training over 2 clients: 3 rounds completed of 3." in page
    assert "Client-level privacy spent" in page and "Training curves" in page
