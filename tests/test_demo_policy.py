"""No path from a visitor (issue 17, class 1): in demo mode every text a visitor types or sends that names
data, a model, a study or a file goes through the policy in ``ui.demo``.

The property test finds every text input, text area, selectbox and multiselect of every page (the sidebar
on Home, each page's own inputs on that page), feeds each with generated hostile values (absolute,
``../``-relative, ``~``, ``file://``, paths that start in an allowed directory and escape it, symlinks,
directories, and bare names of files outside the allowed lists: a real file in tmp holding a secret
marker, and its missing twin) and asserts that nothing outside the allowed directories is opened, that
neither the marker nor the path appears in any element of the page, and that the messages for an
existing and a non-existing path are identical. Choice widgets are fed as a forged websocket message
would (a raw string the options do not hold). Unit tests cover each policy function. The bounds, the
job queue and the fetch registry's path check: tests/test_demo_limits.py.
"""

from __future__ import annotations

import builtins
import io
import json
import os
from pathlib import Path

import pytest
from google.protobuf import text_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.testing.v1 import AppTest

from steering.errors import DatasetError, SweepError

ROOT = Path(__file__).resolve().parents[1]
MARKER = "XQ-MARKER-3141"
ITEM = {"question": "Q{i}?\n\nChoices:\n (A) yes\n (B) no", "answer_matching_behavior": " (A)"}
# Files outside every allowed list: each has a missing twin spelled the same way.
TARGETS = ["xq-secret.jsonl", "xq-secret.csv", "xq-passwd", "xq-link.jsonl", "xq-into-allowed.jsonl", "xq-dir"]
NAMES = ["xq-secret", "xq-cwd-secret", "xq-passwd"]  # bare names: of an outside file, of a file in the cwd
PROMPTS = {"w_live_text"}  # a prompt for the model, shown back as the prompt it is (never opened as a file)
EXAMPLES = 20


def _items(question: str) -> str:
    return "\n".join(json.dumps({**ITEM, "question": question.format(i=i)}) for i in range(30))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """An allowed data directory, an outside one (also HOME) with secret files and symlinks, a cwd."""
    base = tmp_path_factory.mktemp("world")
    allowed, outside, cwd = base / "allowed", base / "outside", base / "cwd"
    for d in (allowed, outside, cwd, outside / "xq-dir"):
        d.mkdir()
    (allowed / "operator-concept.jsonl").write_text(_items("Q{i}?\n\nChoices:\n (A) yes\n (B) no"))
    secret = _items(MARKER + " Q{i}?\n\nChoices:\n (A) yes\n (B) no")
    (outside / "xq-secret.jsonl").write_text(secret)
    (outside / "xq-dir" / "xq-secret.jsonl").write_text(secret)
    (outside / "xq-secret.csv").write_text(f"question,answer_matching_behavior\nQ?,{MARKER}\n")  # quoted if parsed
    (outside / "xq-passwd").write_text(f"root:{MARKER}:0:0:root:/root:/bin/bash\n")
    (outside / "xq-link.jsonl").symlink_to(outside / "xq-secret.jsonl")
    (outside / "xq-into-allowed.jsonl").symlink_to(allowed / "operator-concept.jsonl")
    (cwd / "xq-cwd-secret").write_text(secret)  # load_dataset('xq-cwd-secret') would find it from the cwd
    return {"base": base, "allowed": allowed, "outside": outside, "cwd": cwd}


