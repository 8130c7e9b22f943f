"""Bugs told apart from bad input (issue 16, item 4).

Bad input (an InputError, or an OSError the user can fix) is one ``error:`` line and exit 2 on the CLI, its
message in the page on the dashboard. Anything else is an internal error: one line naming a log under
``<out>/logs/`` that holds the traceback, exit 1; STEERING_DEBUG=1 re-raises it. Bugs are injected by
replacing the per-example slope fit (``metrics.per_example``, which every sweep and import calls once the
grid is evaluated) with a function that raises.
"""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pytest
import test_app
import torch
from test_app import app_env  # noqa: F401 - the shared autouse fixture (tiny model, temporary store)

from steering.cli import main as cli
from steering.core import metrics
from steering.errors import (
    ControlVectorError,
    DatasetError,
    InputError,
    SweepError,
    debug,
    user_message,
    write_log,
)

LOG_NAME = re.compile(r"internal-\d{8}T\d{6}\.\d{6}Z-\d+\.log$")
SWEEP = ["sweep", "--dataset", "corrigibility-demo", "--layers", "1", "--n-train", "6", "--n-test", "5"]


def injected_slope_bug(*args, **kwargs):
    raise RuntimeError("injected bug in the slope fit")


def injected_value_bug(*args, **kwargs):
    raise ValueError("operands could not be broadcast together")  # what a numpy slip raises


def reports(err: str) -> list[str]:
    """stderr without the progress bar's carriage-return lines: what the CLI reported."""
    return [line for line in err.split("\n") if line.strip() and "\r" not in line]


def logged(line: str) -> Path:
    """The log file a one-line internal-error report names."""
    m = re.search(r"the traceback is in (\S+\.log)$", line)
    assert m, line
    return Path(m.group(1))


# ---------------------------------------------------------------- what counts as bad input


@pytest.mark.parametrize("error, message", [
    (SweepError("multiplier nan is not a finite number"), "multiplier nan is not a finite number"),
    (DatasetError("a.jsonl line 2:\n  invalid JSON"), "a.jsonl line 2: invalid JSON"),  # always one line
    (OSError(errno.ENOSPC, "No space left on device", "/r/x.parquet"), "No space left on device: /r/x.parquet"),
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),  # a full disk names no file
    (PermissionError(errno.EACCES, "Permission denied", "/etc/r"), "Permission denied: /etc/r"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "d.jsonl"), "No such file or directory: d.jsonl"),
    (OSError(errno.ENAMETOOLONG, "File name too long", "x" * 300), f"File name too long: {'x' * 300}"),
])
def test_user_errors_are_their_message(error, message):
    assert user_message(error) == message


@pytest.mark.parametrize("error", [
    ValueError("operands could not be broadcast together"), KeyError("layer"), TypeError("unhashable type"),
    RuntimeError("boom"), json.JSONDecodeError("Expecting value", "x", 0), RecursionError(),
    OSError(errno.EACCES, "Permission denied"),  # no file named: not something the user can act on
    OSError(errno.EEXIST, "File exists", "/r/run"),  # not in the list of environment failures
    FileNotFoundError("No such file or directory: x"),  # no errno: raised by library code, not the OS
])
def test_everything_else_is_internal(error):
    assert user_message(error) is None


