"""The ``export``, ``import`` and ``fetch`` subcommands (see steering.cli.main for the arguments).

Bad input prints one line and exits with code 2, like the other commands (steering.cli.common.guarded).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from steering.errors import ControlVectorError, DatasetError


def run(args) -> int:
    """One of the three commands; errors are reported by steering.cli.common.guarded like every command's."""
    if args.command == "export":
        return _export(args)
    if args.command == "import":
        return _import(args)
    return _fetch(args)


def _int_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise ControlVectorError(f"--layers '{text}': expected comma-separated layer numbers, e.g. 5,13") from None


def _export(args) -> int:
    run_dir = Path(args.run_dir)
    if not (run_dir / "manifest.json").is_file():
        raise ControlVectorError(f"{run_dir}: not a run directory (no manifest.json); `sweep` prints one")
    if args.format == "gguf":
        from steering.interop.controlvec import export_gguf

        path, layers = export_gguf(run_dir, args.to, _int_list(args.layers), force=args.force)
        print(f"wrote {path}: llama.cpp control vector, layers {', '.join(map(str, layers))} "
              f"(direction.N = output of block N, 0-based); use: llama-cli -m MODEL.gguf --control-vector {path}")
        return 0
    from steering.core.results import load_run
    from steering.interop.static_figures import write_figures

    try:
        result = load_run(run_dir)
    except (ValueError, OSError, KeyError, TypeError) as e:  # a damaged run directory the user named
        raise ControlVectorError(f"{run_dir}: not a readable run ({type(e).__name__})") from None
    layers = _int_list(args.layers)
    layer = layers[0] if layers else result.config.layers[0] if result.config.layers else result.layers[0]
    if layer not in result.layers:
        raise ControlVectorError(f"{run_dir}: layer {layer} is not in the run (layers {result.layers})")
    paths = write_figures(result, layer, args.format, args.to, force=args.force)
    print(f"wrote {len(paths)} file(s): {', '.join(map(str, paths))}")
    return 0


def _import(args) -> int:
    from steering.interop.controlvec import evaluate_vectors, read_vectors, to_safetensors

    vectors, info = read_vectors(args.file)
    print(f"{args.file}: {info['format']}, model {info['model'] or '(not recorded)'}, layers "
          f"{', '.join(map(str, info['layers']))}, size {next(iter(vectors.values())).numel()}")
    if args.to:
        vec, side = to_safetensors(args.file, args.to, force=args.force)
        print(f"wrote {vec} and {side}")
    settings = info.get("settings") or {}
    dataset_name = args.dataset or settings.get("dataset") or settings.get("dataset_name")
    if not dataset_name:
        if not args.to:
            print("no dataset recorded in the file: pass --dataset NAME to evaluate it")
        return 0
    from steering.cli.common import Bar, load_quietly
    from steering.core.config import SweepConfig, parse_multipliers
    from steering.core.datasets import load_dataset
    from steering.core.vectors import check_steering_scale

    known = {f.name for f in fields(SweepConfig)}
    cfg = SweepConfig(**{k: v for k, v in settings.items() if k in known})
    if args.dataset:
        cfg.dataset = args.dataset
    cfg.data_dir = args.data_dir
    cfg.layers = _int_list(args.layers) or info["layers"]
    if args.multipliers:
        cfg.multipliers = parse_multipliers(args.multipliers)
    for name in ("n_train", "n_test", "seed"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    try:
        cfg.validate()
    except TypeError as e:  # a recorded setting of the wrong type (e.g. a text where a number belongs)
        raise ControlVectorError(f"{args.file}: the settings recorded in the file are not usable ({e})") from None
    ds = load_dataset(cfg.dataset, cfg.data_dir)
    model = args.model or info["model"] or settings.get("model")
    if not model:
        raise ControlVectorError("no model recorded in the file: pass --model")
    cfg.model = model
    check_steering_scale({l: vectors[l] for l in (cfg.layers or sorted(vectors)) if l in vectors}, cfg.multipliers)
    lm = load_quietly(model, device=args.device)
    bar = Bar()
    try:
        result = evaluate_vectors(args.file, lm, ds, cfg, out=args.out, progress=bar)
    finally:
        bar.close()
    print(f"model {lm.name} | dataset {ds.name} | test {cfg.n_test} | imported {info['format']} vectors"
          f"{' | from store' if result.cached else ''}")
    print(f"{'layer':>5} {'mean slope':>11} {'median':>8} {'anti-steerable':>15}")
    for r in result.layer_table().itertuples():
        print(f"{r.layer:>5} {r.mean_slope:>11.3f} {r.median_slope:>8.3f} {r.frac_anti:>15.1%}")
    print(f"run directory: {result.run_dir}")
    return 0


def _fetch(args) -> int:
    from steering.core import sources

    cache = Path(args.cache_dir).expanduser() if args.cache_dir else sources.DEFAULT_CACHE_DIR
    registry = args.registry or sources.REGISTRY_PATH
    known = sources.list_sources(registry)
    # 'paper' is the paper's datasets: the neutral prose for side effects is fetched by its own name
    names = [s.name for s in known if s.group != "neutral"] if args.name == "paper" else [args.name]
    done = []
    for name in names:
        try:
            done.append(sources.fetch(name, cache, registry=registry))
        except DatasetError as e:
            if "download from" in str(e) and "failed" in str(e):
                why = str(e).split("failed", 1)[-1].strip()
                raise DatasetError(f"cannot download {name}: no internet connection? {why}; "
                                   f"{len(done)} of {len(names)} source(s) are in {cache}") from None
            raise
    if names and all(s.group == "neutral" for s in known if s.name in names):
        print(f"neutral text verified: {done[0]}; use it with `sweep ... --side-effects --text {names[0]}`")
        return 0
    print(f"{len(done)} dataset file(s) verified in {cache}; list them with "
          f"`python -m steering datasets --data-dir {cache}` (the dashboard uses it as its default data directory)")
    return 0
