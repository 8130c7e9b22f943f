"""Run hostile and careless inputs through the real CLI and count the outcomes, per class of issue 17.

    .venv/bin/python bench/bad_inputs.py [--data-dir ../shared/datasets] [--classes 0,1,2,3,4,5] [--only TEXT]

Class 0 is issue 10's classic bad input (sweep options and files); classes 1-5 are issue 17's
(bench/bad_input_cases.py). Every case runs in its own folder, each command in its own process (several at
once for concurrent writers), under a time limit. Outcomes, first match wins:

- hung: a command ran past the case's time limit (killed);
- escaped: a file outside --out (and the folders a case may write, e.g. a fetch cache) was written, or the
  text of a file outside it was echoed or stored;
- lost: a stored result missing or overwritten (the case's judge);
- silent wrong: accepted with a wrong or not-a-number result (the case's judge);
- noisy: a traceback, an exit code other than 0 and 2, an exit 2 that is not exactly one 'error:' line,
  files left behind by a refusal, or a usable input refused (a case that must be accepted);
- clean: a one-line error (exit 2) or an accepted, correct result.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bad_input_cases import CLASSES, SEED_DATASETS, TINY, Case, Ctx, Proc  # noqa: E402
from bad_input_files import class1, class2, class5  # noqa: E402
from bad_input_runs import NotRay, class3, class4  # noqa: E402

KINDS = ("clean", "noisy", "silent wrong", "lost", "escaped", "hung")
SECRET = "SECRET-e7c1b7e2-not-for-any-output"
ITEM = {"question": "Q?\n\nChoices:\n (A) yes\n (B) no", "answer_matching_behavior": " (A)",
        "answer_not_matching_behavior": " (B)"}


def files(tmp: Path, smol_gguf: Path | None) -> dict[str, Path]:
    f = {}
    f["deep_json"] = tmp / "deep.json"
    f["deep_json"].write_text("[" * 100000 + "]" * 100000)
    f["deep_jsonl"] = tmp / "deep.jsonl"
    f["deep_jsonl"].write_text("[" * 100000 + "]" * 100000)
    f["long_name"] = tmp / ("n" * 240 + ".jsonl")
    f["long_name"].write_text("\n".join(json.dumps(ITEM) for _ in range(20)))
    f["long_item"] = tmp / "long.jsonl"
    items = [dict(ITEM) for _ in range(20)]
    items[5]["question"] = "word " * 200_000 + ITEM["question"]
    f["long_item"].write_text("\n".join(json.dumps(i) for i in items))
    f["huge"] = tmp / "huge.jsonl"
    line = json.dumps(ITEM) + "\n"
    f["huge"].write_text(line * (21 * 2**20 // len(line)))
    f["bad_line"] = tmp / "bad.jsonl"
    f["bad_line"].write_text(json.dumps(ITEM) + "\n{not json\n")
    f["not_utf8"] = tmp / "latin.jsonl"
    f["not_utf8"].write_bytes(b"\xff\xfe\x00 garbage")
    f["answer_c"] = tmp / "c.jsonl"
    f["answer_c"].write_text(json.dumps({**ITEM, "answer_matching_behavior": " (C)"}))
    f["object"] = tmp / "obj.json"
    f["object"].write_text('{"a": 1}')
    f["empty"] = tmp / "empty.jsonl"
    f["empty"].write_text("")
    f["gguf_magic"] = tmp / "magic.gguf"
    f["gguf_magic"].write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x01" * 20)
    f["gguf_garbage"] = tmp / "garbage.gguf"
    f["gguf_garbage"].write_bytes(b"garbage")
    if smol_gguf is not None:
        f["gguf_cut"] = tmp / "cut.gguf"
        f["gguf_cut"].write_bytes(smol_gguf.read_bytes()[: smol_gguf.stat().st_size // 3])
    f["a_file"] = tmp / "a-file"
    f["a_file"].write_text("x")
    return f


def cases(f: dict[str, Path], data_dir: str | None) -> list[tuple[str, list[str]]]:
    demo = ["--dataset", "corrigibility-demo", "--n-train", "8", "--n-test", "8"]
    c: list[tuple[str, list[str]]] = []
    for m in ["nan,0,1", "inf,0,1", "0,1,1e309", "nan,nan", "-inf,0", "1", "1,1", "1,x", ",", "1e-400,0",
              "0,1e-300", "-1e200,0,1e200"]:
        c.append((f"multipliers {m}", demo + [f"--multipliers={m}"]))
    for layers in ["3-1", "", ",", "a-b", "1-", "30", "-1", "0-100000000000", "1;2", "29-29,5-3"]:
        c.append((f"layers {layers!r}", demo + ["--layers", layers]))
    for args in (["--seed", "-1"], ["--seed", "x"], ["--n-train", "0"], ["--n-test", "-3"], ["--n-train", "1000"],
                 ["--device", "foo"], ["--device", "cuda"], ["--device", "cuda:99"], ["--device", "mps"],
                 ["--aggregator", "max"], ["--dtype", "int8"], ["--metric", "x"]):
        c.append((" ".join(args), demo + args))
    for name in ["deep_json", "deep_jsonl", "long_name", "huge", "bad_line", "not_utf8", "answer_c", "object",
                 "empty"]:
        c.append((f"dataset {name}", ["--dataset", str(f[name]), "--n-train", "8", "--n-test", "8"]))
    c.append(("dataset long_item (1 MB question)", ["--dataset", str(f["long_item"]), "--n-train", "10",
                                                     "--n-test", "10", "--seed", "1"]))
    c.append(("dataset unknown name", ["--dataset", "no-such-concept"]))
    c.append(("dataset a directory", ["--dataset", str(f["a_file"].parent)]))
    for name in ["gguf_magic", "gguf_garbage", "gguf_cut"]:
        if name in f:
            c.append((f"model {name}", demo + ["--model", str(f[name])]))
    c.append(("model unknown name", demo + ["--model", "no-such-model"]))
    c.append(("model offline HF id", demo + ["--model", "no-such-org/no-such-model"]))
    c.append(("model missing directory", demo + ["--model", "./nope/"]))
    c.append(("out is a file", demo + ["--out", str(f["a_file"])]))
    c.append(("out under a file", demo + ["--out", str(f["a_file"] / "sub")]))
    c.append(("data-dir missing", demo + ["--data-dir", "/nonexistent"]))
    # Odd but valid: accepted, and the stored numbers are checked (finite, flags agree with the headline).
    small = ["--dataset", "corrigibility-demo", "--n-train", "4", "--n-test", "4"]
    c.append(("valid: layers ' 2 , 2 '", small + ["--layers", " 2 , 2 "]))
    c.append(("valid: multipliers 1,0,-1,0", small + ["--layers", "2", "--multipliers=1,0,-1,0"]))
    c.append(("valid: multipliers -1e4,1e4", small + ["--layers", "2", "--multipliers=-1e4,1e4"]))
    if data_dir:
        c.append(("issue command (nan,0,1)", ["--dataset", "corrigible-neutral-HHH", "--data-dir", data_dir,
                                               "--layers", "2", "--n-train", "4", "--n-test", "4",
                                               "--multipliers", "nan,0,1"]))
    return c


def sane(stdout: str) -> bool:
    """The stored run of an accepted case: every number finite, the headline fraction equal to the flags."""
    import numpy as np

    from steering.core.results import load_run

    line = [l for l in stdout.splitlines() if l.startswith("run directory: ")]
    if not line:
        return False
    r = load_run(line[0].split(": ", 1)[1])
    s = r.steerability
    finite = np.isfinite(r.propensities.propensity).all() and np.isfinite(s.slope).all()
    table = r.layer_table()
    agree = all(abs(row.frac_anti - (s[s.layer == row.layer].slope <= 0).mean()) < 1e-12 for row in table.itertuples())
    flags = ((s.slope <= 0) == s.anti_steerable).all()
    return bool(finite and agree and flags)


def classic_cases(f: dict[str, Path], data_dir: str | None) -> list[Case]:
    """Issue 10's sweep cases (class 0): a refusal must leave nothing under --out; an acceptance sane numbers."""
    def judge(ctx: Ctx, procs: list[Proc]) -> str | None:
        p = procs[0]
        if p.rc == 0:
            return None if sane(p.out) else "silent wrong"
        left = sorted(x.name for x in ctx.out.iterdir()) if ctx.out.exists() else []
        return "noisy" if left else None

    out = []
    for label, argv in cases(f, data_dir):
        def cmd(ctx: Ctx, a: list[str] = argv) -> list[list[str]]:
            return [["sweep", *a, *([] if "--out" in a else ["--out", str(ctx.out)])]]

        out.append(Case(0, label, cmd, judge=judge, needs="smol", timeout=300))
    return out


