"""Contrastive A/B datasets: discovery by name, loading, uploads and train/test splits.

The item types and the parsing of every supported format are in ``dataset_formats``;
they are re-exported here, so callers import one module. No torch and no Streamlit here.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from steering.core.dataset_formats import (  # noqa: F401 - re-exported
    EXTENSIONS,
    MULTI_OPTION_MODES,
    Dataset,
    DatasetInfo,
    Example,
    _parse,
)
from steering.errors import DatasetError  # noqa: F401 - re-exported

__all__ = [
    "DEFAULT_DATASET",
    "MAX_UPLOAD_BYTES",
    "BUNDLED_DIR",
    "DatasetError",
    "Example",
    "Dataset",
    "DatasetInfo",
    "load_dataset",
    "list_datasets",
    "list_unreadable",
    "MULTI_OPTION_MODES",
    "split_dataset",
    "parse_bytes",
]

BUNDLED_DIR = Path(__file__).resolve().parents[2] / "data"
_SOURCE_REGISTRY = BUNDLED_DIR / "sources.json"
NOT_CONCEPTS = ("mc", "neutral")  # side-effect data (capability set, neutral text), not concepts to steer
DEFAULT_DATASET = "corrigibility-demo"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # uploads are parsed in memory; bound them


# ---------------------------------------------------------------- files and names


def _caa_pair(path: Path) -> tuple[Path, Path] | None:
    """(generate, test) files when `path` is either half of a CAA split on disk."""
    concept, split_dir, root = path.parent.name, path.parent.parent.name, path.parent.parent.parent
    gen = root / "generate" / concept / "generate_dataset.json"
    test = root / "test" / concept / "test_dataset_ab.json"
    if (split_dir, path.name) in (("generate", gen.name), ("test", test.name)) and gen.is_file() and test.is_file():
        return gen, test
    return None


def _name_for(path: Path) -> str:
    if path.parent.parent.name in ("generate", "test") and path.name.startswith(("generate_dataset", "test_dataset")):
        concept = path.parent.name  # CAA: datasets/{generate,test}/<concept>/...
        return concept if path.name in ("generate_dataset.json", "test_dataset_ab.json") else f"{concept}-{path.stem}"
    return "truthfulqa" if path.stem == "mc_task" else path.stem


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: is a directory, not a dataset file") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read file ({e.strerror or e})") from None


def _load_path(path: Path, multi_option: str = "pair") -> Dataset:
    path = path.absolute()
    if path.is_dir():
        raise DatasetError(f"{path}: is a directory, not a dataset file")
    files = _caa_pair(path) or (path,)
    try:
        key = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    except OSError as e:
        raise DatasetError(f"{path}: cannot read file ({e.strerror or e})") from None
    for f, _, size in key:  # files on disk get the same limit as uploads
        if size > MAX_UPLOAD_BYTES:
            raise DatasetError(f"{f}: file is {size / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB")
    return _load_cached(key, multi_option)


@lru_cache(maxsize=128)  # keyed on (path, mtime, size): re-parses only changed files
def _load_cached(key: tuple[tuple[str, int, int], ...], multi_option: str = "pair") -> Dataset:
    files = [Path(k[0]) for k in key]
    name = _name_for(files[0])
    if len(files) == 1:
        return _parse(_read(files[0]), files[0].name, str(files[0]), name, multi_option)
    gen_bytes, test_bytes = _read(files[0]), _read(files[1])
    train = _parse(gen_bytes, files[0].name, str(files[0]), name)
    test = _parse(test_bytes, files[1].name, str(files[1]), name)
    renumbered = tuple(
        dataclasses.replace(e, example_id=f"{name}:{len(train) + i}") for i, e in enumerate(test.examples)
    )
    digest = hashlib.sha256(gen_bytes + test_bytes).hexdigest()  # fixed order: generate, then test
    return Dataset(name, str(files[0]), train.kind, digest, train.examples + renumbered, (len(train), len(test)))


def _roots(data_dir: str | Path | None, include_bundled: bool = True) -> list[tuple[Path, bool]]:
    roots: list[tuple[Path, bool]] = []
    if data_dir is not None:
        root = Path(data_dir).expanduser().absolute()
        if not root.is_dir():
            raise DatasetError(f"{root}: data directory does not exist")
        roots.append((root, root == BUNDLED_DIR))
    if include_bundled and BUNDLED_DIR.is_dir() and all(r != BUNDLED_DIR for r, _ in roots):
        roots.append((BUNDLED_DIR, True))
    return roots


def _candidates(root: Path) -> Iterator[tuple[str, Path]]:
    """(name, path) of files that may be datasets, in a stable order."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if any(p.startswith(".") for p in rel) or path.suffix.lower() not in EXTENSIONS or not path.is_file():
            continue
        if root == BUNDLED_DIR and (len(rel) == 1 or rel[0] in NOT_CONCEPTS):
            continue  # data/*.json are registries (sources, paper datasets); mc/ and neutral/ are not concepts
        pair = _caa_pair(path)
        if pair and path == pair[1]:
            continue  # the test half is listed through its generate file
        yield _name_for(path), path


