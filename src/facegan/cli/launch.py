"""`facegan train --nproc-per-node N`: start N data-parallel workers under torch.distributed.run.

Launching through torchrun's Python API instead of its command line lets us turn its SignalException
(Ctrl-C) into the clean exit 130 that single-process training gives, and a failed worker into one line.
"""
from __future__ import annotations

import logging
import os
import sys

from facegan.errors import FaceganError

OPTION = "--nproc-per-node"


def check_launch(nproc: int, config) -> None:
    """Refuse launches that cannot work, before any worker starts (and each prints the same error)."""
    if nproc < 1:
        raise FaceganError(f"{OPTION} must be at least 1, got {nproc}")
    if "WORLD_SIZE" in os.environ:
        raise FaceganError(f"{OPTION} starts its own processes: drop it when running under torchrun (WORLD_SIZE is set)")
    if nproc > 1 and config.privacy.enabled:
        raise FaceganError(f"differentially private training runs in one process: drop {OPTION} (or train without --dp-*)")
    config.validate()
    from facegan.training.distributed import check_batch_split

    check_batch_split(config.batch_size, nproc)  # the training loop's own rule, checked once here rather than by every worker


def worker_argv(argv: list[str]) -> list[str]:
    """The same `facegan` command line without --nproc-per-node (and its value)."""
    kept: list[str] = []
    skip_value = False
    for token in argv:
        if skip_value:
            skip_value = False
            continue
        name = token.split("=", 1)[0]
        # argparse accepts any unambiguous prefix; "--np" is the shortest one no other train flag shares.
        if len(name) >= 4 and OPTION.startswith(name):
            skip_value = "=" not in token
            continue
        kept.append(token)
    return kept


def launch(argv: list[str], nproc: int) -> int:
    """Run `python -m facegan ARGV` in NPROC processes; 0 on success, 130 after Ctrl-C, else a failed worker's code."""
    import torch.distributed.run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    if "OMP_NUM_THREADS" not in os.environ:
        # What torchrun would set (with a warning): share the cores instead of oversubscribing them.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        os.environ["OMP_NUM_THREADS"] = str(max(1, cores // nproc))
    if "LOGLEVEL" not in os.environ:
        # Workers report for themselves; torchrun's own notes ("sending SIGINT to process ...") are noise here.
        for name in list(logging.root.manager.loggerDict):
            if name.startswith("torch.distributed"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
    args = torchrun.get_args_parser().parse_args(
        ["--standalone", "--nnodes", "1", "--nproc_per_node", str(nproc), "-m", "facegan", *argv])
    try:
        torchrun.run(args)
    except SignalException:
        return 130  # the workers caught the same Ctrl-C, agreed to stop and checkpointed; rank 0 said so
    except ChildFailedError as error:
        failures = sorted(error.failures.items())
        if all(failure.exitcode in (130, -2) for _, failure in failures):
            return 130  # the workers were interrupted (and stopped cleanly) without the launcher seeing it
        # The first worker to fail says why; the others were then stopped by torchrun (negative codes: signals).
        rank, failure = min(failures, key=lambda item: (item[1].exitcode <= 0, item[1].timestamp))
        print(f"error: training worker rank {rank} exited with code {failure.exitcode} (see its message above)", file=sys.stderr)
        return failure.exitcode if 0 < failure.exitcode < 128 else 1
    return 0
