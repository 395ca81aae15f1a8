"""Run control shared by every facegan training loop (GAN and recogniser): clean stops on Ctrl-C/SIGTERM,
stats summed on the device and read once per log line, and tidying a run after a failure."""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch

from facegan.run import Run

logger = logging.getLogger("facegan.training")

__all__ = ["StopFlag", "accumulate_stats", "mean_stats", "remove_empty_run", "remove_stale_temp_files", "remove_temp_files"]


class StopFlag:
    """SIGINT/SIGTERM ask for a clean stop (checkpoint, then exit); another Ctrl-C later aborts at once.

    Under torchrun one Ctrl-C reaches each rank twice (from the terminal's process group, then forwarded
    by torchrun), so a repeat within `REPEAT_WINDOW_S` is the same request, not a second one. Off the
    main thread (a web worker) no handler can be installed: the `should_stop` callback is the way in.
    """

    REPEAT_WINDOW_S = 2.0
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.armed = False  # before the first step there is nothing to save: a signal interrupts at once
        self._first_at = 0.0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if not self.armed:
            raise KeyboardInterrupt
        if self.requested:
            if now - self._first_at < self.REPEAT_WINDOW_S:
                return
            raise KeyboardInterrupt
        self.requested, self._first_at = True, now
        logger.warning("stopping: finishing this step and saving a checkpoint (Ctrl-C again to abort)")

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


def remove_empty_run(run: Run) -> None:
    """A run that failed during setup leaves nothing behind (only the lock file was created)."""
    try:
        run.lock_path.unlink(missing_ok=True)
        run.path.rmdir()
    except OSError:
        pass


def accumulate_stats(sums: dict[str, Any], counts: dict[str, int], step_stats: dict[str, Any]) -> None:
    """Add one step's stats (floats, or detached 0-d tensors kept on the device: no host sync here)."""
    for name, value in step_stats.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().to(torch.float64)  # float64 sums equal the float sums of .item() values exactly
        sums[name] = sums[name] + value if name in sums else value
        counts[name] = counts.get(name, 0) + 1


def mean_stats(sums: dict[str, Any], counts: dict[str, int]) -> dict[str, float]:
    """The accumulated stats as Python floats (one device sync for all the tensors)."""
    tensors = [name for name, value in sums.items() if isinstance(value, torch.Tensor)]
    values = {name: float(value) for name, value in sums.items() if name not in tensors}
    if tensors:
        values.update(zip(tensors, torch.stack([sums[name].reshape(()) for name in tensors]).tolist()))
    return {name: values[name] / counts[name] for name in sums}


def remove_temp_files(folder: Path) -> None:
    """Temp files this process left behind when a write failed (a full disk): `.NAME.tmp-PID`, anywhere in the run."""
    suffix = f".tmp-{os.getpid()}"
    try:
        for path in folder.rglob(f".*{suffix}"):
            path.unlink(missing_ok=True)
    except OSError:
        pass


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Temp files (`.NAME.tmp-PID`, `.NAME.tmp-PID-HEX`) that a writer killed with SIGKILL left in a run folder, e.g. a
    half-written checkpoint. Call it holding the run's lock (one writer per run): only files of processes that no
    longer run are removed, never a link or a folder. Returns what was removed."""
    import re

    from facegan.files import stale_process

    pattern = re.compile(r"\..+\.tmp-(?P<pid>\d{1,10})(-[0-9a-f]{8})?")
    removed = []
    try:
        candidates = list(folder.rglob(".*.tmp-*"))
    except OSError:
        return removed
    for path in candidates:
        match = pattern.fullmatch(path.name)
        if match is None or not stale_process(int(match["pid"])):
            continue
        try:
            if path.is_symlink() or not path.is_file():
                continue
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed
