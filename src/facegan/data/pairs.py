"""Verification pairs in LFW's `pairs.txt` format (view 2): make them for any labelled dataset,
write them, read LFW's own file as-is, and resolve (identity name, image number) to dataset rows.

The format: a header `FOLDS<tab>PAIRS_PER_FOLD` (LFW ships `10\t300`; view 1's pairsDevTrain.txt
has a single count and is read as one fold), then per fold PAIRS_PER_FOLD same-person lines
`name<tab>n1<tab>n2` followed by PAIRS_PER_FOLD different-person lines `name1<tab>n1<tab>name2<tab>n2`.
Image numbers are 1-based. Which kind a line is follows from its position, as in LFW's own readers.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from facegan.errors import FaceganError
from facegan.files import read_regular_file, write_bytes_atomic

# LFW's pairs.txt is ~100 KB; this bounds what a mistyped path (a video, a device) can make us read.
MAX_PAIRS_FILE_BYTES = 256 << 20
# LFW's file names: <Person>/<Person>_<number>.<ext>.
_LFW_FILE = re.compile(r"^(?:.*/)?(?P<folder>[^/]+)/(?P<person>[^/]+)_(?P<number>\d+)\.[^./]+$")
# Identities with at most this many distinct image pairs are enumerated; larger ones are sampled.
_ENUMERATE_MAX_PAIRS = 20_000


class ImageRef(NamedTuple):
    """One image as pairs.txt names it: an identity name and a 1-based image number."""

    name: str
    number: int


@dataclass(frozen=True)
class Pair:
    """Two images, whether they show the same person, and the fold (0-based) the pair belongs to."""

    left: ImageRef
    right: ImageRef
    same: bool
    fold: int
    line: int = field(default=0, compare=False)  # the pairs.txt line it was read from (0: not read)


@dataclass
class PairsFile:
    """A whole view-2 pairs list: `num_folds` folds of `pairs_per_fold` same + as many different pairs."""

    num_folds: int
    pairs_per_fold: int
    pairs: list[Pair]
    identities_disjoint: bool = True  # whether no identity appears in two folds (LFW's own design)

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self):
        return iter(self.pairs)


# ---- dataset rows <-> (name, number) ------------------------------------------------------------
def image_refs(dataset) -> list[ImageRef | None]:
    """Each dataset row's ImageRef (None for rows without an identity).

    LFW-prepared datasets number images by their file name (`Person_0003.jpg` -> 3), so LFW's own
    pairs.txt resolves even when some files were skipped; every other dataset numbers each identity's
    images 1, 2, ... in dataset order.
    """
    if not dataset.has_identities:
        raise FaceganError(
            "this dataset has no identity labels; pairs need a dataset prepared from CelebA (with "
            "identity_CelebA.txt), LFW, --layout identity-folders, builtin:rendered-faces or `facegan synth`"
        )
    names = dataset.identity_names
    identity = np.asarray(dataset.identity)
    labelled = [None if code < 0 else names[code] for code in identity.tolist()]
    numbers = _lfw_file_numbers(dataset, labelled)
    if numbers is None:
        counts: dict[str, int] = {}
        numbers = []
        for name in labelled:
            if name is None:
                numbers.append(0)
                continue
            counts[name] = counts.get(name, 0) + 1
            numbers.append(counts[name])
    return [None if name is None else ImageRef(name, number) for name, number in zip(labelled, numbers)]


def _lfw_file_numbers(dataset, labelled: list[str | None]) -> list[int] | None:
    if dataset.manifest.get("source_kind") != "lfw":
        return None
    paths = dataset.source_paths
    if len(paths) != len(labelled):
        return None
    numbers = []
    for path, name in zip(paths, labelled):
        match = _LFW_FILE.match(path)
        if name is None or match is None or match["person"] != name:
            return None  # not LFW's naming after all: numbering by rank is the only consistent rule
        numbers.append(int(match["number"]))
    return numbers


def resolve_pairs(dataset, pairs: PairsFile | Sequence[Pair]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(left_index int64 (P,), right_index int64 (P,), same bool (P,), fold int64 (P,)) in pairs order.

    Pairs that name an identity or image the dataset lacks are one FaceganError naming the first one
    and how many there are.
    """
    pair_list = list(pairs.pairs if isinstance(pairs, PairsFile) else pairs)
    if not pair_list:
        raise FaceganError("the pairs list is empty; make one with `facegan data pairs DATASET --out pairs.txt`")
    row_of: dict[ImageRef, int] = {}
    images_of: dict[str, int] = {}
    for row, ref in enumerate(image_refs(dataset)):
        if ref is not None:
            row_of.setdefault(ref, row)
            images_of[ref.name] = images_of.get(ref.name, 0) + 1
    left = np.empty(len(pair_list), dtype=np.int64)
    right = np.empty(len(pair_list), dtype=np.int64)
    missing: list[tuple[int, Pair, ImageRef]] = []
    for index, pair in enumerate(pair_list):
        for target, ref in ((left, pair.left), (right, pair.right)):
            row = row_of.get(ImageRef(ref.name, int(ref.number)))
            if row is None:
                missing.append((index, pair, ref))
                row = -1
            target[index] = row
    if missing:
        index, pair, ref = missing[0]
        where = f"line {pair.line}" if pair.line else f"pair {index + 1}"
        if ref.name in images_of:
            what = f"image {ref.number} of {ref.name}, who has {images_of[ref.name]} images in the dataset"
        else:
            what = f"identity {ref.name!r}, which is not in the dataset"
        num_bad = len({index for index, _, _ in missing})
        raise FaceganError(
            f"{num_bad} of {len(pair_list)} pairs name images the dataset lacks; the first ({where}) names {what}; "
            "use the pairs file made for this dataset (`facegan data pairs`) or prepare the dataset from the same source"
        )
    same = np.array([pair.same for pair in pair_list], dtype=bool)
    fold = np.array([pair.fold for pair in pair_list], dtype=np.int64)
    return left, right, same, fold


