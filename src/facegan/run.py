"""The run folder: the one module that knows its layout, and the lock that keeps it to one writer.

A run folder is the unit a user passes around (`facegan train --out RUN`):

    config.json            the resolved TrainConfig
    run.json               environment: versions, device, processes, dataset path and hash
    stats.jsonl            one JSON line per log tick
    tensorboard/           the same scalars for TensorBoard
    samples/               reals.png and fakesNNNNNN.png grids at fixed seeds
    checkpoints/state.pt   the full resume state (atomic; loaded weights-only)
    export/                the generator to share (config.json + model.safetensors)
    export-best/           the export with the best training-time FD (never under DP)
    metrics.json           `facegan eval`
    audit.json, audit_*.png  `facegan audit`
    verification.json, pairs.csv, roc.png, verification_examples.png   `facegan recog eval` (any results folder)
    attacks/NAME/          `facegan attack` results about a recogniser run (any results folder holds
                           attack.json, pairs.csv and adversarial/ PNGs; .attack-partial while writing)
    report.html            `facegan report`
    federated.json         `facegan federated train`: the federation's settings (clients, rounds, engine, DP)
    federated/             per-client stats (clients.jsonl), the generated Flower app, FLWR_HOME and process logs
    rounds/round-NNNN/     the global generator after each federated round (an export)
    loss_curves.png, summary.json   written when training ends
    .lock                  held by the process that trains into the folder

Every command that takes a run also takes an export: `Run.locate(path)` decides once whether a path
is a run, an export inside a run, or a stand-alone export. Core module: no torch, no numpy.
"""
from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from facegan.errors import FaceganError

CONFIG_NAME = "config.json"
RUN_INFO_NAME = "run.json"
STATS_NAME = "stats.jsonl"
TENSORBOARD_DIR = "tensorboard"
SAMPLES_DIR = "samples"
CHECKPOINTS_DIR = "checkpoints"
STATE_NAME = "state.pt"
EXPORT_DIR = "export"
EXPORT_BEST_DIR = "export-best"
METRICS_NAME = "metrics.json"
AUDIT_NAME = "audit.json"
REPORT_NAME = "report.html"
SUMMARY_NAME = "summary.json"
LOSS_CURVES_NAME = "loss_curves.png"
LOCK_NAME = ".lock"
VERIFICATION_NAME = "verification.json"
VERIFICATION_PAIRS_NAME = "pairs.csv"
VERIFICATION_ROC_NAME = "roc.png"
VERIFICATION_EXAMPLES_NAME = "verification_examples.png"
VERIFICATION_NAMES = (VERIFICATION_NAME, VERIFICATION_PAIRS_NAME, VERIFICATION_ROC_NAME, VERIFICATION_EXAMPLES_NAME)
REPAIR_EVAL_NAME = "repair_eval.json"
REPAIR_STRIP_NAME = "repair_strip.png"
ATTACKS_DIR = "attacks"
ATTACK_NAME = "attack.json"
ATTACK_PAIRS_NAME = "pairs.csv"  # per attacked pair: clean and adversarial scores (an attack folder is not a verification folder)
ATTACK_IMAGES_DIR = "adversarial"
ATTACK_CURVE_NAME = "attack_curve.png"
# Present from before a `facegan attack` writes its first file until after attack.json: a killed attack's folder stays
# facegan's own (the rerun may replace it), and an unfinished attack is never read as a result.
ATTACK_PARTIAL_NAME = ".attack-partial"
ATTACK_NAMES = (ATTACK_NAME, ATTACK_PAIRS_NAME, ATTACK_CURVE_NAME, ATTACK_IMAGES_DIR, ATTACK_PARTIAL_NAME)
EDITING_DIR = "editing"
FEDERATED_NAME = "federated.json"
FEDERATED_DIR = "federated"
CLIENT_STATS_NAME = "clients.jsonl"
ROUNDS_DIR = "rounds"

# An export folder holds these two files (written by `facegan.models.export`).
EXPORT_CONFIG_NAME = "config.json"
EXPORT_WEIGHTS_NAME = "model.safetensors"
EXPORT_DIR_NAMES = (EXPORT_DIR, EXPORT_BEST_DIR)


