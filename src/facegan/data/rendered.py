"""`builtin:rendered-faces`: procedural, identity-labelled cartoon faces drawn with Pillow and numpy.

Not photographs, and no person's likeness: every face is a set of random numbers. They exist so that
recognition code can be trained, tested and benchmarked offline on many identities x many images.

Each identity fixes the geometry and colours of a face (head and jaw shape, skin tone, eye spacing,
size and height, iris colour, brows, nose, mouth, hair style and colour, sex-linked traits). Each image
draws the nuisance that a recogniser must ignore: yaw (inner features shift, the head narrows), roll,
scale, shift, light direction and strength, white balance, expression (smile, open mouth), glasses,
clothing, background colour/gradient/clutter, blur and noise. The nuisance is strong on purpose: raw
pixels identify people poorly (a pixel nearest-neighbour verifier scores far below a trained model).

Faces are drawn as polygons at SUPERSAMPLE x the output size and box-downsampled (anti-aliasing);
random numbers come from generators seeded by (seed, identity), so identity k looks the same whatever
the number of identities asked for, and the same arguments give the same bytes.
"""
from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from facegan.data.workers import exit_with_parent
from facegan.errors import FaceganError

SUPERSAMPLE = 4
# Below this many images a process pool costs more to start than it saves.
PARALLEL_MIN_IMAGES = 2000
# The faces are drawn in memory (twice over, briefly, when the parts are joined): refuse beyond this.
MAX_BYTES = 8 << 30
MIN_SIZE, MAX_SIZE = 16, 256
NAME_PREFIX = "r"

# CelebA's names for the attributes these faces have; values are -1/1 like list_attr_celeba.txt.
ATTRIBUTE_NAMES = [
    "Bald", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Eyeglasses", "Gray_Hair",
    "Male", "Mouth_Slightly_Open", "Mustache", "Pale_Skin", "Smiling", "Wavy_Hair",
]

HAIR_STYLES = ("short", "long", "bangs", "bald", "quiff", "bun", "curly")
# Hair colour classes -> base RGB; red carries no CelebA colour flag (all four are -1, as in CelebA).
HAIR_COLOURS = {
    "black": (28, 24, 22), "brown": (96, 60, 34), "blond": (214, 180, 110), "gray": (160, 158, 154), "red": (150, 62, 30),
}
HAIR_COLOUR_WEIGHTS = (0.32, 0.32, 0.16, 0.10, 0.10)
IRIS_COLOURS = ((70, 42, 20), (40, 26, 14), (60, 100, 160), (70, 120, 70), (120, 90, 45), (110, 120, 130))
# Skin tones from light to dark (linear blend between neighbours).
SKIN_TONES = np.array([(250, 222, 200), (236, 192, 160), (214, 164, 124), (176, 124, 86), (130, 86, 56), (86, 56, 38)], float)