# ---------------------------------------------------------------- public API


def list_datasets(data_dir: str | Path | None = None, include_bundled: bool = True) -> list[DatasetInfo]:
    """Every parseable dataset under data_dir (recursive) and the bundled data/, sorted by name.

    Files that cannot be read as datasets are left out here and listed, with
    the reason, by ``list_unreadable``.
    """
    infos = []
    for root, bundled in _roots(data_dir, include_bundled):
        for _, path in _candidates(root):
            try:
                ds = _load_path(path)
            except DatasetError:
                continue
            infos.append(DatasetInfo(ds.name, str(path), ds.kind, len(ds), "bundled" if bundled else path.parent.name,
                                     ds.n_multi_option))
    return sorted(infos, key=lambda d: (d.name, d.group, d.path))


def list_unreadable(data_dir: str | Path | None = None, include_bundled: bool = True) -> list[tuple[str, str, str]]:
    """(name, path, reason) of every candidate file under data_dir and the bundled data/ that does not parse."""
    out = []
    for root, _ in _roots(data_dir, include_bundled):
        for name, path in _candidates(root):
            if path.resolve() == _SOURCE_REGISTRY:
                continue  # the project's own download registry, not a dataset
            try:
                _load_path(path)
            except DatasetError as e:
                out.append((name, str(path), str(e).removeprefix(f"{path.absolute()}").lstrip(": ") or str(e)))
    return sorted(out, key=lambda t: (t[0], t[1]))


