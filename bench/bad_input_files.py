"""Issue 17's classes 1 (files reached through names and paths: the CLI's equivalents of the demo-mode
inputs), 2 (work lost to concurrent writers and colliding paths) and 5 (a damaged stored study), as cases for
``bench/bad_inputs.py`` (see ``bad_input_cases`` for what a case is)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from bad_input_cases import Case, Ctx, Proc, copy_seed, digest, item, jsonl, one, study, vector_file

# ---------------------------------------------------------------- 1: files reached through names and paths


def _registry(ctx: Ctx, path: str) -> None:
    src = jsonl(ctx.inputs / "src.jsonl", [item(k, k % 2 == 0) for k in range(6)])
    entry = {"name": "x", "url": src.as_uri(), "format": "risk", "sha256": digest(src), "path": path}
    (ctx.inputs / "reg.json").write_text(json.dumps({"sources": [entry]}))
    if path.startswith("link/"):
        (ctx.dir / "cache").mkdir(exist_ok=True)
        (ctx.dir / "cache" / "link").symlink_to(ctx.dir / "outside")


def _cache_is_a_folder(ctx: Ctx, procs: list[Proc]) -> str | None:
    cache = ctx.dir / "cache"
    return "lost" if cache.exists() and not cache.is_dir() else None  # the entry wrote over the cache itself


def fetch_case(label: str, path: Callable[[Ctx], str]) -> Case:
    return Case(1, label, one(lambda ctx: ["fetch", "x", "--cache-dir", str(ctx.dir / "cache"), "--registry",
                                           str(ctx.inputs / "reg.json")]),
                setup=lambda ctx: _registry(ctx, path(ctx)), judge=_cache_is_a_folder,
                may_write=lambda ctx: [ctx.dir / "cache"])


def class1() -> list[Case]:
    c = [fetch_case("fetch: registry path '.'", lambda ctx: "."),
         fetch_case("fetch: registry path '../x.jsonl'", lambda ctx: "../x.jsonl"),
         fetch_case("fetch: registry path 'a/../../x.jsonl'", lambda ctx: "a/../../x.jsonl"),
         fetch_case("fetch: registry path absolute", lambda ctx: str(ctx.dir / "abs.jsonl")),
         fetch_case("fetch: registry path through a symlink", lambda ctx: "link/x.jsonl"),
         fetch_case("fetch: registry path ''", lambda ctx: "")]
    for name in ("../evil", "/tmp/evil-abs", "a/b", ".", ".hidden"):
        c.append(Case(1, f"study --name {name!r}", one(lambda ctx, n=name: study(n, ctx))))
    c.append(Case(1, "entanglement --study '../x'", one(lambda ctx: ["entanglement", "--study", "../x", "--out",
                                                                     str(ctx.out)])))
    return c


# ---------------------------------------------------------------- 2: concurrent writers, colliding paths


def _both_stored(ctx: Ctx, procs: list[Proc]) -> str | None:
    """Two writers of one study name with different concepts: both accepted means one study was replaced."""
    if all(p.rc == 0 for p in procs):
        return "lost"
    return None


def _identical_both_done(ctx: Ctx, procs: list[Proc]) -> str | None:
    return None if all(p.rc == 0 for p in procs) else "refused"  # identical work: both must succeed



def _unchanged(path: Callable[[Ctx], Path]) -> Callable[[Ctx, list[Proc]], str | None]:
    def judge(ctx: Ctx, procs: list[Proc]) -> str | None:
        before = (ctx.dir / "before.sha").read_text() if (ctx.dir / "before.sha").exists() else ""
        return "lost" if digest(path(ctx)) != before else None
    return judge


def _keep(path: Callable[[Ctx], Path], text: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        vector_file(ctx)
        p = path(ctx)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        (ctx.dir / "before.sha").write_text(digest(p))
    return setup


def _to_json_keeps_vector(ctx: Ctx, procs: list[Proc]) -> str | None:
    if procs[0].rc != 0:
        return None
    from steering.interop.controlvec import read_vectors

    try:
        read_vectors(ctx.out / "x.json")  # what was written must still be a vector someone can read back
    except Exception:  # noqa: BLE001 - any failure: the vector was written over
        return "lost"
    return None


def class2() -> list[Case]:
    c = [Case(2, "two studies, one name, other concepts, at once",
              lambda ctx: [study("same", ctx, "corrigibility-demo"), study("same", ctx, "optimism-demo")],
              judge=_both_stored, timeout=180),
         Case(2, "two identical studies at once", lambda ctx: [study("twin", ctx), study("twin", ctx)],
              judge=_identical_both_done, timeout=180),
         Case(2, "import --to x.json (sidecar name)", one(
             lambda ctx: ["import", str(ctx.inputs / "v.safetensors"), "--to", str(ctx.out / "x.json")]),
              setup=lambda ctx: vector_file(ctx), judge=_to_json_keeps_vector),
         Case(2, "import --to settings.safetensors beside settings.json", one(
             lambda ctx: ["import", str(ctx.inputs / "v.safetensors"), "--to", str(ctx.out / "settings.safetensors")]),
              setup=_keep(lambda ctx: ctx.out / "settings.json", '{"mine": true}'),
              judge=_unchanged(lambda ctx: ctx.out / "settings.json")),
         Case(2, "import --to an existing unrelated file", one(
             lambda ctx: ["import", str(ctx.inputs / "v.safetensors"), "--to", str(ctx.out / "old.safetensors")]),
              setup=_keep(lambda ctx: ctx.out / "old.safetensors", "not yours"),
              judge=_unchanged(lambda ctx: ctx.out / "old.safetensors"))]

    def export_setup(ctx: Ctx) -> None:
        copy_seed(ctx)
        (ctx.out / "mine.gguf").write_text("someone's file")
        (ctx.dir / "before.sha").write_text(digest(ctx.out / "mine.gguf"))

    def run_dir(ctx: Ctx) -> str:
        return str(next(d for d in sorted(ctx.out.iterdir()) if (d / "manifest.json").is_file()))

    c.append(Case(2, "export --to an existing unrelated file", one(
        lambda ctx: ["export", run_dir(ctx), "--format", "gguf", "--to", str(ctx.out / "mine.gguf")]),
        setup=export_setup, judge=_unchanged(lambda ctx: ctx.out / "mine.gguf")))
    return c


# ---------------------------------------------------------------- 5: a damaged stored study


def _damage(name: str, file: str, how: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        copy_seed(ctx)
        p = ctx.out / "studies" / name / file
        if how == "garbage":
            p.write_bytes(b"\x00garbage{")
        elif how == "truncate":
            p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
        elif how == "wrong types":
            p.write_text(json.dumps({"spec": 5, "cells": "x", "layers": []}))
    return setup


def _good_still_listed(ctx: Ctx, procs: list[Proc]) -> str | None:
    return "lost" if "good" not in procs[0].out else None  # the undamaged study must stay listed


def _rerun_restores(ctx: Ctx, procs: list[Proc]) -> str | None:
    if procs[0].rc != 0:
        return None  # refused with one line naming the file: clean (or noisy, found by the runner)
    from steering.analyses.study.compute import load_study

    try:
        load_study(ctx.out, "bad")
    except Exception:  # noqa: BLE001 - accepted but the stored study is still unreadable
        return "silent wrong"
    return None


def class5() -> list[Case]:
    c = []
    for file, how in (("study.json", "garbage"), ("study.json", "wrong types"), ("datasets.parquet", "truncate"),
                      ("examples.parquet", "truncate")):
        c.append(Case(5, f"{how} {file}, then `studies`", one(lambda ctx: ["studies", "--out", str(ctx.out)]),
                      setup=_damage("bad", file, how), judge=_good_still_listed))
        c.append(Case(5, f"{how} {file}, then the same study again", one(
            lambda ctx: study("bad", ctx)), setup=_damage("bad", file, how), judge=_rerun_restores))
    return c