def snapshot(root: Path, skip: list[Path]) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under ``root`` outside ``skip``: a change is a write outside --out."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = [n for n in dirnames if not any((d / n) == s for s in skip)]
        for n in filenames:
            p = d / n
            if any(p == s for s in skip):
                continue
            st = p.lstat()
            found[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return found


def echoed(ctx: Ctx, procs: list[Proc]) -> bool:
    """The secret beside the case (outside --out) appears in an output or in a stored file."""
    if any(SECRET in p.out + p.err for p in procs):
        return True
    for p in ctx.out.rglob("*") if ctx.out.exists() else []:
        if p.is_file() and p.stat().st_size < 5_000_000 and SECRET.encode() in p.read_bytes():
            return True
    return False


def run_commands(commands: list[list[str]], cwd: Path, env: dict, timeout: float) -> list[Proc]:
    """Start every command at once (concurrent writers), wait for all, kill what runs past ``timeout``."""
    t0 = time.time()
    started = [subprocess.Popen([sys.executable, "-m", "steering", *argv], cwd=cwd, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
               for argv in commands]
    procs = []
    for p in started:
        try:
            out, err = p.communicate(timeout=max(0.1, timeout - (time.time() - t0)))
            procs.append(Proc(p.returncode, out, err, time.time() - t0, False))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)  # its own session: the command and its children only
            out, err = p.communicate()
            procs.append(Proc(-9, out, err, time.time() - t0, True))
    return procs


def one_line_error(p: Proc) -> bool:
    lines = [x.split("\r")[-1].strip() for x in p.err.splitlines()]
    lines = [x for x in lines if x and not x.startswith(("[", "note: ", "warning: "))]
    return len(lines) == 1 and lines[0].startswith("error: ")


def classify(case: Case, ctx: Ctx, procs: list[Proc], before: dict, skip: list[Path]) -> tuple[str, str]:
    if any(p.timed_out for p in procs):
        return "hung", f"over {case.timeout:g} s"
    changed = sorted(set(snapshot(ctx.dir, skip).items()) - set(before.items()))
    if changed:
        return "escaped", f"wrote {changed[0][0]} outside --out"
    if echoed(ctx, procs):
        return "escaped", "echoed or stored a file from outside --out"
    try:
        verdict = case.judge(ctx, procs) if case.judge else None
    except Exception as e:  # noqa: BLE001 - a judge that cannot find the stored result
        verdict = "lost" if all(p.rc == 0 for p in procs) else "noisy"
        return verdict, f"judge: {type(e).__name__}: {str(e)[:80]}"
    if verdict in ("lost", "silent wrong"):
        return verdict, ""
    for p in procs:
        if "Traceback" in p.err or p.rc not in (0, 2):
            return "noisy", f"exit {p.rc}"
        if p.rc == 2 and not one_line_error(p):
            return "noisy", "exit 2 but not one 'error:' line"
    if verdict == "noisy":
        return "noisy", "a refusal left files under --out"
    if verdict == "refused":
        return "noisy", "refused an input that must be accepted"
    return "clean", ""


def make_seed(tmp: Path, env: dict) -> Path:
    """A store with the tiny studies 'good' and 'bad' (same cells), for the cases that need stored work."""
    seed = tmp / "seed"
    for name in ("good", "bad"):
        procs = run_commands([["study", "--name", name, "--datasets", SEED_DATASETS, *TINY, "--out", str(seed)]],
                             tmp, env, 600)
        if procs[0].rc != 0:
            raise SystemExit(f"could not build the seed store: {procs[0].err.strip()[-300:]}")
    return seed


def table(results: list[tuple[int, str, str, str]]) -> None:
    print(f"\n{'class':<52} {'cases':>5} " + " ".join(f"{k:>12}" for k in KINDS))
    for cls in sorted({r[0] for r in results}) + [None]:
        rows = [r for r in results if cls is None or r[0] == cls]
        name = "all" if cls is None else f"{cls} {CLASSES[cls]}"
        print(f"{name[:52]:<52} {len(rows):>5} " + " ".join(f"{sum(r[2] == k for r in rows):>12}" for k in KINDS))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=None)
    p.add_argument("--classes", default="0,1,2,3,4,5")
    p.add_argument("--only", default=None, help="run the cases whose label contains this text")
    args = p.parse_args()
    from steering.core.registry import REGISTRY, registry_gguf_path
    from steering.errors import ModelError

    try:
        smol = registry_gguf_path(REGISTRY["smollm2-135m"])
    except ModelError:
        smol = None
    classes = {int(c) for c in args.classes.split(",") if c.strip()}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STEERING_DEBUG": ""}
    not_ray = NotRay()
    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "classic").mkdir()
        every = classic_cases(files(tmp / "classic", smol), args.data_dir) + class1() + class2() + class3() \
            + class4(not_ray) + class5()
        chosen = [c for c in every
                  if c.cls in classes and (args.only is None or args.only in c.label)]
        have = {"smol": smol is not None, "data": bool(args.data_dir and Path(args.data_dir).is_dir())}
        seed = make_seed(tmp, env) if any(c.cls in (2, 5) for c in chosen) else tmp / "no-seed"
        for n, case in enumerate(chosen):
            if not all(have.get(x, True) for x in case.needs.split("+") if x):
                print(f"[{case.cls}] {case.label[:48]:<48} skipped (needs {case.needs})", flush=True)
                continue
            ctx = Ctx(tmp / f"case{n}", tmp / f"case{n}" / "out", seed, args.data_dir)
            (ctx.dir / "outside").mkdir(parents=True)
            (ctx.dir / "outside" / "secret.txt").write_text(SECRET)
            ctx.inputs.mkdir()
            if case.setup:
                case.setup(ctx)
            skip = [ctx.out, *case.may_write(ctx)]
            before = snapshot(ctx.dir, skip)
            procs = run_commands(case.commands(ctx), ctx.dir, {**env, **case.env}, case.timeout)
            kind, why = classify(case, ctx, procs, before, skip)
            last = next((x for x in reversed((procs[-1].err or procs[-1].out).strip().splitlines())), "")
            results.append((case.cls, case.label, kind, why))
            print(f"[{case.cls}] {case.label[:48]:<48} {kind:<12} rc={','.join(str(x.rc) for x in procs)} "
                  f"{max(x.seconds for x in procs):5.1f}s  {why or last.split(chr(13))[-1][:100]}", flush=True)
            shutil.rmtree(ctx.dir, ignore_errors=True)
    not_ray.sock.close()
    table(results)


if __name__ == "__main__":
    main()
