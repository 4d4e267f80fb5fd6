"""Settings: defaults < TOML file < CSS_RS_* environment < flags, and their error messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from css_rs.cli import app
from css_rs.config import (
    TrainConfig,
    config_differences,
    default_toml,
    env_var_name,
    flag_name,
    parse_text_value,
    read_toml_settings,
    render_effective,
    resolve_config,
)
from css_rs.errors import InputError


def css_rs_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m css_rs`` with a clean CSS_RS_* environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CSS_RS_")}
    return subprocess.run(
        [sys.executable, "-m", "css_rs", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- precedence and parsing ---------------------------------------------------------------


def test_each_layer_overrides_the_previous(tmp_path: Path) -> None:
    toml = tmp_path / "css-rs.toml"
    toml.write_text("[training]\nepochs = 2\nseed = 3\nthreads = 4\n[dataset]\nbatch_size = 7\n")
    env = {"CSS_RS_SEED": "30", "CSS_RS_THREADS": "40"}
    resolved = resolve_config(str(toml), {"threads": "1", "epochs": None}, env)
    cfg = resolved.config
    assert (cfg.batch_size, cfg.epochs, cfg.seed, cfg.threads) == (7, 2, 30, 1)
    assert resolved.origins["min_word_freq"] == "default"
    assert resolved.origins["epochs"] == f"file {toml}"
    assert resolved.origins["seed"] == "env CSS_RS_SEED"
    assert resolved.origins["threads"] == "flag --threads"


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("max_batches", "3", 3),
        ("max_batches", "none", None),
        ("max_batches", "", None),
        ("learning_rate", "0.05", 0.05),
        ("learning_rate", "1e-2", 0.01),
        ("use_phases", "false", False),
        ("use_phases", "YES", True),
        ("use_phases", "0", False),
        ("path", "corpus.txt", "corpus.txt"),
        ("cache_dir", "null", None),
        ("epochs", "1_000", 1000),
    ],
)
def test_text_values_are_typed(name: str, text: str, value: object) -> None:
    assert parse_text_value(name, text) == value
    assert getattr(resolve_config(None, {}, {env_var_name(name): text}).config, name) == value


def test_bad_env_value_gets_the_trainconfig_message() -> None:
    with pytest.raises(InputError) as err:
        resolve_config(None, {}, {"CSS_RS_EPOCHS": "many"})
    assert str(err.value) == (
        "epochs = 'many' is invalid: must be an integer in [1, 10000] (set by env CSS_RS_EPOCHS)"
    )


def test_relations_between_settings_are_checked() -> None:
    with pytest.raises(
        InputError,
        match=r"^max_frequencies = 60 is invalid: must be <= frequency_dim \(50\) \(set by flag",
    ):
        resolve_config(None, {"max_frequencies": "60", "frequency_dim": "50"}, {})


def test_unknown_env_variable_suggests_the_closest_name() -> None:
    with pytest.raises(InputError) as err:
        resolve_config(None, {}, {"CSS_RS_MAX_BATCH": "3"})
    assert "'CSS_RS_MAX_BATCH'; did you mean 'CSS_RS_MAX_BATCHES'?" in str(err.value)


def test_reserved_env_variables_are_not_settings() -> None:
    env = {"CSS_RS_TEST_HOLD": "batch:1", "CSS_RS_DEBUG": "1"}
    assert resolve_config(None, {}, env).config == TrainConfig()


def test_config_file_from_environment(tmp_path: Path) -> None:
    toml = tmp_path / "x.toml"
    toml.write_text("[training]\nepochs = 9\n")
    assert resolve_config(None, {}, {"CSS_RS_CONFIG": str(toml)}).config.epochs == 9


# --- the TOML file ------------------------------------------------------------------------


def test_default_toml_reads_back_as_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "css-rs.toml"
    path.write_text(default_toml())
    resolved = resolve_config(str(path), {}, {})
    assert resolved.config == TrainConfig()
    text = default_toml()
    for section, names in TrainConfig.sections().items():
        assert f"[{section}]" in text
        for name in names:
            assert f"{name} = " in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[training]\nepoch = 3\n", "unknown setting 'epoch'; did you mean 'epochs'?"),
        ("[trainig]\nepochs = 3\n", "unknown section [trainig]; did you mean [training]?"),
        ("[model]\nepochs = 3\n", "setting 'epochs' belongs in section [training], not [model]"),
        ("[training\n", "invalid TOML"),
    ],
)
def test_bad_files_are_rejected_naming_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        read_toml_settings(str(path))
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_toml_specifics(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'max_batches = "none"\n[checkpoint]\ncheckpoint_every_seconds = 60\ncache_dir = ""\n'
    )
    cfg = resolve_config(str(path), {}, {}).config
    assert cfg.max_batches is None and cfg.cache_dir is None
    assert cfg.checkpoint_every_seconds == 60.0 and isinstance(cfg.checkpoint_every_seconds, float)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="configuration file not found"):
        resolve_config(str(tmp_path / "nope.toml"), {}, {})


def test_render_effective_names_origins() -> None:
    resolved = resolve_config(None, {"epochs": "2"}, {"CSS_RS_SEED": "5"})
    text = render_effective(resolved)
    assert any(
        line.startswith("epochs = 2") and "# flag --epochs" in line for line in text.splitlines()
    )
    assert any(
        line.startswith("seed = 5") and "# env CSS_RS_SEED" in line for line in text.splitlines()
    )


def test_config_differences_ignore_where_files_go() -> None:
    saved = TrainConfig().to_dict()
    now = TrainConfig(model_path="elsewhere.json", keep_backups=1, epochs=4, min_word_freq=2)
    assert config_differences(saved, now) == ["min_word_freq: 5 -> 2", "epochs: 5 -> 4"]
    # The engine's training state is tied to its thread count.
    assert config_differences(saved, TrainConfig(threads=2)) == ["threads: 0 -> 2"]


# --- the command line ---------------------------------------------------------------------


def test_every_setting_has_a_flag() -> None:
    command = typer.main.get_command(app)
    for name in ("train", "config"):
        assert name in command.commands  # type: ignore[attr-defined]
    train = command.commands["train"]  # type: ignore[attr-defined]
    flags = {opt for p in train.params for opt in p.opts}
    for name in TrainConfig.field_names():
        assert flag_name(name) in flags
    assert {"--fresh", "--force", "--config"} <= flags


def test_config_init_writes_and_refuses_to_overwrite(tmp_path: Path) -> None:
    done = css_rs_cli("config", "init", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = (tmp_path / "css-rs.toml").read_text()
    assert written == default_toml()
    (tmp_path / "css-rs.toml").write_text("# mine\n")
    again = css_rs_cli("config", "init", cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr.strip() == "error: css-rs.toml already exists; use --force to overwrite it"
    assert (tmp_path / "css-rs.toml").read_text() == "# mine\n"
    forced = css_rs_cli("config", "init", "other.toml", cwd=tmp_path)
    assert forced.returncode == 0 and (tmp_path / "other.toml").is_file()
    assert css_rs_cli("config", "init", "--force", cwd=tmp_path).returncode == 0
    assert (tmp_path / "css-rs.toml").read_text() == written


def test_config_show_reports_every_layer(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text("[dataset]\nbatch_size = 9\n")
    done = css_rs_cli(
        "config",
        "show",
        "--config",
        "c.toml",
        "--max-batches",
        "none",
        "--no-use-phases",
        cwd=tmp_path,
        env={"CSS_RS_EPOCHS": "3"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()

    def line_of(name: str) -> str:
        return next(line for line in lines if line.startswith(f"{name} = "))

    assert line_of("batch_size").endswith("# file c.toml")
    assert line_of("epochs").endswith("# env CSS_RS_EPOCHS")
    assert line_of("max_batches").startswith('max_batches = "none"')
    assert line_of("use_phases").endswith("# flag --use-phases")
    assert line_of("seed").endswith("# default")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--epochs", "0"],
            {},
            "error: epochs = 0 is invalid: must be an integer in [1, 10000] (set by flag --epochs)",
        ),
        (
            ["--source", "web"],
            {},
            "error: source = 'web' is invalid: must be one of 'synthetic', "
            "'hf', 'hf-parquet', 'text', 'jsonl', 'parquet' (set by flag --source)",
        ),
        (
            ["--refine-prune-ratio", "1.5"],
            {},
            "error: refine_prune_ratio = 1.5 is invalid: must be a finite number >= 0.0 and "
            "<= 0.999 (set by flag --refine-prune-ratio)",
        ),
        (
            [],
            {"CSS_RS_EPOCH": "3"},
            "error: environment: unknown setting 'CSS_RS_EPOCH'; did you mean 'CSS_RS_EPOCHS'?",
        ),
        (
            [],
            {"CSS_RS_LEARNING_RATE": "fast"},
            "error: learning_rate = 'fast' is invalid: must be "
            "a finite number > 0.0 and <= 100.0 (set by env CSS_RS_LEARNING_RATE)",
        ),
    ],
)
@pytest.mark.parametrize("command", [["train"], ["config", "show"]])
def test_bad_settings_exit_2_with_one_line(
    tmp_path: Path, command: list[str], args: list[str], env: dict[str, str], message: str
) -> None:
    done = css_rs_cli(*command, *args, cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert done.stderr.strip() == message
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_unknown_key_in_config_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text("[vocabulary]\nmin_word_frequency = 3\n")
    done = css_rs_cli("train", "--config", "c.toml", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: c.toml: unknown setting 'min_word_frequency'; did you mean 'min_word_freq'?"
    )


def test_engine_and_config_declare_the_same_defaults() -> None:
    """TrainConfig and the Rust engine's TrainParams each declare the training defaults (the
    engine must be safe to drive from Rust alone); they must agree, setting by setting."""
    from css_rs._core import engine_defaults

    engine = json.loads(engine_defaults())
    ours = TrainConfig().engine_settings()
    assert set(engine) == set(ours)
    for name, value in ours.items():
        expected = pytest.approx(value) if isinstance(value, float) else value
        assert engine[name] == expected, name


@pytest.mark.parametrize(
    ("source", "max_batches", "limit"),
    [
        ("hf", "auto", 100),
        ("hf-parquet", "auto", 100),
        ("text", "auto", None),
        ("jsonl", "auto", None),
        ("parquet", "auto", None),
        ("synthetic", "auto", None),
        ("text", 7, 7),
        ("hf", None, None),
    ],
)
def test_max_batches_auto_limits_only_the_hugging_face_sources(
    source: str, max_batches: object, limit: object
) -> None:
    assert TrainConfig(source=source, max_batches=max_batches).batch_limit() == limit


def test_the_rows_page_bounds_batch_size_for_the_hf_source_only() -> None:
    assert TrainConfig(source="text", batch_size=5000).batch_size == 5000
    assert TrainConfig(source="hf-parquet", batch_size=500).batch_size == 500
    with pytest.raises(ValueError, match=r"batch_size = 500 is invalid for source 'hf'"):
        TrainConfig(source="hf", batch_size=500)
    with pytest.raises(ValueError, match=r"max_batches = 'all' is invalid: .*or 'auto'"):
        TrainConfig(max_batches="all")


def test_a_css_rs_toml_in_the_current_folder_is_read(tmp_path: Path) -> None:
    """What `css-rs config init` writes is used without --config (and --config still wins)."""
    (tmp_path / "css-rs.toml").write_text("[training]\nepochs = 2\n")
    (tmp_path / "other.toml").write_text("[training]\nepochs = 7\n")
    shown = css_rs_cli("config", "show", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    epochs = next(line for line in shown.stdout.splitlines() if line.startswith("epochs = "))
    assert epochs.startswith("epochs = 2 ") and epochs.endswith("# file css-rs.toml")
    other = css_rs_cli("config", "show", "--config", "other.toml", cwd=tmp_path)
    epochs = next(line for line in other.stdout.splitlines() if line.startswith("epochs = "))
    assert epochs.startswith("epochs = 7 ") and epochs.endswith("# file other.toml")
