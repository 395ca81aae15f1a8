"""Data-parallel training with the gloo backend and 2 CPU processes: ranks stay identical."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

# Tests that start many processes and pick free ports (Flower, Ray, torchrun/gloo) run on one xdist worker, one
# at a time (`--dist loadgroup` in `make test`): concurrently, one's free port could be taken by the other's.
pytestmark = pytest.mark.xdist_group("processes")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank, world_size, port, config, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from facegan.data.dataset import FaceDataset
    from facegan.training.distributed import init_distributed
    from facegan.training.loop import Trainer, _prepare_model_config

    context = init_distributed("cpu")
    dataset = FaceDataset.load(config.data)
    config = _prepare_model_config(config, dataset)
    trainer = Trainer(config, dataset, torch.device("cpu"), context)
    for _ in range(3):
        trainer.step()
    flat = torch.cat([p.detach().flatten() for p in trainer.G.parameters()] + [p.detach().flatten() for p in trainer.D.parameters()])
    results[rank] = flat
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_training_keeps_ranks_in_sync(faces16, tiny_config, tmp_path):
    config = tiny_config(faces16, tmp_path / "ddp", kimg=0.048)
    manager = mp.Manager()
    results = manager.dict()
    mp.start_processes(_worker, args=(2, _free_port(), config, results), nprocs=2, join=True, start_method="spawn")
    assert torch.equal(results[0], results[1])  # gradients were averaged: identical weights on both ranks
    # And training did something: weights moved from their (seeded, identical) initialisation.
    from facegan.data.dataset import FaceDataset
    from facegan.models import build_discriminator, build_generator
    from facegan.training.loop import _prepare_model_config

    resolved = _prepare_model_config(config, FaceDataset.load(config.data))
    torch.manual_seed(config.seed)
    initial = torch.cat([p.detach().flatten() for p in build_generator(resolved.model).parameters()]
                        + [p.detach().flatten() for p in build_discriminator(resolved.model).parameters()])
    assert not torch.equal(initial, results[0])


@pytest.mark.slow
def test_torchrun_cli_trains_with_two_processes_and_exits_cleanly(faces16, tmp_path):
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun) if torchrun.exists() else shutil.which("torchrun"), "--nproc_per_node", "2", "--master_port", str(_free_port()),
               "-m", "facegan", "train", "--data", str(faces16), "--out", str(tmp_path / "run"), "--kimg", "0.032", "--batch-size", "8",
               "--no-progress", "--set", "model.g_channels=16", "--set", "model.d_channels=16", "--set", "model.min_channels=8",
               "--set", "runtime.tensorboard=false", "--set", "runtime.num_threads=1", "--set", "schedule.num_snapshot_images=4"]
    process = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert process.returncode == 0, process.stderr[-2000:]
    assert process.stdout.count("finished") == 1  # one process reports
    assert json.loads((tmp_path / "run" / "run.json").read_text())["num_processes"] == 2
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()


def _torchrun(data, out, kimg, *extra):
    import shutil
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).with_name("torchrun")
    return [str(torchrun) if torchrun.exists() else shutil.which("torchrun"), "--nproc_per_node", "2", "--master_port", str(_free_port()),
            "-m", "facegan", "train", "--data", str(data), "--out", str(out), "--kimg", str(kimg), "--batch-size", "8",
            "--no-progress", "--set", "model.g_channels=16", "--set", "model.d_channels=16", "--set", "model.min_channels=8",
            "--set", "runtime.tensorboard=false", "--set", "runtime.num_threads=1", "--set", "schedule.num_snapshot_images=4",
            "--set", "schedule.log_kimg=0.016", "--set", "schedule.checkpoint_kimg=0.016", *extra]


@pytest.mark.slow
def test_torchrun_time_budget_stops_every_rank_at_the_same_step(faces16, tmp_path):
    import json
    import subprocess

    run = tmp_path / "run"
    # Each rank's clock would stop it at a different step; the decision is agreed, so gloo never sees a rank leave early.
    process = subprocess.run(_torchrun(faces16, run, 50, "--set", "schedule.max_minutes=0.05"), capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "Traceback" not in process.stderr and "Connection reset" not in process.stderr
    assert process.stdout.count("stopping early: time budget") == 1 and process.stdout.count("finished") == 1
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["state.pt"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_early"].startswith("time budget") and 0 < summary["kimg"] < 50


@pytest.mark.slow
def test_torchrun_ctrl_c_stops_every_rank_cleanly(faces16, tmp_path):
    """Ctrl-C (SIGINT to the whole process group): ranks agree, rank 0 checkpoints once, every rank exits 130.

    torchrun itself turns the SIGINT it received into its own SignalException: it prints that traceback
    (frames from torch/distributed only) and exits 1, whatever its workers returned. Nothing of ours fails.
    """
    import json
    import signal
    import subprocess
    import time

    run = tmp_path / "run"
    process = subprocess.Popen(_torchrun(faces16, run, 50), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 50
    while not (run / "checkpoints" / "state.pt").exists():
        assert time.time() < deadline and process.poll() is None, "no checkpoint appeared"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode in (1, 130), stderr[-3000:]  # torchrun's own exit status after a SIGINT (see the docstring)
    assert stdout.count("interrupted at") == 1 and "resume with: facegan train" in stdout
    assert stdout.count("stopping: finishing this step") == 1  # one rank reports
    # A frame of facegan's own code (src/facegan/ or an installed site-packages/facegan/), not merely a
    # path containing "facegan": a checkout named facegan puts it in torchrun's own frames too.
    ours = __import__("re").compile(r"[/\\](?:src|site-packages)[/\\]facegan[/\\]")
    worker_tracebacks = [block for block in stderr.split("Traceback")[1:] if ours.search(block.split("SignalException")[0])]
    assert not worker_tracebacks, stderr[-3000:]
    assert "KeyboardInterrupt" not in stderr and "Connection reset" not in stderr and "exitcode" not in stderr
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["state.pt"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] is True
    state = __import__("torch").load(run / "checkpoints" / "state.pt", weights_only=True)
    assert state["num_images_seen"] == round(summary["kimg"] * 1000)  # the checkpoint is the step every rank stopped at


def _launcher(data, out, kimg, *extra):
    """`python -m facegan train --nproc-per-node 2 ...`: facegan's own launcher instead of torchrun."""
    import sys

    return [sys.executable, "-m", "facegan", "train", "--data", str(data), "--out", str(out), "--kimg", str(kimg), "--batch-size", "8",
            "--no-progress", "--nproc-per-node", "2", "--set", "model.g_channels=16", "--set", "model.d_channels=16",
            "--set", "model.min_channels=8", "--set", "runtime.tensorboard=false", "--set", "runtime.num_threads=1",
            "--set", "schedule.num_snapshot_images=4", "--set", "schedule.log_kimg=0.016", "--set", "schedule.checkpoint_kimg=0.016", *extra]


