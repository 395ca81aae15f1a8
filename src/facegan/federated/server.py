"""The server's side of a federated run: the run folder, FedAvg rounds on Flower's Message API, resume.

`FederatedServer` owns what the server keeps (it never sees a client's images): the global networks,
one stats line per round (`stats.jsonl`: images trained, client losses weighted by images, bytes,
FD of the global generator every few rounds), one line per client per round
(`federated/clients.jsonl`), the global export after every round (`rounds/round-NNNN/`), the
resume state after every round (`checkpoints/state.pt`: a restarted server continues at the round
after the last completed one) and the run's `export/`, so `sample`, `eval`, `audit` and `report`
work on a federated run as on any other. `config.json` is the clients' recipe with `data` = the
partitions' source dataset (the union of the clients' images: the members an audit tests).

`run_rounds(grid, server)` is the round loop: it waits at most `round_timeout` seconds for
`min_clients` SuperNodes (Flower's strategies would wait forever), sends the global weights to
every connected node, aggregates whatever replied within `round_timeout` if that is at least
`min_clients`, and otherwise stops the run with one line.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from facegan.config import from_dict
from facegan.errors import FaceganError
from facegan.federated.weights import load_arrays, num_bytes, to_arrays
from facegan.models import build_discriminator, build_generator
from facegan.models.export import save_export
from facegan.run import Run
from facegan.training.checkpoint import save_state
from facegan.training.config import TrainConfig

logger = logging.getLogger("facegan.federated")

SETTINGS_FORMAT = "facegan-federated"
STATE_FORMAT = "facegan-federated-state"
ERROR_NAME = "server_error.txt"
DP_LEVELS = ("none", "sample", "client")
SETTINGS_KEYS = {"run_dir": str, "clients": list, "client_images": list, "rounds": int, "local_kimg": (int, float), "engine": str,
                 "secure_aggregation": bool, "dp_level": str, "min_clients": int, "round_timeout": (int, float), "train": dict,
                 "source": str, "source_hash": str, "eval_data": str}
# Per-client values averaged (weighted by images) into the round's stats line.
CLIENT_MEANS = ("loss_d", "loss_g", "logit_real", "logit_fake")


def read_settings(path: str | os.PathLike) -> dict[str, Any]:
    """A federated run's settings (`RUN/federated.json`), or one FaceganError."""
    path = Path(path)
    if path.is_dir():
        path = Run(path).federated_path
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise FaceganError(f"cannot read the federated settings {path} ({type(error).__name__})") from None
    if not isinstance(settings, dict) or settings.get("format") != SETTINGS_FORMAT:
        raise FaceganError(f"{path} is not a facegan federated settings file")
    missing = [key for key, kind in SETTINGS_KEYS.items() if not isinstance(settings.get(key), kind)]
    if missing:
        raise FaceganError(f"{path} is damaged ('{missing[0]}' is missing or of the wrong type); start a new run")
    return settings


class Networks:
    """The global G, D and G_ema (the shape every client trains), built from the recipe."""

    def __init__(self, train: TrainConfig) -> None:
        torch.manual_seed(train.seed)
        self.G = build_generator(train.model).eval()
        self.D = build_discriminator(train.model).eval()
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False) if train.ema.enabled else None

    @property
    def export_module(self) -> torch.nn.Module:
        return self.G_ema if self.G_ema is not None else self.G

    def state_dict(self) -> dict[str, Any]:
        state = {"G": self.G.state_dict(), "D": self.D.state_dict()}
        if self.G_ema is not None:
            state["G_ema"] = self.G_ema.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        try:
            self.G.load_state_dict(state["G"])
            self.D.load_state_dict(state["D"])
            if self.G_ema is not None:
                self.G_ema.load_state_dict(state["G_ema"])
        except (KeyError, RuntimeError) as error:
            raise FaceganError(f"the federated checkpoint does not match the run's recipe ({str(error).splitlines()[0]})") from None