# ---- making pairs -------------------------------------------------------------------------------
def make_pairs(dataset, folds: int = 10, pairs_per_fold: int = 300, seed: int = 0) -> PairsFile:
    """LFW view 2 for `dataset`: `folds` folds of `pairs_per_fold` same + `pairs_per_fold` different pairs.

    Identities are spread over folds so that none appears in two folds (LFW's design) whenever every
    fold can still get its pairs that way; otherwise pairs are drawn over all identities and
    `identities_disjoint` is False. Same pairs pick an identity uniformly first, so people with many
    photos do not dominate. Deterministic by `seed`.
    """
    for option, value in (("--folds", folds), ("--pairs-per-fold", pairs_per_fold), ("--seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise FaceganError(f"{option} must be a whole number, got {value!r}")
    folds, pairs_per_fold, seed = int(folds), int(pairs_per_fold), int(seed)
    if folds < 1 or pairs_per_fold < 1:
        raise FaceganError(f"--folds and --pairs-per-fold must be at least 1, got {folds} and {pairs_per_fold}")
    if seed < 0:
        raise FaceganError(f"--seed must be 0 or more, got {seed}")
    refs = image_refs(dataset)
    numbers_of: dict[str, list[int]] = {}
    for ref in refs:
        if ref is not None:
            numbers_of.setdefault(ref.name, []).append(ref.number)
    names = sorted(numbers_of)
    if len(names) < 2:
        raise FaceganError(
            f"the dataset has {len(names)} identity; different-person pairs need at least 2 (prepare more people)"
        )
    needed = folds * pairs_per_fold
    same_capacity = {name: math.comb(len(numbers_of[name]), 2) for name in names}
    total_same = sum(same_capacity.values())
    if total_same < needed:
        num_multi = sum(1 for name in names if len(numbers_of[name]) >= 2)
        raise FaceganError(
            f"{folds} folds x {pairs_per_fold} same-person pairs need {needed} distinct same pairs, but the dataset's "
            f"{len(names)} identities ({num_multi} with 2+ images) allow only {total_same}; "
            f"lower --pairs-per-fold to {max(1, total_same // folds)} or --folds, or add images per identity"
        )
    sizes = np.array([len(numbers_of[name]) for name in names], dtype=np.int64)
    total_different = int((sizes.sum() ** 2 - (sizes**2).sum()) // 2)
    if total_different < needed:
        raise FaceganError(
            f"{needed} different-person pairs are needed but the dataset allows only {total_different}; lower --pairs-per-fold or --folds"
        )
    rng = np.random.default_rng(seed)
    groups = _disjoint_groups(names, numbers_of, same_capacity, folds, pairs_per_fold, rng)
    disjoint = groups is not None
    pairs: list[Pair] = []
    if disjoint:
        for fold, group in enumerate(groups):
            drawn = _fold_pairs(group, numbers_of, pairs_per_fold, pairs_per_fold, fold, rng)
            pairs += sorted(drawn[:pairs_per_fold], key=_pair_key) + sorted(drawn[pairs_per_fold:], key=_pair_key)
    else:
        drawn = _fold_pairs(names, numbers_of, needed, needed, 0, rng)
        same_pairs = [pair for pair in drawn if pair.same]
        different_pairs = [pair for pair in drawn if not pair.same]
        for fold in range(folds):
            chunk = slice(fold * pairs_per_fold, (fold + 1) * pairs_per_fold)
            for pair in sorted(same_pairs[chunk], key=_pair_key) + sorted(different_pairs[chunk], key=_pair_key):
                pairs.append(Pair(pair.left, pair.right, pair.same, fold))
    return PairsFile(num_folds=folds, pairs_per_fold=pairs_per_fold, pairs=pairs, identities_disjoint=disjoint)


def _disjoint_groups(names, numbers_of, same_capacity, folds, pairs_per_fold, rng) -> list[list[str]] | None:
    """Identities split into `folds` groups, each able to give its same and different pairs, or None."""
    order = [names[index] for index in rng.permutation(len(names))]
    # Largest same-pair capacity first, each to the currently poorest fold (longest-processing-time rule).
    order.sort(key=lambda name: -same_capacity[name])
    groups: list[list[str]] = [[] for _ in range(folds)]
    capacity = [0] * folds
    images = [0] * folds
    for name in order:
        if same_capacity[name] > 0:
            target = min(range(folds), key=lambda fold: (capacity[fold], images[fold]))
        else:
            target = min(range(folds), key=lambda fold: images[fold])
        groups[target].append(name)
        capacity[target] += same_capacity[name]
        images[target] += len(numbers_of[name])
    for group, same_pairs in zip(groups, capacity):
        sizes = np.array([len(numbers_of[name]) for name in group], dtype=np.int64)
        different_pairs = int((sizes.sum() ** 2 - (sizes**2).sum()) // 2)
        if same_pairs < pairs_per_fold or different_pairs < pairs_per_fold:
            return None
    return [sorted(group) for group in groups]


def _fold_pairs(names, numbers_of, num_same, num_different, fold, rng) -> list[Pair]:
    """`num_same` distinct same pairs then `num_different` distinct different pairs among `names`, in drawing order."""
    # Same pairs: a random identity that still has unused pairs, then a random unused pair of its images.
    pools: dict[str, list[tuple[int, int]] | set[tuple[int, int]]] = {}
    live = [name for name in names if len(numbers_of[name]) >= 2]
    same: list[Pair] = []
    while len(same) < num_same:
        pick = int(rng.integers(len(live)))
        name = live[pick]
        numbers = numbers_of[name]
        capacity = math.comb(len(numbers), 2)
        if capacity <= _ENUMERATE_MAX_PAIRS:
            pool = pools.get(name)
            if pool is None:
                pool = [(a, b) for i, a in enumerate(numbers) for b in numbers[i + 1 :]]
                pool = [pool[index] for index in rng.permutation(len(pool))]
                pools[name] = pool
            first, second = pool.pop()
            exhausted = not pool
        else:
            used = pools.setdefault(name, set())
            while True:
                i, j = sorted(rng.choice(len(numbers), 2, replace=False).tolist())
                if (i, j) not in used:
                    break
            used.add((i, j))
            first, second = numbers[i], numbers[j]
            exhausted = len(used) == capacity
        same.append(Pair(ImageRef(name, first), ImageRef(name, second), True, fold))
        if exhausted:
            live[pick] = live[-1]
            live.pop()
    # Different pairs: two distinct identities (weighted by their images, like drawing two images),
    # rejecting repeats; the capacity check before guarantees enough exist.
    sizes = np.array([len(numbers_of[name]) for name in names], dtype=np.float64)
    weights = sizes / sizes.sum()
    seen: set[tuple[ImageRef, ImageRef]] = set()
    different: list[Pair] = []
    total_different = int((sizes.sum() ** 2 - (sizes**2).sum()) // 2)
    exhaustive = num_different > total_different // 2
    if exhaustive:  # nearly every pair is needed: enumerate rather than reject forever
        every = [
            (ImageRef(a, m), ImageRef(b, n))
            for i, a in enumerate(names) for b in names[i + 1 :] for m in numbers_of[a] for n in numbers_of[b]
        ]
        for index in rng.permutation(len(every))[:num_different]:
            left, right = every[index]
            different.append(Pair(left, right, False, fold))
    while len(different) < num_different:
        a, b = rng.choice(len(names), 2, replace=False, p=weights)
        a, b = sorted((int(a), int(b)))
        left = ImageRef(names[a], int(rng.choice(numbers_of[names[a]])))
        right = ImageRef(names[b], int(rng.choice(numbers_of[names[b]])))
        if (left, right) in seen:
            continue
        seen.add((left, right))
        different.append(Pair(left, right, False, fold))
    return same + different  # in drawing order; callers sort within each fold


def _pair_key(pair: Pair) -> tuple:
    return (pair.left.name, pair.left.number, pair.right.name, pair.right.number)


# ---- the file format ----------------------------------------------------------------------------
def format_pairs_txt(pairs: PairsFile | Sequence[Pair]) -> str:
    """pairs.txt text: tab-separated like LFW's file, folds in order, same pairs before different ones."""
    pairs_file = pairs if isinstance(pairs, PairsFile) else _infer_layout(list(pairs))
    lines = [f"{pairs_file.num_folds}\t{pairs_file.pairs_per_fold}"]
    expected = _expected_kinds(pairs_file.num_folds, pairs_file.pairs_per_fold)
    if len(pairs_file.pairs) != len(expected):
        raise FaceganError(
            f"{len(pairs_file.pairs)} pairs do not fill {pairs_file.num_folds} folds x {pairs_file.pairs_per_fold} same + different"
        )
    for index, (pair, (fold, same)) in enumerate(zip(pairs_file.pairs, expected)):
        if pair.fold != fold or pair.same != same:
            raise FaceganError(
                f"pair {index + 1} is a {'same' if pair.same else 'different'}-person pair of fold {pair.fold}, but pairs.txt "
                f"needs a {'same' if same else 'different'}-person pair of fold {fold} there (folds in order, same pairs first)"
            )
        for ref in (pair.left, pair.right):
            if not ref.name or any(character in ref.name for character in "\t\r\n") or ref.name != ref.name.strip():
                raise FaceganError(f"identity name {ref.name!r} cannot be written to pairs.txt (empty, tab, newline or edge spaces)")
            if isinstance(ref.number, bool) or not isinstance(ref.number, (int, np.integer)) or ref.number < 1:
                raise FaceganError(f"image number {ref.number!r} of {ref.name} must be a whole number from 1 (pairs.txt is 1-based)")
        if same:
            if pair.left.name != pair.right.name:
                raise FaceganError(f"pair {index + 1} is marked same-person but names {pair.left.name} and {pair.right.name}")
            lines.append(f"{pair.left.name}\t{pair.left.number}\t{pair.right.number}")
        else:
            lines.append(f"{pair.left.name}\t{pair.left.number}\t{pair.right.name}\t{pair.right.number}")
    return "\n".join(lines) + "\n"


def write_pairs_txt(path: str | os.PathLike, pairs: PairsFile | Sequence[Pair]) -> Path:
    """Write pairs.txt atomically; returns the path."""
    text = format_pairs_txt(pairs)  # checks everything before the file is touched
    write_bytes_atomic(path, text.encode("utf-8"))
    return Path(path)


def _infer_layout(pairs: list[Pair]) -> PairsFile:
    if not pairs:
        raise FaceganError("no pairs to write")
    num_folds = max(pair.fold for pair in pairs) + 1
    num_same = sum(1 for pair in pairs if pair.same)
    if num_same * 2 != len(pairs) or num_same % num_folds:
        raise FaceganError(
            f"{len(pairs)} pairs ({num_same} same) cannot be laid out as {num_folds} folds of equal same and different halves"
        )
    return PairsFile(num_folds=num_folds, pairs_per_fold=num_same // num_folds, pairs=pairs)


def _expected_kinds(num_folds: int, pairs_per_fold: int) -> list[tuple[int, bool]]:
    return [(fold, same) for fold in range(num_folds) for same in (True, False) for _ in range(pairs_per_fold)]


def read_pairs_txt(path: str | os.PathLike) -> PairsFile:
    """Read LFW's pairs.txt (view 2, or view 1's single-count header as one fold), or one we wrote."""
    try:
        raw = read_regular_file(path, MAX_PAIRS_FILE_BYTES)
    except FaceganError:
        raise
    except OSError as error:
        raise FaceganError(f"cannot read pairs file {path}: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # LFW's names are ASCII; a legacy-encoded custom file still reads
    return parse_pairs_txt(text, str(path))


def parse_pairs_txt(text: str, where: str = "pairs.txt") -> PairsFile:
    """Parse pairs.txt text; every problem is one FaceganError naming `where` and the line number."""
    # Blank lines (a trailing newline or two, an editor's empty last line) carry nothing; line numbers
    # in messages stay those of the file.
    text = text.removeprefix("\ufeff")  # a byte-order mark left by a Windows editor
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise FaceganError(f"{where} is empty; expected a header `FOLDS<tab>PAIRS_PER_FOLD` such as `10\t300`")
    header_number, header = lines[0]
    fields = header.split()
    if len(fields) not in (1, 2):
        raise FaceganError(
            f"{where}:{header_number}: the header should be `FOLDS PAIRS_PER_FOLD` (LFW: `10\t300`), got {header[:60]!r}"
        )
    values = [_whole_number(value, where, header_number, "header") for value in fields]
    num_folds, pairs_per_fold = (1, values[0]) if len(values) == 1 else values
    if num_folds < 1 or pairs_per_fold < 1:
        raise FaceganError(f"{where}:{header_number}: the header's counts must be at least 1, got {header!r}")
    body = lines[1:]
    expected = 2 * num_folds * pairs_per_fold
    if len(body) != expected:
        raise FaceganError(
            f"{where} has {len(body)} pair lines but its header `{header}` promises {expected} "
            f"({num_folds} folds x {pairs_per_fold} same + {pairs_per_fold} different); the file is truncated or its header is wrong"
        )
    pairs = []
    for (line_number, line), (fold, same) in zip(body, _expected_kinds(num_folds, pairs_per_fold)):
        pairs.append(_parse_pair_line(line, line_number, fold, same, where))
    return PairsFile(num_folds=num_folds, pairs_per_fold=pairs_per_fold, pairs=pairs, identities_disjoint=_disjoint(pairs))


def _parse_pair_line(line: str, line_number: int, fold: int, same: bool, where: str) -> Pair:
    kind = "same-person `name n1 n2`" if same else "different-person `name1 n1 name2 n2`"
    expected_fields = 3 if same else 4
    if "\t" in line:
        fields = [value.strip() for value in line.split("\t")]
    else:
        fields = _split_spaced(line.split(), same)
    if fields is None or len(fields) != expected_fields or not all(fields):
        count = len(line.split("\t")) if "\t" in line else len(line.split())
        raise FaceganError(
            f"{where}:{line_number}: expected a {kind} line (fold {fold + 1}), got {count} fields: {line[:80]!r}"
        )
    if same:
        name, first, second = fields
        left = ImageRef(name, _image_number(first, where, line_number))
        right = ImageRef(name, _image_number(second, where, line_number))
        if left.number == right.number:
            raise FaceganError(f"{where}:{line_number}: pairs image {left.number} of {name} with itself")
    else:
        name1, first, name2, second = fields
        left = ImageRef(name1, _image_number(first, where, line_number))
        right = ImageRef(name2, _image_number(second, where, line_number))
        if name1 == name2:
            raise FaceganError(f"{where}:{line_number}: a different-person pair names {name1} twice")
    return Pair(left, right, same, fold, line=line_number)


def _split_spaced(tokens: list[str], same: bool) -> list[str] | None:
    """Fields of a space-separated line whose names may themselves hold spaces; None when ambiguous."""
    if same:
        if len(tokens) < 3:
            return tokens
        return [" ".join(tokens[:-2]), tokens[-2], tokens[-1]]
    if len(tokens) < 4:
        return tokens
    # name1 n1 name2 n2: n1 is the one number-looking token strictly inside; two candidates are ambiguous.
    inner = [index for index in range(1, len(tokens) - 2) if re.fullmatch(r"[+-]?[0-9]+", tokens[index])]
    if len(inner) != 1:
        return tokens if len(tokens) == 4 else None
    split = inner[0]
    return [" ".join(tokens[:split]), tokens[split], " ".join(tokens[split + 1 : -1]), tokens[-1]]


def _whole_number(value: str, where: str, line_number: int, what: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", value):
        raise FaceganError(f"{where}:{line_number}: the {what} value {value!r} is not a whole number")
    return int(value)


def _image_number(value: str, where: str, line_number: int) -> int:
    number = _whole_number(value, where, line_number, "image number")
    if number < 1:
        raise FaceganError(f"{where}:{line_number}: image number {number} is not 1 or more (pairs.txt numbers images from 1)")
    return number


def _disjoint(pairs: list[Pair]) -> bool:
    fold_of: dict[str, int] = {}
    for pair in pairs:
        for name in (pair.left.name, pair.right.name):
            if fold_of.setdefault(name, pair.fold) != pair.fold:
                return False
    return True


__all__ = [
    "ImageRef",
    "Pair",
    "PairsFile",
    "format_pairs_txt",
    "image_refs",
    "make_pairs",
    "parse_pairs_txt",
    "read_pairs_txt",
    "resolve_pairs",
    "write_pairs_txt",
]
