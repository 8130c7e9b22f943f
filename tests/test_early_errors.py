"""Errors come early (issue 17, class 4): what can be checked before a model loads is checked then."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steering.analyses.study.spec import check_layer_rule, fixed_layer
from steering.core.store import READABLE_BYTES, run_dir_name
from steering.errors import SweepError

RULE_TEXT = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["nan", "inf", "-inf", "1e3", "12.", ".5", "0.4", "1.0", "best", "-1", "007", " 3 ", "0x1f"]),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(-5, 500).map(str),
)


@given(RULE_TEXT, st.integers(1, 64))
@settings(max_examples=400, deadline=None)
def test_a_layer_rule_is_refused_up_front_or_names_a_usable_layer(text, n_layers):
    try:
        rule = check_layer_rule(text)
    except SweepError:
        return  # refused before any model is loaded: the point
    try:
        layer = fixed_layer(rule, n_layers)  # the only later failure allowed: out of range for this model
    except SweepError as e:
        assert "out of range" in str(e)
        return
    assert layer is None if rule == "best" else 0 <= layer < n_layers


@pytest.mark.parametrize("text", ["nan", "inf", "1e3", "12.", "0x1f", ""])
def test_texts_that_float_reads_are_not_layer_rules(text):
    with pytest.raises(SweepError):
        check_layer_rule(text)


@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=80))
@settings(max_examples=200, deadline=None)
def test_run_directory_names_fit_every_file_system(dataset_name, model):
    name = run_dir_name({"dataset_name": dataset_name, "model": model, "seed": 0})
    assert len((".partial-" + name).encode()) <= 255
    readable = name.rsplit("--", 1)[0]
    assert len(readable.encode()) <= READABLE_BYTES + 1  # +1: the "~" marking a cut


def _server(handler):
    """A TCP server on a free loopback port running ``handler(conn)`` for each connection (bounded: 20 s)."""
    import socket
    import threading

    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(20)

    def serve():
        try:
            while True:
                conn, _ = srv.accept()
                threading.Thread(target=handler, args=(conn,), daemon=True).start()
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    return srv, f"127.0.0.1:{srv.getsockname()[1]}"


def _silent(conn):
    import time

    time.sleep(5)
    conn.close()


def _http(conn):
    conn.recv(100)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    conn.close()


def _grpc_like(conn):
    conn.recv(100)
    conn.sendall(bytes.fromhex("000000040000000000"))  # an empty SETTINGS frame, as an HTTP/2 server sends
    conn.close()


@pytest.mark.parametrize("handler, why", [(_silent, "did not answer within 1 s"), (_http, "not as a Ray"),
                                          (lambda c: c.close(), "closed the connection|reset by peer")])
def test_a_port_that_answers_but_is_not_ray_fails_in_seconds(handler, why):
    import time

    from steering.analyses.study.ray_executor import check_reachable

    srv, address = _server(handler)
    try:
        t0 = time.time()
        with pytest.raises(SweepError) as e:
            check_reachable(address, timeout=1.0)
        import re

        assert time.time() - t0 < 3 and re.search(why, str(e.value)) and "\n" not in str(e.value)
    finally:
        srv.close()


def test_a_grpc_speaking_port_passes_the_probe():
    from steering.analyses.study.ray_executor import check_reachable

    srv, address = _server(_grpc_like)
    try:
        check_reachable(address, timeout=2.0)
    finally:
        srv.close()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_entanglement_multiplier_is_refused_before_the_model_is_looked_up(capsys, tmp_path, value):
    from steering.cli.main import main

    rc = main(["entanglement", "--datasets", "corrigibility-demo,optimism-demo", "--model", "no-such-model",
               "--n-train", "8", "--n-test", "4", "--layer", "1", f"--multiplier={value}", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not a finite number" in err[0], err


def test_a_huge_imported_vector_is_refused_before_the_model_loads(capsys, tmp_path):
    import torch

    from steering.cli.main import main
    from steering.core.vectors import VectorMeta, save_vectors

    path, _ = save_vectors(tmp_path / "v.safetensors", {1: torch.ones(64) * 1e30},
                           VectorMeta(model="no-such-model", layers=[1]))
    rc = main(["import", str(path), "--dataset", "corrigibility-demo", "--n-train", "8", "--n-test", "4",
               "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "saturates" in err[0], err
