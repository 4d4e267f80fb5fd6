"""``--source text``, ``--source jsonl`` and ``--source synthetic``: reading, stopping at every
batch and resuming, and the messages of bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from css_rs.config import TrainConfig
from css_rs.errors import InputError
from css_rs.sources import JsonlSource, Source, SyntheticSource, TextSource, make_source
from css_rs.synthetic import generate_corpus
from source_helpers import flatten, read_all, read_one_batch_per_run

LINES_A = ["alpha one", "", "alpha two", "   ", "alpha three\r"]
LINES_B = ["béta ünïcode", "beta two"]
EXPECTED_TEXT = ["alpha one", "alpha two", "alpha three", "béta ünïcode", "beta two"]


@pytest.fixture
def text_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "texts"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.txt").write_text("\ufeff" + "\n".join(LINES_A) + "\n", encoding="utf-8")
    with gzip.open(folder / "nested" / "b.txt.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(LINES_B))  # no final newline
    (folder / ".hidden.txt").write_text("never read\n")
    (folder / "readme.md").write_text("not a .txt file\n")
    return folder


def test_text_folder_reads_txt_and_gz_in_order(text_folder: Path) -> None:
    source = TextSource(text_folder, batch_size=2)
    assert [p.name for p in source.files] == ["a.txt", "b.txt.gz"]
    assert [b.documents for b in source.iter_batches()] == [
        EXPECTED_TEXT[:2],
        EXPECTED_TEXT[2:4],
        EXPECTED_TEXT[4:],
    ]
    assert source.skipped == 0  # blank lines are separators, not skipped rows


def test_text_single_file_and_glob(text_folder: Path) -> None:
    assert read_all(TextSource(text_folder / "a.txt")) == EXPECTED_TEXT[:3]
    assert read_all(TextSource(f"{text_folder}/**/*.gz")) == EXPECTED_TEXT[3:]
    # A file named explicitly is read whatever its suffix.
    assert read_all(TextSource(text_folder / "readme.md")) == ["not a .txt file"]


def test_text_undecodable_bytes_do_not_stop_the_run(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"caf\xe9 ok\nfine\n")
    assert read_all(TextSource(path)) == ["caf\ufffd ok", "fine"]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 10])
@pytest.mark.parametrize("prefetch", [0, 2])
def test_text_stop_at_every_batch_and_resume(
    text_folder: Path, batch_size: int, prefetch: int
) -> None:
    batches = read_one_batch_per_run(
        lambda: TextSource(text_folder, batch_size=batch_size), prefetch
    )
    assert flatten(batches) == EXPECTED_TEXT


def test_text_resume_across_many_blocks(tmp_path: Path) -> None:
    lines = [f"line {i}" for i in range(2500)]  # several BLOCK_LINES blocks
    (tmp_path / "big.txt").write_text("\n".join(lines) + "\n")
    batches = read_one_batch_per_run(lambda: TextSource(tmp_path / "big.txt", batch_size=700))
    assert flatten(batches) == lines


def test_text_position_is_byte_exact(text_folder: Path) -> None:
    source = TextSource(text_folder, batch_size=2)
    first = next(source.iter_batches(prefetch=0))
    raw = (text_folder / "a.txt").read_bytes()
    # After "alpha one", "" and "alpha two": 3 lines, BOM included in the byte count.
    assert first.position["line"] == 3
    assert first.position["byte"] == len(b"".join(raw.splitlines(keepends=True)[:3]))
    assert json.loads(json.dumps(first.position)) == first.position


def test_text_changed_files_are_noticed(text_folder: Path) -> None:
    source = TextSource(text_folder, batch_size=4)
    next(source.iter_batches(prefetch=0))
    saved = source.position
    (text_folder / "0-new.txt").write_text("an inserted file\n")
    fresh = TextSource(text_folder, batch_size=4)
    with pytest.raises(InputError, match="the input changed since the checkpoint"):
        fresh.resume(saved)


def test_text_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"path not found: '.*nope'"):
        TextSource(tmp_path / "nope")
    with pytest.raises(InputError, match=r"no text files in the folder .* \(looked for .txt"):
        TextSource(tmp_path)
    with pytest.raises(InputError, match=r"no text files in the pattern '.*\*.txt'"):
        TextSource(f"{tmp_path}/*.txt")
    broken = tmp_path / "broken.txt.gz"
    text = "".join(f"{i * 7919 % 104729:x} line {i}\n" for i in range(2000)).encode()
    compressed = gzip.compress(text)
    broken.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(InputError, match=r"cannot read '.*broken.txt.gz'"):
        read_all(TextSource(broken))


# --- jsonl ---------------------------------------------------------------------------------


@pytest.fixture
def jsonl_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "jsonl"
    folder.mkdir()
    records = [
        {"text": "first", "id": 1},
        {"text": None},
        {"id": 3},
        {"text": 4},
        {"text": "fifth"},
    ]
    lines = [json.dumps(r) for r in records] + ["", "{not json", "[1, 2]", '{"text": "last"}']
    (folder / "a.jsonl").write_text("\n".join(lines) + "\n")
    with gzip.open(folder / "b.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"text": "gz one"}) + "\n" + json.dumps({"text": "gz two"}) + "\n")
    return folder


EXPECTED_JSONL = ["first", "fifth", "last", "gz one", "gz two"]


def test_jsonl_skips_and_counts_rows_without_text(jsonl_folder: Path) -> None:
    source = JsonlSource(jsonl_folder, batch_size=2)
    assert read_all(source) == EXPECTED_JSONL
    # null, missing, number, malformed line, JSON array: 5 skipped; the blank line is not.
    assert source.skipped == 5


@pytest.mark.parametrize("prefetch", [0, 2])
def test_jsonl_stop_at_every_batch_and_resume(jsonl_folder: Path, prefetch: int) -> None:
    batches = read_one_batch_per_run(lambda: JsonlSource(jsonl_folder, batch_size=1), prefetch)
    assert flatten(batches) == EXPECTED_JSONL
    source = JsonlSource(jsonl_folder, batch_size=1)
    for _ in source.iter_batches():
        pass
    assert source.skipped == 5


def test_jsonl_text_field(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"body": "x", "text": "y"}\n')
    assert read_all(JsonlSource(path, text_field="body")) == ["x"]


def test_jsonl_bad_text_field_names_the_keys(jsonl_folder: Path) -> None:
    with pytest.raises(InputError) as caught:
        read_all(JsonlSource(jsonl_folder, text_field="content"))
    assert str(caught.value) == (
        f"text_field 'content' is in none of the first 9 lines of "
        f"'{jsonl_folder / 'a.jsonl'}'; keys seen: id, text (set --text-field)"
    )


def test_jsonl_on_plain_text(text_folder: Path) -> None:
    with pytest.raises(InputError, match=r"does not look like JSON lines.*use --source text"):
        read_all(JsonlSource(text_folder / "a.txt"))


# --- synthetic and the factory ------------------------------------------------------------------


def test_synthetic_is_the_seeded_corpus() -> None:
    source = SyntheticSource(23, seed=5, batch_size=5, max_doc_length=0)
    assert source.total_documents == 23
    assert read_all(source) == generate_corpus(23, seed=5)
    assert source.position == {"source": "synthetic", "document": 23, "batches": 5, "skipped": 0}


@pytest.mark.parametrize("prefetch", [0, 2])
def test_synthetic_stop_at_every_batch_and_resume(prefetch: int) -> None:
    def make() -> SyntheticSource:
        return SyntheticSource(17, seed=2, batch_size=4, max_doc_length=0)

    assert flatten(read_one_batch_per_run(make, prefetch)) == generate_corpus(17, seed=2)


def test_synthetic_max_batches_and_cut() -> None:
    source = SyntheticSource(100, batch_size=10, max_batches=2, max_doc_length=20)
    documents = read_all(source)
    assert documents == [d[:20] for d in generate_corpus(20)]
    assert read_all(source) == []  # the limit holds for the next iteration too


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"source": "synthetic"}, SyntheticSource),
        ({"source": "text", "path": "TEXT"}, TextSource),
        ({"source": "jsonl", "path": "JSONL"}, JsonlSource),
    ],
)
def test_make_source(
    settings: dict[str, Any], expected: type[Source], text_folder: Path, jsonl_folder: Path
) -> None:
    paths = {"TEXT": str(text_folder), "JSONL": str(jsonl_folder)}
    if "path" in settings:
        settings = {**settings, "path": paths[settings["path"]]}
    config = TrainConfig(**settings, synthetic_documents=30, batch_size=7, max_batches=2)
    source = make_source(config)
    assert type(source) is expected
    assert source.batch_size == 7 and source.max_batches == 2


def test_make_source_needs_a_path() -> None:
    with pytest.raises(InputError, match="--source jsonl needs --path"):
        make_source(TrainConfig(source="jsonl"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size = 0 is invalid"),
        ({"max_batches": 0}, "max_batches = 0 is invalid"),
        ({"max_doc_length": -1}, "max_doc_length = -1 is invalid"),
        ({"text_field": ""}, "text_field = '' is invalid"),
    ],
)
def test_common_settings_are_validated(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        SyntheticSource(10, **options)
