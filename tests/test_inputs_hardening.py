"""Inputs that used to give tracebacks, hang or escape their folder (issue 13): a corrupt
``.txt.gz`` body, a corrupt parquet page, a FIFO as ``--path`` or ``--config``, dataset names
such as ``..`` or ``""``. Each gets a one-line error naming the file or the name, exit code 2.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from css_rs.config import TrainConfig
from css_rs.errors import InputError
from css_rs.sources import make_source
from css_rs.sources.hf import check_dataset_names


def css_rs(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSS_RS_")}
    return subprocess.run(
        [sys.executable, "-m", "css_rs", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,  # a FIFO that is opened for reading would hang: the timeout fails it
        stdin=subprocess.DEVNULL,
    )


def assert_one_line(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


TRAIN = ["train", "--threads", "1", "--min-word-freq", "1", "--epochs", "1"]


def test_corrupt_gzip_body_names_the_file(tmp_path: Path) -> None:
    good = gzip.compress(b"".join(b"the cat sat on the mat %d\n" % i for i in range(5000)))
    corrupt = good[:200] + bytes(b ^ 0x5A for b in good[200:400]) + good[400:]
    path = tmp_path / "corpus.txt.gz"
    path.write_bytes(corrupt)
    done = css_rs(tmp_path, *TRAIN, "--source", "text", "--path", str(path))
    assert_one_line(done, "corpus.txt.gz")
    assert "Traceback" not in done.stderr
    assert path.read_bytes() == corrupt


def test_corrupt_parquet_page_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "corpus.parquet"
    table = pa.table({"text": [f"the cat sat on the mat {i} " * 20 for i in range(3000)]})
    pq.write_table(table, path, row_group_size=500, compression="snappy")
    data = bytearray(path.read_bytes())
    meta = pq.ParquetFile(path).metadata
    column = meta.row_group(2).column(0)
    start = column.data_page_offset
    for i in range(start + 40, start + column.total_compressed_size - 40):
        data[i] ^= 0xA5  # the third row group's pages, headers and footer left intact
    path.write_bytes(bytes(data))
    done = css_rs(tmp_path, *TRAIN, "--source", "parquet", "--path", str(path))
    assert_one_line(done, "corpus.parquet")
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_as_path_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "corpus.txt"
    os.mkfifo(fifo)
    done = css_rs(tmp_path, *TRAIN, "--source", "text", "--path", str(fifo))
    assert_one_line(done, str(fifo), "not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_as_config_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "css-rs.toml"
    os.mkfifo(fifo)
    done = css_rs(tmp_path, "config", "show", "--config", str(fifo), timeout=20)
    assert_one_line(done, str(fifo), "not a regular file")
    done = css_rs(tmp_path, *TRAIN, "--config", str(fifo), timeout=20)
    assert_one_line(done, str(fifo), "not a regular file")


@pytest.mark.parametrize(
    ("dataset", "config", "split", "field"),
    [
        ("..", "default", "train", "dataset"),
        ("", "default", "train", "dataset"),
        ("../../etc", "default", "train", "dataset"),
        ("a/b/c", "default", "train", "dataset"),
        ("org/da..ta", "default", "train", "dataset"),
        ("org/data", "..", "train", "dataset_config"),
        ("org/data", "", "train", "dataset_config"),
        ("org/data", "default", "../x", "split"),
        ("org/data", "default", "tr\nain", "split"),
    ],
)
def test_bad_dataset_names_are_refused(dataset: str, config: str, split: str, field: str) -> None:
    with pytest.raises(InputError, match=rf"^{field} = .* is invalid"):
        check_dataset_names(dataset, config, split)
    for source in ("hf", "hf-parquet"):
        cfg = TrainConfig(source=source, dataset=dataset, dataset_config=config, split=split)
        with pytest.raises(InputError, match=rf"^{field} = "):
            make_source(cfg)


@pytest.mark.parametrize(
    "dataset", ["wikitext", "karpathy/fineweb-edu-100b-shuffle", "HuggingFaceFW/fineweb-edu"]
)
def test_real_dataset_names_pass(dataset: str) -> None:
    check_dataset_names(dataset, "20231101.en", "validation_matched")


def test_cli_refuses_a_dotdot_dataset_with_one_line(tmp_path: Path) -> None:
    done = css_rs(tmp_path, *TRAIN, "--source", "hf-parquet", "--dataset", "..")
    assert_one_line(done, "dataset = '..' is invalid")
    assert not (tmp_path / ".css-rs-cache").exists()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["text", "jsonl", "text.gz", "jsonl.gz", "parquet"]),
    body=st.binary(max_size=600),
    lines=st.lists(
        st.one_of(
            st.text(max_size=30),
            st.builds(lambda t: json.dumps({"text": t}), st.text(max_size=30)),
            st.just('{"text": "\\u0000 nul"}'),
            st.just("\x00\x00\x00"),
        ),
        max_size=12,
    ),
    raw=st.booleans(),
)
def test_fuzzed_local_corpora_read_or_fail_in_one_line(
    tmp_path_factory: pytest.TempPathFactory, kind: str, body: bytes, lines: list[str], raw: bool
) -> None:
    """Binary garbage, NUL bytes, invalid UTF-8, JSON and not: documents or an InputError
    naming the file, never another exception."""
    folder = tmp_path_factory.mktemp("corpus")
    path = folder / f"c.{kind}"
    data = body if raw else "\n".join(lines).encode("utf-8", "surrogatepass") + body
    if kind.endswith(".gz"):
        data = gzip.compress(data) if data[:1] != b"x" else data  # sometimes not gzip at all
    path.write_bytes(data)
    config = TrainConfig(source=kind.split(".")[0], path=str(path), max_batches=None)
    try:
        with make_source(config) as source:
            documents = [d for batch in source.batches(prefetch=0) for d in batch]
    except InputError as e:
        assert str(path) in str(e) and "\n" not in str(e)
    else:
        assert all(isinstance(d, str) for d in documents)
