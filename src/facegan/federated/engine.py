"""`facegan federated train` as a library call: settings, the run folder, and the two Flower engines.

`federated_train(...)` checks everything it can before any process starts (partitions, recipe, DP
budget, options), writes `RUN/federated.json` and `config.json`, then runs the rounds with

- **deployment** (default): a SuperLink and one SuperNode per client as real processes
  (`facegan.federated.processes`), the Flower app generated in `RUN/federated/app`, a private
  `FLWR_HOME` in `RUN/federated/home`; the run is submitted with `flwr run`, followed by polling
  its status, and every process is stopped at the end, on Ctrl-C and on failure;
- **simulation**: Flower's simulation engine (Ray) in this process, one virtual SuperNode per client.

A run stopped for any reason resumes with `resume=True` at the round after the last completed one.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

from facegan.errors import FaceganError
from facegan.run import Run

logger = logging.getLogger("facegan.federated")

ENGINES = ("deployment", "simulation")
APP_PACKAGE = "facegan_federated_app"
ProgressCallback = Callable[[int, int], None]


def _finite_positive(name: str, value: float, upper: float) -> float:
    from facegan.config import check_range

    check_range(name, value, 0, upper, min_open=True)
    return float(value)


def build_settings(partitions: str | os.PathLike, out: str | os.PathLike, rounds: int, local_kimg: float, *,
                   preset: str | None = None, overrides: list[str] | None = None, engine: str = "deployment",
                   secure_aggregation: bool = False, dp_epsilon: float = 0.0, dp_level: str = "sample", dp_delta: float = 0.0,
                   dp_clip: float = 1.0, min_clients: int | None = None, round_timeout: float = 600.0, fd_every: int = 0,
                   fd_num: int = 200, fd_features: str = "face", eval_data: str | None = None, batch_size: int | None = None,
                   seed: int | None = None) -> dict[str, Any]:
    """Every setting of the run, checked; nothing is written."""
    from facegan.config import to_dict
    from facegan.data.dataset import FaceDataset
    from facegan.data.partition import PARTITIONS_NAME, load_partitions
    from facegan.federated.server import DP_LEVELS, SETTINGS_FORMAT
    from facegan.data.dataset import absolute_path
    from facegan.training.config import resolve_config
    from facegan.training.loop import _prepare_model_config

    if engine not in ENGINES:
        raise FaceganError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if not isinstance(rounds, int) or not 1 <= rounds <= 100_000:
        raise FaceganError(f"--rounds must be a whole number from 1 to 100000, got {rounds}")
    local_kimg = _finite_positive("--local-kimg", local_kimg, 1e5)
    round_timeout = _finite_positive("--round-timeout", round_timeout, 7 * 24 * 3600)
    if not isinstance(fd_every, int) or fd_every < 0:
        raise FaceganError(f"--fd-every must be a whole number of rounds (0 = never), got {fd_every}")
    if not isinstance(fd_num, int) or not 2 <= fd_num <= 100_000:
        raise FaceganError(f"--fd-num must be a whole number from 2 to 100000, got {fd_num}")
    from facegan.config import check_range

    dp_epsilon = float(dp_epsilon or 0.0)
    check_range("--dp-epsilon", dp_epsilon, 0, 1e6, hint="0 = no DP")
    level = dp_level if dp_epsilon > 0 else "none"
    if level not in DP_LEVELS[1:] and dp_epsilon > 0:
        raise FaceganError(f"--dp-level must be sample or client, got {dp_level!r}")
    check_range("--dp-delta", dp_delta, 0, 1, max_open=True, hint="0 picks the default")
    if level == "client":
        dp_clip = _finite_positive("--dp-clip", dp_clip, 1e6)
    if level != "none" and secure_aggregation:
        raise FaceganError("--secure-aggregation with --dp-epsilon is not supported yet; run them separately")

    clients = [str(path) for path in load_partitions(partitions)]
    if len(set(clients)) != len(clients):
        raise FaceganError(f"{partitions}: the manifest lists a client dataset twice; partition again")
    root = absolute_path(partitions)
    manifest = json.loads((root / PARTITIONS_NAME).read_text(encoding="utf-8"))
    datasets = [FaceDataset.load(path) for path in clients]
    shapes = {(dataset.resolution, dataset.channels) for dataset in datasets}
    if len(shapes) > 1:
        raise FaceganError(f"the client datasets differ in size or channels ({sorted(shapes)}); partition one dataset")
    if min_clients is None:
        min_clients = len(clients)
    if not isinstance(min_clients, int) or not 1 <= min_clients <= len(clients):
        raise FaceganError(f"--min-clients must be from 1 to the {len(clients)} clients, got {min_clients}")
    if secure_aggregation and min_clients < 2:
        raise FaceganError("secure aggregation needs at least 2 clients per round (--min-clients 2 or more, and 2+ partitions)")
    if level == "client" and min_clients != len(clients):
        raise FaceganError("client-level DP is accounted for every client in every round: --min-clients must be all "
                           f"{len(clients)} clients (a missing client stops the run)")

    chosen = preset or ("dp" if level == "sample" else "default")
    updates: dict[str, Any] = {"data": clients[0], "out": str(out), "kimg": rounds * local_kimg}
    if batch_size is not None:
        updates["batch_size"] = batch_size
    if seed is not None:
        updates["seed"] = seed
    if level == "sample":
        updates["privacy"] = {"epsilon": dp_epsilon, "delta": dp_delta}
    config = resolve_config(chosen, updates, overrides or [])
    config.validate()
    if config.identity.enabled:
        raise FaceganError("identity-conditional training (--condition identity) is not federated yet")
    config = _prepare_model_config(config, datasets[0])
    if local_kimg * 1000 < config.batch_size:
        raise FaceganError(f"--local-kimg {local_kimg:g} is less than one step of {config.batch_size} images; "
                           f"use at least {config.batch_size / 1000:g}")
    if config.privacy.enabled and level != "sample":
        raise FaceganError("privacy.* settings are DP-SGD in the clients: use --dp-epsilon with --dp-level sample")
    smallest = min(len(dataset) for dataset in datasets)
    if level == "sample":
        from facegan.privacy.training import check_private_launch

        check_private_launch(config)
        if config.batch_size > smallest:
            raise FaceganError(f"batch size {config.batch_size} is larger than the smallest client ({smallest} images); "
                               "DP sampling needs batch_size <= each client's images: lower --batch-size")
        _check_sample_budget(config, datasets, rounds, local_kimg)

    source = str(manifest.get("source", ""))
    source_ok = bool(source) and (Path(source) / "manifest.json").is_file()
    if eval_data is None:
        if not source_ok:
            raise FaceganError(f"the partitions' source dataset {source!r} is not there; pass --eval-data DATASET for FD")
        eval_data = source
    eval_data = str(FaceDataset.load(eval_data).path)
    run_dir = absolute_path(out)
    delta_client = dp_delta or 1.0 / (10 * len(clients))
    settings: dict[str, Any] = {
        "format": SETTINGS_FORMAT,
        "run_dir": str(run_dir),
        "partitions": str(root),
        "source": source if source_ok else eval_data,
        "source_hash": str(manifest.get("source_hash", "")),
        "partition_by": manifest.get("by"),
        "clients": clients,
        "client_images": [len(dataset) for dataset in datasets],
        "rounds": rounds,
        "local_kimg": local_kimg,
        "engine": engine,
        "secure_aggregation": bool(secure_aggregation),
        "dp_level": level,
        "dp_epsilon": dp_epsilon,
        "dp_delta_sample": config.privacy.delta or None,
        "min_clients": min_clients,
        "round_timeout": round_timeout,
        "fd_every": fd_every,
        "fd_num": int(fd_num),
        "fd_features": fd_features,
        "eval_data": eval_data,
        "train": to_dict(config),
    }
    if level == "client":
        from facegan.federated.server import noise_for_client_dp

        if delta_client >= 1 / len(clients):
            raise FaceganError(f"--dp-delta {delta_client:g} is not below 1/clients = {1 / len(clients):.3g}")
        settings.update(dp_delta_client=delta_client, dp_clip=dp_clip,
                        dp_noise_multiplier=noise_for_client_dp(dp_epsilon, delta_client, rounds))
    return settings


def _check_sample_budget(config: Any, datasets: list[Any], rounds: int, local_kimg: float) -> None:
    """Refuse, before any process starts, a sample-level budget some client cannot meet (delta, or no noise level fits)."""
    from facegan.privacy.accounting import default_delta, noise_multiplier_for

    steps = rounds * max(1, math.ceil(round(local_kimg * 1000) / config.batch_size))
    for index, dataset in enumerate(datasets):
        delta = config.privacy.delta or default_delta(len(dataset))
        if delta >= 1 / len(dataset):
            raise FaceganError(f"--dp-delta {delta:g} is not below 1/N = {1 / len(dataset):.3g} of client {index}; lower it")
        if config.privacy.noise_multiplier <= 0:
            noise_multiplier_for(config.privacy.epsilon, delta, config.batch_size / len(dataset), steps, config.privacy.accountant)


def write_app(run: Run, settings: dict[str, Any]) -> Path:
    """The Flower app `flwr run` ships: a pyproject naming facegan's apps, the run config naming the settings file."""
    app_dir = run.federated_dir / "app"
    package = app_dir / APP_PACKAGE
    package.mkdir(parents=True, exist_ok=True)
    if settings["secure_aggregation"]:
        client = "facegan.federated.secure:client_app_secure"
    elif settings["dp_level"] == "client":
        client = "facegan.federated.apps:client_app_dp"
    else:
        client = "facegan.federated.apps:client_app"
    module, name = client.split(":")
    (package / "__init__.py").write_text('"""Generated by facegan federated train: Flower loads facegan\'s apps from here."""\n')
    (package / "apps.py").write_text(
        "import facegan.federated.apps as _server\n"
        f"import {module} as _client\n\n"
        "server_app = _server.server_app\n"
        f"client_app = _client.{name}\n"
    )
    (app_dir / "pyproject.toml").write_text(f"""[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "facegan-federated"
version = "1.0.0"
description = "facegan federated GAN training (generated for {run.path.name})"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "facegan"

[tool.flwr.app.components]
serverapp = "{APP_PACKAGE}.apps:server_app"
clientapp = "{APP_PACKAGE}.apps:client_app"

[tool.flwr.app.config]
settings = {json.dumps(str(run.federated_path))}
""")
    return app_dir


