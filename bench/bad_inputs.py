"""Run hostile and careless inputs through the real CLI (one process each) and count the outcomes.

    .venv/bin/python bench/bad_inputs.py [--data-dir ../shared/datasets]

Each case is classified: one-line error (exit 2, exactly one stderr line starting 'error: '),
traceback, accepted (exit 0), or other (anything else: several lines, another exit code).
Nothing is left under the case's --out directory when it is rejected (checked).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from steering.core.registry import REGISTRY, registry_gguf_path
    from steering.errors import ModelError

    try:
        smol = registry_gguf_path(REGISTRY["smollm2-135m"])
    except ModelError:
        smol = None
    counts = {"one-line error": 0, "traceback": 0, "accepted": 0, "silent wrong result": 0, "other": 0}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        f = files(tmp, smol)
        rows = []
        for label, argv in cases(f, args.data_dir):
            out = tmp / "out"
            if "--out" not in argv:
                argv = argv + ["--out", str(out)]
            t0 = time.time()
            proc = subprocess.run([sys.executable, "-m", "steering", "sweep", *argv], cwd=ROOT,
                                  capture_output=True, text=True)
            secs = time.time() - t0
            err = proc.stderr.strip().splitlines()
            if "Traceback" in proc.stderr:
                kind = "traceback"
            elif proc.returncode == 2 and len(err) == 1 and err[0].startswith("error: "):
                kind = "one-line error"
            elif proc.returncode == 0:
                kind = "accepted" if sane(proc.stdout) else "silent wrong result"
            else:
                kind = "other"
            left = sorted(p.name for p in out.iterdir()) if out.exists() else []
            if kind != "accepted" and left:
                kind = "other"
            counts[kind] += 1
            rows.append((label, kind, proc.returncode, secs, (err[-1] if err else "")[:110], left))
            print(f"{label[:38]:<38} {kind:<15} rc={proc.returncode} {secs:5.1f}s  {rows[-1][4]}"
                  f"{'  LEFT ' + str(left) if left else ''}", flush=True)
            import shutil

            shutil.rmtree(out, ignore_errors=True)
    print(f"\n{len(rows)} cases: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
