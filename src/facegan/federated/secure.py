"""Secure aggregation: Flower's SecAgg+ (`SecAggPlusWorkflow` + `secaggplus_mod`), on Flower's legacy API.

In Flower 1.42 SecAgg+ runs only through the legacy strategy/workflow path, so this module wires
that path around the same pieces as the plain one: each round the ServerApp runs one
`SecAggPlusWorkflow` pass, in which every client masks `[w, w * params]` with pairwise and private
masks and the server only ever reconstructs their **sum**; the legacy FedAvg strategy then receives
that one aggregate in place of every client's parameters (`RecordingFedAvg` keeps what reached it,
so the tests can check that no single client's parameters ever did). Scalar metrics (images,
losses) still travel in the clear.

SecAgg+ clips every *parameter* to +-`clipping_range` before quantising it, which would silently
change a model whose weights grow past it: the range is set from the model (8x its largest
initial weight, at least 8) and each client refuses, with one line, to upload weights outside it.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Mapping

import numpy as np

from facegan.errors import FaceganError

logger = logging.getLogger("facegan.federated")

MIN_CLIPPING_RANGE = 8.0
CLIPPING_MARGIN = 8.0
QUANTIZATION_RANGE = 2**22


def clipping_range_for(arrays: Mapping[str, np.ndarray]) -> float:
    """SecAgg+'s parameter clipping range for this model: a wide margin over its largest weight."""
    largest = max(float(np.max(np.abs(value))) if np.size(value) else 0.0 for value in arrays.values())
    return float(max(MIN_CLIPPING_RANGE, CLIPPING_MARGIN * largest))


def flat_list(arrays: Mapping[str, np.ndarray], keys: list[str]) -> list[np.ndarray]:
    """The tensors in key order, scalars as shape (1,): SecAgg+'s dequantisation adds its offset in place, which
    a 0-d array does not take (its scalar gains came back ~9x too large in a 2-client round before this)."""
    return [np.atleast_1d(np.asarray(arrays[key], dtype=np.float32)) for key in keys]