def test_debug_flag(monkeypatch):
    for value, expected in (("1", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv("STEERING_DEBUG", value)
        assert debug() is expected
    monkeypatch.delenv("STEERING_DEBUG")
    assert debug() is False


def test_log_falls_back_to_the_temp_dir(tmp_path, monkeypatch):
    blocked = tmp_path / "results"
    blocked.write_text("a file where the results directory should be")  # logs/ cannot be made under it
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    try:
        injected_slope_bug()
    except RuntimeError as e:
        path = write_log(e, blocked, "context line")
    assert path is not None and path.parent == tmp_path / "tmp" and LOG_NAME.search(path.name)
    text = path.read_text()
    assert "context line" in text and "injected_slope_bug" in text and "RuntimeError: injected bug" in text


# ---------------------------------------------------------------- the CLI


def test_bad_input_exits_2_with_one_line_and_no_log(capsys, tmp_path):
    out = tmp_path / "r"
    assert cli.main(["sweep", "--dataset", "corrigibility-demo", "--multipliers", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: need at least two distinct multipliers to fit a slope, e.g. -1, 0, 1"]
    assert not out.exists()


@pytest.mark.parametrize("value", ["abc", "0"])
def test_a_bad_environment_variable_is_bad_input(capsys, tmp_path, monkeypatch, value):
    """Read where it is used (not at import, where it was a traceback), and named in the line."""
    monkeypatch.setenv("STEERING_MAX_PROMPT_TOKENS", value)
    assert cli.main([*SWEEP, "--out", str(tmp_path / "r")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: STEERING_MAX_PROMPT_TOKENS="), lines


@pytest.fixture
def tiny_cli(tiny_llama, monkeypatch):
    """The CLI's model loads return the tiny random model (sweep and import)."""
    from steering.engine import models

    monkeypatch.setattr(cli, "load_model", lambda *a, **k: tiny_llama)
    monkeypatch.setattr(models, "load_model", lambda *a, **k: tiny_llama)
    monkeypatch.delenv("STEERING_DEBUG", raising=False)
    return tiny_llama


def assert_internal(capsys, code: int, out: Path, name: str, message: str) -> None:
    captured = capsys.readouterr()
    assert code == 1, captured.err
    lines = reports(captured.err)
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: internal error, not a problem with your input"), lines[0]
    assert message in lines[0] and "Traceback" not in captured.err + captured.out
    log = logged(lines[0])
    assert log.parent == out / "logs" and LOG_NAME.search(log.name) and log.is_file()
    text = log.read_text()
    assert text.count("Traceback (most recent call last)") == 1
    assert f"in {name}" in text and message in text and "steering/cli/main.py" in text


@pytest.mark.parametrize("bug, message", [(injected_slope_bug, "RuntimeError: injected bug in the slope fit"),
                                          (injected_value_bug, "ValueError: operands could not be broadcast")])
def test_a_bug_in_the_sweep_exits_1_naming_its_log(tiny_cli, capsys, tmp_path, monkeypatch, bug, message):
    out = tmp_path / "r"
    monkeypatch.setattr(metrics, "per_example", bug)
    assert_internal(capsys, cli.main([*SWEEP, "--out", str(out)]), out, bug.__name__, message)
    assert "sweep --dataset corrigibility-demo" in next((out / "logs").iterdir()).read_text()  # the command


def test_debug_reraises_a_bug_in_the_sweep(tiny_cli, tmp_path, monkeypatch):
    out = tmp_path / "r"
    monkeypatch.setattr(metrics, "per_example", injected_slope_bug)
    monkeypatch.setenv("STEERING_DEBUG", "1")
    with pytest.raises(RuntimeError, match="injected bug in the slope fit"):
        cli.main([*SWEEP, "--out", str(out)])
    assert not (out / "logs").exists()


@pytest.fixture
def vector_file(tmp_path) -> Path:
    from steering.core.vectors import VectorMeta, save_vectors

    torch.manual_seed(0)
    path = tmp_path / "v.safetensors"
    save_vectors(path, {1: torch.randn(64), 2: torch.randn(64)}, VectorMeta(model="tiny-llama", layers=[1, 2]))
    return path


def import_args(path: Path, out: Path) -> list[str]:
    return ["import", str(path), "--dataset", "corrigibility-demo", "--n-train", "6", "--n-test", "5",
            "--out", str(out)]


def test_a_bug_in_import_exits_1_naming_its_log(tiny_cli, vector_file, capsys, tmp_path, monkeypatch):
    out = tmp_path / "r"
    monkeypatch.setattr(metrics, "per_example", injected_slope_bug)
    assert_internal(capsys, cli.main(import_args(vector_file, out)), out, "injected_slope_bug",
                    "RuntimeError: injected bug in the slope fit")
    monkeypatch.setenv("STEERING_DEBUG", "1")
    with pytest.raises(RuntimeError, match="injected bug"):
        cli.main(import_args(vector_file, tmp_path / "r2"))


@pytest.mark.parametrize("damage, words", [
    (lambda p: p.write_bytes(b"not a safetensors file"), "not a readable safetensors file"),
    (lambda p: p.with_suffix(".json").write_text("{not json"), "v.json: the sidecar is not readable JSON"),
    (lambda p: p.with_suffix(".json").write_text("[1, 2]"), "v.json: the sidecar is not a JSON object"),
    (lambda p: p.with_suffix(".json").write_text('{"model": "m"}'), "v.json: the sidecar lacks 'model' or 'layers'"),
])
def test_a_damaged_vector_file_is_bad_input(tiny_cli, vector_file, capsys, tmp_path, damage, words):
    """These were a SafetensorError, a JSONDecodeError and TypeErrors: internal errors until read as input."""
    damage(vector_file)
    assert cli.main(import_args(vector_file, tmp_path / "r")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
    assert not (tmp_path / "r" / "logs").exists()
    with pytest.raises(ControlVectorError):
        from steering.interop.controlvec import read_vectors

        read_vectors(vector_file)


@pytest.mark.parametrize("cut", [40, 100, 704])
def test_a_truncated_control_vector_is_bad_input(capsys, tmp_path, cut):
    """The gguf package fails inside a truncated file with an IndexError (an internal error until read as input)."""
    from steering.core.vectors import VectorMeta
    from steering.interop.controlvec import write_gguf

    torch.manual_seed(0)
    whole = write_gguf(tmp_path / "v.gguf", {1: torch.randn(64), 2: torch.randn(64)},
                       VectorMeta(model="m", layers=[1, 2]), {"dataset": "corrigibility-demo"})
    cut_file = tmp_path / "cut.gguf"
    cut_file.write_bytes(whole.read_bytes()[:cut])
    assert cli.main(["import", str(cut_file), "--out", str(tmp_path / "r")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {cut_file}: not a readable GGUF file ("), lines
    assert not (tmp_path / "r").exists()


def test_entanglement_options_are_bad_input(capsys, tmp_path):
    """They were plain ValueErrors (exit 2 only because every ValueError was)."""
    assert cli.main(["entanglement", "--datasets", "corrigibility-demo", "--layer", "1", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "error: entanglement needs at least two concepts, e.g. --datasets A,B"


# ---------------------------------------------------------------- the dashboard


def test_a_bug_in_a_computation_is_one_line_in_the_page(app_env, monkeypatch):  # noqa: F811
    monkeypatch.delenv("STEERING_DEBUG", raising=False)
    at = test_app.new_app()
    assert not at.exception and not at.error
    monkeypatch.setattr(metrics, "per_example", injected_slope_bug)
    at.button(key="compute_layer").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Steering-vector reliability"  # the page still draws
    assert "Tan et al. 2024" in test_app.texts(at)  # and what it showed before the error
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "\n" not in errors[0] and "Traceback" not in errors[0], errors
    assert errors[0].startswith("internal error, not a problem with your input (RuntimeError: injected bug")
    log = logged(errors[0])
    assert log.parent == app_env / "logs" and LOG_NAME.search(log.name)
    assert "in injected_slope_bug" in log.read_text() and "dashboard: Steering-vector reliability" in log.read_text()


def test_debug_reraises_in_the_dashboard(app_env, monkeypatch):  # noqa: F811
    at = test_app.new_app()
    monkeypatch.setattr(metrics, "per_example", injected_slope_bug)
    monkeypatch.setenv("STEERING_DEBUG", "1")
    at.button(key="compute_layer").click().run()
    assert at.exception and "injected bug in the slope fit" in at.exception[0].value
    assert not (app_env / "logs").exists()


def test_bad_input_in_the_page_is_its_message(app_env, monkeypatch):  # noqa: F811
    """An InputError raised inside a computation is the user's message, not an internal error."""
    def too_few(*a, **k):
        raise InputError("the concept has too few items for this split")

    at = test_app.new_app()
    monkeypatch.setattr(metrics, "per_example", too_few)
    at.button(key="compute_layer").click().run()
    assert [e.value for e in at.error] == ["the concept has too few items for this split"]
    assert not (app_env / "logs").exists()
