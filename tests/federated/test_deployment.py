"""Real Flower processes: a SuperLink and SuperNodes started, followed and stopped by facegan; a SuperNode killed mid-run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from facegan.errors import FaceganError
from facegan.federated.engine import federated_train
from facegan.federated.processes import group_alive, port_open
from facegan.run import Run

from tests.federated.conftest import TINY

# Tests that start many processes and pick free ports (Flower, Ray, torchrun/gloo) run on one xdist worker, one
# at a time (`--dist loadgroup` in `make test`): concurrently, one's free port could be taken by the other's.
pytestmark = pytest.mark.xdist_group("processes")

FACEGAN = [sys.executable, "-m", "facegan"]


def _processes_in(folder: Path) -> list[int]:
    """Live processes whose working directory is inside `folder` (every Flower process runs in the run's FLWR_HOME)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd == str(folder) or cwd.startswith(str(folder) + os.sep)):
            found.append(int(entry.name))
    return found


def _none_in(folder: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and _processes_in(folder):
        time.sleep(0.5)
    assert not _processes_in(folder), _processes_in(folder)


def _nothing_left(deployment) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (any(group_alive(pid) for pid in deployment.pids)
                                           or any(port_open(port) for port in deployment.ports)):
        time.sleep(0.2)
    assert not any(group_alive(pid) for pid in deployment.pids)
    assert not any(port_open(port) for port in deployment.ports)
    _none_in(deployment.flwr_home)  # ServerApp/ClientApp processes run in sessions of their own: none may outlive it


def test_cli_trains_on_real_processes_and_the_run_works_like_any_other(clients2, tmp_path):
    out = tmp_path / "fed"
    sets = [arg for item in TINY for arg in ("--set", item)]
    done = subprocess.run([*FACEGAN, "federated", "train", "--partitions", str(clients2), "--rounds", "2", "--local-kimg", "0.016",
                           "--batch-size", "8", "--out", str(out), "--no-progress", *sets], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 rounds" in done.stdout
    run = Run(out)
    assert [row["round"] for row in run.read_stats()] == [1, 2] and run.has_export()
    logs = (run.federated_dir / "logs")
    assert (logs / "superlink.log").is_file() and (logs / "supernode-0.log").is_file()
    # Nothing of Flower is left running: no process started from this run's FLWR_HOME.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(run.federated_dir / "home") not in ps and str(run.federated_dir) not in ps
    _none_in(run.federated_dir)
    sampled = subprocess.run([*FACEGAN, "sample", str(out), "--seeds", "0-3", "--out", str(tmp_path / "s.png")],
                             capture_output=True, text=True, timeout=120)
    assert sampled.returncode == 0, sampled.stderr[-1000:]
    again = subprocess.run([*FACEGAN, "federated", "train", "--partitions", str(clients2), "--out", str(out), "--no-progress"],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and again.stderr.startswith("error:") and "--resume" in again.stderr
    centralised = subprocess.run([*FACEGAN, "train", "--out", str(out), "--resume"], capture_output=True, text=True, timeout=60)
    assert centralised.returncode != 0 and "is a federated run" in centralised.stderr and "Traceback" not in centralised.stderr
    audited = subprocess.run([*FACEGAN, "audit", str(out), "--train", str(clients2 / "client-000"), "--holdout", str(clients2 / "client-001"),
                              "--num", "32"], capture_output=True, text=True, timeout=300)
    assert audited.returncode == 0, audited.stderr[-1500:]  # the discriminator of the global model is audited like any run's


def test_a_killed_supernode_does_not_hang_the_run_and_rejoins(clients3, tiny_settings, tmp_path):
    """3 clients, --min-clients 2: SuperNode 2 is SIGKILLed after round 1, the rounds go on, it restarts and rejoins."""
    settings = tiny_settings(clients3, tmp_path / "fault", rounds=4, min_clients=2, round_timeout=45.0)
    run = Run(tmp_path / "fault")
    holder: dict = {}
    result: dict = {}

    def go():
        try:
            result["summary"] = federated_train(settings, on_deployment=lambda d: holder.setdefault("deployment", d))
        except BaseException as error:  # reported below
            result["error"] = error

    thread = threading.Thread(target=go)
    thread.start()

    def rounds_done() -> int:
        rows = run.read_stats() if run.stats_path.exists() else []
        return rows[-1]["round"] if rows else 0

    deadline = time.monotonic() + 240
    while rounds_done() < 1 and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.2)
    deployment = holder["deployment"]
    deployment.kill_node(2)  # round 2 is being sent out or trained: the node just vanishes
    killed_at = rounds_done()
    while rounds_done() < killed_at + 1 and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.2)
    deployment.restart_node(2)
    thread.join(timeout=300)
    assert not thread.is_alive(), "the federated run hung"
    assert "error" not in result, result.get("error")
    rows = run.read_stats()
    assert [row["round"] for row in rows] == [1, 2, 3, 4]
    lines = [json.loads(line) for line in run.client_stats_path.read_text().splitlines()]
    by_round = {r: sorted(int(line["partition-id"]) for line in lines if line["round"] == r) for r in range(1, 5)}
    assert by_round[1] == [0, 1, 2]
    assert 2 not in by_round[killed_at + 1] and len(by_round[killed_at + 1]) == 2  # completed without the dead node
    assert 2 in by_round[4], by_round  # the restarted SuperNode rejoined
    _nothing_left(deployment)


def test_too_few_clients_stops_in_one_line_and_resume_finishes(clients2, tiny_settings, tmp_path):
    settings = tiny_settings(clients2, tmp_path / "stop", rounds=2, min_clients=2, round_timeout=40.0)
    run = Run(tmp_path / "stop")
    holder: dict = {}

    def kill_after_round_one(deployment):
        holder["deployment"] = deployment

        def watch():
            while not (run.stats_path.exists() and run.read_stats()):
                time.sleep(0.2)
            deployment.kill_node(1)

        threading.Thread(target=watch, daemon=True).start()

    with pytest.raises(FaceganError, match=r"round 2: .*--min-clients 2"):
        federated_train(settings, on_deployment=kill_after_round_one)
    _nothing_left(holder["deployment"])
    assert [row["round"] for row in run.read_stats()] == [1]
    summary = federated_train(resume_dir=run.path)  # a fresh deployment, from the round-1 checkpoint
    assert summary["rounds"] == 2
    assert [row["round"] for row in run.read_stats()] == [1, 2]


@pytest.mark.parametrize("args,message", [
    (["--rounds", "0"], "--rounds"),
    (["--local-kimg", "nan"], "--local-kimg"),
    (["--local-kimg", "-1"], "--local-kimg"),
    (["--round-timeout", "inf"], "--round-timeout"),
    (["--min-clients", "5"], "--min-clients"),
    (["--dp-epsilon", "-3"], "--dp-epsilon"),
    (["--dp-epsilon", "4", "--dp-level", "client", "--min-clients", "1"], "every client"),
    (["--dp-epsilon", "4", "--secure-aggregation"], "not supported"),
    (["--engine", "ray"], "invalid choice"),
    (["--fd-num", "0"], "--fd-num"),
    (["--local-kimg", "0.0001"], "less than one step"),
    (["--dp-epsilon", "0.0001", "--batch-size", "8"], "too small"),
])
def test_bad_options_are_one_error_line(clients2, tmp_path, args, message):
    done = subprocess.run([*FACEGAN, "federated", "train", "--partitions", str(clients2), "--out", str(tmp_path / "x"), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert done.stderr.startswith("error:") and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x").exists()


def test_bad_partitions_and_out_folders_are_refused(clients2, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "mine.txt").write_text("user file")
    for partitions, out in ((str(tmp_path), tmp_path / "a"), (str(fifo), tmp_path / "b"), (str(clients2), tmp_path)):
        done = subprocess.run([*FACEGAN, "federated", "train", "--partitions", partitions, "--out", str(out)],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert done.returncode != 0 and done.stderr.startswith("error:") and "Traceback" not in done.stderr, done.stderr
    assert (tmp_path / "mine.txt").read_text() == "user file"
    done = subprocess.run([*FACEGAN, "federated", "train", "--out", str(tmp_path / "none"), "--resume"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "not a federated run" in done.stderr


def test_kill_9_of_facegan_leaves_no_flower_process_and_resume_finishes(clients2, tmp_path):
    out = tmp_path / "k9"
    sets = [arg for item in TINY for arg in ("--set", item)]
    command = [*FACEGAN, "federated", "train", "--partitions", str(clients2), "--rounds", "2", "--local-kimg", "0.016",
               "--batch-size", "8", "--out", str(out), "--no-progress", *sets]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = Run(out)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (run.stats_path.exists() and run.read_stats()):
        time.sleep(0.2)
    files = list((run.federated_dir / "home").glob("process-groups-*"))
    assert len(files) == 1
    groups = [int(x) for x in files[0].read_text().split()]  # read before the kill: the reaper removes it
    assert len(groups) == 3  # SuperLink and two SuperNodes
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(group_alive(pgid) for pgid in groups):
        time.sleep(0.5)
    assert not any(group_alive(pgid) for pgid in groups)  # PR_SET_PDEATHSIG and the reaper ended them
    _none_in(run.federated_dir / "home")  # the orphaned ServerApp too (it would retry its dead SuperLink for hours)
    done = subprocess.run([*FACEGAN, "federated", "train", "--out", str(out), "--resume", "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-1500:]
    assert [row["round"] for row in run.read_stats()] == [1, 2]
    _none_in(run.federated_dir)  # and the resumed deployment left nothing either
