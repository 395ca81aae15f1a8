"""Verification attacks on pairs (the RobFR protocol), judged on the saved uint8 images, and their results folder.

    record = attack_pairs("dlib", "data/lfw", "pairs.txt", "results/dlib-pgd", mode="dodging", attack="pgd",
                          norm="linf", eps=[2, 4, 8], steps=20)

1. Every pair is scored clean through the recogniser's deployed `embed` (with the defence, when one is
   given); the 10-fold protocol (`recognition.protocol`) gives each pair its fold's threshold.
2. Dodging attacks the same-identity pairs, impersonation the different-identity ones; only the pairs the
   recogniser gets right when clean are attacked (the others already count as not robust).
3. The LEFT image of a pair is perturbed (in the recogniser's domain: dlib's 150 px chips), the right
   one's descriptor is fixed. The attacks descend a margin that is negative on success: dodging
   score - t, impersonation t - score (averaged over `eot` draws of a randomised defence).
4. Success is judged on the QUANTISED image (integers in 0..255 within the budget: exactly the saved PNG)
   re-embedded through the deployed `embed`, with the rule verification uses (same when score >= t).
5. For dlib, the saved PNGs are read back and verified by dlib's own C++ `compute_face_descriptor`
   (success_rate_real_dlib): the port matches dlib, so a gap would mean a bug in clipping, quantisation
   or preprocessing.

With `out_dir` it holds the folder's lock for the whole run (a second attack into it is refused up front) and writes
attack.json last (it vouches for the others); from before the first file until after attack.json a hidden
.attack-partial marker says the folder is facegan's but unfinished (a killed attack's rerun may replace it; no reader
takes it for a result):

    adversarial/NNNNN.png   one lossless PNG per attacked pair (NNNNN: the pair's number in pairs.txt), largest budget
    pairs.csv               pair,fold,left,right,same,threshold,clean_score,adversarial_score,success,linf,l2
                            [,minimal_eps][,real_dlib_score]: one row per attacked pair, largest budget
    attack.json             success_rate, clean_accuracy, robust_accuracy, median_linf, median_l2, budgets, ...
    attack_curve.png        success rate and robust accuracy against the budget, when several budgets were given

The attack on a pair reads only that pair's images, its fold threshold and the seed; random starts are
drawn per batch of attacked pairs (seeded by the seed, the budget and the batch's first pair), so with
batch_size 1 a pair's adversarial image depends on nothing else, and otherwise on its batch's layout.
"""
from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import re
import stat
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from facegan.config import load_json_optional
from facegan.data.dataset import FaceDataset, absolute_path
from facegan.errors import FaceganError
from facegan.provenance.record import COMPOSITE, Provenance
from facegan.files import check_writable_folder, write_bytes_atomic
from facegan.recognition.verification import image_labels, is_verification_file, load_pairs
from facegan.robustness.model import DifferentiableRecogniser, _DlibResNet, differentiable
from facegan.run import ATTACK_NAMES, VERIFICATION_NAME, Run, is_export_folder

__all__ = ["ATTACK_FORMAT", "MODES", "attack_pairs", "check_attack_out", "load_attack", "parse_budgets"]

ATTACK_FORMAT = "facegan-attack"
_FORMAT_VERSION = 1
MODES = ("dodging", "impersonation")
ENGINES = ("facegan", "art")  # whose implementation of the attack runs: ours, or ART's as the reference
_IMAGE_NAME = re.compile(r"^\d{5,}\.png$")
_EMBED_CHUNK = 256  # dataset images per domain+embed call: dlib's 150 px chips are 67 kB each
_MAX_STEPS = 100_000
_NON_FINITE_THRESHOLD = 1e6  # an accept-all / reject-all fold threshold (+-inf) as a finite number the margin can hold


