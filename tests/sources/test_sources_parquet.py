"""``--source hf-parquet`` (shards downloaded from a loopback hub) and ``--source parquet``."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from css_rs.config import TrainConfig
from css_rs.errors import CssRsError, InputError
from css_rs.sources import HfParquetSource, ParquetFileSource, make_source
from hf_server import Fault, HubServer, Rows, text_rows, texts_of
from source_helpers import FAST_HTTP, flatten, parquet_source, read_all, read_one_batch_per_run

ROWS = text_rows(43)
SHARDS = 3


@pytest.fixture
def dataset(hub: HubServer) -> str:
    hub.add_dataset("org/data", {("default", "train"): ROWS}, shards=SHARDS, row_group_size=4)
    return "org/data"


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def shard_files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file())


def test_reads_every_shard_in_order_and_cleans_up(
    hub: HubServer, dataset: str, cache: Path
) -> None:
    source = parquet_source(hub, dataset, cache, batch_size=10)
    assert source.total_documents == len(ROWS)
    assert read_all(source) == texts_of(ROWS)
    assert source.position == {
        "source": "hf-parquet",
        "shard": SHARDS,
        "filename": None,
        "row": 0,
        "batches": 5,
        "skipped": 0,
    }
    assert len(hub.requests_to("/files/")) == SHARDS
    assert shard_files(cache) == []


def test_keep_shards(hub: HubServer, dataset: str, cache: Path) -> None:
    read_all(parquet_source(hub, dataset, cache, keep_shards=True))
    kept = shard_files(cache)
    assert [p.name for p in kept] == [f"{i:05d}-{i:04d}.parquet" for i in range(SHARDS)]
    assert all(pq.read_table(p).num_rows > 0 for p in kept)
    # A second run reads the kept files: no download at all.
    assert read_all(parquet_source(hub, dataset, cache, keep_shards=True)) == texts_of(ROWS)
    assert len(hub.requests_to("/files/")) == SHARDS


@pytest.mark.parametrize("prefetch", [0, 2])
def test_fault_mix_loses_and_repeats_nothing(
    hub: HubServer, dataset: str, cache: Path, prefetch: int
) -> None:
    faults = [
        Fault.drop(),
        Fault.drop(),
        Fault.reset(),
        Fault.status_code(503),
        Fault.status_code(429, retry_after="0"),
        Fault.truncated_json(),
        Fault.slow(1.0),
    ]
    hub.faults.mix(faults, probability=0.6, seed=prefetch)
    assert read_all(parquet_source(hub, dataset, cache, batch_size=7), prefetch) == texts_of(ROWS)
    assert any(path.startswith("/files/") for path, _ in hub.faults.injected)


def test_broken_transfer_resumes_with_range(hub: HubServer, dataset: str, cache: Path) -> None:
    hub.faults.schedule("/files/", Fault.drop(), Fault.drop())
    assert read_all(parquet_source(hub, dataset, cache)) == texts_of(ROWS)
    first_shard = hub.requests_to("/files/")[:3]
    assert first_shard[0].range is None
    starts = [int(r.range.split("=")[1].rstrip("-")) for r in first_shard[1:] if r.range]
    assert len(starts) == 2 and 0 < starts[0] < starts[1]


def test_partial_file_from_a_killed_run_is_resumed(
    hub: HubServer, dataset: str, cache: Path
) -> None:
    source = parquet_source(hub, dataset, cache)
    shard = source.shards()[0]
    target = source.shard_path(0, shard)
    target.parent.mkdir(parents=True)
    data = hub.files[shard.url.rsplit("/", 1)[1]]
    Path(f"{target}.part").write_bytes(data[:100])
    assert read_all(source) == texts_of(ROWS)
    assert hub.requests_to("/files/")[0].range == "bytes=100-"


def test_download_that_never_progresses_gives_up(hub: HubServer, dataset: str, cache: Path) -> None:
    hub.faults.schedule("/files/", Fault.drop(), *[Fault.reset()] * 100)
    with pytest.raises(CssRsError) as caught:
        read_all(parquet_source(hub, dataset, cache))
    message = str(caught.value)
    assert "/files/org_data--default--train--0000.parquet" in message
    assert "kept failing" in message


def test_unreadable_shard_is_deleted_with_advice(hub: HubServer, dataset: str, cache: Path) -> None:
    source = parquet_source(hub, dataset, cache)
    shard = source.shards()[0]
    target = source.shard_path(0, shard)
    target.parent.mkdir(parents=True)
    assert shard.size is not None
    target.write_bytes(b"x" * shard.size)  # complete by size, garbage by content
    with pytest.raises(CssRsError, match=r"shard #0 .* not readable parquet; it was deleted"):
        read_all(source)
    assert not target.exists()
    assert read_all(parquet_source(hub, dataset, cache)) == texts_of(ROWS)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_stop_at_every_batch_and_resume(
    hub: HubServer, dataset: str, cache: Path, prefetch: int
) -> None:
    batches = read_one_batch_per_run(
        lambda: parquet_source(hub, dataset, cache, batch_size=5), prefetch
    )
    assert [len(b) for b in batches] == [5] * 8 + [3]
    assert flatten(batches) == texts_of(ROWS)
    if prefetch == 0:
        # A stopped run leaves its shard for the next; a finished shard is never fetched again.
        assert len(hub.requests_to("/files/")) == SHARDS
    assert shard_files(cache) == []


def test_resume_under_faults(hub: HubServer, dataset: str, cache: Path) -> None:
    hub.faults.mix([Fault.drop(), Fault.status_code(502), Fault.reset()], probability=0.5, seed=3)
    batches = read_one_batch_per_run(lambda: parquet_source(hub, dataset, cache, batch_size=6), 2)
    assert flatten(batches) == texts_of(ROWS)


def test_null_text_is_skipped_and_counted(hub: HubServer, cache: Path) -> None:
    rows: Rows = [{"text": "a"}, {"text": None}, {"text": "b"}, {"text": None}]
    hub.add_dataset("org/nulls", {("default", "train"): rows}, shards=2, row_group_size=1)
    source = parquet_source(hub, "org/nulls", cache)
    assert read_all(source) == ["a", "b"]
    assert source.skipped == 2


def test_relative_shard_urls_resolve_against_hf_endpoint(
    hub: HubServer, dataset: str, cache: Path
) -> None:
    hub.relative_shard_urls = True
    source = parquet_source(hub, dataset, cache)
    assert source.shards()[0].url.startswith(f"{hub.url}/files/")
    assert read_all(source) == texts_of(ROWS)


def test_token_is_sent_for_shards(
    hub: HubServer, dataset: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.token = "hf_parquet_token"
    monkeypatch.setenv("HF_TOKEN", "hf_parquet_token")
    assert read_all(parquet_source(hub, dataset, cache)) == texts_of(ROWS)
    assert {r.authorization for r in hub.requests_to("/files/")} == {"Bearer hf_parquet_token"}


def test_make_source_hf_parquet(hub: HubServer, dataset: str, tmp_path: Path) -> None:
    config = TrainConfig(
        source="hf-parquet",
        dataset=dataset,
        batch_size=20,
        max_batches=1,
        datasets_server_endpoint=hub.url,
        hf_endpoint=hub.url,
        checkpoint_path=str(tmp_path / "run" / "training_checkpoint.json"),
        keep_shards=True,
    )
    source = make_source(config, http=FAST_HTTP)
    assert isinstance(source, HfParquetSource)
    assert read_all(source) == texts_of(ROWS)[:20]
    # The run's one cache folder, where the checkpoint's id cache lives too.
    assert source.cache_dir == tmp_path / "run" / "training_checkpoint.cache"
    assert shard_files(source.cache_dir)  # kept


# --- errors ------------------------------------------------------------------------------


def test_unknown_split(hub: HubServer, dataset: str, cache: Path) -> None:
    with pytest.raises(InputError, match=r"split 'test' does not exist; valid .*default/train"):
        read_all(parquet_source(hub, dataset, cache, split="test"))


def test_split_without_shards(hub: HubServer, cache: Path) -> None:
    hub.add_dataset("org/rows-only", {("default", "train"): ROWS})
    with pytest.raises(InputError, match=r"lists no parquet files .*; use --source hf"):
        read_all(parquet_source(hub, "org/rows-only", cache))


def test_bad_text_field(hub: HubServer, dataset: str, cache: Path) -> None:
    with pytest.raises(InputError, match=r"text_field 'body' is not a column .*columns: text, id"):
        read_all(parquet_source(hub, dataset, cache, text_field="body"))


def test_changed_shards_are_noticed_on_resume(hub: HubServer, dataset: str, cache: Path) -> None:
    source = parquet_source(hub, dataset, cache)
    position = {"source": "hf-parquet", "shard": 1, "filename": "9999.parquet", "row": 2}
    source.resume({**position, "batches": 1, "skipped": 0})
    with pytest.raises(InputError, match="the dataset changed since the checkpoint"):
        read_all(source)


# --- local parquet files ----------------------------------------------------------------------


def write_parquet(path: Path, texts: list[str | None], row_group_size: int = 3) -> None:
    table = pa.table({"id": list(range(len(texts))), "content": pa.array(texts, pa.string())})
    pq.write_table(table, path, row_group_size=row_group_size)


@pytest.fixture
def parquet_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "pq"
    (folder / "sub").mkdir(parents=True)
    write_parquet(folder / "a.parquet", [f"a{i}" for i in range(7)])
    write_parquet(folder / "sub" / "b.parquet", ["b0", None, "b2", "b3"])
    write_parquet(folder / "c.parquet", [])
    (folder / "notes.txt").write_text("not parquet")
    return folder


EXPECTED_LOCAL = [f"a{i}" for i in range(7)] + ["b0", "b2", "b3"]


def test_local_folder(parquet_folder: Path) -> None:
    source = ParquetFileSource(parquet_folder, text_field="content", batch_size=4)
    assert [p.name for p in source.files] == ["a.parquet", "c.parquet", "b.parquet"]
    assert read_all(source) == EXPECTED_LOCAL
    assert source.skipped == 1
    assert source.total_documents is None


def test_local_glob_and_file(parquet_folder: Path) -> None:
    glob_source = ParquetFileSource(f"{parquet_folder}/**/b*.parquet", text_field="content")
    assert read_all(glob_source) == ["b0", "b2", "b3"]
    file_source = ParquetFileSource(parquet_folder / "a.parquet", text_field="content")
    assert read_all(file_source) == EXPECTED_LOCAL[:7]


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_local_stop_at_every_batch_and_resume(parquet_folder: Path, batch_size: int) -> None:
    def make() -> ParquetFileSource:
        return ParquetFileSource(parquet_folder, text_field="content", batch_size=batch_size)

    assert flatten(read_one_batch_per_run(make)) == EXPECTED_LOCAL
    assert flatten(read_one_batch_per_run(make, prefetch=2)) == EXPECTED_LOCAL


def test_local_make_source(parquet_folder: Path) -> None:
    config = TrainConfig(
        source="parquet", path=str(parquet_folder), text_field="content", max_batches=None
    )
    assert read_all(make_source(config)) == EXPECTED_LOCAL


def test_local_bad_text_field(parquet_folder: Path) -> None:
    with pytest.raises(
        InputError, match=r"text_field 'text' is not a column .*columns: id, content"
    ):
        read_all(ParquetFileSource(parquet_folder))


def test_local_text_field_not_text(parquet_folder: Path) -> None:
    with pytest.raises(InputError, match=r"column 'id' of .* holds int64, not text"):
        read_all(ParquetFileSource(parquet_folder, text_field="id"))


def test_local_not_parquet(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.parquet"
    bogus.write_text("hello")
    with pytest.raises(InputError, match=r"cannot read .*bogus.parquet' as parquet"):
        read_all(ParquetFileSource(bogus))


def test_local_bad_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"path not found: .*missing"):
        ParquetFileSource(tmp_path / "missing")
    with pytest.raises(
        InputError, match=r"no parquet files in the folder .*\(looked for .parquet\)"
    ):
        ParquetFileSource(tmp_path)


def test_local_position_is_json(parquet_folder: Path) -> None:
    source = ParquetFileSource(parquet_folder, text_field="content", batch_size=3)
    positions = [json.loads(json.dumps(b.position)) for b in source.iter_batches()]
    assert positions[0] == {
        "source": "parquet",
        "file_index": 0,
        "file": str(parquet_folder / "a.parquet"),
        "row": 3,
        "batches": 1,
        "skipped": 0,
    }