def load_dataset(name_or_path: str | Path, data_dir: str | Path | None = None, multi_option: str = "pair") -> Dataset:
    """Load a dataset file, or a dataset by name from data_dir (recursive), then the bundled data/.

    ``multi_option``: items with three or more options become an A/B pair of the matching
    and the named non-matching option ("pair"), or keep every option ("keep").
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    roots = _roots(data_dir)
    looks_like_path = isinstance(name_or_path, Path) or path.suffix.lower() in EXTENSIONS or "/" in text or "\\" in text
    if path.is_file():
        return _load_path(path, multi_option)
    if looks_like_path:
        for root, _ in roots:  # a path relative to the data directory
            if (root / path).is_file():
                return _load_path(root / path, multi_option)
        if path.is_dir():
            raise DatasetError(f"{path}: is a directory, not a dataset file")
        raise DatasetError(f"{path}: no such file")
    for root, _ in roots:
        for name, candidate in _candidates(root):
            if name == text:
                return _load_path(candidate, multi_option)  # a broken file of that name reports its own error
    names = sorted({n for root, _ in roots for n, _ in _candidates(root)})
    hint = difflib.get_close_matches(text, names, n=5) or names[:8]
    where = f"{data_dir} or the bundled data" if data_dir is not None else "the bundled data (pass data_dir=...)"
    raise DatasetError(f"unknown dataset '{text}' in {where}; available include: {', '.join(hint) or '(none)'}")


def default_split(ds: Dataset) -> tuple[int, int]:
    """Paper sizes (100 train, 50 test) where the dataset is large enough, else half and half."""
    if ds.fixed_split is not None:
        return max(1, min(100, ds.fixed_split[0])), max(1, min(50, ds.fixed_split[1]))
    n_test = max(1, min(50, len(ds) // 2))
    return max(1, min(100, len(ds) - n_test)), n_test


def split_dataset(ds: Dataset, n_train: int, n_test: int, seed: int = 0,
                  balance_train: bool = False) -> tuple[list[Example], list[Example]]:
    """Disjoint, seeded train/test split; a source's own split (CAA) is respected.

    The paper's code overlapped train and test by accident; here test items are
    drawn after the train items of one permutation, so they never overlap.
    ``balance_train`` takes as many positive-is-A as positive-is-B training
    items, so the A-minus-B letter direction cancels in a mean-difference vector.
    """
    if n_train < 0 or n_test < 0:
        raise DatasetError(f"{ds.name}: n_train={n_train} and n_test={n_test} must be >= 0")
    rng = np.random.default_rng(seed)
    if ds.fixed_split is not None:
        n_tr, n_te = ds.fixed_split
        if n_train > n_tr or n_test > n_te:
            raise DatasetError(
                f"{ds.name}: n_train={n_train}, n_test={n_test} but its fixed split has "
                f"{n_tr} train and {n_te} test items (len {len(ds)})"
            )
        train_pool = rng.permutation(n_tr)
        test_idx = n_tr + rng.permutation(n_te)[:n_test]
    else:
        if n_train + n_test > len(ds):
            raise DatasetError(
                f"{ds.name}: n_train={n_train} + n_test={n_test} exceeds its {len(ds)} items; "
                f"choose sizes that add up to at most {len(ds)}"
            )
        train_pool = rng.permutation(len(ds))
    if balance_train:
        train_idx = _balanced(ds, train_pool, n_train)
    else:
        train_idx = train_pool[:n_train]
    if ds.fixed_split is None:
        chosen = set(train_idx.tolist())
        test_idx = np.array([i for i in train_pool if i not in chosen][:n_test], dtype=int)
    return [ds.examples[i] for i in train_idx], [ds.examples[i] for i in test_idx]


def _balanced(ds: Dataset, order: np.ndarray, n: int) -> np.ndarray:
    """The first n//2 positive-is-A and n - n//2 positive-is-B items of ``order``, in that order."""
    a = [i for i in order if ds.examples[i].pos_is_A][: n // 2]
    b = [i for i in order if not ds.examples[i].pos_is_A][: n - n // 2]
    if len(a) < n // 2 or len(b) < n - n // 2:
        raise DatasetError(f"{ds.name}: cannot balance {n} training items by answer letter "
                           f"(pool has too few positive-is-{'A' if len(a) < n // 2 else 'B'} items)")
    picked = set(a) | set(b)
    return np.array([i for i in order if i in picked], dtype=int)


def parse_bytes(data: bytes, filename: str, multi_option: str = "pair") -> Dataset:
    """Parse an uploaded file held in memory (kind detected from content and extension)."""
    name = Path(filename).name
    if len(data) > MAX_UPLOAD_BYTES:
        raise DatasetError(
            f"{name}: upload is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES // (1024 * 1024)} MB"
        )
    return _parse(data, name, name, _name_for(Path(name)), multi_option)


def repeated_items(train: list[Example], test: list[Example]) -> list[str]:
    """Test items whose question and options also appear among the training items (duplicates in the
    source file): a vector trained on an item and measured on it again overstates how it generalises."""
    seen = {(e.question.strip(), e.positive, e.negative) for e in train}
    return [e.example_id for e in test if (e.question.strip(), e.positive, e.negative) in seen]