def _launcher_env():
    env = {key: value for key, value in os.environ.items() if key not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(__import__("pathlib").Path(__file__).resolve().parents[2] / "src"), env.get("PYTHONPATH")]))
    return env


@pytest.mark.slow
def test_nproc_per_node_trains_with_two_processes_and_exits_0(faces16, tmp_path):
    import json
    import subprocess

    run = tmp_path / "run"
    process = subprocess.run(_launcher(faces16, run, 0.032), capture_output=True, text=True, timeout=120, env=_launcher_env())
    assert process.returncode == 0, process.stderr[-3000:]
    assert process.stdout.count("finished") == 1  # one process reports
    assert "Traceback" not in process.stderr and "OMP_NUM_THREADS" not in process.stderr
    assert json.loads((run / "run.json").read_text())["num_processes"] == 2
    assert (run / "export" / "model.safetensors").is_file()


@pytest.mark.slow
def test_nproc_per_node_ctrl_c_exits_130_without_traceback_and_resumes(faces16, tmp_path):
    """Unlike bare torchrun (which prints its own SignalException traceback and exits 1), the launcher exits 130."""
    import json
    import signal
    import subprocess
    import time

    run = tmp_path / "run"
    process = subprocess.Popen(_launcher(faces16, run, 50), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env=_launcher_env())
    deadline = time.time() + 50
    while not (run / "checkpoints" / "state.pt").exists():
        assert time.time() < deadline and process.poll() is None, "no checkpoint appeared"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the launcher and both workers get it
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-3000:]
    assert stdout.count("interrupted at") == 1 and "resume with: facegan train" in stdout
    assert "Traceback" not in stderr and "SignalException" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["state.pt"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] is True
    seen = summary["kimg"]
    resumed = subprocess.run(_launcher(faces16, run, round(seen + 0.016, 3), "--resume"), capture_output=True, text=True, timeout=120,
                             env=_launcher_env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("finished") == 1
    assert json.loads((run / "summary.json").read_text())["kimg"] > seen


@pytest.mark.parametrize("extra, env, message", [
    (["--nproc-per-node", "0"], {}, "--nproc-per-node must be at least 1, got 0"),
    (["--nproc-per-node", "2", "--dp-epsilon", "10"], {}, "differentially private training runs in one process"),
    (["--nproc-per-node", "2"], {"WORLD_SIZE": "2"}, "drop it when running under torchrun (WORLD_SIZE is set)"),
    (["--nproc-per-node", "2", "--batch-size", "7"], {}, "batch_size 7 must divide evenly over 2 processes"),  # once, not per worker
])
def test_nproc_per_node_refusals(faces16, tmp_path, monkeypatch, capsys, extra, env, message):
    from facegan.cli.main import main

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = main(["train", "--data", str(faces16), "--out", str(tmp_path / "run"), "--kimg", "0.016", "--no-progress", *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1 and message in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_nproc_per_node_failed_worker_is_one_line_and_its_exit_code(tmp_path):
    import subprocess

    process = subprocess.run(_launcher(tmp_path / "missing", tmp_path / "run", 0.016), capture_output=True, text=True, timeout=120,
                             env=_launcher_env())
    assert process.returncode == 2, process.stderr[-3000:]  # the worker's own user-error code
    assert "dataset not found" in process.stderr  # the worker's message reaches the terminal
    assert "Traceback" not in process.stderr and "ChildFailedError" not in process.stderr, process.stderr[-3000:]
    assert process.stderr.count("exited with code 2 (see its message above)") == 1


def test_nproc_per_node_refuses_resuming_a_private_run(faces16, tmp_path, monkeypatch, capsys):
    """No --dp-* flag on the command line: the saved run's config is what turns privacy on."""
    from facegan.cli.main import main
    from facegan.config import to_dict
    from facegan.run import Run
    from facegan.training.config import resolve_config

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    run = tmp_path / "run"
    config = resolve_config("dp", {"data": str(faces16), "out": str(run), "privacy": {"epsilon": 10.0}})
    assert config.privacy.enabled
    run.mkdir()
    Run(run).write_config(to_dict(config))
    code = main(["train", "--out", str(run), "--resume", "--no-progress", "--nproc-per-node", "2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1 and "differentially private training runs in one process" in err, err


def test_worker_command_drops_nproc_per_node_in_every_spelling():
    from facegan.cli.launch import worker_argv

    assert worker_argv(["train", "--out", "r", "--nproc-per-node", "2", "--kimg", "1"]) == ["train", "--out", "r", "--kimg", "1"]
    assert worker_argv(["train", "--nproc-per-node=2", "--no-progress"]) == ["train", "--no-progress"]
    assert worker_argv(["train", "--nproc", "2", "--no-progress"]) == ["train", "--no-progress"]