# ---- the results folder ------------------------------------------------------------------------------
def check_attack_out(out_dir: str | os.PathLike, dataset_path: Path | None = None) -> Path:
    """Refuse, before any work, an output that is a file or FIFO, the dataset or inside it, an export or inside one, a run
    folder, a verification folder (its pairs.csv would be replaced), or a folder holding attack files facegan did not write."""
    if not isinstance(out_dir, (str, os.PathLike)) or not os.fspath(out_dir):
        raise FaceganError(f"the attack output must be a folder path, got {out_dir!r}")
    folder = absolute_path(out_dir)
    if os.path.lexists(folder) and not folder.is_dir():
        mode = os.lstat(folder).st_mode
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a broken link" if not folder.exists() else "a file" if folder.is_file() else "not a folder"
        raise FaceganError(f"--out {out_dir} is {kind}, not a folder; give a folder for the attack results")
    real = Path(os.path.realpath(folder))
    if dataset_path is not None:
        data = Path(os.path.realpath(dataset_path))
        if real == data or data in real.parents:
            where = "is the dataset folder itself" if real == data else f"lies inside the dataset {dataset_path}"
            raise FaceganError(f"--out {out_dir} {where}; results there would spoil the dataset, choose another folder")
    for place in (real, *real.parents):
        if is_export_folder(place):
            what = "is an export folder" if place == real else f"lies inside the export {place}"
            raise FaceganError(f"--out {out_dir} {what} (the shipped config and weights); choose another folder, e.g. RUN/attacks/NAME")
    if Run(real).is_run():
        raise FaceganError(f"--out {out_dir} is a run folder; put attack results in a folder of their own, e.g. {Path(out_dir) / 'attacks' / 'pgd'}")
    for place in real.parents:
        # Inside a run only RUN/attacks/NAME is a results folder; RUN/checkpoints, RUN/samples, RUN/attacks itself are the run's.
        if Run(place).is_run() and real.parent != Run(place).attacks_dir:
            raise FaceganError(f"--out {out_dir} lies inside the run {place} (in {real.relative_to(place).parts[0]}/); put attack results "
                               f"in {Run(place).attacks_dir / 'NAME'}, e.g. {Run(place).attacks_dir / 'pgd'}")
    if folder.is_dir():
        if is_verification_file(folder / VERIFICATION_NAME):
            raise FaceganError(f"--out {out_dir} holds verification results (`facegan recog eval`); their pairs.csv would be replaced, "
                               "choose another folder")
        marker = Run(folder).attack_partial_path
        # A killed attack leaves its marker (and perhaps no attack.json): the folder is still facegan's own.
        ours = _is_attack_file(Run(folder).attack_path) or (marker.is_file() and not marker.is_symlink())
        for name in ATTACK_NAMES:
            path = folder / name
            if not os.path.lexists(path):
                continue
            is_images = name == Run(folder).attack_images_dir.name
            if path.is_symlink() or (not path.is_dir() if is_images else not path.is_file()):
                raise FaceganError(f"--out {out_dir} holds {name}{'/' if is_images else ''} that is not a regular {'folder' if is_images else 'file'}; "
                                   "move it or choose another folder")
            if not ours:
                what = f"an {name}/ folder" if is_images else f"a {name}"
                raise FaceganError(f"--out {out_dir} holds {what} that `facegan attack` did not write (no facegan attack.json beside it); "
                                   "move it or choose another folder (it would be replaced)")
            if is_images:
                foreign = sorted(entry.name for entry in path.iterdir() if not (_IMAGE_NAME.match(entry.name) and entry.is_file() and not entry.is_symlink()))
                if foreign:
                    raise FaceganError(f"--out {out_dir}: {name}/ holds files `facegan attack` did not write ({foreign[0]!r}, ...); "
                                       "move them or choose another folder")
    check_writable_folder(folder, "the attack results")
    return folder


def _is_attack_file(path: Path) -> bool:
    try:
        record = load_json_optional(path)
    except FaceganError:
        return False
    return isinstance(record, dict) and record.get("format") == ATTACK_FORMAT


def load_attack(folder: str | os.PathLike) -> dict[str, Any] | None:
    """FOLDER/attack.json written by `attack_pairs`, or None when there is none, it is not facegan's, or the attack is unfinished."""
    path = Run(folder).attack_path
    if not path.is_file() or os.path.lexists(Run(folder).attack_partial_path):
        return None  # none, or an attack still writing (or killed while writing): not a result
    record = load_json_optional(path)
    return record if isinstance(record, dict) and record.get("format") == ATTACK_FORMAT else None


