"""The training progress bar the CLI and the demo show, and the library's log lines printed above it.

The library never prints: `facegan.train` reports through `progress(kimg_done, kimg_total)`,
`on_log(stats)` and the `facegan` logger, and this module turns those into what a terminal shows.
"""
from __future__ import annotations

import logging


class TrainingProgress:
    """A context manager: a tqdm bar fed by train()'s callbacks, with facegan's log messages written above it.

    `reporting=False` (torchrun ranks other than 0) shows nothing at all.
    """

    def __init__(self, enabled: bool = True, reporting: bool = True) -> None:
        self.bar = _ProgressBar(enabled=enabled and reporting)
        # Other ranks stay quiet (a NullHandler also keeps logging's last-resort printer away).
        self.handler: logging.Handler = _LogHandler(self.bar) if reporting else logging.NullHandler()
        self.logger = logging.getLogger("facegan")
        self._previous_level = self.logger.level

    def update(self, kimg_done: float, kimg_total: float) -> None:
        self.bar.update(kimg_done, kimg_total)

    def show_stats(self, stats: dict) -> None:
        self.bar.show_stats(stats)

    def __enter__(self) -> "TrainingProgress":
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bar.close()
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self._previous_level)


class _ProgressBar:
    """The tqdm bar of `facegan train`, counted in images (integers: it never runs past its total) and shown in kimg."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def update(self, kimg_done: float, kimg_total: float) -> None:
        if not self.enabled:
            return
        total = int(round(kimg_total * 1000))
        done = min(int(round(kimg_done * 1000)), total)
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="kimg", unit_scale=0.001, desc="train", dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} kimg [{elapsed}<{remaining}{postfix}]")
            return
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)

    def show_stats(self, stats: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"D {stats.get('loss_d', 0):.3f} G {stats.get('loss_g', 0):.3f} {stats['img_per_s']:.0f} img/s")

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message)
        else:
            print(message, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _LogHandler(logging.Handler):
    """The library's log messages (stopping early, resuming from scratch) as plain lines above the bar."""

    def __init__(self, bar: _ProgressBar) -> None:
        super().__init__(logging.INFO)
        self.bar = bar

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.name == "facegan.training" and message.startswith("stopping: "):
                message = "\n" + message  # after the ^C the terminal echoed
            self.bar.write(message)
        except Exception:  # a log line must never break training
            self.handleError(record)