def federated_train(settings: dict[str, Any] | None = None, *, resume_dir: str | os.PathLike | None = None,
                    progress: ProgressCallback | None = None, start_timeout: float = 60.0,
                    on_deployment: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Run (or with `resume_dir`, continue) a federated training; returns the run's summary.

    `progress(rounds_done, rounds)` follows the rounds; `on_deployment(deployment)` is called with the
    running `FlowerDeployment` once its processes are up (to watch or fault-inject its SuperNodes).
    """
    from facegan.config import save_json
    from facegan.federated.server import ERROR_NAME, read_settings
    from facegan.version import __version__

    if resume_dir is not None:
        run = Run(resume_dir)
        if not run.is_federated():
            raise FaceganError(f"nothing to resume in {resume_dir}: it is not a federated run (no federated.json)")
        settings = read_settings(run.federated_path)
        from facegan.data.dataset import absolute_path

        settings["run_dir"] = str(absolute_path(resume_dir))  # the folder named now (it may have been moved or copied)
    elif settings is None:
        raise FaceganError("federated_train needs settings or resume_dir")
    run = Run(settings["run_dir"])
    if resume_dir is None:
        run.check_can_train_into()
        if run.has_config() or run.has_checkpoint():
            raise FaceganError(f"{run.path} already holds a run; pass --resume to continue it, or choose another --out")
    created = not run.path.exists()
    with run.lock():
        try:
            if resume_dir is None:
                run.path.mkdir(parents=True, exist_ok=True)
                save_json(settings, run.federated_path)
                config = dict(settings["train"])
                config["data"] = settings["source"]
                run.write_config(config)
                run.write_run_info({"facegan_version": __version__, "kind": "federated", "device": "cpu",
                                    "num_processes": len(settings["clients"]) + 1, "dataset_path": settings["source"],
                                    "dataset_hash": settings["source_hash"], "dataset_images": sum(settings["client_images"]),
                                    "engine": settings["engine"]})
            else:
                save_json(settings, run.federated_path)
            (run.federated_dir / ERROR_NAME).unlink(missing_ok=True)
            if settings["engine"] == "simulation":
                _run_simulation(settings)
            else:
                _run_deployment(run, settings, progress, start_timeout, on_deployment)
        except BaseException:
            # A new run that failed before any Flower process started leaves nothing; once processes ran, their logs
            # (which the error names) stay, and the folder resumes with --resume.
            if created and not run.has_checkpoint() and not (run.federated_dir / "logs").exists():
                _remove_new_run(run)
            raise
    error = run.federated_dir / ERROR_NAME
    if error.is_file():
        raise FaceganError(error.read_text(encoding="utf-8").strip())
    summary = run.read_summary() or {}
    if int(summary.get("rounds", 0)) < int(settings["rounds"]):
        raise FaceganError(f"the federated run stopped after round {summary.get('rounds', 0)} of {settings['rounds']}; "
                           f"see {run.federated_dir / 'logs'}; continue with --resume")
    return summary


def _remove_new_run(run: Run) -> None:
    import shutil

    shutil.rmtree(run.path, ignore_errors=True)


def _completed_rounds(run: Run) -> int:
    rows = run.read_stats()
    return int(rows[-1]["round"]) if rows and isinstance(rows[-1].get("round"), int) else 0


def _run_deployment(run: Run, settings: dict[str, Any], progress: ProgressCallback | None, start_timeout: float,
                    on_deployment: Callable[[Any], None] | None) -> None:
    from facegan.federated.processes import FlowerDeployment

    app_dir = write_app(run, settings)
    nodes = [{"partition-id": index, "num-partitions": len(settings["clients"])} for index in range(len(settings["clients"]))]
    rounds = int(settings["rounds"])
    with FlowerDeployment(app_dir, run.federated_dir / "home", len(nodes), nodes, log_dir=run.federated_dir / "logs",
                          start_timeout=start_timeout) as deployment:
        if on_deployment is not None:
            on_deployment(deployment)
        run_id = deployment.submit()
        (run.federated_dir / "flower_run_id").write_text(f"{run_id}\n")

        def on_poll(_: str) -> None:
            if progress is not None:
                progress(_completed_rounds(run), rounds)

        # Each round waits at most twice --round-timeout (nodes, then replies); the rest is start-up and the last writes.
        status = deployment.wait(run_id, on_poll=on_poll, poll_s=1.0, timeout=600.0 + rounds * (2 * settings["round_timeout"] + 300.0))
        if progress is not None:
            progress(_completed_rounds(run), rounds)
    if status != "finished:completed":
        logger.warning("Flower run %d ended %s", run_id, status)


def _run_simulation(settings: dict[str, Any]) -> None:
    from flwr.simulation import run_simulation

    from facegan.federated.apps import make_client_app, make_server_app

    if settings["secure_aggregation"]:
        from facegan.federated.secure import make_secure_client_app

        client = make_secure_client_app(settings)
    else:
        client = make_client_app(settings, client_dp=settings["dp_level"] == "client")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    started = time.perf_counter()
    run_simulation(server_app=make_server_app(settings), client_app=client, num_supernodes=len(settings["clients"]),
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 2}})
    logger.info("simulation finished in %.1f s", time.perf_counter() - started)
