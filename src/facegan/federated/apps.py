"""Flower's two apps around facegan: the ServerApp (FedAvg rounds, the run folder) and the ClientApps.

Settings reach both sides as `RUN/federated.json`: in a deployment the run config's `settings` key
names it (`flwr run` ships the app, not facegan's arguments), in a simulation the apps are built
with the settings themselves (`make_server_app(settings)`). Three ClientApps exist because Flower
fixes a ClientApp's mods when it is built: `client_app` (plain), `client_app_dp` (client-level DP:
Flower's `fixedclipping_mod` clips each update before it leaves the node) — the generated app's
pyproject names the one the run needs; SecAgg+ runs on the legacy API (`facegan.federated.secure`).
"""
from __future__ import annotations

import json
import logging
from typing import Any, Mapping

from facegan.errors import FaceganError

logger = logging.getLogger("facegan.federated")

STATE_RECORD = "facegan"


def settings_from(context: Any, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run's settings: the ones an in-process app was built with, or the file the run config names."""
    if settings is not None:
        return dict(settings)
    from facegan.federated.server import read_settings

    path = context.run_config.get("settings")
    if not isinstance(path, str) or not path:
        raise FaceganError("this Flower run has no 'settings' in its run config; start it with `facegan federated train`")
    return read_settings(path)


def partition_of(context: Any, settings: Mapping[str, Any]) -> int:
    value = context.node_config.get("partition-id")
    try:
        partition = int(value)
    except (TypeError, ValueError):
        raise FaceganError(f"this SuperNode has no integer partition-id in its node config (got {value!r})") from None
    if not 0 <= partition < len(settings["clients"]):
        raise FaceganError(f"partition-id {partition} is outside the {len(settings['clients'])} client datasets")
    return partition


def local_round(context: Any, settings: Mapping[str, Any], partition: int, global_arrays: dict[str, Any],
                config: Mapping[str, Any]) -> Any:
    """This node's round with the trainer state kept in `context.state` (both ClientApps, plain and SecAgg+)."""
    from flwr.app import ConfigRecord

    from facegan.federated.local import train_round

    kept = context.state.config_records.get(STATE_RECORD)
    state = kept["trainer"] if kept is not None and "trainer" in kept else None
    dp_steps = json.loads(str(config.get("dp-steps", "{}"))).get(str(partition), 0)
    result = train_round(settings["train"], settings["clients"][partition], partition, global_arrays,
                         float(config["local-kimg"]), float(config["total-kimg"]), settings["dp_level"], state, int(dp_steps))
    context.state.config_records[STATE_RECORD] = ConfigRecord({"trainer": result.state})
    return result


def client_train(message: Any, context: Any, settings: Mapping[str, Any] | None = None) -> Any:
    """One round on this node: global weights in, facegan's local training, update + metrics out, state kept."""
    from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict

    settings = settings_from(context, settings)
    partition = partition_of(context, settings)
    incoming = message.content["arrays"]
    config = message.content["config"]
    keys = list(incoming.keys())
    result = local_round(context, settings, partition, {key: incoming[key].numpy() for key in keys}, config)
    metrics = dict(result.metrics)
    metrics["dp-weight"] = 1.0
    metrics["server-round"] = float(config.get("server-round", 0))
    # Same keys in the same order as sent: Flower's clipping mod compares them.
    reply = ArrayRecord({key: Array(result.arrays[key]) for key in keys})
    return Message(RecordDict({"arrays": reply, "metrics": MetricRecord(metrics)}), reply_to=message)


def make_client_app(settings: Mapping[str, Any] | None = None, client_dp: bool = False) -> Any:
    from flwr.clientapp import ClientApp

    mods = []
    if client_dp:
        from flwr.clientapp.mod import fixedclipping_mod

        mods.append(fixedclipping_mod)
    app = ClientApp(mods=mods)

    @app.train()
    def train(message: Any, context: Any) -> Any:
        return client_train(message, context, settings)

    return app


def make_server_app(settings: Mapping[str, Any] | None = None) -> Any:
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        server_main(grid, context, settings)

    return app


def server_main(grid: Any, context: Any, settings: Mapping[str, Any] | None = None) -> None:
    from facegan.federated.server import FederatedServer, make_strategy, run_rounds

    settings = settings_from(context, settings)
    server = FederatedServer(settings)
    try:
        if settings.get("secure_aggregation"):
            from facegan.federated.secure import run_secure_rounds

            run_secure_rounds(grid, server, context)
        else:
            server.start()  # first: a resumed client-level DP run restores its accountant from the checkpoint
            strategy, epsilon = make_strategy(server)
            run_rounds(grid, server, strategy, epsilon)
    except FaceganError:
        raise
    except Exception as error:  # anything else: recorded as the one line the CLI shows, then Flower marks the run failed
        server.record_error(f"the server stopped: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
        raise


server_app = make_server_app()
client_app = make_client_app()
client_app_dp = make_client_app(client_dp=True)