class Run:
    """A run folder (it may not exist yet): typed paths, readers and writers, and the lock."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    # ---- layout ---------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def run_info_path(self) -> Path:
        return self.path / RUN_INFO_NAME

    @property
    def stats_path(self) -> Path:
        return self.path / STATS_NAME

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / TENSORBOARD_DIR

    @property
    def samples_dir(self) -> Path:
        return self.path / SAMPLES_DIR

    @property
    def reals_grid_path(self) -> Path:
        return self.samples_dir / "reals.png"

    def fakes_grid_path(self, kimg: int) -> Path:
        """The snapshot grid written at `kimg` (rounded to whole kimg)."""
        return self.samples_dir / f"fakes{int(kimg):06d}.png"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def state_path(self) -> Path:
        return self.checkpoints_dir / STATE_NAME

    @property
    def export_dir(self) -> Path:
        return self.path / EXPORT_DIR

    @property
    def export_best_dir(self) -> Path:
        return self.path / EXPORT_BEST_DIR

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_NAME

    @property
    def audit_path(self) -> Path:
        return self.path / AUDIT_NAME

    @property
    def verification_path(self) -> Path:
        return self.path / VERIFICATION_NAME

    @property
    def verification_pairs_path(self) -> Path:
        return self.path / VERIFICATION_PAIRS_NAME

    @property
    def verification_roc_path(self) -> Path:
        return self.path / VERIFICATION_ROC_NAME

    @property
    def verification_examples_path(self) -> Path:
        return self.path / VERIFICATION_EXAMPLES_NAME

    @property
    def repair_eval_path(self) -> Path:
        """Per mask band / degradation quality of a repair model (`facegan repair eval`)."""
        return self.path / REPAIR_EVAL_NAME

    @property
    def repair_strip_path(self) -> Path:
        """Original / damaged / baselines / repaired examples for the report card."""
        return self.path / REPAIR_STRIP_NAME

    @property
    def editing_dir(self) -> Path:
        """Attribute classifiers and latent directions found for this generator (`facegan edit`)."""
        return self.path / EDITING_DIR

    @property
    def attacks_dir(self) -> Path:
        """Attack result folders about this recogniser (`facegan attack RUN ... --out RUN/attacks/NAME`); the report card reads them."""
        return self.path / ATTACKS_DIR

    @property
    def attack_path(self) -> Path:
        """An attack results folder's record (`facegan attack --out DIR`): success rate, robust accuracy, perturbation sizes."""
        return self.path / ATTACK_NAME

    @property
    def attack_pairs_path(self) -> Path:
        """Per attacked pair: fold, images, threshold, clean and adversarial scores, success, perturbation norms."""
        return self.path / ATTACK_PAIRS_NAME

    @property
    def attack_images_dir(self) -> Path:
        """The adversarial images, lossless PNG, one per attacked pair."""
        return self.path / ATTACK_IMAGES_DIR

    @property
    def attack_curve_path(self) -> Path:
        """Success rate against budget, when the attack ran at several budgets."""
        return self.path / ATTACK_CURVE_NAME

    @property
    def attack_partial_path(self) -> Path:
        """The marker of an attack still writing (or killed while writing): the folder is facegan's, its results are not."""
        return self.path / ATTACK_PARTIAL_NAME

    @property
    def report_path(self) -> Path:
        return self.path / REPORT_NAME

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY_NAME

    @property
    def loss_curves_path(self) -> Path:
        return self.path / LOSS_CURVES_NAME

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    @property
    def federated_path(self) -> Path:
        """`facegan federated train`'s settings: present only in a federated run."""
        return self.path / FEDERATED_NAME

    @property
    def federated_dir(self) -> Path:
        return self.path / FEDERATED_DIR

    @property
    def client_stats_path(self) -> Path:
        """One JSON line per client per federated round."""
        return self.federated_dir / CLIENT_STATS_NAME

    def round_export_dir(self, server_round: int) -> Path:
        """The global generator after federated round `server_round` (an export)."""
        return self.path / ROUNDS_DIR / f"round-{server_round:04d}"

    def is_federated(self) -> bool:
        return self.federated_path.is_file()

    # ---- what is there ---------------------------------------------------------------------------
    def has_config(self) -> bool:
        return self.config_path.is_file()

    def has_checkpoint(self) -> bool:
        return self.state_path.is_file()

    def has_export(self) -> bool:
        return is_export_folder(self.export_dir)

    def is_run(self) -> bool:
        """A folder facegan trained into: it holds the run config (an export alone is not a run)."""
        return self.path.is_dir() and self.has_config() and not is_export_folder(self.path)

    # ---- readers and writers ---------------------------------------------------------------------
    def read_config(self) -> dict[str, Any]:
        """The saved run config as plain data (`training.config` turns it into a TrainConfig)."""
        return _read_json_object(self.config_path, "run config")

    def write_config(self, config: dict[str, Any]) -> Path:
        return _write_json(self.config_path, config)

    def read_run_info(self) -> dict[str, Any] | None:
        return _read_json_optional(self.run_info_path)

    def write_run_info(self, info: dict[str, Any]) -> Path:
        return _write_json(self.run_info_path, info)

    def read_summary(self) -> dict[str, Any] | None:
        return _read_json_optional(self.summary_path)

    def write_summary(self, summary: dict[str, Any]) -> Path:
        return _write_json(self.summary_path, summary)

    def read_metrics(self) -> dict[str, Any] | None:
        return _read_json_optional(self.metrics_path)

    def read_audit(self) -> dict[str, Any] | None:
        return _read_json_optional(self.audit_path)

    def append_stats(self, line: dict[str, Any]) -> None:
        """Add one stats line (a whole line per write, so a killed run leaves at most a torn last line)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.stats_path, "a") as handle:
            handle.write(json.dumps(line) + "\n")

    def read_stats(self) -> list[dict[str, Any]]:
        """Every complete stats line; a half-written last line from a killed run is skipped."""
        return list(iter_stats(self.stats_path))

    def truncate_stats(self, max_kimg: float) -> None:
        """Drop stats lines written after the checkpoint a run resumes from (a killed run may have some)."""
        _truncate_lines(self.stats_path, "kimg", max_kimg + 1e-9)

    def truncate_rounds(self, last_round: int) -> None:
        """A federated run's resume: drop the round and client lines of rounds after its checkpoint (by round
        number: a round may add no images)."""
        for path in (self.stats_path, self.client_stats_path):
            _truncate_lines(path, "round", last_round)

    # ---- the lock --------------------------------------------------------------------------------
    def lock(self) -> "RunLock":
        """An exclusive lock on this run folder; see RunLock."""
        return RunLock(self.lock_path)

    def check_can_train_into(self) -> None:
        """Refuse an --out that is a file, or a folder holding files that no facegan run wrote (e.g. `--out .`)."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise FaceganError(f"--out {path} is a file, not a folder; pass a run folder such as runs/NAME")
        if not path.is_dir() or self.has_config() or self.has_checkpoint():
            return  # a new folder, or a run (which may hold the user's own extras, e.g. samples they wrote into it)
        try:
            entries = sorted(entry.name for entry in path.iterdir())
        except OSError as error:
            raise FaceganError(f"cannot read the run folder {path} ({error.strerror or error}); choose another --out") from None
        foreign = [name for name in entries if not _is_run_entry(name)]
        if foreign:
            where = "the current folder" if path.resolve() == Path.cwd().resolve() else str(path)
            raise FaceganError(
                f"--out {path}: {where} already holds files that are not part of a facegan run ({foreign[0]!r}, ...); "
                "pass a new folder such as runs/NAME"
            )

    # ---- runs and exports ------------------------------------------------------------------------
    @staticmethod
    def containing(export_dir: str | os.PathLike) -> "Run | None":
        """The run an export folder belongs to (RUN/export or RUN/export-best), or None for a stand-alone export."""
        export_dir = Path(export_dir)
        if export_dir.name in EXPORT_DIR_NAMES:
            parent = Run(export_dir.parent)
            if parent.is_run():
                return parent
        return None

    @staticmethod
    def locate(path: str | os.PathLike) -> "Located":
        """What a RUN_OR_EXPORT argument names: a run folder, an export folder, or an export's weights file.

        Raises one clear FaceganError when it is none of them.
        """
        given = Path(path)
        if not given.exists():
            raise FaceganError(f"no such run or export: {given}")
        if given.is_file():
            if given.suffix == ".pt":
                raise FaceganError(f"{given} is a training checkpoint (resume state); pass the run folder or its export/ folder")
            if given.name != EXPORT_WEIGHTS_NAME:
                raise FaceganError(f"{given} is not a facegan export; pass a run folder, an export folder or its {EXPORT_WEIGHTS_NAME}")
            given = given.parent
        if not given.is_dir():
            raise FaceganError(f"{given} is neither a run folder nor an export folder")
        run = Run(given)
        if run.is_run():
            if not run.has_export():
                raise FaceganError(
                    f"{given} holds a run but no generator export yet (no {EXPORT_DIR}/{EXPORT_WEIGHTS_NAME}); "
                    f"train it until its first checkpoint, or resume it with `facegan train --out {given} --resume`"
                )
            return Located(run=run, export_dir=run.export_dir)
        if is_export_folder(given):
            return Located(run=Run.containing(given), export_dir=given)
        raise FaceganError(
            f"{given} holds no generator export ({EXPORT_CONFIG_NAME} + {EXPORT_WEIGHTS_NAME}); train a model first or pass the run folder"
        )