class FederatedServer:
    """The global model and the run folder of one federated run."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        self.run = Run(settings["run_dir"])
        self.train = from_dict(TrainConfig, dict(settings["train"]))
        self.rounds = int(settings["rounds"])
        self.networks = Networks(self.train)
        self.completed = 0
        self.images = 0
        self.seconds = 0.0
        self.dp_steps: dict[str, int] = {}
        self.client_epsilon: dict[str, float] = {}
        self.client_delta: dict[str, float] = {}
        self.accountant_state: str = ""
        self.fd_extractor = None
        self.fd_real = None
        self._started: tuple[dict[str, np.ndarray], int] | None = None

    # ---- start / resume -------------------------------------------------------------------------
    def start(self) -> tuple[dict[str, np.ndarray], int]:
        """The global weights to send and the first round to run (after the last completed one); loads the checkpoint once."""
        if self._started is not None:
            return self._started
        if self.run.has_checkpoint():
            try:
                state = torch.load(self.run.state_path, map_location="cpu", weights_only=True)
            except Exception as error:
                raise FaceganError(f"cannot read the federated checkpoint {self.run.state_path} ({error}); delete it to start over") from None
            if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
                raise FaceganError(f"{self.run.state_path} is not a federated checkpoint; delete it to start over")
            self.networks.load_state_dict(state)
            self.completed = int(state["round"])
            self.images = int(state["images"])
            self.seconds = float(state["seconds"])
            self.dp_steps = {str(k): int(v) for k, v in state.get("dp_steps", {}).items()}
            self.client_epsilon = {str(k): float(v) for k, v in state.get("client_epsilon", {}).items()}
            self.client_delta = {str(k): float(v) for k, v in state.get("client_delta", {}).items()}
            self.accountant_state = str(state.get("accountant", ""))
            if state.get("secagg_clipping_range"):
                self.settings["secagg_clipping_range"] = float(state["secagg_clipping_range"])
            logger.info("resuming the federated run after round %d", self.completed)
        # Lines of rounds after the checkpoint (a server killed between its stats and its checkpoint) are dropped.
        self.run.truncate_rounds(self.completed)
        self._started = (to_arrays(self.networks), self.completed + 1)
        return self._started

    def round_config(self, server_round: int) -> dict[str, Any]:
        """What each client is told about the round (ConfigRecord values)."""
        return {
            "server-round": server_round,
            "local-kimg": float(self.settings["local_kimg"]),
            "total-kimg": float(self.settings["local_kimg"]) * self.rounds,
            "dp-steps": json.dumps(self.dp_steps),
        }

    # ---- one completed round --------------------------------------------------------------------
    def finish_round(self, server_round: int, arrays: Mapping[str, np.ndarray], replies: list[dict[str, float]],
                     failures: list[str], seconds: float, epsilon: float | None = None) -> dict[str, Any]:
        """Record a completed round: global weights, stats lines, the round's export, the resume state."""
        load_arrays(self.networks, arrays)
        images = sum(int(reply.get("num-examples", 0)) for reply in replies)
        self.images += images
        self.seconds += seconds
        self.completed = server_round
        for reply in replies:
            partition = str(int(reply.get("partition-id", -1)))
            if "dp-steps" in reply:
                self.dp_steps[partition] = max(self.dp_steps.get(partition, 0), int(reply["dp-steps"]))
            if "epsilon" in reply:
                self.client_epsilon[partition] = max(self.client_epsilon.get(partition, 0.0), float(reply["epsilon"]))
                self.client_delta[partition] = float(reply.get("delta", 0.0))
        payload = num_bytes(arrays)
        line: dict[str, Any] = {
            "round": server_round,
            "kimg": round(self.images / 1000, 3),
            "time_s": round(self.seconds, 2),
            "round_s": round(seconds, 2),
            "clients": len(replies),
            "failures": len(failures),
            "img_per_s": round(images / max(seconds, 1e-9), 1),
            "bytes_per_client": payload,
            "bytes_sent": 2 * payload * len(replies),
        }
        for name in CLIENT_MEANS:
            values = [(float(reply[name]), float(reply.get("num-examples", 0))) for reply in replies
                      if name in reply and np.isfinite(reply[name])]
            total = sum(weight for _, weight in values)
            if values and total > 0:
                line[name] = round(sum(value * weight for value, weight in values) / total, 5)
        if self.client_epsilon:
            line["epsilon_max"] = round(max(self.client_epsilon.values()), 4)
        if epsilon is not None:
            line["epsilon"] = round(float(epsilon), 4)
        fd_every = int(self.settings.get("fd_every", 0))
        if fd_every > 0 and (server_round % fd_every == 0 or server_round == self.rounds):
            line.update(self.measure_fd())
        self.run.append_stats(line)
        self.run.federated_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run.client_stats_path, "a") as handle:
            for reply in replies:
                handle.write(json.dumps({"round": server_round, **{k: v for k, v in reply.items()}}) + "\n")
        metadata = self.export_metadata()
        save_export(self.run.round_export_dir(server_round), self.networks.export_module, self.train.model, metadata)
        save_export(self.run.export_dir, self.networks.export_module, self.train.model, metadata)
        save_state(self.run.state_path, {
            "format": STATE_FORMAT, "round": server_round, "images": self.images, "seconds": self.seconds,
            **self.networks.state_dict(), "dp_steps": dict(self.dp_steps), "client_epsilon": dict(self.client_epsilon),
            "client_delta": dict(self.client_delta),
            "accountant": self.accountant_state, "secagg_clipping_range": float(self.settings.get("secagg_clipping_range") or 0.0),
        })
        logger.info("round %d/%d: %d client(s), %d image(s), %.1f s%s", server_round, self.rounds, len(replies), images, seconds,
                    f", FD {line['fd']:.3f}" if "fd" in line else "")
        return line

    def export_metadata(self) -> dict[str, Any]:
        settings = self.settings
        metadata: dict[str, Any] = {
            "dataset_hash": settings["source_hash"],
            "dataset": settings["source"],
            "preset": self.train.preset,
            "kimg": self.images / 1000,
            "ema": self.train.ema.enabled,
            "federated": {
                "rounds": self.completed, "of_rounds": self.rounds, "clients": len(settings["clients"]),
                "engine": settings["engine"], "secure_aggregation": bool(settings["secure_aggregation"]),
                "dp_level": settings["dp_level"],
            },
        }
        if settings["dp_level"] == "sample" and self.client_epsilon:
            metadata["differential_privacy"] = {
                "level": "sample (each client's discriminator, DP-SGD)",
                "epsilon": max(self.client_epsilon.values()),
                "delta": max(self.client_delta.values(), default=None),
                "per_client_delta": dict(sorted(self.client_delta.items())),
                "per_client_epsilon": dict(sorted(self.client_epsilon.items())),
                "accountant": self.train.privacy.accountant,
            }
        if settings["dp_level"] == "client" and self.accountant_state:
            metadata["differential_privacy"] = {
                "level": "client (user-level, Flower client-side fixed clipping)",
                **json.loads(self.accountant_state).get("facegan", {}),
            }
        return metadata

    def measure_fd(self) -> dict[str, float]:
        """FD/KID of the global generator against the evaluation data (the server's own copy, not the clients')."""
        from facegan.data.dataset import FaceDataset
        from facegan.metrics import compute_fd_kid, compute_real_features, get_extractor
        from facegan.models.export import latents_for_seeds, render

        num = int(self.settings.get("fd_num", 500))
        if self.fd_extractor is None:
            self.fd_extractor = get_extractor(self.settings.get("fd_features", "face"))
            dataset = FaceDataset.load(self.settings["eval_data"])
            self.fd_real = compute_real_features(dataset, self.fd_extractor, num).features
        module = self.networks.export_module
        values = compute_fd_kid(lambda seeds: render(module, latents_for_seeds(seeds, self.train.model.z_dim)), self.fd_real,
                                self.fd_extractor, num=num)
        return {name: round(float(value), 6) for name, value in values.items()}

    # ---- the end --------------------------------------------------------------------------------
    def finish(self, stopped: str | None = None) -> None:
        from facegan.plots import plot_training_curves

        plot_training_curves(self.run.stats_path, self.run.loss_curves_path)
        stats = self.run.read_stats()
        self.run.write_summary({
            "kimg": self.images / 1000, "rounds": self.completed, "of_rounds": self.rounds, "seconds": round(self.seconds, 2),
            "img_per_s": round(self.images / max(self.seconds, 1e-9), 1), "interrupted": False, "stopped_early": stopped,
            "last_stats": stats[-1] if stats else {}, "export": str(self.run.export_dir),
        })

    def record_error(self, message: str) -> None:
        """The one line the CLI shows when the server stops the run."""
        self.run.federated_dir.mkdir(parents=True, exist_ok=True)
        (self.run.federated_dir / ERROR_NAME).write_text(message.strip() + "\n", encoding="utf-8")