@pytest.fixture
def demo(world, monkeypatch):
    monkeypatch.setenv("STEERING_DEMO", "1")
    monkeypatch.setenv("STEERING_MODEL", "tiny-random")
    monkeypatch.setenv("STEERING_ALLOWED_MODELS", "tiny-random")
    monkeypatch.setenv("STEERING_ALLOWED_DATA_DIRS", str(world["allowed"]))
    monkeypatch.setenv("STEERING_RESULTS", str(world["base"] / "results"))
    monkeypatch.setenv("HOME", str(world["outside"]))
    monkeypatch.delenv("STEERING_DATA_DIR", raising=False)
    for name in ("STEERING_DEMO_JOBS", "STEERING_ALLOW_RAY", "STEERING_DEMO_MAX_LAYERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(world["cwd"])
    return world


# ---------------------------------------------------------------- hostile values


def spell(form: str, target: str, w: dict[str, Path]) -> str:
    """``target`` (a file name in the outside directory) written as a visitor might send it."""
    path = w["outside"] / target
    return {
        "abs": str(path),
        "home": f"~/{target}",
        "rel": os.path.relpath(path, w["cwd"]),
        "dotted": f"./../{w['cwd'].name}/./../{w['outside'].name}/{target}",
        "escape": f"{w['allowed']}/../{w['outside'].name}/{target}",
        "uri": path.as_uri(),
        "slash": f"{path}/",
    }[form]


@st.composite
def hostile(draw, w: dict[str, Path]) -> tuple[str, str, str | None]:
    """(value naming an existing file, the same spelling of a missing one, the existing file's path or
    None for a bare name: a bare name may be a fine study name, shown back as such, but never a file)."""
    if draw(st.booleans()):
        form = draw(st.sampled_from(["abs", "home", "rel", "dotted", "escape", "uri", "slash"]))
        target = draw(st.sampled_from(TARGETS))
        twin = "xq-missing" + Path(target).suffix
        value, missing, real = spell(form, target, w), spell(form, twin, w), str(w["outside"] / target)
    else:
        value, missing, real = draw(st.sampled_from(NAMES)), "xq-missing-name", None
    wrap = draw(st.sampled_from(["{}", " {} ", "bundled,{}", "{},corrigibility-demo"]))
    return wrap.format(value), wrap.format(missing), real


# ---------------------------------------------------------------- what a page shows, what the app opens


def _nodes(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _nodes(child)


def page_text(at: AppTest, skip_id: str | None) -> str:
    """Every element's content, as its protobuf text (the fed widget itself left out)."""
    out = []
    for node in _nodes(at._tree):
        proto = getattr(node, "proto", None)
        if proto is not None and getattr(node, "id", None) != skip_id:
            out.append(text_format.MessageToString(proto, as_utf8=True))
    return "\n".join(out)


def messages(at: AppTest) -> list[str]:
    return [e.value for kind in ("error", "warning", "info", "success", "exception") for e in at.get(kind)]


class Opens:
    """Records every file the process opens (open, io.open, os.open) while installed."""

    def __init__(self, monkeypatch, w: dict[str, Path]):
        self.forbidden = (str(w["outside"]) + os.sep, str(w["cwd"]) + os.sep)
        self.paths: list[str] = []
        real_open, real_os_open = builtins.open, os.open

        def record(file) -> None:
            if isinstance(file, (str, bytes, os.PathLike)):
                p = os.fsdecode(file)
                self.paths += [os.path.abspath(p), os.path.realpath(p)]

        def opener(file, *a, **k):
            record(file)
            return real_open(file, *a, **k)

        def os_opener(file, *a, **k):
            record(file)
            return real_os_open(file, *a, **k)

        for target, name, fn in ((builtins, "open", opener), (io, "open", opener), (os, "open", os_opener)):
            monkeypatch.setattr(target, name, fn)

    def outside(self) -> list[str]:
        """Opened secret files (xq-*) of the outside directory (HOME) or the working directory."""
        return [p for p in self.paths if p.startswith(self.forbidden) and f"{os.sep}xq-" in p]


# ---------------------------------------------------------------- feeding an input


def forge(widget, raw):
    """Make the next run send ``raw`` for a choice widget, as a hand-written websocket message could."""
    base = type(widget)

    def state(self) -> WidgetState:
        ws = WidgetState()
        ws.id = self.id
        if isinstance(raw, list):
            ws.string_array_value.data[:] = raw
        else:
            ws.string_value = raw
        return ws

    widget.__class__ = type(f"Forged{base.__name__}", (base,), {"_widget_state": property(state)})
    return widget


KINDS = ("text_input", "text_area", "selectbox", "multiselect")


def inputs(at: AppTest, include_sidebar: bool) -> list[tuple[str, str]]:
    """(kind, key or label) of every text and choice input on the page."""
    side = {w.id for kind in KINDS for w in at.sidebar.get(kind)}
    return [(kind, w.key or w.label) for kind in KINDS for w in at.get(kind) if include_sidebar or w.id not in side]


def find(at: AppTest, kind: str, name: str):
    return next((w for w in at.get(kind) if (w.key or w.label) == name), None)


def is_option(widget, value: str) -> bool:
    """Whether a choice widget really offers ``value`` (a bare name can be a study an earlier case stored)."""
    try:
        return widget.format_func(value) in widget.options
    except Exception:  # noqa: BLE001 - a text input, or a format_func that knows only its own options
        return False


def settle(at: AppTest, skip) -> None:
    """A choice widget fed a forged value before shows what the server reset it to: send that back, as the
    browser would (AppTest would otherwise resend the stale forged value, or fail to format it)."""
    for w in at.get("selectbox"):
        if w is not skip and w.proto.set_value:
            forge(w, w.proto.raw_value)
    for w in at.get("multiselect"):
        if w is not skip and w.proto.set_value:
            forge(w, list(w.proto.raw_values))


def feed(at: AppTest, kind: str, widget, value: str) -> None:
    settle(at, widget)
    if kind in ("text_input", "text_area"):
        widget.set_value(value)
    else:
        forge(widget, [value] if kind == "multiselect" else value)
    form = widget.proto.form_id
    if form:
        next(b for b in at.button if b.proto.form_id == form and b.proto.is_form_submitter).click()
    at.run()


def open_page(page: str | None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["s_n_train"] = 8
    at.session_state["s_n_test"] = 8
    at.run()
    if page is not None:
        at.switch_page(page).run()
    return at


@pytest.fixture(scope="module")
def stored(world):
    """Stored runs (one layer, all layers) and a study, made in demo mode through the pages, so that every
    page shows all its inputs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STEERING_DEMO", "1")
        mp.setenv("STEERING_MODEL", "tiny-random")
        mp.setenv("STEERING_ALLOWED_MODELS", "tiny-random")
        mp.setenv("STEERING_RESULTS", str(world["base"] / "results"))
        at = open_page(None)
        at.button(key="compute_layer").click().run()
        at.switch_page("pages/2_Layer_sweep.py").run()
        at.button(key="sweep_all").click().run()
        at.switch_page("pages/7_Study_overview.py").run()
        at.text_input(key="w_form_name").set_value("stored")
        at.text_input(key="w_form_datasets").set_value("corrigibility-demo,optimism-demo")
        at.text_input(key="w_form_layer").set_value("1")
        at.button(key="w_form_run").click().run()
        assert not at.exception and not at.error, messages(at)
    return world


def _page_list() -> list[str | None]:
    text = (ROOT / "app.py").read_text()
    return [None] + [line.split('"')[1] for line in text.splitlines() if line.strip().startswith('"pages/')]


@pytest.mark.parametrize("page", _page_list(), ids=lambda p: p or "Home")
def test_no_input_of_any_page_reads_or_echoes_a_path(stored, demo, monkeypatch, page):
    at = open_page(page)
    assert not at.exception, messages(at)
    found = inputs(at, include_sidebar=page is None)
    assert found or page is not None, "Home has no inputs?"
    opens = Opens(monkeypatch, demo)
    for kind, name in found:
        at = open_page(page)  # each input starts from a fresh session

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
        @given(case=hostile(demo))
        def check(case):
            value, missing, real = case
            shown, offered = [], False
            for sent in (value, missing):
                widget = find(at, kind, name)
                assert widget is not None, f"{name} is gone after a refused value"
                offered |= is_option(widget, sent.strip())
                opens.paths.clear()
                feed(at, kind, widget, sent)
                assert not at.exception, (name, sent, messages(at))
                assert not opens.outside(), (name, sent, opens.outside())  # nothing outside was opened
                fed = find(at, kind, name)
                text = page_text(at, fed.id if fed is not None else None)
                assert MARKER not in text, (name, sent)
                if real is not None and name not in PROMPTS:
                    assert sent.strip() not in text and real not in text, (name, sent)
                shown.append(messages(at))
            if not offered:
                assert shown[0] == shown[1], (name, value, missing, shown)  # existence is not revealed

        check()


# ---------------------------------------------------------------- the policy functions themselves


def test_concepts_field_takes_offered_names_and_presets_only(demo):
    from ui import demo as policy

    bundled = policy.offered_datasets(None)
    assert policy.resolve_dataset_names("corrigibility-demo", None) == [bundled["corrigibility-demo"]]
    assert sorted(policy.resolve_dataset_names("bundled", None)) == sorted(bundled.values())
    allowed = str(demo["allowed"].resolve())
    assert policy.resolve_dataset_names(" operator-concept , bundled", allowed)[0].endswith("operator-concept.jsonl")
    with pytest.raises(DatasetError) as refused:
        policy.resolve_dataset_names("operator-concept", None)  # offered only with its directory chosen
    lines = set()
    for text in [str(demo["outside"] / "xq-secret.jsonl"), str(demo["outside"] / "nothing.jsonl"), "xq-cwd-secret",
                 "../outside/xq-secret.csv", "/etc/passwd", "/no/such/file", "bundled,~/xq-passwd"]:
        with pytest.raises(DatasetError) as e:
            policy.resolve_dataset_names(text, None)
        lines.add(str(e.value))
    assert lines == {str(refused.value)}  # one fixed line, listing the offered names, never the text
    assert "corrigibility-demo" in refused.value.args[0] and "/" not in refused.value.args[0]


def test_outside_demo_mode_paths_stay_allowed(demo, monkeypatch):
    from ui import demo as policy

    monkeypatch.delenv("STEERING_DEMO")
    path = str(demo["outside"] / "xq-secret.jsonl")
    assert policy.resolve_dataset_names(path, None) == path
    assert policy.load_offered(path, None).name == "xq-secret"
    assert policy.check_study_name(" any ") == "any" and policy.job_slots() is None
    assert policy.parse_multipliers("1, 0, -1, 1") == [-1.0, 0.0, 1.0]


def test_server_file_parse_errors_are_not_quoted_in_demo_mode(demo, monkeypatch):
    from ui import demo as policy

    bad = demo["allowed"] / "broken.csv"
    bad.write_text(f"question,answer_matching_behavior\nQ?,{MARKER}\n")
    try:
        with pytest.raises(DatasetError) as e:
            policy.load_offered(str(bad), str(demo["allowed"].resolve()))
        assert MARKER not in str(e.value) and "not offered" in str(e.value)  # unreadable: never listed
        err = DatasetError(f"multiple-choice set: field is {MARKER}")
        wrapped = SweepError(str(err))
        wrapped.__cause__ = err
        other = SweepError("n_train too large")
        assert MARKER not in str(policy.quiet(err)) and MARKER not in str(policy.quiet(wrapped))
        assert policy.quiet(other) is other  # not about a file: kept
        monkeypatch.delenv("STEERING_DEMO")
        assert policy.quiet(err) is err  # outside demo mode the message stays as it is
    finally:
        bad.unlink()


def test_study_name_layer_rule_and_choices_are_checked_with_fixed_lines(demo):
    from ui import demo as policy

    assert policy.check_study_name(" fig1.v2 ") == "fig1.v2"
    for text in ["../x", "/etc/passwd", "~/x", "a/b", "", "x" * 65]:
        with pytest.raises(SweepError) as e:
            policy.check_study_name(text)
        assert "/" not in str(e.value) or text not in str(e.value)
    assert policy.check_layer_text("0.4") == "0.4" and policy.check_layer_text("best") == "best"
    for text in ["/etc/passwd", "tiny-random=1", "1.5", "abc"]:
        with pytest.raises(SweepError, match="^layer rule: give an index") as e:
            policy.check_layer_text(text)
        assert text not in str(e.value)
    assert policy.check_choice("id", ["id", "all"], "set") == "id"
    with pytest.raises(SweepError, match="not offered on this server") as e:
        policy.check_choice("/etc/passwd", ["id", "all"], "prompt-variant set")
    assert "/etc/passwd" not in str(e.value)
    with pytest.raises(SweepError, match="cannot read the multipliers") as e:
        policy.parse_multipliers("/etc/passwd")
    assert "passwd" not in str(e.value)