@dataclass(frozen=True)
class Located:
    """A RUN_OR_EXPORT argument, resolved: the export to load and the run it belongs to (None if stand-alone)."""

    run: Run | None
    export_dir: Path

    @property
    def results_dir(self) -> Path:
        """Where results about this model (metrics.json, audit.json) go: its run folder, else the export folder."""
        return self.run.path if self.run is not None else self.export_dir


_RUN_ENTRIES = frozenset({
    CONFIG_NAME, RUN_INFO_NAME, STATS_NAME, TENSORBOARD_DIR, SAMPLES_DIR, CHECKPOINTS_DIR, EXPORT_DIR, EXPORT_BEST_DIR,
    METRICS_NAME, AUDIT_NAME, REPORT_NAME, SUMMARY_NAME, LOSS_CURVES_NAME, LOCK_NAME, *VERIFICATION_NAMES,
    REPAIR_EVAL_NAME, REPAIR_STRIP_NAME, EDITING_DIR, ATTACKS_DIR, FEDERATED_NAME, FEDERATED_DIR, ROUNDS_DIR,
})


def _is_run_entry(name: str) -> bool:
    """Whether a file name in a folder is one facegan puts in a run (hidden files such as temp files count too)."""
    return name in _RUN_ENTRIES or name.startswith(".") or (name.startswith("audit_") and name.endswith(".png"))