def wait_for_nodes(grid: Any, needed: int, timeout: float, server_round: int) -> list[int]:
    """Connected node ids once at least `needed` are there; one FaceganError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = list(grid.get_node_ids())
        if len(nodes) >= needed:
            return nodes
        if time.monotonic() > deadline:
            raise FaceganError(f"round {server_round}: only {len(nodes)} client(s) connected within --round-timeout {timeout:g} s "
                               f"(--min-clients {needed}); the run stops here and resumes with --resume")
        time.sleep(0.5)


def reply_metrics(message: Any) -> dict[str, float]:
    record = next(iter(message.content.metric_records.values()))
    return {key: float(value) for key, value in record.items() if isinstance(value, (int, float))}


def run_rounds(grid: Any, server: FederatedServer, strategy: Any,
               epsilon_of: Callable[[], float | None] = lambda: None) -> None:
    """FedAvg rounds on Flower's Message API with `strategy` (Flower's FedAvg, or its DP wrapper), recorded by `server`."""
    from flwr.app import Array, ArrayRecord, ConfigRecord

    settings = server.settings
    min_clients, timeout = int(settings["min_clients"]), float(settings["round_timeout"])
    arrays, first = server.start()
    try:
        for server_round in range(first, server.rounds + 1):
            started = time.perf_counter()
            wait_for_nodes(grid, min_clients, timeout, server_round)
            record = ArrayRecord({key: Array(np.asarray(value)) for key, value in arrays.items()})
            messages = list(strategy.configure_train(server_round, record, ConfigRecord(server.round_config(server_round)), grid))
            replies = list(grid.send_and_receive(messages, timeout=timeout))
            good = [reply for reply in replies if reply.has_content()]
            failures = [str(reply.error.reason).strip().splitlines()[-1] if reply.error.reason else f"error {reply.error.code}"
                        for reply in replies if reply.has_error()]
            missing = len(messages) - len(replies)
            if len(good) < min_clients:
                why = f"; a client said: {failures[0]}" if failures else ""
                raise FaceganError(f"round {server_round}: {len(good)} of {len(messages)} client(s) replied within --round-timeout "
                                   f"{timeout:g} s (--min-clients {min_clients}){why}")
            if failures or missing:
                logger.warning("round %d: %d client(s) failed or did not reply in time; aggregating the other %d",
                               server_round, len(failures) + missing, len(good))
            aggregated, _ = strategy.aggregate_train(server_round, good)
            if aggregated is None:
                raise FaceganError(f"round {server_round}: the strategy refused to aggregate the {len(good)} replies")
            arrays = {key: value.numpy() for key, value in aggregated.items()}
            for key, value in arrays.items():
                if not np.all(np.isfinite(value)):
                    raise FaceganError(f"round {server_round}: the aggregate of {key} is not finite; lower the learning rates")
            server.finish_round(server_round, arrays, [reply_metrics(reply) for reply in good],
                                failures + ["no reply"] * missing, time.perf_counter() - started, epsilon_of())
        server.finish()
    except FaceganError as error:
        server.record_error(str(error))
        server.finish(stopped=str(error))
        raise


def noise_for_client_dp(target_epsilon: float, delta: float, rounds: int) -> float:
    """The smallest noise multiplier whose `rounds` Gaussian releases (no sampling amplification) stay within epsilon."""
    from flwr.supercore.privacy_accounting import GaussianPrivacyEvent

    def epsilon(sigma: float) -> float:
        accountant = client_accountant(delta, 1)
        accountant.compose(GaussianPrivacyEvent(noise_multiplier=sigma, sample_size=1, population_size=1), rounds)
        return float(accountant.get_privacy_spent().epsilon)

    low, high = 0.05, 1.0
    while epsilon(high) > target_epsilon:
        low, high = high, high * 2
        if high > 1e4:
            raise FaceganError(f"--dp-epsilon {target_epsilon:g} is out of reach for {rounds} rounds")
    for _ in range(40):
        middle = (low + high) / 2
        if epsilon(middle) > target_epsilon:
            low = middle
        else:
            high = middle
    return high


def client_accountant(delta: float, population: int, max_epsilon: float | None = None):
    """Flower's RDP accountant for user-level DP: every client in every round (no amplification), add/remove one client."""
    from flwr.supercore.privacy_accounting import NeighboringRelation, PrivacyConfig, SamplingMethod
    from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

    return RdpAccountant(PrivacyConfig(target_delta=delta, population_size=population,
                                       neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                                       sampling_method=SamplingMethod.NO_AMPLIFICATION, max_epsilon=max_epsilon))