def render_faces(
    identities: int,
    per_identity: int,
    size: int = 32,
    seed: int = 0,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(uint8 (N, size, size, 3) images, int64 (N,) identity, int8 (N, A) attributes in {-1, 1},
    attribute names) for N = identities x per_identity, grouped by identity. Deterministic by `seed`
    (whatever `workers`: processes to draw with; None = every core where fork is safe, else this process;
    a pool is used only from PARALLEL_MIN_IMAGES images on).
    `on_progress(count)` is called with the number of images finished since its last call."""
    for option, value in (("--identities", identities), ("--per-identity", per_identity), ("--size", size), ("--seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise FaceganError(f"{option} must be a whole number, got {value!r}")
    identities, per_identity, size, seed = int(identities), int(per_identity), int(size), int(seed)
    if identities < 1 or per_identity < 1:
        raise FaceganError(f"--identities and --per-identity must be at least 1, got {identities} and {per_identity}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise FaceganError(f"rendered faces are drawn at {MIN_SIZE}-{MAX_SIZE} px (best 32-128), got --size {size}")
    num_bytes = identities * per_identity * size * size * 3
    if num_bytes > MAX_BYTES:
        raise FaceganError(
            f"{identities} x {per_identity} faces at {size} px need {num_bytes / 2**30:.1f} GiB in memory (limit "
            f"{MAX_BYTES >> 30} GiB); ask for fewer identities or images, or a smaller --size"
        )
    if seed < 0:
        raise FaceganError(f"--seed must be 0 or more, got {seed}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1):
        raise FaceganError(f"workers must be a whole number from 1, got {workers!r}")
    num_images = identities * per_identity
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    num_workers = 1 if num_images < PARALLEL_MIN_IMAGES else min(int(workers or available), identities)
    if workers is None and not _fork_is_safe():
        # forkserver/spawn workers re-import the caller's __main__, which breaks scripts without an
        # `if __name__ == "__main__":` guard (torch already loaded, say): only an explicit --workers risks it.
        num_workers = 1
    # Each identity has its own random streams, so any split over processes gives the same bytes.
    # About 500 images a chunk: a lively progress bar, and several chunks per worker.
    num_chunks = max(num_workers * 4, -(-num_images // 500))
    bounds = np.linspace(0, identities, min(num_chunks, identities) + 1).astype(int)
    chunks = [(seed, int(start), int(stop), per_identity, size) for start, stop in zip(bounds[:-1], bounds[1:]) if stop > start]
    parts = []
    with contextlib.ExitStack() as stack:
        if num_workers == 1:
            results = (_render_identities(*chunk) for chunk in chunks)
        else:
            executor = stack.enter_context(ProcessPoolExecutor(num_workers, mp_context=_pool_context(), initializer=exit_with_parent))
            results = executor.map(_render_identities, *zip(*chunks))
        try:
            for part in results:
                parts.append(part)
                if on_progress is not None:
                    on_progress(len(part[0]))
        except BrokenProcessPool:
            raise FaceganError(
                "a face-drawing worker process stopped: a script that calls render_faces with workers must put the "
                "call under `if __name__ == '__main__':` (or pass workers=1)"
            ) from None
    images = np.concatenate([part[0] for part in parts])
    attributes = np.concatenate([part[1] for part in parts])
    identity = np.repeat(np.arange(identities, dtype=np.int64), per_identity)
    return images, identity, attributes, list(ATTRIBUTE_NAMES)


def _render_identities(seed: int, start: int, stop: int, per_identity: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images and attributes of identities start..stop-1 (a unit of work for one process)."""
    count = (stop - start) * per_identity
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    attributes = np.empty((count, len(ATTRIBUTE_NAMES)), dtype=np.int8)
    for local, person in enumerate(range(start, stop)):
        face = _draw_identity(np.random.default_rng([seed, person, 0]))
        rng = np.random.default_rng([seed, person, 1])
        for offset in range(per_identity):
            shot = _draw_shot(rng)
            images[local * per_identity + offset] = _render(face, shot, size, rng)
            attributes[local * per_identity + offset] = _attributes(face, shot)
        _finish(images[local * per_identity : (local + 1) * per_identity], rng)
    return images, attributes


def _fork_is_safe() -> bool:
    # fork only a single-threaded parent without torch (a forked child inherits held locks).
    return sys.platform.startswith("linux") and "torch" not in sys.modules and threading.active_count() == 1


def _pool_context() -> multiprocessing.context.BaseContext:
    if _fork_is_safe():
        return multiprocessing.get_context("fork")
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def identity_names(identities: int) -> list[str]:
    """The identity names of rendered faces: r00000, r00001, ..."""
    return [f"{NAME_PREFIX}{index:05d}" for index in range(identities)]


# ---- random factors ---------------------------------------------------------------------------
def _draw_identity(rng: np.random.Generator) -> dict:
    male = bool(rng.random() < 0.5)
    style = HAIR_STYLES[int(rng.choice(len(HAIR_STYLES), p=(0.24, 0.18, 0.14, 0.08, 0.14, 0.08, 0.14) if not male
                                        else (0.34, 0.04, 0.10, 0.20, 0.18, 0.02, 0.12)))]
    colour_name = list(HAIR_COLOURS)[int(rng.choice(len(HAIR_COLOURS), p=HAIR_COLOUR_WEIGHTS))]
    tone = rng.random() * (len(SKIN_TONES) - 1)
    low = int(tone)
    skin = SKIN_TONES[low] + (SKIN_TONES[min(low + 1, len(SKIN_TONES) - 1)] - SKIN_TONES[low]) * (tone - low)
    skin = skin * (1 + rng.normal(0, 0.03, 3))
    hair = np.array(HAIR_COLOURS[colour_name], float) * (1 + rng.normal(0, 0.12)) + rng.normal(0, 8, 3)
    return {
        "male": male,
        "width": rng.uniform(0.31, 0.43) + (0.02 if male else 0.0),
        "height": rng.uniform(0.44, 0.56),
        "jaw": rng.uniform(0.0, 1.0) * (0.6 if not male else 1.0) + (0.3 if male else 0.0),  # 0 round .. 1.3 square
        "chin": rng.uniform(0.85, 1.1),
        "skin": np.clip(skin, 0, 255),
        "pale": tone < 0.8,
        "eye_spacing": rng.uniform(0.30, 0.50),
        "eye_size": rng.uniform(0.055, 0.095),
        "eye_height": rng.uniform(-0.18, 0.02),
        "eye_tilt": rng.uniform(-0.25, 0.25),
        "iris": np.array(IRIS_COLOURS[int(rng.integers(len(IRIS_COLOURS)))], float) + rng.normal(0, 10, 3),
        "brow_thickness": rng.uniform(0.012, 0.03) + (0.015 if male else 0.0),
        "brow_angle": rng.uniform(-0.35, 0.35),
        "brow_gap": rng.uniform(0.05, 0.11),
        "nose_length": rng.uniform(0.12, 0.26),
        "nose_width": rng.uniform(0.04, 0.10),
        "mouth_width": rng.uniform(0.09, 0.18),
        "lip_thickness": rng.uniform(0.012, 0.04),
        "lip_colour": np.clip(skin * np.array([0.85, 0.55, 0.55]) + rng.normal(0, 10, 3), 0, 255),
        "mouth_gap": rng.uniform(0.06, 0.13),
        "ear_size": rng.uniform(0.06, 0.11),
        "hair_style": style,
        "hair_colour_name": colour_name,
        "hair": np.clip(hair, 0, 255),
        "hairline": rng.uniform(0.55, 0.85),
        "hair_volume": rng.uniform(1.03, 1.18),
        "hair_length": rng.uniform(0.35, 0.85),
        "wavy": bool(rng.random() < 0.3),
        "mustache": bool(male and rng.random() < 0.25),
    }


def _draw_shot(rng: np.random.Generator) -> dict:
    background = rng.uniform(0, 255, (2, 3))
    return {
        "yaw": float(np.clip(rng.normal(0, 0.35), -0.8, 0.8)),
        "roll": float(np.clip(rng.normal(0, 0.18), -0.45, 0.45)),
        "scale": rng.uniform(0.95, 1.25),
        "shift": rng.normal(0, 0.07, 2),
        "smile": float(rng.random() < 0.45) * rng.uniform(0.5, 1.0),
        "open": float(rng.random() < 0.35) * rng.uniform(0.4, 1.0),
        "gaze": rng.normal(0, 0.3, 2),
        "blink": bool(rng.random() < 0.06),
        "brow_raise": rng.normal(0, 0.015),
        "glasses": bool(rng.random() < 0.3),
        "glasses_round": bool(rng.random() < 0.5),
        "glasses_colour": rng.uniform(0, 200, 3),
        "lens_alpha": int(rng.uniform(150, 230)) if rng.random() < 0.25 else int(rng.uniform(0, 50)),
        "shirt": rng.uniform(0, 255, 3),
        "background": background,
        "background_angle": rng.uniform(0, 2 * math.pi),
        "clutter": int(rng.integers(0, 5)),
        "blur": rng.uniform(0.15, 0.55) if rng.random() < 0.5 else 0.0,  # Gaussian sigma in pixels at 32 px
        "hair_jitter": rng.normal(0, 0.02),
    }


def _attributes(face: dict, shot: dict) -> np.ndarray:
    colour = face["hair_colour_name"]
    bald = face["hair_style"] == "bald"
    flags = {
        "Bald": bald,
        "Bangs": face["hair_style"] == "bangs",
        "Black_Hair": colour == "black" and not bald,
        "Blond_Hair": colour == "blond" and not bald,
        "Brown_Hair": colour == "brown" and not bald,
        "Eyeglasses": shot["glasses"],
        "Gray_Hair": colour == "gray" and not bald,
        "Male": face["male"],
        "Mouth_Slightly_Open": shot["open"] > 0.3,
        "Mustache": face["mustache"],
        "Pale_Skin": face["pale"],
        "Smiling": shot["smile"] > 0.4,
        "Wavy_Hair": face["wavy"] and not bald,
    }
    return np.array([1 if flags[name] else -1 for name in ATTRIBUTE_NAMES], dtype=np.int8)


# ---- drawing ----------------------------------------------------------------------------------
_MOUTH_XS = np.linspace(-1, 1, 13)  # positions across the mouth, corner to corner
_CURL_ANGLES = np.linspace(math.pi * 0.9, math.pi * 2.1, 11).tolist()  # where curly hair's curls sit
_UNIT_ARCS: dict[tuple[float, float, int], np.ndarray] = {}


def _ellipse(cx: float, cy: float, rx: float, ry: float, start: float = 0.0, stop: float = 2 * math.pi, count: int = 28) -> np.ndarray:
    """Points (count, 2) on an ellipse arc in face units."""
    key = (start, stop, count)
    unit = _UNIT_ARCS.get(key)
    if unit is None:
        angles = np.linspace(start, stop, count, endpoint=stop - start < 2 * math.pi - 1e-9)
        unit = _UNIT_ARCS.setdefault(key, np.stack([np.cos(angles), np.sin(angles)], axis=1))
    return unit * (rx, ry) + (cx, cy)


def _colour(rgb) -> tuple[int, int, int]:
    red, green, blue = rgb
    return (min(255, max(0, int(round(red)))), min(255, max(0, int(round(green)))), min(255, max(0, int(round(blue)))))


def _render(face: dict, shot: dict, size: int, rng: np.random.Generator) -> np.ndarray:
    """One face at size x size, uint8 RGB (lighting, noise and colour cast follow in _finish)."""
    canvas = size * SUPERSAMPLE
    image = _background(shot, canvas)
    draw = ImageDraw.Draw(image, "RGBA")

    yaw, roll, scale = shot["yaw"], shot["roll"], shot["scale"]
    cos_roll, sin_roll = math.cos(roll), math.sin(roll)
    centre = np.array([0.0, 0.08]) + shot["shift"]

    # Every shape is recorded in face units first and mapped to pixels in one numpy pass at the end
    # (per-shape numpy calls would cost more than the drawing itself).
    commands: list[tuple[str, np.ndarray, object, float]] = []

    def polygon(points: np.ndarray, fill) -> None:
        commands.append(("polygon", points, fill, 0.0))

    def line(points: np.ndarray, fill, width_units: float) -> None:
        commands.append(("line", points, fill, width_units))

    def turn(x: float, depth: float) -> float:
        """Horizontal position of a feature at (x, depth) on a head turned by `yaw`."""
        return x * math.cos(yaw) + depth * math.sin(yaw)

    # Clutter behind the person: shapes of random colours (nuisance for raw pixels).
    for _ in range(shot["clutter"]):
        cx, cy = rng.uniform(-1, 1, 2)
        rx, ry = rng.uniform(0.1, 0.5, 2)
        shape = _ellipse(cx, cy, rx, ry, count=16) if rng.random() < 0.5 else np.array([[cx - rx, cy - ry], [cx + rx, cy - ry], [cx + rx, cy + ry], [cx - rx, cy + ry]])
        draw.polygon([tuple(p) for p in ((shape + 1) * canvas / 2).tolist()], fill=tuple(rng.integers(0, 256, 3).tolist()))

    palette = face.get("palette")
    if palette is None:  # the identity's colours as Pillow tuples, computed once per identity
        skin, hair, lip = face["skin"], face["hair"], face["lip_colour"]
        palette = face["palette"] = {
            "skin": _colour(skin), "shadow": _colour(skin * 0.78), "nose": _colour(skin * 0.86),
            "dark": _colour(skin * 0.45), "lid": _colour(skin * 0.4), "hair": _colour(hair),
            "brow": _colour(hair * 0.6 if face["hair_style"] != "bald" else skin * 0.45),
            "iris": _colour(face["iris"]), "lip": _colour(lip), "lip_line": _colour(lip * 0.55),
        }
    width, height = face["width"] * (0.88 + 0.12 * math.cos(yaw)), face["height"]
    skin, hair = face["skin"], face["hair"]
    skin_shadow = palette["shadow"]
    hair_fill = palette["hair"]
    style = face["hair_style"]
    head_x = turn(0.0, -0.08)  # the head's centre moves a little against the turn
    top = -height

    # Shoulders and neck.
    polygon(_ellipse(head_x * 0.5, 1.05, 0.95, 0.42, count=24), _colour(shot["shirt"]))
    polygon(np.array([[head_x - 0.14, 0.3], [head_x + 0.14, 0.3], [head_x + 0.17, 0.8], [head_x - 0.17, 0.8]]), skin_shadow)

    # Hair that falls behind the head.
    volume = face["hair_volume"] + shot["hair_jitter"]
    if style == "long":
        length = 0.3 + face["hair_length"]
        back = np.concatenate([_ellipse(head_x, 0.0, width * volume * 1.08, height * volume, math.pi, 2 * math.pi, 20),
                               [[head_x + width * 1.25, length], [head_x - width * 1.25, length]]])
        polygon(back, hair_fill)
    elif style == "curly":
        for angle in _CURL_ANGLES:
            cx = head_x + width * 1.05 * math.cos(angle)
            cy = -0.05 + height * 0.95 * math.sin(angle)
            polygon(_ellipse(cx, cy, 0.13 * volume, 0.13 * volume, count=14), hair_fill)
    elif style == "bun":
        polygon(_ellipse(head_x, top - 0.09, 0.14, 0.11, count=18), hair_fill)

    # Ears (the near one hides as the head turns away from it).
    ear = face["ear_size"]
    for side in (-1, 1):
        visible = 1.0 - max(0.0, side * yaw) * 1.1
        if visible > 0.15 and style not in ("long",):
            ex = turn(side * width * 0.98, -0.1)
            polygon(_ellipse(ex, face["eye_height"] + 0.07, ear * 0.55 * visible, ear, count=14), skin_shadow)

    # Face: an ellipse above, a jaw between round and square below.
    angles = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    xs, ys = np.sin(angles), -np.cos(angles)
    lower = ys > 0
    exponent = 2.0 / (1.0 + face["jaw"])  # <1 squares the jaw
    xs = np.where(lower, np.sign(xs) * np.abs(xs) ** exponent, xs)
    ys = np.where(lower, ys * face["chin"], ys)
    outline = np.stack([head_x + width * xs, height * ys], axis=1)
    polygon(outline, palette["skin"])

    # Hair on top of the head.
    hairline = top + height * (1.0 - face["hairline"]) * 0.9
    if style != "bald":
        cap = np.concatenate([_ellipse(head_x, 0.0, width * volume, height * volume * 1.02, math.pi * 1.02, math.pi * 1.98, 22),
                              [[head_x + width * 0.95, hairline + 0.12], [head_x, hairline], [head_x - width * 0.95, hairline + 0.12]]])
        if style == "quiff":
            cap = np.concatenate([cap, [[head_x - width * 0.2, top - 0.1], [head_x - width * 0.6, top - 0.05]]])
        polygon(cap, hair_fill)
        if style == "bangs":
            brow_y = face["eye_height"] - face["brow_gap"] - 0.02
            fringe = np.array([[head_x - width * 0.95, hairline], [head_x + width * 0.95, hairline],
                               [head_x + width * 0.85, brow_y], [head_x - width * 0.85, brow_y]])
            polygon(fringe, hair_fill)
        if face["wavy"]:
            for side in (-1, 1):
                strand = np.array([[head_x + side * width * (0.95 + 0.06 * math.sin(k * 2.1)), hairline + 0.05 * k] for k in range(7)])
                line(strand, hair_fill, 0.04)
    else:
        for side in (-1, 1):  # a fringe of hair around a bald crown
            polygon(_ellipse(head_x + side * width * 0.9, -0.05, 0.07, 0.16, count=12), hair_fill)

    # Eyes, brows.
    eye_y = face["eye_height"]
    eye_rx, eye_ry = face["eye_size"], face["eye_size"] * 0.55
    brow_colour = palette["brow"]
    for side in (-1, 1):
        squash = max(0.25, math.cos(yaw + side * 0.45) / math.cos(0.45))  # the far eye looks narrower
        ex = turn(side * face["eye_spacing"] * width * 1.2, 0.45)
        tilt = side * face["eye_tilt"] * eye_ry
        if shot["blink"]:
            line(np.array([[ex - eye_rx * squash, eye_y + tilt], [ex + eye_rx * squash, eye_y - tilt]]), palette["dark"], 0.012)
        else:
            polygon(_ellipse(ex, eye_y, eye_rx * squash, eye_ry, count=20), (236, 234, 228))
            gx, gy = shot["gaze"] * eye_ry * 0.5
            polygon(_ellipse(ex + gx * squash + yaw * eye_rx * 0.3, eye_y + gy, eye_ry * 0.85 * squash, eye_ry * 0.85, count=16), palette["iris"])
            polygon(_ellipse(ex + gx * squash + yaw * eye_rx * 0.3, eye_y + gy, eye_ry * 0.38 * squash, eye_ry * 0.38, count=12), (10, 8, 8))
            line(_ellipse(ex, eye_y, eye_rx * squash, eye_ry * 1.05, math.pi, 2 * math.pi, 10), palette["lid"], 0.012)
        by = eye_y - face["brow_gap"] - eye_ry + shot["brow_raise"]
        inner, outer = ex - side * eye_rx * 1.1 * squash, ex + side * eye_rx * 1.3 * squash
        angle = face["brow_angle"] * eye_rx
        line(np.array([[inner, by + angle], [(inner + outer) / 2, by - 0.012], [outer, by - angle]]), brow_colour, face["brow_thickness"])

    # Nose.
    nose_top, nose_tip = eye_y + 0.02, eye_y + 0.04 + face["nose_length"]
    nx_top, nx_tip = turn(0.0, 0.5), turn(0.0, 0.5 + face["nose_length"] * 0.9)
    nose_width = face["nose_width"] * (0.8 + 0.2 * math.cos(yaw))
    polygon(np.array([[nx_top - 0.012, nose_top], [nx_top + 0.012, nose_top], [nx_tip + nose_width, nose_tip], [nx_tip, nose_tip + 0.02], [nx_tip - nose_width, nose_tip]]),
            palette["nose"])
    for side in (-1, 1):
        polygon(_ellipse(nx_tip + side * nose_width * 0.5, nose_tip + 0.005, nose_width * 0.28, 0.012, count=10), palette["dark"])

    # Mouth: lips closed, smiling (corners up, wider) and/or open (dark inside, teeth).
    mouth_y = nose_tip + face["mouth_gap"]
    mx = turn(0.0, 0.5)
    half = face["mouth_width"] * (1 + 0.25 * shot["smile"]) * (0.75 + 0.25 * math.cos(yaw))
    lift = 0.045 * shot["smile"]
    opening = 0.07 * shot["open"]
    lip = face["lip_thickness"]
    xs = _MOUTH_XS
    centre_line = mouth_y - lift * (xs**2)  # a smile lifts the corners
    upper = np.stack([mx + half * xs, centre_line - lip - opening * 0.3 * (1 - xs**2)], axis=1)
    lower = np.stack([mx + half * xs[::-1], (centre_line + lip * 1.2 + opening * (1 - xs**2))[::-1]], axis=1)
    polygon(np.concatenate([upper, lower]), palette["lip"])
    if opening > 0.01:
        inner_top = np.stack([mx + half * 0.85 * xs, centre_line - opening * 0.25 * (1 - xs**2)], axis=1)
        inner_bottom = np.stack([mx + half * 0.85 * xs[::-1], (centre_line + opening * 0.9 * (1 - xs**2))[::-1]], axis=1)
        polygon(np.concatenate([inner_top, inner_bottom]), (50, 18, 20))
        polygon(np.concatenate([inner_top, inner_top[::-1] + [0, opening * 0.3]]), (235, 232, 222))
    else:
        line(np.stack([mx + half * xs, centre_line], axis=1), palette["lip_line"], 0.008)
    if face["mustache"]:
        polygon(np.concatenate([np.stack([mx + half * 1.1 * xs, centre_line - lip - 0.045 + 0.01 * xs**2], axis=1),
                                np.stack([mx + half * 1.1 * xs[::-1], (centre_line - lip - 0.004)[::-1]], axis=1)]), hair_fill)

    # Glasses: two frames, a bridge, temples; lenses tinted (sunglasses) or nearly clear.
    if shot["glasses"]:
        frame = _colour(shot["glasses_colour"])
        tint = (*_colour(shot["glasses_colour"] * 0.3), shot["lens_alpha"])
        centres = []
        for side in (-1, 1):
            squash = max(0.25, math.cos(yaw + side * 0.45) / math.cos(0.45))
            ex = turn(side * face["eye_spacing"] * width * 1.2, 0.5)
            rx, ry = (eye_rx * 1.6) * squash, eye_ry * 2.3
            if shot["glasses_round"]:
                lens = _ellipse(ex, eye_y, rx, ry, count=20)
            else:
                lens = np.array([[ex - rx, eye_y - ry], [ex + rx, eye_y - ry], [ex + rx, eye_y + ry * 0.8], [ex - rx, eye_y + ry * 0.8]])
            polygon(lens, tint)
            line(np.concatenate([lens, lens[:1]]), frame, 0.014)
            centres.append((ex, rx))
            temple = turn(side * width * 0.98, -0.05)
            line(np.array([[ex + side * rx, eye_y - ry * 0.5], [temple, eye_y - ry * 0.7]]), frame, 0.012)
        (left_x, left_rx), (right_x, right_rx) = centres
        line(np.array([[left_x + left_rx, eye_y - eye_ry], [(left_x + right_x) / 2, eye_y - eye_ry * 1.6], [right_x - right_rx, eye_y - eye_ry]]), frame, 0.012)

    # face units (x right, y down, head ~ +-0.5) -> roll, scale, shift -> canvas pixels, all shapes at once
    points = np.concatenate([command[1] for command in commands]) * scale
    rotation = np.array([[cos_roll, sin_roll], [-sin_roll, cos_roll]])
    pixels = ((points @ rotation + centre + 1.0) * (canvas / 2.0)).ravel().tolist()  # [x0, y0, x1, y1, ...]
    start = 0
    for kind, shape, fill, width_units in commands:
        xy = pixels[start : start + 2 * len(shape)]
        start += 2 * len(shape)
        if kind == "polygon":
            draw.polygon(xy, fill=fill)
        else:
            draw.line(xy, fill=fill, width=max(1, int(round(width_units * scale * canvas / 2))), joint="curve")

    small = image.reduce(SUPERSAMPLE)  # box filter over each SUPERSAMPLE^2 block: the anti-aliasing
    if shot["blur"] > 0.05:
        small = small.filter(ImageFilter.GaussianBlur(shot["blur"] * size / 32.0))
    return np.asarray(small, dtype=np.uint8)


_GRADIENT_DIRECTIONS = 32  # background gradients point in one of this many directions
_GRADIENT_MASKS: dict[tuple[int, int], Image.Image] = {}


def _background(shot: dict, canvas: int) -> Image.Image:
    """A linear gradient between two random colours in a random direction."""
    # Two flat images mixed through a cached ramp mask: far cheaper than a per-image numpy gradient.
    bucket = int(shot["background_angle"] / (2 * math.pi) * _GRADIENT_DIRECTIONS) % _GRADIENT_DIRECTIONS
    mask = _GRADIENT_MASKS.get((canvas, bucket))
    if mask is None:
        direction = 2 * math.pi * bucket / _GRADIENT_DIRECTIONS
        ramp = np.linspace(-1.0, 1.0, canvas)
        t = (math.cos(direction) * ramp[None, :] + math.sin(direction) * ramp[:, None]) / (2 * math.sqrt(2)) + 0.5
        mask = _GRADIENT_MASKS.setdefault((canvas, bucket), Image.fromarray(np.rint(t * 255).astype(np.uint8), "L"))
    first, second = (_colour(colour) for colour in shot["background"])
    return Image.composite(Image.new("RGB", (canvas, canvas), second), Image.new("RGB", (canvas, canvas), first), mask)


def _finish(images: np.ndarray, rng: np.random.Generator) -> None:
    """In place, for one identity's images at once: directional light, exposure, white balance, noise."""
    count, size = images.shape[0], images.shape[1]
    angle = rng.uniform(0, 2 * math.pi, count).astype(np.float32)
    strength = rng.uniform(0.0, 0.9, count).astype(np.float32)
    gain = rng.uniform(0.65, 1.3, count).astype(np.float32)
    balance = (1 + rng.normal(0, 0.1, (count, 3))).astype(np.float32)
    noise_level = rng.uniform(0.0, 14.0, count).astype(np.float32)
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    # light falls off linearly across the image, from the light's side: (count, H, W)
    shading = 1 + strength[:, None, None] * 0.5 * (
        np.cos(angle)[:, None, None] * ramp[None, None, :] + np.sin(angle)[:, None, None] * ramp[None, :, None]
    )
    pixels = images.astype(np.float32) * (shading * gain[:, None, None])[..., None] * balance[:, None, None, :]
    pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * noise_level[:, None, None, None]
    images[...] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


__all__ = ["ATTRIBUTE_NAMES", "HAIR_STYLES", "identity_names", "render_faces"]
