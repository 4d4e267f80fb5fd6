"""``--source hf``: the dataset viewer rows API, with and without faults, stopped and resumed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from css_rs.config import TrainConfig
from css_rs.errors import CssRsError, InputError
from css_rs.sources import HfRowsSource, make_source
from hf_server import Fault, HubServer, Rows, text_rows, texts_of
from source_helpers import ALL_FAULTS, flatten, read_all, read_one_batch_per_run, rows_source

ROWS = text_rows(47)


@pytest.fixture
def dataset(hub: HubServer) -> str:
    hub.add_dataset("org/data", {("default", "train"): ROWS, ("default", "test"): ROWS[:5]})
    return "org/data"


def test_reads_the_split_exactly(hub: HubServer, dataset: str) -> None:
    source = rows_source(hub, dataset, batch_size=10)
    batches = [b.documents for b in source.iter_batches()]
    assert [len(b) for b in batches] == [10, 10, 10, 10, 7]
    assert flatten(batches) == texts_of(ROWS)
    assert source.position == {"source": "hf", "offset": 47, "batches": 5, "skipped": 0}
    assert source.total_documents == 47


@pytest.mark.parametrize(
    "faults",
    [[f] for f in ALL_FAULTS] + [ALL_FAULTS],
    ids=[f"{f.kind}{f.status or ''}" for f in ALL_FAULTS] + ["all-mixed"],
)
@pytest.mark.parametrize("prefetch", [0, 3])
def test_fault_mix_loses_and_repeats_nothing(
    hub: HubServer, dataset: str, faults: list[Fault], prefetch: int
) -> None:
    hub.faults.mix(faults, probability=0.5, seed=len(faults) + prefetch)
    assert read_all(rows_source(hub, dataset, batch_size=6), prefetch) == texts_of(ROWS)
    assert hub.faults.injected, "the mix injected no fault: the test would prove nothing"


@pytest.mark.parametrize("prefetch", [0, 2])
def test_stop_at_every_batch_and_resume(hub: HubServer, dataset: str, prefetch: int) -> None:
    def make() -> HfRowsSource:
        return rows_source(hub, dataset, batch_size=8)

    batches = read_one_batch_per_run(make, prefetch)
    assert [len(b) for b in batches] == [8, 8, 8, 8, 8, 7]
    assert flatten(batches) == texts_of(ROWS)


def test_stop_and_resume_under_faults(hub: HubServer, dataset: str) -> None:
    hub.faults.mix(ALL_FAULTS, probability=0.4, seed=7)
    batches = read_one_batch_per_run(lambda: rows_source(hub, dataset, batch_size=9), prefetch=2)
    assert flatten(batches) == texts_of(ROWS)


def test_page_length_is_batch_size_capped_at_100(hub: HubServer) -> None:
    rows = text_rows(260)
    hub.add_dataset("org/big", {("default", "train"): rows})
    assert read_all(rows_source(hub, "org/big", batch_size=150)) == texts_of(rows)
    lengths = {r.params["length"] for r in hub.requests_to("/rows")}
    assert lengths == {"100"}
    read_all(rows_source(hub, "org/big", batch_size=30, max_batches=1))
    assert hub.requests_to("/rows")[-1].params["length"] == "30"


def test_offsets_page_by_rows_received(hub: HubServer, dataset: str) -> None:
    read_all(rows_source(hub, dataset, batch_size=20))
    offsets = [int(r.params["offset"]) for r in hub.requests_to("/rows")]
    # The last page (offset 40) says num_rows_total = 47: no request for an empty page.
    assert offsets == [0, 20, 40]


def test_404_past_the_end_means_exhausted(hub: HubServer, dataset: str) -> None:
    hub.rows_404_past_end = True
    source = rows_source(hub, dataset, batch_size=10)
    assert read_all(source) == texts_of(ROWS)
    source.resume(source.position)
    assert read_all(source) == []  # resuming an exhausted source requests, gets 404, stops


def test_empty_page_means_exhausted_when_total_is_unknown(hub: HubServer) -> None:
    hub.add_dataset("org/partial", {("default", "train"): ROWS}, partial=True)
    source = rows_source(hub, "org/partial", batch_size=25)
    assert source.total_documents is None  # partial: num_rows is only a lower bound
    assert read_all(source) == texts_of(ROWS)
    assert [r.params["offset"] for r in hub.requests_to("/rows")] == ["0", "25", "47"]


def test_rows_without_text_are_skipped_and_counted(hub: HubServer) -> None:
    rows: Rows = [
        {"text": "a"},
        {"text": None},
        {"other": "no text field"},
        {"text": 42},
        {"text": ["not", "a", "string"]},
        {"text": "b"},
        {"text": ""},
        {"text": "c"},
    ]
    hub.add_dataset("org/messy", {("default", "train"): rows})
    source = rows_source(hub, "org/messy", batch_size=2)
    assert [b.documents for b in source.iter_batches()] == [["a", "b"], ["", "c"]]
    assert source.skipped == 4
    assert source.position["skipped"] == 4


def test_skipped_count_survives_resume(hub: HubServer) -> None:
    rows: Rows = [{"text": "a"}, {"text": None}, {"text": "b"}, {"text": None}, {"text": "c"}]
    hub.add_dataset("org/messy", {("default", "train"): rows})
    batches = read_one_batch_per_run(lambda: rows_source(hub, "org/messy", batch_size=1))
    assert batches == [["a"], ["b"], ["c"]]
    source = rows_source(hub, "org/messy", batch_size=1)
    source.resume({"source": "hf", "offset": 3, "batches": 2, "skipped": 1})
    assert read_all(source) == ["c"]
    assert source.skipped == 2


def test_max_doc_length_cuts_documents(hub: HubServer) -> None:
    hub.add_dataset("org/long", {("default", "train"): [{"text": "x" * 50}, {"text": "yz"}]})
    assert read_all(rows_source(hub, "org/long", max_doc_length=10)) == ["x" * 10, "yz"]
    assert read_all(rows_source(hub, "org/long", max_doc_length=0)) == ["x" * 50, "yz"]


def test_max_batches_counts_across_resume(hub: HubServer, dataset: str) -> None:
    batches = read_one_batch_per_run(lambda: rows_source(hub, dataset, batch_size=5, max_batches=3))
    assert flatten(batches) == texts_of(ROWS)[:15]


def test_text_field_selects_the_column(hub: HubServer) -> None:
    rows: Rows = [{"body": f"b{i}", "text": f"t{i}"} for i in range(5)]
    hub.add_dataset("org/cols", {("default", "train"): rows})
    assert read_all(rows_source(hub, "org/cols", text_field="body")) == [f"b{i}" for i in range(5)]


def test_make_source_uses_config(hub: HubServer, dataset: str) -> None:
    config = TrainConfig(
        source="hf",
        dataset=dataset,
        split="test",
        batch_size=2,
        max_batches=None,
        datasets_server_endpoint=hub.url,
        hf_endpoint=hub.url,
    )
    source = make_source(config)
    assert isinstance(source, HfRowsSource)
    assert read_all(source) == texts_of(ROWS[:5])


# --- error messages -------------------------------------------------------------------------


def test_unknown_split_lists_the_valid_ones(hub: HubServer, dataset: str) -> None:
    with pytest.raises(InputError) as caught:
        read_all(rows_source(hub, dataset, split="validation"))
    assert str(caught.value) == (
        "dataset 'org/data' config 'default' split 'validation' does not exist; valid "
        "config/split pairs: default/train, default/test (set --dataset-config and --split)"
    )


def test_unknown_config_lists_the_valid_ones(hub: HubServer, dataset: str) -> None:
    source = rows_source(hub, dataset, dataset_config="fr")
    with pytest.raises(InputError, match=r"config 'fr' .* valid config/split pairs: default/train"):
        _ = source.total_documents


def test_unknown_dataset(hub: HubServer) -> None:
    with pytest.raises(InputError, match=r"dataset 'org/nope' was not found at http://127"):
        read_all(rows_source(hub, "org/nope"))


def test_bad_text_field_lists_the_columns(hub: HubServer, dataset: str) -> None:
    with pytest.raises(InputError) as caught:
        read_all(rows_source(hub, dataset, text_field="content"))
    assert str(caught.value) == (
        "text_field 'content' is not a column of dataset 'org/data' config 'default' split "
        "'train'; columns: id, text (set --text-field)"
    )


def test_unexpected_answer_shape(hub: HubServer, dataset: str) -> None:
    hub.add_dataset("org/shapeless", {("default", "train"): ROWS})
    source = rows_source(hub, "org/shapeless")
    original = hub.answer

    def without_rows(path: str, params: Any) -> tuple[int, Any]:
        status, body = original(path, params)
        return (status, {"features": []}) if path == "/rows" else (status, body)

    hub.answer = without_rows  # type: ignore[method-assign]
    with pytest.raises(CssRsError, match="unexpected answer from /rows: 'rows' is missing"):
        read_all(source)


@pytest.mark.parametrize(
    ("position", "message"),
    [
        ({"source": "text", "file_index": 0}, "position of source 'text'"),
        ({"source": "hf", "offset": -1, "batches": 0, "skipped": 0}, "invalid hf position"),
        ({"source": "hf", "offset": 1, "batches": "2", "skipped": 0}, "position batches"),
        ({"source": "hf", "batches": 0, "skipped": 0}, "invalid hf position"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_positions_are_refused(
    hub: HubServer, dataset: str, position: Any, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        rows_source(hub, dataset).resume(position)


def test_position_is_plain_json(hub: HubServer, dataset: str) -> None:
    source = rows_source(hub, dataset, batch_size=10)
    for batch in source.iter_batches():
        assert json.loads(json.dumps(batch.position)) == batch.position == source.position
