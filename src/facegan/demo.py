"""The main job on the built-in faces (`make demo`): prepare -> train -> sample -> summarise.

Idempotent: a prepared dataset is reused, a finished run is not trained again, an interrupted one
resumes. Everything lands in one folder whose path is printed at the end.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facegan.errors import FaceganError
from facegan.provenance.record import Provenance

BUILTIN_SOURCE = "builtin:lfw-subset"
STEPS = 9
# DP fine-tuning of the public model on the private half (measured in benchmarks/privacy_utility.py --pretrained:
# a lower learning rate keeps the pretrained faces; at 2e-4 the noisy discriminator took the face rate to 0 within 2 kimg).
DP_FINETUNE = {"kimg": 2.0, "batch_size": 32, "lr": 1e-5}

RECOGNISERS = ("dlib", "lbph", "pixel")  # plus the one trained here


@dataclass
class RecognitionPlan:
    """Steps 8-9: an identity-aware GAN on the built-in faces, new people from it, a recogniser trained on
    some of them and four recognisers tested on others (none of them seen in any training)."""

    id_kimg: float = 30.0
    recog_steps: int = 150
    recog_batch_size: int = 64
    synth_train: dict = field(default_factory=lambda: {"identities": 60, "per_identity": 8, "seed": 0})
    synth_test: dict = field(default_factory=lambda: {"identities": 40, "per_identity": 8, "seed": 1_000_000})  # far from the training people's seeds
    folds: int = 10
    pairs_per_fold: int = 30
    # dlib's 0.6 at 32 px would call most of the 80 training faces the same as some other one, so it
    # would reject every candidate: new people must be no closer to a training face than those are to each other.
    min_distance: "float | str | None" = "reference"


def ensure_builtin_dataset(path: Path, size: int) -> "FaceDataset":  # noqa: F821
    """The built-in faces prepared at `size`, reusing an earlier preparation."""
    from facegan.data.dataset import MANIFEST_NAME, FaceDataset
    from facegan.data.pipeline import prepare_dataset

    if (path / MANIFEST_NAME).is_file():
        dataset = FaceDataset.load(path)
        if dataset.resolution == size and dataset.manifest.get("source") == BUILTIN_SOURCE:
            return dataset
    return prepare_dataset(BUILTIN_SOURCE, path, size=size, progress=True)


def ensure_trained(config, progress: bool = True) -> dict:
    """Train `config`, or resume it if a previous demo was cut short, or skip it if it is done."""
    from facegan import train
    from facegan.cli.progress import TrainingProgress
    from facegan.data.dataset import FaceDataset
    from facegan.run import Run

    run = Run(config.out)
    trained_on = (run.read_run_info() or {}).get("dataset_hash")
    if trained_on is not None and trained_on != FaceDataset.load(config.data).content_hash:
        raise FaceganError(f"{run.path} was trained on other data (an earlier demo's); remove it (`rm -rf {run.path}`) and run "
                           "the demo again (`make clean` would also remove the venv)")
    summary = run.read_summary()
    if summary is not None:
        done = summary.get("kimg", 0) >= config.kimg - 1e-9 or summary.get("stopped_early")
        if done and not summary.get("interrupted"):
            print(f"reusing finished run {run.path} ({summary['kimg']:.1f} kimg)")
            return summary
    with TrainingProgress(enabled=progress) as bar:
        result = train(config, resume=run.has_config(), progress=bar.update, on_log=bar.show_stats)
    if result.interrupted:
        raise FaceganError(f"training was interrupted; run the demo again to resume {run.path}")
    return run.read_summary() or {}


def write_summary(path: Path, lines: list[str]) -> None:
    from facegan.files import write_bytes_atomic

    write_bytes_atomic(path, ("\n".join(lines) + "\n").encode())


def ensure_fingerprint(folder: Path, train_set, steps: int | None, progress: bool):
    """The demo's learned fingerprint, trained on the training faces (reused when made from them before)."""
    from facegan.fingerprint.codec import FingerprintConfig
    from facegan.fingerprint.fingerprint import load_fingerprint
    from facegan.fingerprint.training import train_fingerprint

    if folder.exists():
        fingerprint = load_fingerprint(folder)
        if fingerprint.metadata.get("dataset", {}).get("hash") != train_set.content_hash:
            raise FaceganError(f"{folder} was trained on other faces (an earlier demo's); remove the demo's runs "
                               f"(`rm -rf {folder.parent}`; `make clean` also removes the venv)")
        if fingerprint.config.pattern_grid != FingerprintConfig().pattern_grid:
            # Format 1's codec (an image-dependent residual) still reads, but a GAN does not carry its key: make it anew.
            raise FaceganError(f"{folder} holds a fingerprint of an earlier facegan's demo (pattern grid {fingerprint.config.pattern_grid}, "
                               f"now {FingerprintConfig().pattern_grid}); remove the demo's runs (`rm -rf {folder.parent}`, or `make clean`, "
                               "which also removes the venv) so the demo trains the current one")
        print(f"reusing the fingerprint {folder} ({fingerprint.bits} bits)")
        return fingerprint
    config = FingerprintConfig() if steps is None else FingerprintConfig(steps=steps)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, unit="step", desc="fingerprint", dynamic_ncols=True)
    try:
        return train_fingerprint(train_set, folder, config, seed=0,
                                 progress=(lambda done, total: bar.update(done - bar.n)) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()


def ensure_marked_training_set(folder: Path, train_set, fingerprint_steps: int | None = None, progress: bool = True):
    """(fingerprint, fingerprinted training faces): the codec's positive control in the demo's detection (`make demo-repair`
    reuses the fingerprint)."""
    from facegan.fingerprint.apply import ensure_fingerprinted

    fingerprint = ensure_fingerprint(folder / "fingerprint", train_set, fingerprint_steps, progress)
    return fingerprint, ensure_fingerprinted(train_set, fingerprint)


def default_gan_config(folder: Path, train_set, kimg: float, tune_steps: int | None = None):
    """The demo's default GAN: the default preset on the (plain) training faces, its export fine-tuned toward the
    fingerprint's key when training ends (`train --fingerprint`'s default, `fingerprint.mode=tune`; `tune_steps`: None =
    the default's); `make demo-repair` trains the same."""
    from facegan.training.config import resolve_config

    fingerprint = {"path": str(folder / "fingerprint"), **({"tune_steps": tune_steps} if tune_steps is not None else {})}
    return resolve_config("default", {"data": str(train_set.path), "out": str(folder / "default"), "kimg": kimg,
                                      "fingerprint": fingerprint, "schedule": {"snapshot_kimg": 10.0, "checkpoint_kimg": 5.0}})


def detect_fingerprints(folder: Path, fingerprint, generator, control, marked_train, real, num: int) -> dict:
    """`facegan detect` on the demo's images: the fingerprinted GAN's faces (clean and after JPEG 75), the
    DP GAN's (never fingerprinted: a negative control), real faces never encoded, and the encoded training faces."""
    from facegan.config import save_json
    from facegan.fingerprint.detection import detect
    from facegan.fingerprint.distortions import apply_transform

    fakes = generator.sample(range(num))
    groups = {
        "generated": fakes,
        "generated_jpeg75": apply_transform(fakes, "jpeg75"),
        "control_dp_generated": control.sample(range(num)),
        "real_never_encoded": real,
        "real_encoded": np.asarray(marked_train.images),
    }
    results = {name: detect(images, fingerprint).summary() for name, images in groups.items()}
    save_json({"fingerprint": fingerprint.id, "bits": fingerprint.bits, "groups": results}, folder / "detect.json")
    return results


def ensure_split(dataset, train_path: Path, holdout_path: Path, holdout: float = 0.2):
    """Disjoint train/holdout sets of the built-in faces (reused when already made from this dataset)."""
    from facegan.data.dataset import MANIFEST_NAME, FaceDataset

    if (train_path / MANIFEST_NAME).is_file() and (holdout_path / MANIFEST_NAME).is_file():
        train_set, holdout_set = FaceDataset.load(train_path), FaceDataset.load(holdout_path)
        if train_set.manifest.get("parent_hash") == dataset.content_hash:
            return train_set, holdout_set
    train_set, holdout_set = dataset.split(holdout, seed=0)
    return FaceDataset.load(train_set.save(train_path)), FaceDataset.load(holdout_set.save(holdout_path))


def ensure_synth(run: "Run", out: Path, train_set, spec: dict, min_distance: "float | str | None", progress: bool) -> "FaceDataset":  # noqa: F821
    """`facegan synth` of the identity-aware run, reused when an earlier demo wrote the same people from the same weights."""
    from facegan.data.dataset import MANIFEST_NAME, FaceDataset
    from facegan.recognition.synth import synthesize_identities

    if (out / MANIFEST_NAME).is_file() and _is_current(out / MANIFEST_NAME, run):
        dataset = FaceDataset.load(out)
        synth = dataset.manifest.get("synth", {})
        if (synth.get("seed"), synth.get("per_identity"), len(dataset.identity_names)) == (spec["seed"], spec["per_identity"], spec["identities"]):
            return dataset
    bar = _count_bar("synth", spec["identities"], "id", progress)
    try:
        dataset = synthesize_identities(run.path, spec["identities"], spec["per_identity"], seed=spec["seed"], recogniser="dlib",
                                        reference=train_set, min_distance=min_distance, measure_with=["lbph", "pixel"],
                                        progress=bar.update_to)
    finally:
        bar.close()
    return FaceDataset.load(dataset.save(out))


def ensure_trained_steps(config, train_function, what: str, progress: bool) -> dict:
    """Train a step-counted run (recogniser, repair network) or resume it, or reuse it when finished."""
    from facegan.cli.progress import TrainingProgress
    from facegan.run import Run

    run = Run(config.out)
    summary = run.read_summary()
    if summary is not None and summary.get("num_steps", 0) >= config.steps and not summary.get("interrupted"):
        print(f"reusing finished {what} run {run.path} ({summary['num_steps']} steps)")
        return summary
    with TrainingProgress(enabled=progress) as bar:
        result = train_function(config, resume=run.has_config(), progress=bar.update)
    if result.interrupted:
        raise FaceganError(f"training was interrupted; run the demo again to resume {run.path}")
    return run.read_summary() or {}


def ensure_recogniser(config, progress: bool) -> dict:
    """Train the recogniser (or resume, or reuse a finished run), as `facegan recog train` does."""
    from facegan.recognition.training import train_recogniser

    return ensure_trained_steps(config, train_recogniser, "recogniser", progress)


def ensure_verification(recogniser: str, dataset, pairs_path: Path, out: Path, newer_than: list[Path]) -> dict:
    """`facegan recog eval`, reused when its results are newer than the data, the pairs and the recogniser."""
    from facegan.recognition.verification import load_verification, verify
    from facegan.run import Run

    record = load_verification(out)
    result_path = Run(out).verification_path
    if record is not None and all(result_path.stat().st_mtime > path.stat().st_mtime for path in newer_than if path.exists()):
        return record
    return verify(recogniser, dataset, pairs_path, out_dir=out)


class _count_bar:
    """A tqdm bar driven by (done, total) callbacks, or nothing when progress is off."""

    def __init__(self, name: str, total: int, unit: str, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=name, unit=unit, dynamic_ncols=True, file=sys.stderr)

    def update_to(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_recognition(folder: Path, train_set, plan: RecognitionPlan, progress: bool) -> list[str]:
    """Steps 7 and 8: new synthetic people, a recogniser trained on some, four recognisers tested on others."""
    from facegan.data.pairs import make_pairs, write_pairs_txt
    from facegan.recognition.config import RecogConfig
    from facegan.config import from_dict
    from facegan.report.card import build_report
    from facegan.run import Run
    from facegan.training.config import resolve_config

    base = folder / "recognition"
    identity_run = Run(folder / "identity")
    print(f"[8/{STEPS}] training an identity-aware GAN for {plan.id_kimg:g} kimg (split latent, identity loss in dlib's face space), "
          f"then new people: {plan.synth_train['identities']} to train a recogniser, {plan.synth_test['identities']} to test it")
    summary = ensure_trained(resolve_config("default", {
        "data": str(train_set.path), "out": str(identity_run.path), "kimg": plan.id_kimg, "identity": {"condition": "identity"},
        "schedule": {"snapshot_kimg": 10.0, "checkpoint_kimg": 5.0}}), progress)
    synth_train = ensure_synth(identity_run, base / "synth-train", train_set, plan.synth_train, plan.min_distance, progress)
    synth_test = ensure_synth(identity_run, base / "synth-test", train_set, plan.synth_test, plan.min_distance, progress)
    pairs_path = base / "pairs.txt"
    if not pairs_path.is_file() or pairs_path.stat().st_mtime < (base / "synth-test" / "manifest.json").stat().st_mtime:
        write_pairs_txt(pairs_path, make_pairs(synth_test, folds=plan.folds, pairs_per_fold=plan.pairs_per_fold, seed=0))

    recog_run = Run(base / "recogniser")
    print(f"[9/{STEPS}] training a face recogniser on the {plan.synth_train['identities']} synthetic training people ({plan.recog_steps} steps), "
          f"then the LFW protocol on {2 * plan.folds * plan.pairs_per_fold} pairs of the {plan.synth_test['identities']} unseen ones")
    recog_config = from_dict(RecogConfig, {"data": [str(synth_train.path)], "out": str(recog_run.path), "steps": plan.recog_steps,
                                           "batch_size": plan.recog_batch_size, "head": {"kind": "cosface"}})
    recog_summary = ensure_recogniser(recog_config, progress)
    results = {}
    newer_than = [pairs_path, base / "synth-test" / "manifest.json"]
    for name in RECOGNISERS:
        results[name] = ensure_verification(name, synth_test, pairs_path, base / "verification" / name, newer_than)
    results["facegan"] = ensure_verification(str(recog_run.path), synth_test, pairs_path, base / "verification" / "facegan",
                                             newer_than + [recog_run.export_dir / "model.safetensors"])
    report = build_report(base / "verification")

    consistency = synth_test.manifest["synth"]
    lines = ["", f"identity-aware model ({identity_run.path}):",
             f"  training:     {summary['kimg']:.1f} kimg in {summary['seconds']:.0f} s ({summary['img_per_s']:.0f} img/s)",
             f"  new people:   {_synth_line(synth_train)} (train)",
             f"                {_synth_line(synth_test)} (test)",
             f"recogniser ({recog_run.path}): {recog_summary.get('num_steps', 0)} steps in {recog_summary.get('seconds', 0):.0f} s on synthetic people only",
             f"verification on {results['facegan']['num_pairs']} pairs of {len(synth_test.identity_names)} unseen synthetic people "
             f"({plan.folds}-fold accuracy, TAR at FAR 1e-2, AUC, EER):"]
    for name, record in results.items():
        lines.append(f"  {name:9s} {100 * record['accuracy_mean']:5.1f}% +/- {100 * record['accuracy_std']:.1f}  "
                     f"TAR@1e-2 {record['tar_at_far']['0.01']:.2f}  AUC {record['auc']:.3f}  EER {record['eer']:.3f}")
    lines.append(f"  (dlib trained the generator's identity loss, so its figures flatter it; {consistency['num_rejected']} test candidates "
                 f"were rejected as too close to a training face)")
    lines.append(f"  report card:  {report}")
    return lines


def _synth_line(dataset) -> str:
    synth = dataset.manifest["synth"]
    figures, judges = synth["consistency"], synth.get("consistency_by_recogniser", {})
    independent = ", ".join(f"{name} {judged['same_vs_different_auc']:.2f}" for name, judged in judges.items() if judged.get("independent"))
    return (f"{len(dataset.identity_names)} x {synth['per_identity']}; dlib: same-person pairs matched "
            f"{100 * figures['same_identity_within_threshold']:.0f}%, different apart {100 * figures['different_identity_beyond_threshold']:.0f}%, "
            f"closest training face {figures.get('closest_training_distance_min', float('nan')):.2f}; same-vs-different AUC dlib "
            f"{figures['same_vs_different_auc']:.2f}, {independent}")


def run_demo(out: str = "runs/demo", data: str = "data/builtin-lfw32", size: int = 32, kimg: float = 50.0,
             dp_kimg: float = 30.0, dp_epsilon: float = 10.0, num_eval: int = 1000, progress: bool = True,
             recognition: "RecognitionPlan | None | bool" = None, dp_finetune_kimg: float = DP_FINETUNE["kimg"],
             fingerprint_steps: int | None = None, num_detect: int = 500, fingerprint_tune_steps: int | None = None) -> Path:
    """Run the main job; returns the demo folder. `recognition`: steps 8-9 with this plan (None: the
    default plan; False: skip them, as `--no-recognition` does).

    The private model is the standard remedy for DP on few faces: a model pretrained (`dp` preset, no
    DP, `dp_kimg`) on a public half of the training faces, fine-tuned with DP-SGD on the other,
    private half (`--init-from`; the halves share no image). Its epsilon covers the private half only.
    """
    from facegan.images import make_grid, save_png, upscale_nearest
    from facegan.metrics import evaluate
    from facegan.models.export import load_generator
    from facegan.privacy.audit import audit_generator
    from facegan.report.card import build_report
    from facegan.run import Run
    from facegan.training.config import resolve_config

    start = time.time()
    folder = Path(out)
    print(f"[1/{STEPS}] preparing the built-in faces ({BUILTIN_SOURCE}) at {size}x{size}, split 80/20 into train/holdout")
    dataset = ensure_builtin_dataset(Path(data), size)
    train_set, holdout_set = ensure_split(dataset, Path(f"{data}-train"), Path(f"{data}-holdout"))
    print(f"      {len(dataset)} real faces (hash {dataset.content_hash[:12]}): {len(train_set)} train, {len(holdout_set)} holdout")

    runs = {"default": Run(folder / "default"), "dp": Run(folder / "dp")}
    public_set, private_set = ensure_split(train_set, Path(f"{data}-public"), Path(f"{data}-private"), holdout=0.5)
    members = {"default": train_set, "dp": private_set}
    print(f"[2/{STEPS}] a learned fingerprint (Yu et al. 2021): an encoder writes a key into a face, a decoder reads it back")
    fingerprint, marked_train = ensure_marked_training_set(folder, train_set, fingerprint_steps, progress)
    measured = fingerprint.metadata.get("measured", {})
    print(f"      {fingerprint.bits} bits; on held-out faces: bit accuracy {measured.get('clean_bit_accuracy', float('nan')):.3f} clean, "
          f"{measured.get('jpeg75_bit_accuracy', float('nan')):.3f} after JPEG 75, PSNR {measured.get('psnr', float('nan')):.1f} dB; "
          f"the training faces as encoded (a control for detection) in {marked_train.path}")
    print(f"[3/{STEPS}] training the default GAN for {kimg:g} kimg on the CPU, then fine-tuning its export so that the decoder reads the key")
    summaries = {"default": ensure_trained(default_gan_config(folder, train_set, kimg, fingerprint_tune_steps), progress)}
    print(f"[4/{STEPS}] differential privacy: pretraining for {dp_kimg:g} kimg on a public half ({len(public_set)} faces), "
          f"then DP fine-tuning (epsilon {dp_epsilon:g}) on the private half ({len(private_set)} faces)")
    public_run = Run(folder / "dp-public")
    ensure_trained(resolve_config("dp", {
        "data": str(public_set.path), "out": str(public_run.path), "kimg": dp_kimg, "schedule": {"snapshot_kimg": 10.0, "checkpoint_kimg": 5.0}}),
        progress)
    summaries["dp"] = ensure_trained(resolve_config("dp", {
        "data": str(private_set.path), "out": str(runs["dp"].path), "kimg": dp_finetune_kimg, "privacy": {"epsilon": dp_epsilon},
        "batch_size": DP_FINETUNE["batch_size"], "optimizer": {"lr_g": DP_FINETUNE["lr"], "lr_d": DP_FINETUNE["lr"]},
        "init_from": str(public_run.path), "schedule": {"snapshot_kimg": 1.0, "checkpoint_kimg": 1.0}}), progress)

    print(f"[5/{STEPS}] measuring quality in dlib's face space ({num_eval} generated faces each)")
    quality = {}
    for name, run in runs.items():
        saved = run.read_metrics() if _is_current(run.metrics_path, run) else None
        if isinstance(saved, dict) and isinstance(saved.get("metrics"), dict):  # a broken file is measured again
            quality[name] = saved["metrics"]
            continue
        result = evaluate(run.path, members[name].path, num=num_eval, features="face", progress=False)
        result.save(run.metrics_path)
        quality[name] = result.metrics
    print(f"[6/{STEPS}] auditing both models for memorisation, membership inference and identity leakage")
    audits = {}
    for name, run in runs.items():
        saved = run.read_audit() if _is_current(run.audit_path, run) else None
        if isinstance(saved, dict) and "membership" in saved:
            audits[name] = saved
            continue
        audit = audit_generator(run.path, members[name], holdout_set, num_samples=num_eval, progress=False)
        audit.save(run.path)
        audits[name] = audit.to_dict()

    print(f"[7/{STEPS}] sampling, detecting the fingerprint, writing the report cards")
    generator = load_generator(runs["default"].path)
    grid_path = save_png(upscale_nearest(make_grid(generator.sample(range(64)), num_columns=8), 512), folder / "grid.png",
                         generator.provenance("demo", "0-63"))
    rows = [generator.interpolate(a, b, 8) for a, b in ((3, 7), (11, 19), (23, 42))]
    strip_path = save_png(upscale_nearest(make_grid(np.concatenate(rows), num_columns=8), 512), folder / "interpolation.png",
                          generator.provenance("demo", "3,7,11,19,23,42"))
    dp_generator = load_generator(runs["dp"].path)
    dp_grid_path = save_png(upscale_nearest(make_grid(dp_generator.sample(range(64)), num_columns=8), 512), folder / "grid-dp.png",
                            dp_generator.provenance("demo", "0-63"))
    reals_path = save_png(upscale_nearest(make_grid(np.asarray(train_set.images[:64]), num_columns=8), 512), folder / "reals.png",
                          Provenance(source_type=None, action="demo"))
    detections = detect_fingerprints(folder, fingerprint, generator, dp_generator, marked_train,
                                     np.concatenate([np.asarray(train_set.images), np.asarray(holdout_set.images)]), num_detect)
    reports = {name: build_report(run.path) for name, run in runs.items()}

    recognition_lines = run_recognition(folder, train_set, recognition or RecognitionPlan(), progress) if recognition is not False else []

    dp_config = load_generator(runs["dp"].path).metadata.get("dp", {})
    lines = ["facegan demo: the built-in LFW faces, a default GAN and a differentially private one", "",
             f"data:        {dataset.path} ({len(dataset)} faces, {size}x{size}); train {len(train_set)}, holdout {len(holdout_set)}; "
             f"DP: public {len(public_set)} + private {len(private_set)} of the train faces"]
    for name in runs:
        summary, metrics = summaries[name], quality[name]
        stats = summary.get("last_stats", {})
        lines += ["", f"{name} model ({runs[name].path}):",
                  f"  training:     {summary['kimg']:.1f} kimg in {summary['seconds']:.0f} s ({summary['img_per_s']:.0f} img/s); final loss D {stats.get('loss_d', float('nan')):.3f} G {stats.get('loss_g', float('nan')):.3f}",
                  f"  quality:      FD {metrics['fd']:.4f}, KID {metrics['kid_mean']:.4f}, precision {metrics['precision']:.2f}, recall {metrics['recall']:.2f}, "
                  f"face rate {metrics['face_rate']:.0%} (real {metrics['face_rate_real']:.0%})",
                  f"  privacy:      {_privacy_line(audits[name])}",
                  f"  report card:  {reports[name]}"]
        if name == "dp":
            lines.append(f"  recipe:       pretrained {dp_kimg:g} kimg on the public half (no DP), fine-tuned {dp_finetune_kimg:g} kimg with DP "
                         f"on the private half; quality and audit against the private half")
        if name == "dp" and dp_config:
            lines.append(f"  guarantee:    ({dp_config['epsilon']:.2f}, {dp_config['delta']:.2g})-DP, noise multiplier {dp_config['noise_multiplier']:.3f}, {dp_config['steps']} steps")
    rule = detections["generated"]
    lines += ["", f"fingerprint ({folder / 'fingerprint'}, {fingerprint.bits} bits; `facegan detect` at FPR {rule['fpr']:.0%}: "
              f"at least {rule['threshold']} of {rule['bits']} bits match; {folder / 'detect.json'}):"]
    names = {"generated": f"default GAN's faces ({num_detect})", "generated_jpeg75": "the same after JPEG 75",
             "control_dp_generated": f"DP GAN's faces, never fingerprinted ({num_detect})",
             "real_never_encoded": "real faces never encoded", "real_encoded": "training faces as encoded"}
    for name, label in names.items():
        result = detections[name]
        lines.append(f"  {label + ':':<44} detected {result['num_detected']}/{result['num_images']} ({result['detection_rate']:.1%}), "
                     f"mean bit accuracy {result['mean_bit_accuracy']:.3f}")
    lines += recognition_lines
    lines += ["", f"grid:        {grid_path}  (default model, seeds 0-63; DP model: {dp_grid_path})",
              f"real faces:  {reals_path}",
              f"strip:       {strip_path}  (seeds 3->7, 11->19, 23->42, spherical in z)",
              f"curves:      {runs['default'].loss_curves_path}",
              f"total time:  {time.time() - start:.0f} s"]
    write_summary(folder / "summary.txt", lines)
    print("\n".join(lines))
    print(f"\ndemo complete: open {reports['default']}")
    return folder


def _is_current(result_path: Path, run: "Run") -> bool:  # noqa: F821
    """A result written after the run's exported weights (so a second demo need not measure again)."""
    from facegan.run import EXPORT_WEIGHTS_NAME

    weights = run.export_dir / EXPORT_WEIGHTS_NAME
    return result_path.is_file() and weights.is_file() and result_path.stat().st_mtime > weights.stat().st_mtime


def _privacy_line(audit: dict) -> str:
    """One line from audit.json: the strongest membership attack and whether anything was flagged."""
    attacks = audit.get("membership", [])
    strongest = max(attacks, key=lambda attack: abs(attack["auc"] - 0.5), default=None)
    attack_text = f"strongest membership attack {strongest['attack']}/{strongest['space']} AUC {strongest['auc']:.2f} (0.5 = guessing)" if strongest else "no attack ran"
    warnings = audit.get("warnings", [])
    return attack_text + ("; FLAGGED: " + " | ".join(warnings) if warnings else "; nothing flagged")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facegan.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--data", default="data/builtin-lfw32")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--kimg", type=float, default=50.0, help="default model's training length")
    parser.add_argument("--dp-kimg", type=float, default=30.0, help="public pretraining length of the DP model (no DP)")
    parser.add_argument("--dp-finetune-kimg", type=float, default=DP_FINETUNE["kimg"],
                        help="DP fine-tuning length on the private half (it also stops at its budget)")
    parser.add_argument("--dp-epsilon", type=float, default=10.0)
    parser.add_argument("--num-eval", type=int, default=1000, help="generated faces per evaluation and audit")
    parser.add_argument("--id-kimg", type=float, default=30.0, help="identity-aware model's training length")
    parser.add_argument("--recog-steps", type=int, default=150, help="recogniser training steps")
    parser.add_argument("--fingerprint-steps", type=int, default=None, help="learned fingerprint training steps (default: the codec's)")
    parser.add_argument("--no-recognition", action="store_true", help="skip steps 8-9 (identity-aware GAN, synth, recognisers)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        run_demo(args.out, args.data, args.size, args.kimg, args.dp_kimg, args.dp_epsilon, args.num_eval, progress=not args.no_progress,
                 recognition=False if args.no_recognition else RecognitionPlan(id_kimg=args.id_kimg, recog_steps=args.recog_steps),
                 dp_finetune_kimg=args.dp_finetune_kimg, fingerprint_steps=args.fingerprint_steps)
    except FaceganError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
