"""pairs.txt: making LFW view-2 pairs, the round trip, LFW's format edge cases, resolving to rows."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facegan.data.dataset import FaceDataset
from facegan.data.pairs import (
    ImageRef,
    Pair,
    format_pairs_txt,
    image_refs,
    make_pairs,
    parse_pairs_txt,
    read_pairs_txt,
    resolve_pairs,
    write_pairs_txt,
)
from facegan.errors import FaceganError


def labelled_dataset(num_identities: int = 40, per_identity: int = 4, **manifest) -> FaceDataset:
    identity = np.repeat(np.arange(num_identities), per_identity)
    images = np.zeros((len(identity), 4, 4, 1), dtype=np.uint8)
    names = [f"person_{index:03d}" for index in range(num_identities)]
    return FaceDataset(images=images, manifest={"identity_names": names, **manifest}, identity=identity)


def test_make_pairs_is_balanced_disjoint_and_distinct():
    pairs = make_pairs(labelled_dataset(), folds=10, pairs_per_fold=6, seed=3)
    assert len(pairs) == 120 and pairs.identities_disjoint
    for fold in range(10):
        in_fold = [pair for pair in pairs if pair.fold == fold]
        assert [pair.same for pair in in_fold] == [True] * 6 + [False] * 6
    assert all(pair.left.name == pair.right.name for pair in pairs if pair.same)
    assert all(pair.left.name != pair.right.name for pair in pairs if not pair.same)
    folds_of: dict[str, set[int]] = {}
    for pair in pairs:
        for ref in (pair.left, pair.right):
            folds_of.setdefault(ref.name, set()).add(pair.fold)
    assert all(len(folds) == 1 for folds in folds_of.values())
    keys = [(pair.left, pair.right) for pair in pairs]
    assert len(set(keys)) == len(keys)
    assert all(1 <= ref.number <= 4 for pair in pairs for ref in (pair.left, pair.right))


def test_make_pairs_is_deterministic_by_seed():
    dataset = labelled_dataset()
    assert make_pairs(dataset, 10, 6, seed=1).pairs == make_pairs(dataset, 10, 6, seed=1).pairs
    assert make_pairs(dataset, 10, 6, seed=1).pairs != make_pairs(dataset, 10, 6, seed=2).pairs


def test_make_pairs_falls_back_to_shared_identities_when_folds_cannot_be_disjoint():
    pairs = make_pairs(labelled_dataset(num_identities=3, per_identity=6), folds=10, pairs_per_fold=4)
    assert not pairs.identities_disjoint and len(pairs) == 80
    assert len({(pair.left, pair.right) for pair in pairs}) == 80


def test_make_pairs_refuses_too_few_same_pairs_and_says_how_many():
    with pytest.raises(FaceganError, match="allow only 60"):
        make_pairs(labelled_dataset(num_identities=10), folds=10, pairs_per_fold=7)


def test_round_trip(tmp_path: Path):
    pairs = make_pairs(labelled_dataset(), folds=5, pairs_per_fold=4, seed=0)
    path = write_pairs_txt(tmp_path / "pairs.txt", pairs)
    assert path.read_text().splitlines()[0] == "5\t4"
    read = read_pairs_txt(path)
    assert read.pairs == pairs.pairs and (read.num_folds, read.pairs_per_fold) == (5, 4)
    assert read.pairs[0].line == 2


LFW_SAMPLE = "2\t1\nAbel_Pacheco\t1\t4\nAkhmed_Zakayev\t1\tAbdel_Aziz_Al-Hakim\t1\nJean-Pierre_Raffarin\t2\t3\nZoe_Ball\t1\tZico\t2\n"


def test_reads_lfw_tab_format_with_underscores_and_dashes():
    pairs = parse_pairs_txt(LFW_SAMPLE)
    assert pairs.pairs[0] == Pair(ImageRef("Abel_Pacheco", 1), ImageRef("Abel_Pacheco", 4), True, 0)
    assert pairs.pairs[1].right == ImageRef("Abdel_Aziz_Al-Hakim", 1)
    assert pairs.pairs[2] == Pair(ImageRef("Jean-Pierre_Raffarin", 2), ImageRef("Jean-Pierre_Raffarin", 3), True, 1)
    assert [pair.fold for pair in pairs] == [0, 0, 1, 1]


def test_header_with_spaces_crlf_bom_and_trailing_blank_lines():
    text = "\ufeff2 1\r\n" + LFW_SAMPLE.split("\n", 1)[1].replace("\n", "\r\n") + "\r\n\n  \n"
    assert parse_pairs_txt(text).pairs == parse_pairs_txt(LFW_SAMPLE).pairs


def test_space_separated_names_with_spaces():
    text = "1 1\nJohn Smith 1 2\nAnn Lee 3 Bob de Vries 2\n"
    pairs = parse_pairs_txt(text).pairs
    assert pairs[0].left == ImageRef("John Smith", 1) and pairs[0].right == ImageRef("John Smith", 2)
    assert pairs[1].left == ImageRef("Ann Lee", 3) and pairs[1].right == ImageRef("Bob de Vries", 2)


def test_tab_separated_names_with_spaces():
    pairs = parse_pairs_txt("1\t1\nJohn Smith\t1\t2\nAnn Lee\t3\tBob\t2\n").pairs
    assert pairs[0].left.name == "John Smith" and pairs[1].left.name == "Ann Lee"


def test_view1_single_count_header_is_one_fold():
    pairs = parse_pairs_txt("1\nA\t1\t2\nA\t1\tB\t1\n")
    assert (pairs.num_folds, pairs.pairs_per_fold, len(pairs)) == (1, 1, 2)


@pytest.mark.parametrize(
    "text, message",
    [
        ("1\t1\nA\t1\nA\t1\tB\t1\n", r"pairs.txt:2: expected a same-person .* got 2 fields"),
        ("1\t1\nA\t1\t2\nA\t1\tB\n", r"pairs.txt:3: expected a different-person .* got 3 fields"),
        ("1\t1\nA\t1\t2\t5\nA\t1\tB\t1\n", r"pairs.txt:2: .* got 4 fields"),
        ("1\t1\nA\tone\t2\nA\t1\tB\t1\n", r"pairs.txt:2: the image number value 'one' is not a whole number"),
        ("1\t1\nA\t1.5\t2\nA\t1\tB\t1\n", r"pairs.txt:2: .*'1.5' is not a whole number"),
        ("1\t1\nA\t0\t2\nA\t1\tB\t1\n", r"pairs.txt:2: image number 0 is not 1 or more"),
        ("1\t1\nA\t1\t2\nA\t1\tB\t-3\n", r"pairs.txt:3: image number -3 is not 1 or more"),
        ("ten\t300\n", r"pairs.txt:1: the header value 'ten'"),
        ("0\t300\n", r"pairs.txt:1: the header's counts must be at least 1"),
        ("10\t-300\n", r"pairs.txt:1: the header's counts must be at least 1"),
        ("1\t2\t3\n", r"pairs.txt:1: the header should be"),
        ("2\t1\nA\t1\t2\nA\t1\tB\t1\n", r"has 2 pair lines but its header `2\t1` promises 4"),
        ("1\t1\nA\t1\t2\nA\t1\tB\t1\nC\t1\t2\n", r"has 3 pair lines"),
        ("\n\n", r"is empty"),
        ("1\t1\nA\t2\t2\nA\t1\tB\t1\n", r"pairs.txt:2: pairs image 2 of A with itself"),
        ("1\t1\nA\t1\t2\nA\t1\tA\t2\n", r"pairs.txt:3: a different-person pair names A twice"),
    ],
)
def test_malformed_files_are_one_line_naming_the_line(text, message):
    with pytest.raises(FaceganError, match=message) as caught:
        parse_pairs_txt(text)
    assert "\n" not in str(caught.value)


def test_blank_lines_keep_file_line_numbers():
    with pytest.raises(FaceganError, match=r"pairs.txt:4:"):
        parse_pairs_txt("1\t1\n\nA\t1\t2\nA\tx\tB\t1\n")


def test_resolve_by_rank_in_dataset_order():
    dataset = labelled_dataset(num_identities=3, per_identity=3)
    pairs = [Pair(ImageRef("person_001", 1), ImageRef("person_001", 3), True, 0),
             Pair(ImageRef("person_000", 2), ImageRef("person_002", 1), False, 0)]
    left, right, same, fold = resolve_pairs(dataset, pairs)
    assert left.tolist() == [3, 1] and right.tolist() == [5, 6]
    assert same.tolist() == [True, False] and fold.tolist() == [0, 0]
    assert left.dtype == np.int64


def test_resolve_lfw_uses_file_numbers_even_with_gaps():
    # Bob_0002.jpg was skipped while preparing: Bob's image 3 is still row 2, and image 2 is missing.
    paths = ["Alice/Alice_0001.jpg", "Bob/Bob_0001.jpg", "Bob/Bob_0003.jpg"]
    dataset = FaceDataset(images=np.zeros((3, 4, 4, 1), np.uint8), identity=np.array([0, 1, 1]),
                          manifest={"identity_names": ["Alice", "Bob"], "paths": paths, "source_kind": "lfw"})
    left, right, _, _ = resolve_pairs(dataset, parse_pairs_txt("1\t1\nBob\t1\t3\nAlice\t1\tBob\t3\n"))
    assert left.tolist() == [1, 0] and right.tolist() == [2, 2]
    with pytest.raises(FaceganError, match=r"1 of 2 pairs .* \(line 2\) names image 2 of Bob, who has 2 images"):
        resolve_pairs(dataset, parse_pairs_txt("1\t1\nBob\t1\t2\nAlice\t1\tBob\t3\n"))


def test_resolve_names_first_missing_identity_and_count():
    dataset = labelled_dataset(num_identities=2, per_identity=2)
    text = "1\t2\nperson_000\t1\t2\nGhost\t1\t2\nperson_000\t1\tperson_001\t1\nperson_000\t1\tNobody\t1\n"
    with pytest.raises(FaceganError, match=r"2 of 4 pairs .* first \(line 3\) names identity 'Ghost'"):
        resolve_pairs(dataset, parse_pairs_txt(text))


def test_resolve_refuses_dataset_without_identities():
    dataset = FaceDataset(images=np.zeros((4, 4, 4, 1), np.uint8))
    with pytest.raises(FaceganError, match="no identity labels"):
        resolve_pairs(dataset, parse_pairs_txt(LFW_SAMPLE))


def test_write_refuses_names_that_would_break_the_format():
    pairs = [Pair(ImageRef("a\tb", 1), ImageRef("a\tb", 2), True, 0), Pair(ImageRef("a\tb", 1), ImageRef("c", 1), False, 0)]
    with pytest.raises(FaceganError, match="cannot be written"):
        format_pairs_txt(pairs)


def test_write_refuses_pairs_out_of_lfw_order():
    pairs = [Pair(ImageRef("a", 1), ImageRef("c", 1), False, 0), Pair(ImageRef("a", 1), ImageRef("a", 2), True, 0)]
    with pytest.raises(FaceganError, match="pair 1 is a different-person pair"):
        format_pairs_txt(pairs)


def test_lfw_prepared_dataset_resolves_lfw_pairs_file(lfw_folder: Path, tmp_path: Path):
    from facegan.data import prepare_dataset

    (lfw_folder / "George_W_Bush" / "George_W_Bush_0002.jpg").unlink()  # as if skipped: numbers keep their meaning
    (lfw_folder / "pairs.txt").write_text("1\t1\nGeorge_W_Bush\t1\t3\nZoe_Zed\t2\tAaron_Eckhart\t1\n")
    dataset = prepare_dataset(lfw_folder, tmp_path / "lfw8", size=8, progress=False)
    left, right, same, _ = resolve_pairs(dataset, read_pairs_txt(lfw_folder / "pairs.txt"))
    paths = dataset.source_paths
    assert [paths[row] for row in left] == ["George_W_Bush/George_W_Bush_0001.jpg", "Zoe_Zed/Zoe_Zed_0002.jpg"]
    assert [paths[row] for row in right] == ["George_W_Bush/George_W_Bush_0003.jpg", "Aaron_Eckhart/Aaron_Eckhart_0001.jpg"]
    assert same.tolist() == [True, False]
    # a split keeps the LFW numbering
    train, _ = dataset.split(0.3, seed=0)
    for path, ref in zip(train.source_paths, image_refs(train)):
        assert ref.number == int(path.rsplit("_", 1)[1].split(".")[0])