def make_strategy(server: FederatedServer) -> tuple[Any, Callable[[], float | None]]:
    """Flower's FedAvg (weighted by images), or for client-level DP its fixed-clipping wrapper with the RDP accountant."""
    from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg

    settings = server.settings
    min_clients = int(settings["min_clients"])
    if settings["dp_level"] != "client":
        # min 1 inside Flower (its node sampling waits without a timeout); run_rounds enforces --min-clients itself.
        return FedAvg(fraction_train=1.0, min_train_nodes=1, min_available_nodes=1, weighted_by_key="num-examples"), lambda: None
    clients = len(settings["clients"])
    accountant = client_accountant(float(settings["dp_delta_client"]), clients)
    if server.accountant_state:
        accountant.load_state_dict(json.loads(server.accountant_state)["flower"])
    # Equal weights (Flower's accounted wrapper requires them): each clipped update counts once.
    inner = FedAvg(fraction_train=1.0, min_train_nodes=1, min_available_nodes=1, weighted_by_key="dp-weight")
    strategy = DifferentialPrivacyClientSideFixedClipping(inner, float(settings["dp_noise_multiplier"]), float(settings["dp_clip"]),
                                                         clients, accountant=accountant)

    def epsilon() -> float:
        spent = accountant.get_privacy_spent()
        server.accountant_state = json.dumps({"flower": accountant.state_dict(), "facegan": {
            "epsilon": float(spent.epsilon), "delta": float(spent.delta), "releases": int(spent.num_releases),
            "noise_multiplier": float(settings["dp_noise_multiplier"]), "clipping_norm": float(settings["dp_clip"]),
            "clients": clients, "accountant": "flwr RdpAccountant (dp-accounting RDP), no amplification"}})
        return float(spent.epsilon)

    return strategy, epsilon