def _recording_fedavg():
    from flwr.server.strategy import FedAvg

    class RecordingFedAvg(FedAvg):
        """Legacy FedAvg that keeps what SecAgg+ hands it: one aggregate per round, never a client's parameters."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.received: list[list[np.ndarray]] = []
            self.metrics: list[dict[str, float]] = []
            self.failures = 0

        def aggregate_fit(self, server_round, results, failures):
            from flwr.common import parameters_to_ndarrays

            self.received = [parameters_to_ndarrays(fit_res.parameters) for _, fit_res in results]
            self.metrics = [{key: float(value) for key, value in fit_res.metrics.items() if isinstance(value, (int, float))}
                            for _, fit_res in results]
            self.failures = len(failures)
            return super().aggregate_fit(server_round, results, failures)

    return RecordingFedAvg


def run_secure_rounds(grid: Any, server: Any, context: Any) -> None:
    """FedAvg rounds whose aggregation is SecAgg+; recorded by the FederatedServer like plain rounds."""
    import flwr.compat.common.recorddict_compat as compat
    from flwr.app import ConfigRecord
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.compat.app_utils import start_update_client_manager_thread
    from flwr.server.workflow import SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key

    from facegan.federated.server import wait_for_nodes

    settings = server.settings
    min_clients, timeout = int(settings["min_clients"]), float(settings["round_timeout"])
    if min_clients < 2:
        raise FaceganError("secure aggregation needs at least 2 clients per round (--min-clients 2 or more)")
    arrays, first = server.start()
    keys = list(arrays)
    clipping_range = float(settings.get("secagg_clipping_range") or clipping_range_for(arrays))
    settings["secagg_clipping_range"] = clipping_range
    strategy = _recording_fedavg()(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=2,
                                   min_evaluate_clients=0, min_available_clients=2, accept_failures=True,
                                   on_fit_config_fn=lambda rnd: {**server.round_config(rnd), "clipping-range": clipping_range})
    max_weight = float(max(1.0, 2 * float(settings["local_kimg"]) * 1000))
    workflow = SecAggPlusWorkflow(num_shares=1.0, reconstruction_threshold=0.5, max_weight=max_weight,
                                  clipping_range=clipping_range, quantization_range=QUANTIZATION_RANGE, timeout=timeout)
    legacy = LegacyContext(context, config=ServerConfig(num_rounds=server.rounds, round_timeout=timeout), strategy=strategy,
                           client_manager=SimpleClientManager())
    thread, stop, done = start_update_client_manager_thread(grid, legacy.client_manager)
    done.wait()
    try:
        config = ConfigRecord()
        config[Key.START_TIME] = time.time()
        legacy.state.config_records[MAIN_CONFIGS_RECORD] = config
        for server_round in range(first, server.rounds + 1):
            started = time.perf_counter()
            wait_for_nodes(grid, min_clients, timeout, server_round)
            deadline = time.monotonic() + timeout
            while legacy.client_manager.num_available() < min_clients and time.monotonic() < deadline:
                time.sleep(0.5)
            config[Key.CURRENT_ROUND] = server_round
            legacy.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
                ndarrays_to_parameters(flat_list(arrays, keys)), keep_input=True)
            strategy.received, strategy.metrics = [], []
            workflow(grid, legacy)
            if not strategy.received or len(strategy.metrics) < min_clients:
                raise FaceganError(f"round {server_round}: secure aggregation did not complete with --min-clients {min_clients} "
                                   f"within --round-timeout {timeout:g} s ({len(strategy.metrics)} client(s) took part)")
            record = legacy.state.array_records[MAIN_PARAMS_RECORD]
            aggregate = parameters_to_ndarrays(compat.arrayrecord_to_parameters(record, keep_input=True))
            if len(aggregate) != len(keys):
                raise FaceganError(f"round {server_round}: the secure aggregate holds {len(aggregate)} tensors, the model {len(keys)}")
            arrays = {key: np.asarray(value, dtype=np.float32).reshape(np.shape(arrays[key])) for key, value in zip(keys, aggregate)}
            server.finish_round(server_round, arrays, list(strategy.metrics), ["failed"] * strategy.failures,
                                time.perf_counter() - started)
        server.finish()
    except FaceganError as error:
        server.record_error(str(error))
        server.finish(stopped=str(error))
        raise
    finally:
        stop.set()
        thread.join(timeout=10)


def _numpy_client(context: Any, settings: Mapping[str, Any] | None):
    from flwr.client import NumPyClient

    from facegan.federated.apps import partition_of, settings_from

    class FaceganClient(NumPyClient):
        """The legacy client SecAgg+ needs: the same local round as the plain ClientApp."""

        def __init__(self) -> None:
            self.settings = settings_from(context, settings)
            self.partition = partition_of(context, self.settings)
            self.ctx = context

        def fit(self, parameters, config):
            from facegan.config import from_dict
            from facegan.federated.apps import local_round
            from facegan.federated.server import Networks
            from facegan.federated.weights import to_arrays
            from facegan.training.config import TrainConfig

            shapes = {key: np.shape(value) for key, value in to_arrays(Networks(from_dict(TrainConfig, dict(self.settings["train"])))).items()}
            keys = list(shapes)
            if len(keys) != len(parameters):
                raise FaceganError(f"the server sent {len(parameters)} tensors, this client's model has {len(keys)}")
            global_arrays = {key: np.reshape(value, shapes[key]) for key, value in zip(keys, parameters)}
            result = local_round(self.ctx, self.settings, self.partition, global_arrays, config)
            limit = float(config["clipping-range"])
            largest = max(float(np.max(np.abs(value))) for value in result.arrays.values())
            if largest > limit:
                raise FaceganError(f"client {self.partition}: a weight reached {largest:.3g}, outside SecAgg+'s clipping range "
                                   f"+-{limit:g} (it would be clipped silently); lower the learning rates")
            metrics = {**result.metrics, "max-abs-weight": largest}
            return flat_list(result.arrays, keys), int(result.metrics["num-examples"]), metrics

    return FaceganClient().to_client()


def make_secure_client_app(settings: Mapping[str, Any] | None = None) -> Any:
    """The legacy ClientApp with `secaggplus_mod`: what leaves the node is a masked vector."""
    from flwr.client import ClientApp
    from flwr.client.mod import secaggplus_mod

    return ClientApp(client_fn=lambda context: _numpy_client(context, settings), mods=[secaggplus_mod])


client_app_secure = make_secure_client_app()
