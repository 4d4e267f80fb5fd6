"""Every setting has a real upper bound, checked before any work starts (issue 13): integers
of 2^64 and more, ``--frequency-dim 65535`` and ``--init-amp-min 1e-300`` used to pass
validation and fail in phase 3, after streaming. Whatever TrainConfig accepts at its bounds,
the engine accepts too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from css_rs import TrainConfig, Trainer, Vocabulary
from css_rs.cli import app
from css_rs.config import INT_SETTING_MAX, env_var_name, flag_name, setting_type
from css_rs.synthetic import generate_corpus

runner = CliRunner()
INT_SETTINGS = [n for n in TrainConfig.field_names() if setting_type(n)[0] is int]
FLOAT_SETTINGS = [n for n in TrainConfig.field_names() if setting_type(n)[0] is float]


def train_refused(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Runs ``train`` in ``tmp_path``; asserts exit code 2, one line, and no work started
    (no checkpoint, cache or model folder). Returns the message."""
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = runner.invoke(app, ["train", "--threads", "1", *args], env=env)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert list(tmp_path.iterdir()) == [], "work started before the settings were checked"
    return lines[0]


@pytest.mark.parametrize("name", INT_SETTINGS)
@pytest.mark.parametrize("value", [2**64, 2**64 - 1, 10**20, INT_SETTING_MAX + 1])
def test_integers_of_2_to_64_and_more_are_refused_by_flag(
    tmp_path: Path, name: str, value: int
) -> None:
    message = train_refused(tmp_path, flag_name(name), str(value))
    assert f"{name} = {value} is invalid: must be an integer in [" in message


@pytest.mark.parametrize("name", ["max_vocab_size", "min_word_freq", "seed", "epochs"])
def test_huge_integers_from_env_and_toml_are_refused(tmp_path: Path, name: str) -> None:
    message = train_refused(tmp_path, env={env_var_name(name): str(2**64)})
    assert f"{name} = {2**64} is invalid" in message and "set by env" in message
    config = tmp_path.parent / f"{tmp_path.name}.toml"
    section = next(s for s, names in TrainConfig.sections().items() if name in names)
    config.write_text(f"[{section}]\n{name} = {2**64}\n")
    message = train_refused(tmp_path, "--config", str(config))
    assert f"{name} = {2**64} is invalid" in message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--frequency-dim", "65535"],
            "frequency_dim = 65535 is invalid: must be an integer in [1, 65534]",
        ),
        (["--init-amp-min", "1e-300"], "init_amp_min = 1e-300 is invalid: must be a number >= "),
        (["--init-amp-max", "1e39"], "init_amp_max = 1e+39 is invalid"),
        (["--margin", "1e39"], "margin = 1e+39 is invalid"),
        (["--sparsity-penalty", "1e-40"], "sparsity_penalty = 1e-40 is invalid: must be 0 or"),
        (["--refine-prune-every", str(2**32)], "must be an integer in [1, 2^32-1]"),
        (["--max-norm", "1e-320"], "max_norm = 1e-320 is invalid"),
    ],
)
def test_engine_limits_are_checked_before_any_work(
    tmp_path: Path, args: list[str], message: str
) -> None:
    assert message in train_refused(tmp_path, *args)


def test_a_float_too_large_for_a_float_in_toml(tmp_path: Path) -> None:
    config = tmp_path.parent / f"{tmp_path.name}.toml"
    config.write_text(f"[model]\nmargin = {10**400}\n")
    assert "margin = " in train_refused(tmp_path, "--config", str(config))


@pytest.mark.filterwarnings("ignore:the spectra collapsed")  # 30 documents over D = 65534
def test_the_engine_accepts_what_the_settings_accept() -> None:
    texts = generate_corpus(40, seed=1)
    vocab = Vocabulary.from_texts(texts, min_count=2)
    config = TrainConfig(
        threads=1,
        epochs=1,
        frequency_dim=65534,
        refine_prune_every=2**32 - 1,
        init_amp_min=1.1754943508222875e-38,
        sparsity_penalty=1.1754943508222875e-38,
        training_batch_size=INT_SETTING_MAX,
        seed=INT_SETTING_MAX,
    )
    model = Trainer(texts, vocab, config).run()
    assert model.frequency_dim == 65534
    assert np.isfinite(model.slot_arrays()[1]).all()


def test_every_setting_states_an_upper_bound_in_its_help() -> None:
    from css_rs.config import allowed_values

    for name in INT_SETTINGS:
        assert "in [" in allowed_values(name), name
    for name in FLOAT_SETTINGS:
        assert allowed_values(name).startswith("a finite number"), name


ENGINE_SETTINGS = [
    n
    for section in ("model", "training")
    for n in TrainConfig.sections()[section]
    if n not in ("threads", "epochs")
]
VALUES = st.one_of(
    st.integers(-2, 70),
    st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**32, 2**53, 2**63 - 1, 2**63, 2**64]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-300, 1e-45, 1.2e-38, 3.4e38, 3.5e38, 1e300, -0.0]),
    st.booleans(),
    st.none(),
    st.sampled_from(["l2", "none", "hinge", "logistic", "uniform", "step", "x"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from(ENGINE_SETTINGS), VALUES, max_size=4))
def test_what_train_config_accepts_the_engine_accepts(changes: dict[str, object]) -> None:
    """Random values for the engine's settings: TrainConfig refuses them in one line, or the
    engine takes them (nothing is refused later, in phase 3)."""
    try:
        config = TrainConfig(threads=1, epochs=1, **changes)  # type: ignore[arg-type]
    except ValueError as e:
        assert "\n" not in str(e) and " is invalid" in str(e)
        return
    texts = generate_corpus(30, seed=1)
    vocab = Vocabulary.from_texts(texts, min_count=2)
    Trainer(texts, vocab, config)  # must not raise
