"""A client's round (facegan's trainer, state kept between rounds) and the two DP levels' epsilon, recomputed independently."""
from __future__ import annotations

import numpy as np
import pytest

from facegan.data.partition import load_partitions
from facegan.federated.local import train_round
from facegan.federated.server import FederatedServer, noise_for_client_dp


@pytest.fixture
def start(clients2, tiny_settings, tmp_path):
    def make(**options):
        settings = tiny_settings(clients2, tmp_path / "run", **options)
        arrays, _ = FederatedServer(settings).start()
        return settings, arrays

    return make


def test_a_round_is_deterministic_and_its_state_carries_the_optimizers(start, clients2):
    settings, arrays = start()
    data = str(load_partitions(clients2)[0])
    first = train_round(settings["train"], data, 0, arrays, 0.016, 0.032)
    again = train_round(settings["train"], data, 0, arrays, 0.016, 0.032)
    assert first.metrics["num-examples"] == 16 and first.metrics["steps"] == 2
    for key in first.arrays:
        np.testing.assert_array_equal(first.arrays[key], again.arrays[key])
    assert any(not np.array_equal(first.arrays[key], arrays[key]) for key in arrays)  # it trained
    carried = train_round(settings["train"], data, 0, first.arrays, 0.016, 0.032, state=first.state)
    fresh = train_round(settings["train"], data, 0, first.arrays, 0.016, 0.032)
    assert carried.metrics["steps"] == 4 and fresh.metrics["steps"] == 2
    assert any(not np.array_equal(carried.arrays[key], fresh.arrays[key]) for key in arrays)  # Adam moments and data order kept


def test_clients_train_differently_from_the_same_global_weights(start, clients2):
    settings, arrays = start()
    paths = [str(path) for path in load_partitions(clients2)]
    a = train_round(settings["train"], paths[0], 0, arrays, 0.016, 0.032)
    b = train_round(settings["train"], paths[0], 1, arrays, 0.016, 0.032)  # same images, another client's seed
    assert any(not np.array_equal(a.arrays[key], b.arrays[key]) for key in arrays)


def test_sample_level_dp_epsilon_matches_opacus_and_survives_a_lost_node_state(start, clients2):
    from opacus.accountants import PRVAccountant

    settings, arrays = start(dp_epsilon=8.0)
    assert settings["dp_level"] == "sample" and settings["train"]["preset"] == "dp"
    data = str(load_partitions(clients2)[0])
    one = train_round(settings["train"], data, 0, arrays, 0.016, 0.032, dp_level="sample")
    m = one.metrics
    assert m["dp-steps"] == m["steps"] > 0
    reference = PRVAccountant()
    reference.history = [(m["noise-multiplier"], m["sample-rate"], int(m["dp-steps"]))]
    assert m["epsilon"] == pytest.approx(reference.get_epsilon(delta=m["delta"]), rel=1e-6)
    assert m["sample-rate"] == pytest.approx(8 / 50) and m["delta"] == pytest.approx(1 / (10 * 50))
    # Only post-processing of the DP discriminator leaves the node: nothing computed on real faces.
    assert "loss_d" not in m and "logit_real" not in m and "dataset-images" not in m and "loss_g" in m
    # The node lost its state (a restart): the server's step count is charged before it trains again.
    two = train_round(settings["train"], data, 0, one.arrays, 0.016, 0.032, dp_level="sample", dp_steps_done=int(m["dp-steps"]))
    assert two.metrics["dp-steps"] == 2 * m["dp-steps"]
    reference.history = [(m["noise-multiplier"], m["sample-rate"], int(two.metrics["dp-steps"]))]
    assert two.metrics["epsilon"] == pytest.approx(reference.get_epsilon(delta=m["delta"]), rel=1e-6)
    assert two.metrics["epsilon"] <= 8.0 + 1e-6


@pytest.mark.parametrize("epsilon,rounds", [(1.0, 5), (10.0, 20), (3.0, 1)])
def test_client_level_noise_recomputed_with_dp_accounting_and_opacus(epsilon, rounds):
    import dp_accounting
    from opacus.accountants.analysis import rdp as opacus_rdp

    delta = 1e-3
    sigma = noise_for_client_dp(epsilon, delta, rounds)
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(sigma), rounds)
    recomputed = accountant.get_epsilon(delta)
    assert recomputed <= epsilon * (1 + 1e-6)
    assert recomputed >= epsilon * 0.99  # the smallest noise that fits, not a safe overestimate
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 256))
    rdp = opacus_rdp.compute_rdp(q=1.0, noise_multiplier=sigma, steps=rounds, orders=orders)
    opacus_epsilon, _ = opacus_rdp.get_privacy_spent(orders=orders, rdp=rdp, delta=delta)
    assert opacus_epsilon == pytest.approx(epsilon, rel=0.05)


def test_sample_level_dp_rounds_that_end_mid_batch_stay_within_budget(start, clients2):
    """20 images a round at batch 8 is 3 whole steps: the noise is derived for rounds x 3 steps, every round trains."""
    settings, arrays = start(dp_epsilon=4.0)
    data = str(load_partitions(clients2)[0])
    state, results = None, []
    for _ in range(3):
        result = train_round(settings["train"], data, 0, arrays, 0.020, 0.060, dp_level="sample", state=state)
        state, arrays = result.state, result.arrays
        results.append(result.metrics)
    assert [r["dp-steps"] for r in results] == [3, 6, 9] and not any(r["stopped-early"] for r in results)
    assert results[-1]["epsilon"] <= 4.0 + 1e-6 and results[-1]["epsilon"] > 0.9 * 4.0
