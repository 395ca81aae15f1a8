"""What each tab does, as plain functions: names from the browser in, files and one-line readings out.

Each action resolves the names it is given through `Roots` (the only door to the file system), calls
the same API functions as the CLI (Generator.sample/interpolate, facegan.train, the report card ...)
and writes every image through facegan's image writer with its provenance. No gradio here: the UI in
`facegan.web.app` only lays these out, and the tests call them directly too.
"""
from __future__ import annotations

import json
import secrets
import tempfile
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facegan.errors import FaceganError
from facegan.web.paths import Roots

if TYPE_CHECKING:
    import numpy as np

# The most faces one Generate click renders (a grid and a file each): bounded work per request.
MAX_UI_IMAGES = 256
MAX_INTERPOLATION_STEPS = 64
# Generators kept loaded between requests (by export path and weights' mtime).
GENERATOR_CACHE_SIZE = 4
SEED_MODES = ("single", "range", "random")
MAX_SEED = 2**31 - 1


def new_work_dir() -> Path:
    """A private folder for one server's downloads in the temp folder; those of servers killed with SIGKILL (which
    cannot remove theirs) go first."""
    from facegan.files import remove_stale_siblings, staging_sibling

    anchor = Path(tempfile.gettempdir()) / "facegan-serve"
    remove_stale_siblings(anchor, "work")
    folder = staging_sibling(anchor, "work")
    folder.mkdir(mode=0o700)
    return folder


@dataclass
class Session:
    """What a running `facegan serve` shares between requests: its roots, a work folder for downloads,
    loaded generators and the one training job."""

    roots: Roots
    work_dir: Path = field(default_factory=lambda: new_work_dir())
    _generators: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def output_folder(self) -> Path:
        """A fresh folder for one request's files (gradio serves them from its own cache copy)."""
        folder = self.work_dir / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return folder

    def generator(self, name: str):
        """The generator of a run or export under --runs, loaded once (reloaded when its weights change)."""
        from facegan.models.export import load_generator, resolve_export_path

        export_dir = resolve_export_path(self.roots.resolve("runs", name))
        weights = export_dir / "model.safetensors"
        key = (str(export_dir), weights.stat().st_mtime_ns if weights.exists() else 0)
        with self._lock:
            if key in self._generators:
                self._generators.move_to_end(key)
                return self._generators[key]
        generator = load_generator(export_dir)
        with self._lock:
            self._generators[key] = generator
            while len(self._generators) > GENERATOR_CACHE_SIZE:
                self._generators.popitem(last=False)
        return generator


# ---- listings -----------------------------------------------------------------------------------------
def _read_small(path: Path) -> bytes:
    """A small JSON file under the roots, never blocking on a FIFO or reading a device (ReadRefused is an OSError here)."""
    from facegan.files import ReadRefused, read_regular_file

    try:
        return read_regular_file(path, 16 * 2**20)
    except ReadRefused as refused:
        raise OSError(str(refused)) from None


def _export_format(folder: Path) -> str | None:
    try:
        config = json.loads(_read_small(folder / "config.json"))
    except (OSError, ValueError, RecursionError):
        return None
    return config.get("format") if isinstance(config, dict) else None


def _model_export(path: Path) -> Path | None:
    """The export folder of a run or stand-alone export at `path`, or None."""
    from facegan.run import Run, is_export_folder

    run = Run(path)
    if run.is_run() and run.has_export():
        return run.export_dir
    return path if is_export_folder(path) else None


def list_generators(roots: Roots) -> list[str]:
    """Runs and exports under --runs that hold a GAN generator."""
    def keep(path: Path) -> bool:
        export = _model_export(path)
        return export is not None and _export_format(export) == "facegan-generator"

    return roots.folders("runs", keep)


def list_datasets(roots: Roots) -> list[str]:
    """Prepared datasets (from `facegan data prepare`) under --data."""
    from facegan.data.dataset import MANIFEST_NAME, is_dataset_manifest

    def keep(path: Path) -> bool:
        try:
            return is_dataset_manifest(json.loads(_read_small(path / MANIFEST_NAME)))
        except (OSError, ValueError, RecursionError):
            return False

    return roots.folders("data", keep)


