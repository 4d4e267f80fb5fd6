"""The query commands (info, spectrum, similar, polysemy, modes, eval, export, plot) through
typer's CliRunner, plus real subprocesses for exit codes and stderr."""

from __future__ import annotations

import fcntl
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner, Result

import css_rs
from css_rs import CSSModel, analysis
from css_rs.cli import app
from css_rs.files import metadata_path
from css_rs.synthetic import POLYSEMOUS, cluster_of

runner = CliRunner()


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs.tsv"
    path.write_text(
        "cat\tdog\t9\ncat\tpiano\t1\nguitar\tpiano\t8\nrain\tsnow\t7.5\n"
        "rain\tloan\t0.5\nbank\tmoney\t8\nzebra\tcat\t5\n"
    )
    return path


def run(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def run_json(*args: object) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # stdout holds the JSON document and nothing else


def css_rs_process(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "css_rs", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- info ----------------------------------------------------------------------------------
def test_info(model: CSSModel, model_path: Path) -> None:
    facts = run_json("info", model_path)
    assert facts["vocab_size"] == len(model)
    assert (facts["frequency_dim"], facts["max_frequencies"]) == (200, 16)
    assert facts["effective_frequencies"] == pytest.approx(model.usage_stats().effective)
    assert facts["largest_share"] == pytest.approx(model.usage_stats().largest_share)
    assert facts["avg_active"] == pytest.approx(model.avg_active())
    assert sum(facts["active_histogram"]) == len(model)
    assert facts["file_size"] == model_path.stat().st_size
    text = run("info", model_path).stdout
    assert f"{len(model):,} words" in text and "D = 200" in text and "K = 16" in text
    assert f"effective number of frequencies {model.usage_stats().effective:.1f}" in text
    assert "no metadata file" in text


def test_info_shows_the_training_summary(model: CSSModel, tmp_path: Path) -> None:
    path = tmp_path / "css_model.json"
    model.save(path)
    metadata_path(path).write_text(
        json.dumps(
            {
                "timestamp": "2025-01-01T00:00:00Z",
                "css_rs_version": css_rs.__version__,
                "stats": {
                    "documents": 1500,
                    "tokens": 74878,
                    "elapsed": 0.4,
                    "training_tokens_per_second": 1.5e6,
                    "epochs": [{"loss": 4.0}, {"loss": 3.85}],
                },
                "dataset_progress": {"description": "synthetic corpus (1,500 documents, seed 5)"},
            }
        )
    )
    text = run("info", path).stdout
    assert "synthetic corpus (1,500 documents, seed 5)" in text
    assert "74,878" in text and "final loss 3.8500" in text
    assert run_json("info", path)["training"]["epochs"] == 2


# --- spectrum and similar ------------------------------------------------------------------
def test_spectrum(model: CSSModel, model_path: Path) -> None:
    out = run_json("spectrum", model_path, "bank")
    expected = model.spectrum("bank")
    assert out["active"] == len(expected)
    assert [(e["frequency"], e["amplitude"], e["phase"]) for e in out["entries"]] == expected
    assert len(run_json("spectrum", model_path, "bank", "--top", 3)["entries"]) == 3
    text = run("spectrum", model_path, "bank", "--top", "2").stdout
    assert f"{expected[0][0]}" in text and f"{expected[0][1]:.4f}" in text


def test_similar(model: CSSModel, model_path: Path) -> None:
    out = run_json("similar", model_path, "cat", "-k", 7)
    assert [(s["word"], s["cosine"]) for s in out["similar"]] == model.similar("cat", 7)
    text = run("similar", model_path, "cat", "-k", "3").stdout
    assert all(w in text for w, _ in model.similar("cat", 3))


def test_unknown_word_exits_2_with_suggestions(model_path: Path) -> None:
    for command in ("spectrum", "similar", "polysemy"):
        result = run(command, model_path, "bnak", "--json")
        assert result.exit_code == 2
        assert result.stdout == ""
        assert result.stderr.startswith("error: word 'bnak' is not in the vocabulary")
        assert "close spellings: bank" in result.stderr


# --- polysemy ------------------------------------------------------------------------------
def neighbour_words(peak: dict[str, Any]) -> list[str]:
    return [n["word"] for n in peak["neighbours"]]


def mostly(words: list[str], topic: str) -> bool:
    return sum(cluster_of(w) == topic for w in words) > len(words) / 2


@pytest.mark.parametrize("word", sorted(POLYSEMOUS))
def test_polysemy_of_a_planted_word_shows_both_senses(model_path: Path, word: str) -> None:
    out = run_json("polysemy", model_path, word)
    assert out["is_polysemous"] and len(out["senses"]) == 2
    for topic in POLYSEMOUS[word]:
        assert any(mostly(neighbour_words(p), topic) for p in out["peaks"]), (topic, out)
        assert any(mostly([m["word"] for m in s["members"]][:10], topic) for s in out["senses"])
    text = run("polysemy", model_path, word).stdout
    assert "2 senses: polysemous" in text


def test_polysemy_default_ranking_is_the_python_api(model: CSSModel, model_path: Path) -> None:
    out = run_json("polysemy", model_path, "bank", "--neighbours", 4)
    expected = model.polysemy("bank", k=4)
    got = [(p["frequency"], p["amplitude"], p["phase"]) for p in out["peaks"]]
    assert got == [(p.frequency, p.amplitude, p.phase) for p in expected.peaks]
    for peak, ref in zip(out["peaks"], expected.peaks):
        assert [n["word"] for n in peak["neighbours"]] == [w for w, _ in ref.neighbours]
        assert [n["score"] for n in peak["neighbours"]] == pytest.approx(
            [s for _, s in ref.neighbours], rel=1e-4
        )
    amplitude = run_json("polysemy", model_path, "bank", "--rank", "amplitude", "--neighbours", 4)
    assert [p["frequency"] for p in amplitude["peaks"]] == [p.frequency for p in expected.peaks]


def test_polysemy_ranking(model_path: Path) -> None:
    out = run_json("polysemy", model_path, "--top", 4)
    assert out["among"] == 122 and len(out["words"]) == 4
    assert {w["word"] for w in out["words"][:2]} == set(POLYSEMOUS)
    text = run("polysemy", model_path, "--top", "3").stdout
    lines = [line.split() for line in text.splitlines()]
    ranked = [cols[1] for cols in lines if cols and cols[0].isdigit()]
    assert set(ranked[:2]) == set(POLYSEMOUS) and len(ranked) == 3
    assert run_json("polysemy", model_path, "-k", 2)["words"] == out["words"][:2]
    few = run_json("polysemy", model_path, "--among", 5)
    assert few["among"] == 5 and all(w["word"] not in POLYSEMOUS for w in few["words"])


def test_polysemy_ranking_leaves_out_words_below_min_count(
    model: CSSModel, model_path: Path
) -> None:
    counts = model.vocab.counts
    floor = sorted(counts.values())[5] + 1  # some of the rarest words fall below it
    frequent = sum(c >= floor for c in counts.values())
    assert frequent < len(model)
    out = run_json("polysemy", model_path, "--top", len(model), "--min-count", floor)
    assert out["among"] == len(model) and out["scanned"] == frequent
    assert all(counts[w["word"]] >= floor for w in out["words"])
    text = run("polysemy", model_path, "--min-count", floor).stdout
    assert f"Most polysemous of the {frequent:,} most frequent words (seen >= {floor}" in text


def test_polysemy_rejects_bad_options(model_path: Path) -> None:
    assert run("polysemy", model_path, "--rank", "loudest").exit_code == 2
    assert run("polysemy", model_path, "--peak-ratio", "2").exit_code == 2
    assert run("polysemy", model_path, "--top", "0").exit_code == 2
    bad = run("polysemy", model_path, "bank", "--min-count", "-1")
    assert bad.exit_code == 2 and "--min-count" in bad.stderr


# --- help ----------------------------------------------------------------------------------
QUERY_USAGE = {
    "info": "[MODEL]",
    "spectrum": "[MODEL] WORD",
    "similar": "[MODEL] WORD",
    "polysemy": "[MODEL] [WORD]",
    "modes": "[MODEL] [FREQ]",
    "eval": "[MODEL] PAIRS_FILE...",
    "export": "[MODEL] OUT",
    "plot": "[MODEL] [WORD]...",
}


@pytest.mark.parametrize("command", [*QUERY_USAGE, "train", "config show", "config init"])
def test_help_is_plain_and_fits_80_columns(command: str) -> None:
    """Arguments read as in the design (MODEL, [WORD]), types as metavars, no boxes."""
    result = runner.invoke(app, [*command.split(), "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    text = result.stdout
    usage = text.splitlines()[0]
    assert usage.startswith(f"Usage: css-rs {command} [OPTIONS]")
    if command in QUERY_USAGE:
        assert usage.endswith(QUERY_USAGE[command])
    assert max(len(line) for line in text.splitlines()) <= 80
    assert not any(mark in text for mark in ("{MODEL}", "<bool>", "<int", "<path>", "╭"))


# --- MODEL left out --------------------------------------------------------------------------
@pytest.fixture
def trained_here(model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder where `css-rs train` left its model (models/css_model.json)."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "css_model.json").write_bytes(model_path.read_bytes())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CSS_RS_MODEL_PATH", raising=False)
    monkeypatch.delenv("CSS_RS_CONFIG", raising=False)
    return tmp_path


def test_query_commands_read_the_model_train_writes(trained_here: Path, model: CSSModel) -> None:
    assert run_json("info")["vocab_size"] == len(model)
    listed = run_json("similar", "cat", "-k", 3)["similar"]
    assert [w["word"] for w in listed] == [w for w, _ in model.similar("cat", 3)]
    assert run_json("spectrum", "bank")["word"] == "bank"
    assert run_json("polysemy", "bank")["word"] == "bank"
    assert len(run_json("polysemy", "-k", 2)["words"]) == 2
    assert run_json("modes", "6", "--top", 2)["frequency"] == 6
    assert run("export", "vectors.txt", "--format", "word2vec").exit_code == 0
    assert (trained_here / "vectors.txt").is_file()
    (trained_here / "pairs.tsv").write_text("cat\tdog\t9\ncat\tpiano\t1\nrain\tsnow\t7\n")
    assert run_json("eval", "pairs.tsv")[0]["pairs_used"] == 3


def test_a_given_model_still_comes_first(trained_here: Path, model_path: Path) -> None:
    assert run_json("similar", model_path, "cat", "-k", 2)["word"] == "cat"
    # A word-like argument that names a file is the model, not a word.
    (trained_here / "mymodel").write_bytes(model_path.read_bytes())
    assert run_json("polysemy", "mymodel", "bank")["word"] == "bank"
    result = run("similar", "cat", "dog")  # two words: the second is one too many
    assert result.exit_code == 2 and "unexpected extra argument" in result.stderr


def test_the_default_model_follows_the_settings(
    trained_here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (trained_here / "models" / "css_model.json").rename(trained_here / "elsewhere.json")
    missing = run("info")
    assert missing.exit_code == 2 and "models/css_model.json" in missing.stderr
    monkeypatch.setenv("CSS_RS_MODEL_PATH", "elsewhere.json")
    assert run("info").exit_code == 0
    monkeypatch.delenv("CSS_RS_MODEL_PATH")
    (trained_here / "css-rs.toml").write_text('[checkpoint]\nmodel_path = "elsewhere.json"\n')
    assert run("similar", "cat").exit_code == 0


def test_bad_settings_for_the_default_model_are_one_line(trained_here: Path) -> None:
    (trained_here / "css-rs.toml").write_text("[checkpoint]\nmodel_path = 5\n")
    done = css_rs_process("info")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == (
        "error: model_path = 5 is invalid: must be a string (set by file css-rs.toml)\n"
    )
    assert (trained_here / "models" / "css_model.json").is_file()  # nothing saved is touched


def test_k_is_the_number_of_words_everywhere() -> None:
    for command in ("spectrum", "similar", "polysemy", "modes"):
        text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "80"}).stdout
        assert "-k, --top N" in text, command


# --- modes ---------------------------------------------------------------------------------
def test_modes_of_a_frequency(model: CSSModel, model_path: Path) -> None:
    f = model.spectrum("cat")[0][0]
    out = run_json("modes", model_path, f, "-k", 5)
    assert [(m["word"], m["amplitude"]) for m in out["top"]] == model.modes(f, 5)
    assert out["words_using"] == int(model.frequency_usage()[f])
    assert f"Frequency {f}: used by" in run("modes", model_path, str(f)).stdout


def test_modes_summary(model: CSSModel, model_path: Path) -> None:
    out = run_json("modes", model_path, "-k", 3)
    assert len(out) == model.frequency_dim
    assert [s["words"] for s in out] == model.frequency_usage().tolist()
    used = int(np.count_nonzero(model.frequency_usage()))
    text = run("modes", model_path).stdout
    assert text.startswith(f"{used} of 200 frequencies in use")
    assert len(text.splitlines()) == used + 2  # title, header, one line per used frequency


@pytest.mark.parametrize("freq", ["200", "1000"])
def test_modes_bad_frequency_names_the_range(model_path: Path, freq: str) -> None:
    result = run("modes", model_path, freq, "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert f"frequency {freq} is outside 0..199" in result.stderr


# --- eval ----------------------------------------------------------------------------------
def test_eval(model: CSSModel, model_path: Path, pairs_file: Path, tmp_path: Path) -> None:
    second = tmp_path / "more.tsv"
    second.write_text("money\tcash\t9\nmoney\tguitar\t1\napple\tpear\t8\n")
    out = run_json("eval", model_path, pairs_file, second)
    assert [r["path"] for r in out] == [str(pairs_file), str(second)]
    expected = model.evaluate_pairs(pairs_file)
    assert out[0]["spearman"] == pytest.approx(expected.spearman)
    assert (out[0]["pairs_used"], out[0]["oov_pairs"]) == (6, 1)
    text = run("eval", model_path, pairs_file).stdout
    assert "spearman" in text and f"{expected.spearman:.4f}" in text


def test_eval_missing_pairs_file(model_path: Path, tmp_path: Path) -> None:
    result = run("eval", model_path, tmp_path / "nope.tsv")
    assert result.exit_code == 2 and "no such pairs file" in result.stderr


# --- export --------------------------------------------------------------------------------
def test_export_word2vec_matches_similar(model_path: Path, tmp_path: Path) -> None:
    from gensim.models import KeyedVectors

    out = tmp_path / "vectors.txt"
    summary = run_json("export", model_path, out, "--format", "word2vec")
    assert summary["files"] == [str(out)]
    kv = KeyedVectors.load_word2vec_format(str(out))
    for word in ("bank", "cat", "rain"):
        listed = run_json("similar", model_path, word, "-k", 5)["similar"]
        assert [w for w, _ in kv.most_similar(word, topn=5)] == [s["word"] for s in listed]


@pytest.mark.parametrize(
    ("fmt", "name", "files"),
    [
        ("word2vec-binary", "v.bin", ["v.bin"]),
        ("npy", "m.npy", ["m.npy", "m.vocab.txt"]),
        ("npz", "s.npz", ["s.npz"]),
    ],
)
def test_export_formats(
    model_path: Path, tmp_path: Path, fmt: str, name: str, files: list[str]
) -> None:
    result = run("export", model_path, tmp_path / name, "-f", fmt)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)
    assert all(f in result.stdout for f in files)


def test_export_real_amplitudes(model: CSSModel, model_path: Path, tmp_path: Path) -> None:
    run_json("export", model_path, tmp_path / "a.npy", "-f", "npy", "--real")
    amps = np.load(tmp_path / "a.npy")
    assert amps.dtype == np.float32 and np.allclose(amps, np.abs(model.to_dense()))


def test_export_errors(model_path: Path, tmp_path: Path) -> None:
    bad_format = run("export", model_path, tmp_path / "x.csv", "--format", "csv")
    assert bad_format.exit_code == 2 and "csv" in bad_format.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable = run("export", model_path, blocker / "v.txt", "-f", "word2vec")
    assert unwritable.exit_code == 2
    assert unwritable.stderr.startswith("error: ") and "cannot write there" in unwritable.stderr
    real_npz = run("export", model_path, tmp_path / "s.npz", "-f", "npz", "--real")
    assert real_npz.exit_code == 2 and "--real does not apply" in real_npz.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


# --- plot ----------------------------------------------------------------------------------
def assert_png_drawn(path: Path) -> None:
    from matplotlib import image

    pixels = np.asarray(image.imread(str(path)))
    assert pixels.shape[0] > 200 and pixels.shape[1] > 600
    assert (pixels[..., :3] < 0.9).mean() > 0.01


def test_plot_words_and_overview(model_path: Path, tmp_path: Path) -> None:
    spectra = tmp_path / "spectra.png"
    out = run_json("plot", model_path, "bank", "bat", "-o", spectra)
    assert out == {"file": str(spectra), "words": ["bank", "bat"], "overview": False}
    assert_png_drawn(spectra)
    overview = tmp_path / "overview.png"
    result = run("plot", model_path, "--overview", "-o", overview)
    assert result.exit_code == 0 and f"Wrote {overview}" in result.stdout
    assert_png_drawn(overview)


def test_plot_errors(model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    nothing = run("plot", model_path, "-o", out)
    assert nothing.exit_code == 2 and "name words to plot" in nothing.stderr
    both = run("plot", model_path, "bank", "--overview", "-o", out)
    assert both.exit_code == 2 and "not both" in both.stderr
    unknown = run("plot", model_path, "bank", "bnak", "-o", out)
    assert unknown.exit_code == 2 and "close spellings: bank" in unknown.stderr
    assert run("plot", model_path, "bank").exit_code == 2  # -o is required
    assert not out.exists()


def test_plot_without_matplotlib(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = run("plot", model_path, "bank", "-o", tmp_path / "x.png")
    assert result.exit_code == 1
    assert "pip install 'css-rs[plot]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- model files ---------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["info", "spectrum", "polysemy", "modes"])
def test_missing_or_corrupt_model_exits_2(tmp_path: Path, command: str) -> None:
    extra = ["bank"] if command == "spectrum" else []
    missing = run(command, tmp_path / "nope.json", *extra)
    assert missing.exit_code == 2 and "no such model file" in missing.stderr
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"vocab": {"a": 0}, "spectra": [')
    damaged = run(command, corrupt, *extra, "--json")
    assert damaged.exit_code == 2 and damaged.stdout == ""
    assert "not a model file" in damaged.stderr


# --- as a user runs it: real processes -----------------------------------------------------
def test_subprocess_unknown_word(model_path: Path) -> None:
    proc = css_rs_process("similar", model_path, "bnak")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: word 'bnak' is not in the vocabulary; close spellings: bank, banana"
    ]


def test_subprocess_json_and_bad_frequency(model: CSSModel, model_path: Path) -> None:
    proc = css_rs_process("similar", model_path, "cat", "-k", "5", "--json")
    assert proc.returncode == 0 and proc.stderr == ""
    assert [s["word"] for s in json.loads(proc.stdout)["similar"]] == [
        w for w, _ in model.similar("cat", 5)
    ]
    proc = css_rs_process("modes", model_path, "999")
    assert proc.returncode == 2 and "outside 0..199" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_subprocess_corrupt_model(tmp_path: Path) -> None:
    corrupt = tmp_path / "css_model.json"
    corrupt.write_bytes(b"\x00\x01 not json")
    proc = css_rs_process("info", corrupt)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {corrupt}: not a model file")
    assert "Traceback" not in proc.stderr


def test_subprocess_export_and_plot(model_path: Path, tmp_path: Path) -> None:
    proc = css_rs_process("export", model_path, tmp_path / "v.txt", "--format", "word2vec")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "v.txt").read_text().splitlines()[0] == "122 400"
    proc = css_rs_process("plot", model_path, "bank", "-o", tmp_path / "bank.png", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["file"] == str(tmp_path / "bank.png")


def test_output_piped_into_a_reader_that_stops_early(model_path: Path) -> None:
    """`css-rs modes MODEL | head -1`: no error message when the pipe closes."""
    proc = subprocess.Popen(
        # One line per frequency with every word (~12 kB).
        [sys.executable, "-m", "css_rs", "modes", str(model_path), "-k", "1000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    # A one-page pipe (set before the child, still importing, writes anything), so that the
    # output cannot all fit in it before the reader leaves: without this the child sometimes
    # finished writing first and exited 0 (a race that load decided).
    fcntl.fcntl(proc.stdout.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)
    os.read(proc.stdout.fileno(), 1)
    proc.stdout.close()  # the reader goes away, as head does
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert b"Broken pipe" not in err and b"Traceback" not in err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_polysemy_scan_shows_progress_on_a_terminal_only(model: CSSModel) -> None:
    from css_rs.cli.query import scan_progress

    screen = Terminal()
    with scan_progress("Senses", screen) as progress:
        assert progress is not None
        analysis.most_polysemous(model, top=2, among=len(model), progress=progress)
    assert "Senses" in screen.getvalue()
    pipe = io.StringIO()
    with scan_progress("Senses", pipe) as progress:
        assert progress is None
    with scan_progress("Senses", None) as progress:  # --json
        assert progress is None
    assert pipe.getvalue() == ""
