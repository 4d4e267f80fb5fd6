"""Checkpoint files: shards, generation-named sidecars, checksums, truncation, full disks."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from css_rs import TrainConfig
from css_rs.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    FileRecord,
    ShardWriter,
    iter_shard_chunks,
    sha256_file,
)
from css_rs.config import run_cache_folder

# Entries as a shard holds them: whole byte strings, appended as they come.
DOCS = [b"one entry", b"\x00\x01\x02\x03", b"", "ünïcödé ✓\n".encode(), b"x" * 500]


def append_all(writer: ShardWriter, entries: list[bytes]) -> None:
    for entry in entries:
        writer.append(entry, 1)


def make_store(tmp_path: Path) -> CheckpointStore:
    return CheckpointStore(tmp_path / "ckpt" / "training_checkpoint.json")


def save_generation(store: CheckpointStore, writer: ShardWriter, generation: int) -> Checkpoint:
    vocab = store.write_sidecar("vocabulary", generation, "json", f"counts {generation}".encode())
    checkpoint = Checkpoint(
        phase="streaming",
        config={"seed": 1},
        stream={"batches": generation},
        shards=writer.sync(),
        files={"vocabulary": vocab},
        generation=generation,
    )
    store.save(checkpoint)
    return checkpoint


def read_all(store: CheckpointStore, records: list[FileRecord]) -> bytes:
    return b"".join(iter_shard_chunks(store.cache_dir, records, 64))


def test_cache_folder_sits_beside_the_manifest(tmp_path: Path) -> None:
    assert run_cache_folder(tmp_path / "a" / "cp.json") == tmp_path / "a" / "cp.cache"
    config = TrainConfig(checkpoint_path=str(tmp_path / "a" / "cp.json"))
    assert config.cache_folder() == tmp_path / "a" / "cp.cache"  # downloads go there too
    assert config.replace(cache_dir=str(tmp_path / "c")).cache_folder() == tmp_path / "c"
    assert make_store(tmp_path).cache_dir == tmp_path / "ckpt" / "training_checkpoint.cache"


def test_documents_round_trip_through_rotating_shards(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    writer = ShardWriter(store.cache_dir, max_bytes=100)
    for _ in range(5):
        append_all(writer, DOCS)
    records = writer.sync()
    writer.close()
    assert len(records) > 1, "small max_bytes must rotate shards"
    assert read_all(store, records) == b"".join(DOCS) * 5
    assert [r.name for r in records[:2]] == ["ids-00000.u32", "ids-00001.u32"]
    # An empty entry appends nothing and counts nothing.
    assert writer.entries == sum(r.entries for r in records) == (len(DOCS) - 1) * 5
    for r in records:
        assert sha256_file(store.path_of(r.name)) == r.sha256
        assert store.path_of(r.name).stat().st_size == r.size


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    writer = ShardWriter(store.cache_dir)
    append_all(writer, DOCS)
    saved = save_generation(store, writer, 1)
    loaded = store.load()
    assert loaded.body() == saved.body()
    assert store.read_sidecar(loaded.files["vocabulary"]) == b"counts 1"


def test_older_generations_are_removed_only_after_the_new_manifest(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    writer = ShardWriter(store.cache_dir)
    append_all(writer, DOCS[:2])
    save_generation(store, writer, 1)
    # A crash after writing generation 2's sidecar but before its manifest: generation 1 stays
    # complete and loadable.
    store.write_sidecar("vocabulary", 2, "json", b"counts 2")
    assert store.load().generation == 1
    assert store.read_sidecar(store.load().files["vocabulary"]) == b"counts 1"
    save_generation(store, writer, 2)
    names = sorted(p.name for p in store.cache_dir.iterdir())
    assert names == ["ids-00000.u32", "vocabulary.2.json"]


def test_bytes_appended_after_the_checkpoint_are_cut_on_resume(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    writer = ShardWriter(store.cache_dir, max_bytes=120)
    append_all(writer, DOCS)
    checkpoint = save_generation(store, writer, 1)
    append_all(writer, [b"lost after the checkpoint"] * 20)  # grows a shard, starts new ones
    writer.sync()
    writer.close()
    loaded = store.load()  # a longer shard is fine: it is cut below
    store.truncate_shards(loaded)
    shard_names = sorted(p.name for p in store.cache_dir.glob("ids-*.u32"))
    assert shard_names == [r.name for r in checkpoint.shards]
    assert read_all(store, loaded.shards) == b"".join(DOCS)
    # Appending continues exactly where the checkpoint ended, checksums included.
    resumed = ShardWriter(store.cache_dir, loaded.shards, max_bytes=120)
    resumed.append(b"after resume", 1)
    records = resumed.sync()
    resumed.close()
    assert read_all(store, records) == b"".join(DOCS) + b"after resume"
    for r in records:
        assert sha256_file(store.path_of(r.name)) == r.sha256


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flip":
        index = len(data) // 2
        path.write_bytes(data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :])
    else:
        path.unlink()


DAMAGE = [
    (target, how)
    for target in ("manifest", "shard", "vocabulary")
    for how in ("truncate", "flip", "delete")
    if (target, how) != ("manifest", "delete")  # no manifest: no checkpoint, a fresh start
]


@pytest.mark.parametrize(("target", "how"), DAMAGE)
def test_damage_is_reported_naming_the_file_which_is_left_in_place(
    tmp_path: Path, target: str, how: str
) -> None:
    store = make_store(tmp_path)
    writer = ShardWriter(store.cache_dir)
    append_all(writer, DOCS)
    checkpoint = save_generation(store, writer, 1)
    writer.close()
    path = {
        "manifest": store.manifest_path,
        "shard": store.path_of(checkpoint.shards[0].name),
        "vocabulary": store.path_of(checkpoint.files["vocabulary"].name),
    }[target]
    damage(path, how)
    before = path.read_bytes() if path.exists() else None
    with pytest.raises(CheckpointError) as err:
        store.load()
    message = str(err.value)
    assert str(path) in message and "--fresh" in message
    assert "\n" not in message
    assert (path.read_bytes() if path.exists() else None) == before


def test_manifest_edited_by_hand_is_detected(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    writer = ShardWriter(store.cache_dir)
    append_all(writer, DOCS)
    save_generation(store, writer, 1)
    doc = orjson.loads(store.manifest_path.read_bytes())
    doc["stream"]["batches"] = 999  # still valid JSON
    store.manifest_path.write_bytes(orjson.dumps(doc))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        store.load()


def test_foreign_json_is_not_a_checkpoint(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.manifest_path.parent.mkdir(parents=True)
    store.manifest_path.write_text('{"hello": 1}')
    with pytest.raises(CheckpointError, match="not a css-rs checkpoint manifest"):
        store.load()


def test_full_disk_while_saving_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path)
    writer = ShardWriter(store.cache_dir)
    append_all(writer, DOCS)
    save_generation(store, writer, 1)
    before = store.manifest_path.read_bytes()
    writer.append(b"more", 1)

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError) as err:
        save_generation(store, writer, 2)
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert store.manifest_path.read_bytes() == before
    loaded = store.load()
    store.truncate_shards(loaded)
    assert loaded.generation == 1 and read_all(store, loaded.shards) == b"".join(DOCS)
    leftovers = [p.name for p in store.manifest_path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_delete_removes_only_own_files(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    writer = ShardWriter(store.cache_dir)
    append_all(writer, DOCS)
    save_generation(store, writer, 1)
    writer.close()
    mine = store.cache_dir / "notes.txt"
    mine.write_text("a user's file in the cache folder")
    store.delete()
    assert not store.exists()
    assert [p.name for p in store.cache_dir.iterdir()] == ["notes.txt"]


def test_records_serialise(tmp_path: Path) -> None:
    record = FileRecord("ids-00001.u32", 12, hashlib.sha256(b"").hexdigest(), entries=3)
    assert FileRecord.from_json(record.to_json()) == record
    words = FileRecord("words-00000.txt", 4, hashlib.sha256(b"").hexdigest(), entries=2)
    assert FileRecord.from_json(words.to_json()) == words
    for name in ("docs-00000.jsonl", "ids-00000.txt", "../ids-00000.u32"):
        with pytest.raises(ValueError, match="not one of a checkpoint's files"):
            FileRecord.from_json({**record.to_json(), "name": name})
    side: dict[str, Any] = FileRecord("state.3.bin", 4, "ab").to_json()
    assert "documents" not in side