# ---- Generate and Interpolate ------------------------------------------------------------------------
def _whole_number(value: Any, name: str, low: int, high: int) -> int:
    """A number field from the browser (a float or None) as an int in [low, high], or one line."""
    if value is None or isinstance(value, bool):
        raise FaceganError(f"{name} is empty; enter a whole number from {low} to {high}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FaceganError(f"{name} must be a whole number from {low} to {high}, got {value!r:.40}") from None
    if not number.is_integer() or not low <= number <= high:
        raise FaceganError(f"{name} must be a whole number from {low} to {high}, got {value!r:.40}")
    return int(number)


def choose_seeds(mode: str, seed: Any, count: Any) -> tuple[list[int], str]:
    """The seeds a Generate click asks for, and how provenance names them ("5", "0-15")."""
    if mode not in SEED_MODES:
        raise FaceganError(f"unknown seed mode {mode!r:.40}; pick one of {', '.join(SEED_MODES)}")
    if mode == "random":
        seed = secrets.randbelow(MAX_SEED - MAX_UI_IMAGES)
    first = _whole_number(seed, "seed", 0, MAX_SEED)
    number = 1 if mode == "single" else _whole_number(count, "number of faces", 1, MAX_UI_IMAGES)
    if first + number - 1 > MAX_SEED:
        raise FaceganError(f"seeds {first}..{first + number - 1} run past {MAX_SEED}; start lower")
    seeds = list(range(first, first + number))
    return seeds, (str(first) if number == 1 else f"{first}-{first + number - 1}")


@dataclass
class Generated:
    grid: Path
    faces: list[Path]
    reading: str


def generate(session: Session, run: str, mode: str, seed: Any, count: Any, truncation: Any, columns: Any = None) -> Generated:
    """Faces by seed: a grid (downloadable) and one PNG per seed, each carrying its provenance."""
    from facegan.images import make_grid, save_image
    from facegan.models.export import check_truncation

    seeds, label = choose_seeds(mode, seed, count)
    truncation = check_truncation(truncation)
    num_columns = None if columns in (None, 0, 0.0) else _whole_number(columns, "grid columns", 1, MAX_UI_IMAGES)
    generator = session.generator(run)
    images = generator.sample(seeds, truncation=truncation)  # uint8 (N, H, W, C), the bytes `facegan sample` writes
    folder = session.output_folder()
    provenance = generator.provenance("serve", label)
    faces = [save_image(image, folder / f"seed{seed_:05d}.png", provenance.with_seed(seed_)) for seed_, image in zip(seeds, images)]
    grid = faces[0] if len(seeds) == 1 else save_image(make_grid(images, num_columns), folder / f"grid-{label}.png", provenance)
    reading = (f"{len(seeds)} face{'s' if len(seeds) > 1 else ''} of {run}, seed{'s' if len(seeds) > 1 else ''} {label}, "
               f"truncation {truncation:g}, {generator.resolution}x{generator.resolution} px; every file carries its provenance (XMP).")
    return Generated(grid, faces, reading)


@dataclass
class Interpolated:
    strip: Path
    animation: Path  # animated WebP
    reading: str


def interpolate(session: Session, run: str, seed_a: Any, seed_b: Any, steps: Any, truncation: Any) -> Interpolated:
    """The spherical walk in z from one seed to another, as one strip (as `facegan interpolate`) and an animation."""
    import numpy as np

    from facegan.files import write_bytes_atomic
    from facegan.images import animation_bytes, make_grid, save_image, upscale_nearest
    from facegan.models.export import check_truncation

    def upscale_nearest_all(images, side):
        return np.stack([upscale_nearest(image, side) for image in images])

    first = _whole_number(seed_a, "first seed", 0, MAX_SEED)
    last = _whole_number(seed_b, "second seed", 0, MAX_SEED)
    num_steps = _whole_number(steps, "steps", 2, MAX_INTERPOLATION_STEPS)
    truncation = check_truncation(truncation)
    generator = session.generator(run)
    frames = generator.interpolate(first, last, num_steps, truncation)  # uint8 (steps, H, W, C)
    folder = session.output_folder()
    provenance = generator.provenance("serve", f"{first},{last}")
    strip = save_image(make_grid(frames, num_columns=num_steps), folder / f"interpolation-{first}-{last}.png", provenance)
    # There and back, as one looping animation (animated WebP: it carries the provenance, a GIF could not).
    loop = np.concatenate([frames, frames[-2:0:-1]]) if num_steps > 2 else frames
    animation = folder / f"interpolation-{first}-{last}.webp"
    write_bytes_atomic(animation, animation_bytes(upscale_nearest_all(loop, 128), provenance))
    return Interpolated(strip, animation, f"{first} -> {last} in {num_steps} steps (ends included), truncation {truncation:g}.")


# ---- Runs ---------------------------------------------------------------------------------------------
RUN_COLUMNS = ["run", "preset", "kimg", "FD", "KID", "face rate", "epsilon", "audit"]


def _number(value: Any, spec: str = ".4g") -> str:
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def run_rows(roots: Roots) -> list[list[str]]:
    """One row per generator under --runs: what `facegan eval`, the privacy ledger and `facegan audit` recorded."""
    from facegan.run import Run

    rows = []
    for name in list_generators(roots):
        path = roots.resolve("runs", name)
        run = Run(path)
        export = _model_export(path)
        try:
            export_config = json.loads(_read_small(export / "config.json")) if export else {}
        except (OSError, ValueError, RecursionError):
            export_config = {}
        summary = (run.read_summary() if run.is_run() else None) or {}
        metrics = ((run.read_metrics() if run.is_run() else None) or {}).get("metrics", {})
        audit = run.read_audit() if run.is_run() else None
        privacy = export_config.get("dp") if isinstance(export_config.get("dp"), dict) else {}  # the ledger's spent epsilon
        verdict = "–" if audit is None else ("flagged: " + "; ".join(audit.get("warnings", []))[:120] if audit.get("flagged") else "clear")
        rows.append([name, str(export_config.get("preset", "–")), _number(summary.get("kimg", export_config.get("kimg"))),
                     _number(metrics.get("fd")), _number(metrics.get("kid_mean")), _number(metrics.get("face_rate")),
                     _number(privacy.get("epsilon")), verdict])
    return rows


def report_card(session: Session, run: str) -> Path:
    """The run's report card (`facegan report RUN`), written into the run folder; returns its path."""
    from facegan.report.card import build_report

    return build_report(session.roots.resolve("runs", run))


# ---- Train --------------------------------------------------------------------------------------------
MAX_TRAIN_KIMG = 100.0  # "a small training": longer runs belong to `facegan train`
# Config fields a web form sets itself (paths go only through Roots); an override of one is refused.
FORM_FIELDS = {"data": "pick the dataset above", "out": "the run goes under --runs by its name", "preset": "pick the preset above",
               "kimg": "set kimg above", "init_from": "warm starts from another run are for `facegan train --init-from`"}


@dataclass
class TrainingJob:
    """The one training a server runs at a time, in a worker thread, stopped cleanly through should_stop."""

    run_name: str
    run_dir: Path
    kimg_total: float
    stop: threading.Event = field(default_factory=threading.Event)
    kimg_done: float = 0.0
    last_stats: dict = field(default_factory=dict)
    state: str = "running"  # running, stopping, finished, stopped, failed
    message: str = ""
    thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


class Trainer:
    """Starts one `facegan.train` at a time from the web UI and reports its progress."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.job: TrainingJob | None = None
        self._lock = threading.Lock()

    def start(self, dataset: str, run_name: str, preset: str, kimg: Any, overrides_text: str = "") -> TrainingJob:
        import logging

        import facegan
        from facegan.training.config import resolve_config

        with self._lock:
            if self.job is not None and self.job.active:
                raise FaceganError(f"a training is already running ({self.job.run_name}); stop it or wait for it to end — one at a time")
            data_dir = self.session.roots.resolve("data", dataset)
            if not isinstance(run_name, str) or not run_name.strip():
                raise FaceganError("give the new run a name, e.g. web-try")
            out = self.session.roots.resolve("runs", run_name.strip(), must_exist=False)
            if out.exists():
                raise FaceganError(f"run '{run_name.strip()}' exists already; give a new name (resuming is `facegan train --resume`)")
            try:
                total = float(kimg)
            except (TypeError, ValueError):
                raise FaceganError(f"kimg must be a number, got {kimg!r:.40}") from None
            if not 0 < total <= MAX_TRAIN_KIMG:
                raise FaceganError(f"kimg must be above 0 and at most {MAX_TRAIN_KIMG:g} here (longer runs: `facegan train`), got {kimg!r:.40}")
            overrides = [line.strip() for line in (overrides_text or "").splitlines() if line.strip()]
            for line in overrides:
                key = line.partition("=")[0].strip()
                if key in FORM_FIELDS:
                    raise FaceganError(f"'{key}' cannot be overridden here: {FORM_FIELDS[key]}")
            config = resolve_config(preset, {"data": str(data_dir), "out": str(out), "kimg": total}, overrides)
            config.validate()
            if (config.data, config.out, config.init_from) != (str(data_dir), str(out), ""):  # no path but the two the roots gave
                raise FaceganError("the overrides changed where the run reads or writes; only the form picks the dataset and the run")
            job = TrainingJob(run_name.strip(), out, total)

            def progress(done: float, total_kimg: float) -> None:
                job.kimg_done, job.kimg_total = float(done), float(total_kimg)

            def on_log(stats: dict) -> None:
                job.last_stats = dict(stats)

            def work() -> None:
                try:
                    result = facegan.train(config, progress=progress, on_log=on_log, should_stop=job.stop.is_set)
                    job.kimg_done = result.kimg
                    if result.interrupted:
                        job.state, job.message = "stopped", f"stopped cleanly at {result.kimg:.3f} kimg; checkpoint and export saved in {job.run_name}"
                    else:
                        job.state, job.message = "finished", f"finished {result.kimg:.3f} kimg in {result.seconds:.0f} s; export in {job.run_name}/export"
                except FaceganError as error:
                    job.state, job.message = "failed", " ".join(str(error).split())
                except Exception:  # noqa: BLE001 - the user sees one line; the traceback goes to the server's log
                    logging.getLogger("facegan").exception("web training failed")
                    job.state, job.message = "failed", "training failed with an internal error; see the server's log"

            job.thread = threading.Thread(target=work, name=f"facegan-train-{job.run_name}", daemon=True)
            self.job = job
            job.thread.start()
            return job

    def request_stop(self) -> str:
        job = self.job
        if job is None or not job.active:
            return "no training is running"
        job.stop.set()
        job.state = "stopping"
        return f"stopping {job.run_name} after its current step (it saves a checkpoint first)"

    def loss_plot(self) -> Path | None:
        """The run's loss curves so far (facegan.plots, as the report card draws them), or None before the first log line."""
        from facegan.plots import plot_training_curves
        from facegan.run import Run

        job = self.job
        if job is None or not Run(job.run_dir).stats_path.is_file():
            return None
        return plot_training_curves(Run(job.run_dir).stats_path, self.session.output_folder() / "loss_curves.png")


# ---- Is my face in the training set? -----------------------------------------------------------------
def run_dataset(session: Session, run: str | None) -> str | None:
    """The dataset a run trained on, as a name under --data (None when it is elsewhere or unknown)."""
    from facegan.run import Run

    try:
        path = session.roots.resolve("runs", run)
        located = Run.locate(path)
    except FaceganError:
        return None
    config_path = located.run.config_path if located.run is not None else None
    try:
        data = json.loads(_read_small(config_path)).get("data") if config_path else None
    except (OSError, ValueError, RecursionError, AttributeError):
        return None
    if not isinstance(data, str):
        return None
    resolved = Path(data).resolve()
    root = session.roots.data
    return session.roots.relative("data", resolved) if root in resolved.parents and resolved.is_dir() else None


@dataclass
class Membership:
    face: Path  # the uploaded face as the training set stores faces
    pixel: list[tuple[Path, str]]  # (image, caption) of the closest training faces in pixel space
    face_space: list[tuple[Path, str]]
    generated: list[tuple[Path, str]]
    table: list[list[str]]
    reading: str


def membership(session: Session, run: str, dataset: str, photo: Any, num_samples: Any) -> Membership:
    """One person's identity-leakage check: the photo is prepared as the training set was (`data prepare --align`
    dlib, center or none; dlib for built-in crops and drawn faces, which have no such mode), then compared with the
    training faces and the model's samples (facegan.privacy.person.check_person)."""
    import numpy as np

    from facegan.data.dataset import FaceDataset
    from facegan.data.pipeline import alignment_of
    from facegan.images import save_image
    from facegan.privacy.person import MAX_NUM_SAMPLES, check_person
    from facegan.provenance.record import Provenance
    from facegan.web.uploads import prepare_upload

    count = _whole_number(num_samples, "number of generated faces", 1, MAX_NUM_SAMPLES)
    generator = session.generator(run)
    train = FaceDataset.load(session.roots.resolve("data", dataset))
    size, channels = int(train.images.shape[1]), int(train.images.shape[3])
    align = alignment_of(train.manifest)
    face = prepare_upload(photo, size, channels, align=align or "dlib")
    check = check_person(face, train, generator, num_samples=count)
    reading = check.reading
    if align is None:
        reading += (f" The training faces are {train.manifest.get('alignment') or 'of unknown framing'}, not a `data prepare --align` "
                    "mode; your photo was aligned with dlib, so pixel distances compare differently framed faces (face space is the fairer one).")
    folder = session.output_folder()
    real = Provenance(source_type=None, action="serve")  # training photos and the upload: re-encoded, nothing generated
    face_path = save_image(check.face, folder / "your-face.png", real)

    def training(rows, space):
        return [(save_image(np.asarray(train.images[index]), folder / f"{space}-train{index:05d}.png", real), f"training #{index}: {distance:.3f}")
                for index, distance in rows]

    samples = generator.sample([seed for seed, _ in check.generated]) if check.generated else []
    generated = [(save_image(image, folder / f"generated-seed{seed:05d}.png", generator.provenance("serve").with_seed(seed)), f"seed {seed}: {distance:.3f}")
                 for (seed, distance), image in zip(check.generated, samples)]
    table = [["closest training face, pixel space", f"#{check.pixel[0][0]}", f"{check.pixel[0][1]:.4f}", "–", "–"],
             ["closest training face, face space", f"#{check.face_space[0][0]}", f"{check.face_space[0][1]:.4f}", f"{check.threshold:g}",
              "match" if check.in_training_set else "no match"]]
    if check.generated:
        table.append([f"closest generated face (of {check.num_generated_faces} dlib finds in {check.num_samples})", f"seed {check.generated[0][0]}",
                      f"{check.generated[0][1]:.4f}", f"{check.threshold:g}", "match" if check.generated_match else "no match"])
    return Membership(face_path, training(check.pixel, "pixel"), training(check.face_space, "face"), generated, table, reading)


# ---- Verify -------------------------------------------------------------------------------------------
VERIFY_CHIP_SIZE = 150  # dlib's chip size; every recogniser resizes chips to its own input
OWN_THRESHOLD = "each recogniser's own threshold"


def list_recognisers(roots: Roots) -> list[str]:
    """Registered recognisers (dlib, lbph, pixel ...) and recogniser runs/exports under --runs (as `runs:NAME`)."""
    from facegan.faces.recognisers import available_recognisers

    def keep(path: Path) -> bool:
        export = _model_export(path)
        return export is not None and _export_format(export) == "facegan-recogniser"

    return list(available_recognisers()) + [f"runs:{name}" for name in roots.folders("runs", keep)]


def list_evaluations(roots: Roots) -> list[str]:
    """Folders under --runs holding a `facegan recog eval` result (verification.json)."""
    from facegan.run import VERIFICATION_NAME

    return roots.folders("runs", lambda path: (path / VERIFICATION_NAME).is_file())


def _recogniser(session: Session, name: str):
    from facegan.faces.recognisers import available_recognisers
    from facegan.recognition.resolve import resolve_recogniser

    if name in available_recognisers():
        return resolve_recogniser(name)
    if isinstance(name, str) and name.startswith("runs:"):
        return resolve_recogniser(session.roots.resolve("runs", name[len("runs:"):]))
    raise FaceganError(f"unknown recogniser {name!r:.60}; pick one from the list")


@dataclass
class Verified:
    faces: tuple[Path, Path]
    table: list[list[str]]
    reading: str


def verify_pair(session: Session, photo_a: Any, photo_b: Any, recognisers: list[str], evaluation: str | None) -> Verified:
    """Two photos -> same person or not, per recogniser: score = minus its distance (as `recog eval`), against the
    threshold that evaluation chose (the median of its fold thresholds) or the recogniser's own match threshold."""
    import numpy as np

    from facegan.images import save_image
    from facegan.provenance.record import Provenance
    from facegan.recognition.verification import load_verification
    from facegan.web.uploads import prepare_upload

    if not recognisers:
        raise FaceganError("no recogniser chosen; tick at least one")
    record = None
    if evaluation and evaluation != OWN_THRESHOLD:
        record = load_verification(session.roots.resolve("runs", evaluation))
        if record is None:
            raise FaceganError(f"{evaluation} holds no readable verification.json; run `facegan recog eval` into it")
    first = prepare_upload(photo_a, VERIFY_CHIP_SIZE, 3, what="first photo")
    second = prepare_upload(photo_b, VERIFY_CHIP_SIZE, 3, what="second photo")
    rows, verdicts, done = [], [], set()
    for name in recognisers:
        recogniser = _recogniser(session, name)
        if recogniser.name in done:  # an alias (dlib = dlib-resnet): scored once
            continue
        done.add(recogniser.name)
        descriptors = recogniser.embed(np.stack([first, second]))  # (2, dim)
        score = -float(recogniser.distance(descriptors[:1], descriptors[1:])[0])  # higher = more alike
        thresholds = [fold["threshold"] for fold in (record or {}).get("folds", []) if isinstance(fold.get("threshold"), (int, float))]
        if record is not None and record.get("recogniser") == recogniser.name and thresholds:
            threshold, source = float(np.median(thresholds)), f"{evaluation} (median of {len(thresholds)} folds)"
        else:
            threshold, source = -float(recogniser.threshold), f"its own ({recogniser.match.metric} distance < {recogniser.threshold:g})"
        same = score >= threshold
        shown_name = name if name.startswith("runs:") else recogniser.name  # a run by its name under --runs, not its server path
        verdicts.append(f"{shown_name}: {'same person' if same else 'different people'}")
        rows.append([shown_name, f"{score:.4f}", f"{threshold:.4f}", source, "same person" if same else "different people"])
    folder = session.output_folder()
    real = Provenance(source_type=None, action="serve")
    faces = (save_image(first, folder / "first.png", real), save_image(second, folder / "second.png", real))
    return Verified(faces, rows, "; ".join(verdicts) + ".")


# ---- Repair -------------------------------------------------------------------------------------------
REPAIR_BASELINES = ("telea", "ns")  # OpenCV inpainting: no model
BASELINE_SIZE = 64
MASK_CHOICES = ("eyes", "mouth", "box", "strokes", "painted")
MAX_PROJECTION_STEPS = 1000


def list_repair_models(roots: Roots) -> list[str]:
    """What can repair: repair-network runs (`net:NAME`), generators by projection (`projection:NAME`), OpenCV baselines."""
    def keep(path: Path) -> bool:
        export = _model_export(path)
        return export is not None and _export_format(export) == "facegan-repairer"

    return ([f"net:{name}" for name in roots.folders("runs", keep)] + [f"projection:{name}" for name in list_generators(roots)]
            + list(REPAIR_BASELINES))


def _repair_model(session: Session, choice: str):
    """(method, model or None, resolution, channels) for a choice of list_repair_models."""
    from facegan.repair.export import load_repairer

    if choice in REPAIR_BASELINES:
        return choice, None, None, None
    method, _, name = (choice or "").partition(":")
    if method == "net":
        repairer = load_repairer(session.roots.resolve("runs", name))
        return "net", repairer, repairer.resolution, repairer.channels
    if method == "projection":
        generator = session.generator(name)
        return "projection", generator, generator.resolution, generator.channels
    raise FaceganError(f"unknown repair method {choice!r:.60}; pick one from the list")


def painted_mask(editor_value: Any, size: int) -> np.ndarray:
    """The strokes painted in the UI's editor (any layer, any colour) as a bool (size, size) hole mask."""
    import numpy as np
    from PIL import Image

    layers = (editor_value or {}).get("layers") if isinstance(editor_value, dict) else None
    painted = None
    for layer in layers or []:
        array = np.asarray(layer)
        if array.ndim == 3 and array.shape[2] == 4:
            alpha = array[..., 3] > 0
            painted = alpha if painted is None else painted | alpha
    if painted is None or not painted.any():
        raise FaceganError("no mask painted: paint over the parts to repair (or pick eyes, mouth, box or strokes)")
    # A chip pixel is a hole when at least a quarter of the painted screen pixels over it are painted.
    shrunk = Image.fromarray(painted.astype(np.uint8) * 255).resize((size, size), Image.Resampling.BOX)
    return np.asarray(shrunk) >= 64


@dataclass
class Repaired:
    original: Path
    masked: Path
    repaired: Path
    reading: str


def repair_face(session: Session, photo: Any, choice: str, mask_kind: str, ratio: Any, seed: Any, steps: Any,
                editor_value: Any = None) -> Repaired:
    """Hide part of an uploaded face (a generated mask or the painted one) and repair it, as `facegan repair apply`."""
    import numpy as np

    from facegan.images import save_image
    from facegan.provenance.record import COMPOSITE, EDITED, Provenance
    from facegan.repair.export import fit_channels, repair_images
    from facegan.repair.masks import make_masks
    from facegan.web.uploads import prepare_upload

    method, model, resolution, channels = _repair_model(session, choice)
    size = resolution or BASELINE_SIZE
    face = prepare_upload(photo, size, channels or 3)[None]  # (1, S, S, C), as `data prepare --align dlib` stores it
    face = fit_channels(face, channels or face.shape[3], "the repair model")
    mask_seed = _whole_number(seed, "mask seed", 0, 2**31 - 1)
    if mask_kind == "painted":
        masks = painted_mask(editor_value, size)[None]
    elif mask_kind in MASK_CHOICES:
        try:
            fraction = float(ratio)
        except (TypeError, ValueError):
            raise FaceganError(f"mask ratio must be a number from 0.01 to 0.95, got {ratio!r:.40}") from None
        masks = make_masks(1, size, mask_kind, fraction, mask_seed)
    else:
        raise FaceganError(f"unknown mask {mask_kind!r:.40}; pick one of {', '.join(MASK_CHOICES)}")
    options = {"steps": _whole_number(steps, "projection steps", 1, MAX_PROJECTION_STEPS)} if method == "projection" else None
    masked = np.where(masks[..., None], np.uint8(0), face)  # holes hidden before any method sees them
    repaired = repair_images(method, face, masks, model=model, seed=mask_seed, projection_options=options)
    folder = session.output_folder()
    provenance = Provenance(source_type=COMPOSITE if method in ("net", "projection") else EDITED, action="repair")
    if method == "projection":
        provenance = provenance.about(model.export_hash, model.fingerprint_id)
    real = Provenance(source_type=None, action="serve")
    share = float(masks.mean())
    return Repaired(save_image(face[0], folder / "original.png", real),
                    save_image(masked[0], folder / "masked.png", real.with_source(EDITED)),
                    save_image(repaired[0], folder / f"repaired-{method}.png", provenance),
                    f"{share:.0%} of the {size}x{size} face hidden ({mask_kind}) and repaired with {choice}; known pixels are kept exactly.")


def face_to_paint(session: Session, photo: Any, choice: str) -> Path:
    """The uploaded face, aligned at the repair model's size and enlarged (pixel-exact) to paint a mask on."""
    from facegan.images import save_image, upscale_nearest
    from facegan.provenance.record import Provenance
    from facegan.web.uploads import prepare_upload

    _, _, resolution, channels = _repair_model(session, choice)
    face = prepare_upload(photo, resolution or BASELINE_SIZE, channels or 3)
    return save_image(upscale_nearest(face, 256), session.output_folder() / "paint-on-me.png", Provenance(source_type=None, action="serve"))


# ---- Edit ---------------------------------------------------------------------------------------------
MAX_EDIT_STRENGTH = 6.0
MAX_EDIT_SAMPLES = 20000


def dataset_attribute_names(session: Session, dataset: str | None) -> list[str]:
    """The attribute labels of a dataset under --data ([] when it has none)."""
    from facegan.data.dataset import FaceDataset

    if not dataset:
        return []
    try:
        return list(FaceDataset.load(session.roots.resolve("data", dataset)).attribute_names or [])
    except FaceganError:
        return []


@dataclass
class Edited:
    strip: Path
    report: dict
    reading: str


def edit_face(session: Session, run: str, dataset: str, attribute: str, strength: Any, source: str, seed: Any, photo: Any,
              num_samples: Any, projection_steps: Any) -> Edited:
    """A seed's face, or an uploaded face projected into the GAN, moved along an attribute direction (facegan.editing.edit_strip):
    the face at strength 0 and at the chosen strength, with the measurements `facegan edit` writes."""
    from facegan.editing.edit import edit_strip, strip_image
    from facegan.images import save_image
    from facegan.models.export import resolve_export_path
    from facegan.provenance.record import COMPOSITE, Provenance
    from facegan.web.uploads import prepare_upload

    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise FaceganError(f"strength must be a number from {-MAX_EDIT_STRENGTH:g} to {MAX_EDIT_STRENGTH:g}") from None
    if not -MAX_EDIT_STRENGTH <= value <= MAX_EDIT_STRENGTH:
        raise FaceganError(f"strength must be a number from {-MAX_EDIT_STRENGTH:g} to {MAX_EDIT_STRENGTH:g}, got {strength!r:.40}")
    samples = _whole_number(num_samples, "faces sampled to find the direction", 100, MAX_EDIT_SAMPLES)
    model_path = resolve_export_path(session.roots.resolve("runs", run))
    data = session.roots.resolve("data", dataset)
    generator = session.generator(run)
    strengths = sorted({0.0, value})
    if source == "seed":
        first = _whole_number(seed, "seed", 0, MAX_SEED)
        result = edit_strip(model_path, attribute, strengths, seeds=[first], data=data, num_samples=samples)
        provenance = generator.provenance("edit", str(first))
        label = f"seed {first}"
    elif source == "uploaded face":
        from facegan.inversion import project

        steps = _whole_number(projection_steps, "projection steps", 1, MAX_PROJECTION_STEPS)
        face = prepare_upload(photo, generator.resolution, generator.channels)
        projected = project(generator, face[None], steps=steps)
        result = edit_strip(model_path, attribute, strengths, latents=projected.z, data=data, num_samples=samples)
        provenance = Provenance(source_type=COMPOSITE, action="edit").about(generator.export_hash, generator.fingerprint_id)
        label = f"your face (projected, {steps} steps)"
    else:
        raise FaceganError(f"unknown face source {source!r:.40}; pick seed or uploaded face")
    strip = save_image(strip_image(result.images), session.output_folder() / f"edit-{attribute}.png", provenance)
    return Edited(strip, result.report, f"{label}: {attribute} at strength 0 (left) and {value:g} (right).")