def is_export_folder(path: str | os.PathLike) -> bool:
    """Whether `path` holds an export's two files (their content is checked when it is loaded)."""
    folder = Path(path)
    return (folder / EXPORT_CONFIG_NAME).is_file() and (folder / EXPORT_WEIGHTS_NAME).is_file()


def _truncate_lines(path: Path, key: str, maximum: float) -> None:
    """Keep the JSON lines of `path` whose numeric `key` is at most `maximum` (lines without one stay)."""
    if not path.exists():
        return
    from facegan.files import write_bytes_atomic

    kept = [line for line in iter_stats(path) if not _is_number(line.get(key)) or line[key] <= maximum]
    write_bytes_atomic(path, "".join(json.dumps(line) + "\n" for line in kept).encode())


def _is_number(value: Any) -> bool:
    """A real number (bool is not one): a hand-edited stats line may hold "abc", null or a list as kimg."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def iter_stats(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Complete JSON-object lines of a stats.jsonl (torn or foreign lines are skipped)."""
    path = Path(path)
    if not path.is_file():
        return
    with open(path, errors="replace") as handle:
        for line in handle:
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                yield value


class RunLock:
    """An exclusive, advisory lock on a run folder (flock on RUN/.lock), held while a process writes there.

    The kernel releases a flock when its holder exits, however it exits (even SIGKILL), so a lock left
    behind by a dead process is never in the way: the next taker simply gets it. The holder's pid is
    written into the file so a refused process can say who holds it.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._handle: Any = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> "RunLock":
        import fcntl

        if self._handle is not None:
            return self
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")
        except OSError as error:
            # A read-only or foreign folder, or a file where the folder should be: say so before any work.
            raise FaceganError(f"cannot write to the run folder {folder} ({error.strerror or error}); choose another --out") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise FaceganError(
                    f"{self.path.parent} is in use by another facegan process (pid {holder}); "
                    "wait for it to finish or stop it, or choose another --out"
                ) from None
            raise FaceganError(f"cannot lock {self.path} ({error.strerror})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is None:
            return
        import fcntl

        try:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        finally:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    from facegan.config import load_json_object

    return load_json_object(path, what)


def _read_json_optional(path: Path) -> dict[str, Any] | None:
    from facegan.config import load_json_optional

    return load_json_optional(path)


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    from facegan.config import save_json

    save_json(data, path)
    return path