# ---- options -----------------------------------------------------------------------------------------
def parse_budgets(eps: Any) -> list[float]:
    """One budget or several (a list, or "2/255,4/255"), on the 0..255 scale, ascending without repeats."""
    from facegan.attacks.budget import parse_budget

    if isinstance(eps, str):
        parts: Sequence[Any] = [part.strip() for part in eps.split(",")]
    elif isinstance(eps, (list, tuple)):
        parts = eps
    else:
        parts = [eps]
    if not parts:
        raise FaceganError("--eps needs at least one budget, e.g. --eps 4/255")
    return sorted({parse_budget(part) for part in parts})


def _check_int(value: Any, option: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise FaceganError(f"{option} must be an integer from {low} to {high}, got {value!r:.40}")
    return int(value)


def _resolve_model(recogniser: Any, defence: Any, defence_options: dict[str, Any], adaptive: bool, eot: int, device: str
                   ) -> tuple[DifferentiableRecogniser, str | None]:
    """The (defended) differentiable recogniser and the defence's name (None without one); the defence is built first
    (its options are cheaper to refuse than a recogniser is to load)."""
    if defence is None or defence == "none":
        if eot != 1:
            raise FaceganError(f"--eot {eot} averages over a randomised defence's draws; give --defence purify, or --eot 1")
        return differentiable(recogniser, device=device), None
    from facegan.robustness import defences

    if isinstance(defence, str):
        defence = defences.make_defence(defence, device=device, **defence_options)
        if defence is None:
            return differentiable(recogniser, device=device), None
    elif defence_options:
        raise FaceganError("defence_options apply to a defence given by name; pass the options to make_defence instead")
    defended = defences.DefendedRecogniser(differentiable(recogniser, device=device), defence, adaptive=adaptive, eot=eot)
    return defended, defence.name


def _base_model(model: DifferentiableRecogniser) -> DifferentiableRecogniser:
    """The undefended recogniser under any defences."""
    while hasattr(model, "base"):
        model = model.base
    return model


# ---- scoring -----------------------------------------------------------------------------------------
def _embed_distinct(model: DifferentiableRecogniser, images: np.ndarray, rows: np.ndarray, batch_size: int) -> np.ndarray:
    """(len(rows), D) deployed descriptors of the dataset rows, in the attack's domain."""
    parts = []
    for start in range(0, len(rows), _EMBED_CHUNK):
        chunk = model.domain(np.asarray(images[rows[start : start + _EMBED_CHUNK]]))
        parts.append(np.asarray(model.embed(chunk), dtype=np.float32))
    descriptors = np.concatenate(parts)
    broken = np.flatnonzero(~np.isfinite(descriptors).all(axis=1))
    if broken.size:
        raise FaceganError(f"recogniser {model.name} gave non-finite descriptors for {broken.size} images (first: dataset row "
                           f"{int(rows[broken[0]])}); check the recogniser's weights and input images")
    return descriptors


def _fooled(scores: np.ndarray, thresholds: np.ndarray, mode: str) -> np.ndarray:
    """Whether the recogniser now gets the pair wrong: a same pair rejected (dodging), a different pair accepted (impersonation)."""
    return scores < thresholds if mode == "dodging" else scores >= thresholds


def _nchw(images: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.tensor(np.asarray(images), device=device).permute(0, 3, 1, 2).float()  # (N, C, H, W) in 0..255; a copy: the input may be a read-only memmap


def _uint8_nhwc(x: torch.Tensor) -> np.ndarray:
    # Already integer-valued (quantise); the round only guards float noise before the cast.
    return x.detach().round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _objective(model: DifferentiableRecogniser, targets: torch.Tensor, thresholds: torch.Tensor, mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """x (N, C, H, W) 0..255 -> margin (N,), negative when the pair is fooled; EOT-averaged over a randomised defence."""
    draws = int(getattr(model, "eot", 1) or 1)
    sign = 1.0 if mode == "dodging" else -1.0

    def margin(x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != targets.shape[0]:
            raise ValueError(f"the objective was built for {targets.shape[0]} pairs, called on {x.shape[0]}")
        total = 0.0
        for _ in range(draws):
            total = total + model.score(model.embed_pixels(x), targets)
        return sign * (total / draws - thresholds)

    return margin


def _batch_generator(seed: int, budget_index: int, first_pair: int) -> torch.Generator:
    """The random starts of one batch: seeded by the seed, the budget and the batch's first pair (not by earlier batches)."""
    state = np.random.SeedSequence([seed, budget_index, first_pair]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


# ---- real dlib -----------------------------------------------------------------------------------------
def _read_png(path: Path) -> np.ndarray:
    from facegan.data.decode import SkippedImage, decode_image

    try:
        return decode_image(path)  # RGB (H, W, 3): dlib's chips are RGB
    except SkippedImage as skipped:
        raise FaceganError(f"cannot read back the adversarial image {path} ({skipped}); is something else writing there?") from None


# ---- the attack ----------------------------------------------------------------------------------------
def attack_pairs(
    recogniser: Any,
    dataset: FaceDataset | str | os.PathLike,
    pairs: Any,
    out_dir: str | os.PathLike | None = None,
    *,
    mode: str = "dodging",
    attack: str = "pgd",
    norm: str = "linf",
    eps: float | str | Sequence[float | str] = 4.0,
    steps: int = 20,
    minimal: bool = False,
    defence: Any = None,
    defence_options: dict[str, Any] | None = None,
    adaptive: bool = True,
    eot: int = 1,
    seed: int = 0,
    batch_size: int = 32,
    max_pairs: int | None = None,
    progress: bool = False,
    device: str = "cpu",
    engine: str = "facegan",
    provenance: Provenance | None = None,
) -> dict[str, Any]:
    """Attack `recogniser` (a name, a run/export, a Recogniser or a DifferentiableRecogniser) on `dataset`'s `pairs`
    (module docstring); returns the attack.json record and writes the results folder when `out_dir` is given.

    engine "art" runs IBM ART's FGSM/PGD/L-inf Square (`facegan.attacks.reference`) on the same objective, pairs and budgets
    instead of facegan's: the cross-check of the issue (a test and benchmark reference; ART must be installed).
    The adversarial images are marked as composites (a photo changed through a trained model's gradients) unless
    `provenance` says otherwise."""
    from facegan.attacks import check_attack

    # Every option is checked before anything slow (the recogniser, the embedding, the attack).
    if mode not in MODES:
        raise FaceganError(f"unknown attack mode {mode!r}; choose dodging (same-person pairs) or impersonation (different-person pairs)")
    check_attack(attack, norm)
    if engine not in ENGINES:
        raise FaceganError(f"unknown attack engine {engine!r}; choose {' or '.join(ENGINES)}")
    if engine == "art" and (attack not in ("fgsm", "pgd", "square") or (attack == "square" and norm != "linf")):
        raise FaceganError(f"the ART reference covers fgsm, pgd and L-inf square, not {attack} in {norm}; use engine 'facegan'")
    budgets = parse_budgets(eps)
    if minimal and budgets[-1] == 0:
        raise FaceganError("--minimal searches budgets up to the largest --eps, which is 0; give a positive budget, e.g. --eps 16/255")
    steps = _check_int(steps, "--steps", 1, _MAX_STEPS)
    if attack == "fgsm":
        steps = 1  # FGSM takes one step whatever --steps says; the record must not claim more
    eot = _check_int(eot, "--eot", 1, 1000)
    seed = _check_int(seed, "--seed", 0, 2**63 - 1)
    batch_size = _check_int(batch_size, "--batch-size", 1, 100_000)
    if max_pairs is not None:
        max_pairs = _check_int(max_pairs, "--max-pairs", 1, 10**9)
    if not isinstance(dataset, FaceDataset):
        dataset = FaceDataset.load(dataset)
    out = check_attack_out(out_dir, dataset.path) if out_dir is not None else None
    # The folder's lock from here to the end: a second attack into OUT is refused now, not after all its work (or worse,
    # interleaving its files with ours).
    created = out is not None and not os.path.lexists(out)
    lock = Run(out).lock().acquire() if out is not None else None
    try:
        return _attack_pairs(recogniser, dataset, pairs, out, mode=mode, attack=attack, norm=norm, budgets=budgets, steps=steps,
                             minimal=minimal, defence=defence, defence_options=defence_options, adaptive=adaptive, eot=eot, seed=seed,
                             batch_size=batch_size, max_pairs=max_pairs, progress=progress, device=device, engine=engine,
                             provenance=provenance or Provenance(source_type=COMPOSITE, action="attack"))
    except BaseException:
        if created and lock is not None:  # refused or failed before writing: leave no folder behind that was not there
            Run(out).lock_path.unlink(missing_ok=True)
            lock.release()
            try:
                out.rmdir()
            except OSError:
                pass  # something was written there after all
        raise
    finally:
        if lock is not None:
            lock.release()


def _attack_pairs(recogniser: Any, dataset: FaceDataset, pairs: Any, out: Path | None, *, mode: str, attack: str, norm: str,
                  budgets: list[float], steps: int, minimal: bool, defence: Any, defence_options: dict[str, Any] | None, adaptive: bool,
                  eot: int, seed: int, batch_size: int, max_pairs: int | None, progress: bool, device: str, engine: str,
                  provenance: Provenance) -> dict[str, Any]:
    """attack_pairs once its options are checked (and OUT, if any, is locked)."""
    from facegan.attacks import perturbation_norms, quantise
    from facegan.recognition.protocol import check_folds, evaluate_protocol

    left, right, same, fold, pairs_description = load_pairs(dataset, pairs)
    check_folds(fold)
    model, defence_name = _resolve_model(recogniser, defence, dict(defence_options or {}), bool(adaptive), eot, device)
    if attack != "square" and not getattr(model, "differentiable", True):
        raise FaceganError(f"recogniser {model.name} is not differentiable, so the gradient attack {attack} cannot run on it; "
                           "use the score-based black-box attack: --attack square")
    base = _base_model(model)
    is_dlib = isinstance(base, _DlibResNet)

    # 1. Clean scores of every pair through the deployed path, and each pair's fold threshold.
    distinct, inverse = np.unique(np.concatenate([left, right]), return_inverse=True)
    descriptors = _embed_distinct(model, dataset.images, distinct, batch_size)
    num_all = len(left)
    left_descriptors, right_descriptors = descriptors[inverse[:num_all]], descriptors[inverse[num_all:]]
    clean_scores = model.scores(left_descriptors, right_descriptors)
    protocol = evaluate_protocol(clean_scores, same, fold)
    by_fold = dict(zip(protocol.folds, protocol.fold_thresholds))
    thresholds = np.array([by_fold[int(value)] for value in fold], dtype=np.float64)

    # 2. The pairs of the attacked kind (first max_pairs of them, in pairs.txt order); the correct ones are attacked.
    kind = np.flatnonzero(same if mode == "dodging" else ~same)
    if max_pairs is not None:
        kind = kind[:max_pairs]
    if kind.size == 0:
        raise FaceganError(f"the pairs hold no {'same' if mode == 'dodging' else 'different'}-person pairs to attack in {mode} mode; "
                           f"choose --mode {'impersonation' if mode == 'dodging' else 'dodging'} or other pairs")
    correct = ~_fooled(clean_scores[kind], thresholds[kind], mode)
    attacked = kind[correct]  # pair indices (0-based), pairs.txt order

    # 3-4. The attack at each budget, batch by batch, judged on the quantised images through the deployed embed.
    num_attacked = len(attacked)
    success = np.zeros((len(budgets), num_attacked), dtype=bool)
    adversarial_scores = np.full(num_attacked, np.nan)
    linf = np.zeros(num_attacked)
    l2 = np.zeros(num_attacked)
    minimal_eps = np.full(num_attacked, np.inf)
    minimal_linf, minimal_l2 = np.full(num_attacked, np.inf), np.full(num_attacked, np.inf)
    adversarial_images: list[np.ndarray] = []  # uint8 NHWC per batch, largest budget
    clean_chips_right: list[np.ndarray] = []
    bar = None
    if progress and num_attacked:
        from tqdm import tqdm

        total = len(budgets) * num_attacked + (num_attacked if minimal else 0)
        bar = tqdm(total=total, desc=f"{attack} on {model.name}", unit="pair", dynamic_ncols=True, leave=False)
    try:
        for start in range(0, num_attacked, batch_size):
            batch = attacked[start : start + batch_size]
            clean_uint8 = model.domain(np.asarray(dataset.images[left[batch]]))
            if is_dlib:
                clean_chips_right.append(base.domain(np.asarray(dataset.images[right[batch]])))
            x = _nchw(clean_uint8, model.device)
            targets = torch.from_numpy(right_descriptors[batch]).to(model.device)
            batch_thresholds = np.nan_to_num(thresholds[batch], posinf=_NON_FINITE_THRESHOLD, neginf=-_NON_FINITE_THRESHOLD)
            objective = _objective(model, targets, torch.tensor(batch_thresholds, dtype=torch.float32, device=model.device), mode)

            def judge(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                scores = model.scores(np.asarray(model.embed(images), dtype=np.float32), right_descriptors[batch])
                return scores, _fooled(scores, thresholds[batch], mode)

            for index, budget in enumerate(budgets):
                generator = _batch_generator(seed, index, int(batch[0]))
                x_adv = _run(engine, attack, objective, x, norm, budget, steps, generator)
                quantised = quantise(x_adv.detach(), x, norm, budget)
                images = _uint8_nhwc(quantised)
                scores, fooled = judge(images)
                success[index, start : start + len(batch)] = fooled
                if index == len(budgets) - 1:
                    adversarial_scores[start : start + len(batch)] = scores
                    norms = perturbation_norms(_nchw(images, model.device), x)
                    linf[start : start + len(batch)], l2[start : start + len(batch)] = (value.cpu().numpy() for value in norms)
                    adversarial_images.append(images)
                if bar is not None:
                    bar.update(len(batch))
            if minimal:
                found, found_images = _minimal_search(engine, attack, objective, x, norm, budgets[-1], steps, seed, len(budgets) - 1, int(batch[0]),
                                                     judge, quantise)
                minimal_eps[start : start + len(batch)] = found
                norms = perturbation_norms(found_images, x)
                hit = np.isfinite(found)
                minimal_linf[start : start + len(batch)] = np.where(hit, norms[0].cpu().numpy(), np.inf)
                minimal_l2[start : start + len(batch)] = np.where(hit, norms[1].cpu().numpy(), np.inf)
                if bar is not None:
                    bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    images_all = np.concatenate(adversarial_images) if adversarial_images else None

    def rates(fooled: np.ndarray) -> tuple[float | None, float]:
        success_rate = float(fooled.mean()) if num_attacked else None
        return success_rate, float((num_attacked - int(fooled.sum())) / kind.size)

    budget_rows = []
    for index, budget in enumerate(budgets):
        success_rate, robust_accuracy = rates(success[index])
        budget_rows.append({"eps": budget, "success_rate": success_rate, "robust_accuracy": robust_accuracy,
                            "num_success": int(success[index].sum())})
    final = success[-1]
    success_rate, robust_accuracy = rates(final)
    if minimal:
        median_linf, median_l2 = _median(minimal_linf), _median(minimal_l2)
        median_over = f"attacked pairs: the smallest successful perturbation found by binary search up to eps {budgets[-1]:g} (inf where none)"
    else:
        median_linf, median_l2 = _median(linf[final]), _median(l2[final])
        median_over = f"successful adversarial images at eps {budgets[-1]:g}"
    finite_thresholds = [value for value in protocol.fold_thresholds if np.isfinite(value)]
    recogniser_object = base.recogniser
    pair_labels_left, pair_labels_right = image_labels(dataset, left[attacked]), image_labels(dataset, right[attacked])
    record: dict[str, Any] = {
        "format": ATTACK_FORMAT,
        "format_version": _FORMAT_VERSION,
        "recogniser": model.name,
        "recogniser_version": getattr(recogniser_object, "version", None),
        "metric": model.metric,
        "score": f"minus the recogniser's {model.metric} distance (higher = more alike); same person when score >= threshold",
        "mode": mode,
        "attack": attack,
        "engine": engine,
        "norm": norm,
        "eps": budgets[-1],
        "steps": steps,
        "seed": seed,
        "batch_size": batch_size,
        "minimal": bool(minimal),
        "defence": defence_name,
        "adaptive": bool(adaptive) if defence_name is not None else None,
        "eot": int(getattr(model, "eot", 1) or 1) if defence_name is not None else 1,
        "num_pairs": int(kind.size),
        "num_attacked": int(num_attacked),
        "num_success": int(final.sum()),
        "clean_accuracy": float(correct.mean()),
        "success_rate": success_rate,
        "robust_accuracy": robust_accuracy,
        "median_linf": median_linf,
        "median_l2": median_l2,
        "median_over": median_over,
        "median_minimal_eps": _median(minimal_eps) if minimal else None,
        "budgets": budget_rows,
        "threshold": float(np.mean(finite_thresholds)) if finite_thresholds else None,
        "fold_thresholds": [{"fold": fold_id, "threshold": value if np.isfinite(value) else None}
                            for fold_id, value in zip(protocol.folds, protocol.fold_thresholds)],
        "clean_verification_accuracy": protocol.accuracy_mean,
        "dataset": str(dataset.path) if dataset.path is not None else None,
        "dataset_hash": dataset.content_hash,
        "pairs_file": pairs_description["path"],
        "pairs_hash": pairs_description["sha256"],
        "files": {},
    }
    real_scores = None

    def real_dlib(chips: Sequence[np.ndarray]) -> None:
        nonlocal real_scores
        record.update(_real_dlib_check(model, chips, clean_chips_right, thresholds[attacked], adversarial_scores, mode))
        real_scores = record.pop("_real_scores", None)

    if out is not None:
        results = Run(out)  # the folder is locked: attack_pairs holds its lock for the whole run
        # The marker before the first change: killed from here on, the folder stays facegan's own (the rerun replaces it)
        # and no attack.json vouches for files of another attack (the old one goes now, the new one is written last).
        write_bytes_atomic(results.attack_partial_path, f"facegan attack writing (pid {os.getpid()})\n".encode())
        if os.path.lexists(results.attack_path):
            results.attack_path.unlink()
        images_dir = results.attack_images_dir
        images_dir.mkdir(exist_ok=True)
        names = [f"{pair + 1:05d}.png" for pair in attacked]
        from facegan.images import png_bytes

        for name, image in zip(names, images_all if images_all is not None else []):
            write_bytes_atomic(images_dir / name, png_bytes(image[..., 0] if image.shape[-1] == 1 else image, provenance))
        for stale in set(entry.name for entry in images_dir.iterdir() if _IMAGE_NAME.match(entry.name)) - set(names):
            (images_dir / stale).unlink()  # a previous attack's pair; check_attack_out allowed only our own files here
        if is_dlib:
            real_dlib([_read_png(images_dir / name) for name in names])  # the SAVED files, as a user would hand them to dlib
        write_bytes_atomic(results.attack_pairs_path, _pairs_csv(
            attacked, fold, pair_labels_left, pair_labels_right, same, thresholds, clean_scores, adversarial_scores, final,
            linf, l2, minimal_eps if minimal else None, real_scores))
        record["files"] = {"pairs": results.attack_pairs_path.name, "images": images_dir.name}
        record["provenance"] = provenance.summary()
        if len(budgets) > 1:
            write_bytes_atomic(results.attack_curve_path, _curve_png(record))
            record["files"]["curve"] = results.attack_curve_path.name
        elif results.attack_curve_path.is_file():
            results.attack_curve_path.unlink()  # a previous attack's curve would pass as this one's
        write_bytes_atomic(results.attack_path, (json.dumps(record, indent=2) + "\n").encode())
        results.attack_partial_path.unlink()  # attack.json is complete: the folder is a result now
    elif is_dlib:
        real_dlib(list(images_all) if images_all is not None else [])
    return record


def _run(engine: str, attack: str, objective: Callable, x: torch.Tensor, norm: str, eps: float | torch.Tensor, steps: int,
         generator: torch.Generator) -> torch.Tensor:
    """x_adv from facegan's attack, or from ART's (seeded from the same generator) for the cross-check."""
    from facegan.attacks import run_attack

    if engine == "facegan":
        return run_attack(attack, objective, x, norm=norm, eps=eps, steps=steps, generator=generator)
    from facegan.attacks.reference import art_attack

    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    return art_attack(objective, x, attack=attack, norm=norm, eps=eps, steps=steps, seed=seed, batch_size=x.shape[0])


def _minimal_search(engine: str, attack: str, objective: Callable, x: torch.Tensor, norm: str, eps_max: float, steps: int, seed: int,
                    budget_index: int, first_pair: int, judge: Callable, quantise: Callable) -> tuple[np.ndarray, torch.Tensor]:
    """Per pair, the smallest budget in [0, eps_max] at which the (quantised) attack succeeds: binary search (inf: none)."""
    from facegan.attacks import minimal_budget

    def attack_at(eps_per_pair: torch.Tensor) -> torch.Tensor:
        # The same random start at every probe, so the search is over the budget alone; it is the largest budget's,
        # so the probe at eps_max repeats that attack and a pair fooled there has a finite minimal budget.
        generator = _batch_generator(seed, budget_index, first_pair)
        x_adv = _run(engine, attack, objective, x, norm, eps_per_pair, steps, generator)
        return quantise(x_adv.detach(), x, norm, eps_per_pair)

    def succeeded(x_adv: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(judge(_uint8_nhwc(x_adv))[1])

    found, images = minimal_budget(attack_at, succeeded, eps_max, x.shape[0])
    return found.detach().cpu().numpy().astype(np.float64), images


def _real_dlib_check(model: DifferentiableRecogniser, adversarial_chips: Sequence[np.ndarray], right_chips: list[np.ndarray],
                     thresholds: np.ndarray, port_scores: np.ndarray, mode: str) -> dict[str, Any]:
    """success_rate_real_dlib: the adversarial chips verified by dlib's C++ recogniser, with the port's thresholds."""
    from facegan.faces.dlib_resnet import dlib_cpp_descriptors

    if importlib.util.find_spec("dlib") is None:
        return {"success_rate_real_dlib": None, "real_dlib": "not checked: the dlib package is not installed"}
    if not len(adversarial_chips):
        return {"success_rate_real_dlib": None, "real_dlib": "not checked: no pair was attacked"}
    right = np.concatenate(right_chips)
    defend = getattr(model, "defence", None)
    if defend is not None:  # the deployed pipeline: the defence in front of dlib
        adversarial_chips, right = defend(np.stack(adversarial_chips)), defend(right)
    real_left, real_right = dlib_cpp_descriptors(list(adversarial_chips)), dlib_cpp_descriptors(list(right))
    scores = -np.linalg.norm(real_left.astype(np.float64) - real_right.astype(np.float64), axis=1)
    fooled = _fooled(scores, thresholds, mode)
    return {
        "success_rate_real_dlib": float(fooled.mean()),
        "real_dlib_max_score_gap": float(np.max(np.abs(scores - port_scores))),
        "real_dlib": "the saved adversarial PNGs verified by dlib's own compute_face_descriptor, at the port's fold thresholds",
        "_real_scores": scores,
    }


def _median(values: np.ndarray) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return None
    median = float(np.median(values))
    return median if np.isfinite(median) else None


def _number(value: float) -> str:
    return repr(float(value))  # every digit, so anyone recomputes exactly


def _pairs_csv(attacked: np.ndarray, fold: np.ndarray, left: list[str], right: list[str], same: np.ndarray, thresholds: np.ndarray,
               clean_scores: np.ndarray, adversarial_scores: np.ndarray, success: np.ndarray, linf: np.ndarray, l2: np.ndarray,
               minimal_eps: np.ndarray | None, real_scores: np.ndarray | None) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["pair", "fold", "left", "right", "same", "threshold", "clean_score", "adversarial_score", "success", "linf", "l2"]
    header += ["minimal_eps"] * (minimal_eps is not None) + ["real_dlib_score"] * (real_scores is not None)
    writer.writerow(header)
    for row, pair in enumerate(attacked):
        values = [int(pair) + 1, int(fold[pair]), left[row], right[row], int(same[pair]), _number(thresholds[pair]),
                  _number(clean_scores[pair]), _number(adversarial_scores[row]), int(success[row]), _number(linf[row]), _number(l2[row])]
        if minimal_eps is not None:
            values.append(_number(minimal_eps[row]))
        if real_scores is not None:
            values.append(_number(real_scores[row]))
        writer.writerow(values)
    return buffer.getvalue().encode()


def _curve_png(record: dict[str, Any]) -> bytes:
    """Success rate and robust accuracy against the budget."""
    from facegan.plots import figure_png, plt

    budgets = [row["eps"] for row in record["budgets"]]
    figure, axes = plt.subplots(figsize=(5, 3.4))
    axes.plot(budgets, [row["success_rate"] or 0.0 for row in record["budgets"]], marker="o", label="attack success rate")
    axes.plot(budgets, [row["robust_accuracy"] for row in record["budgets"]], marker="s", label="robust accuracy")
    defence = f" + {record['defence']}" if record.get("defence") else ""
    axes.set(xlabel=f"budget eps ({record['norm']}, 0..255 scale)", ylabel="rate", ylim=(-0.02, 1.02),
             title=f"{record['attack']} {record['mode']} on {Path(record['recogniser']).name}{defence}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure_png(figure)
