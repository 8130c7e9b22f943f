"""Run a study's cells as Ray tasks; the driver alone writes the store.

One actor per model loads it once and serves every cell of that model. A cell's
vectors are trained once per group (same model, dataset, train variant, split,
aggregator, seed): the actor keeps each group's trained vectors in memory, so
workers need no shared disk. Workers return ``sweep.RunOutputs`` (tables and
vectors on the CPU); the driver writes each with ``sweep.store_run`` as it
arrives, so a cell finished before a crash or a lost worker is never
recomputed. A lost actor is restarted by Ray and its pending cells retried
(``max_restarts`` / ``max_task_retries``); if Ray gives up, the driver
resubmits the cell to a fresh actor a bounded number of times.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable

from steering.core.config import SweepConfig, settings_of
from steering.core.datasets import Dataset
from steering.core.results import SweepResult, load_run
from steering.core.store import find_run
from steering.errors import SweepError

# progress(phase, done, total) as executors reports it: "cell 3/6 · <dataset> BASE->SYS_POS · stored", 1, 1.
# Cells arrive as workers finish them, so k counts cells stored so far (the study's fraction only grows).
CellProgress = Callable[[str, int, int], None]
CONNECT_TIMEOUT_S = 5.0  # an unreachable --ray-address fails within this, not after Ray's long retries
RESUBMITS = 2  # driver-side resubmissions of a cell after Ray's own retries are spent
ACTOR_PREFIX = "steering-model-"
CRASH_ONCE_ENV = "STEERING_RAY_CRASH_ONCE"  # a marker file path: the worker that finds it removes it and dies


class ModelWorker:
    """A model loaded once on a Ray worker; computes cells and never writes anything."""

    def __init__(self, model: str):
        from steering.engine.models import load_model
        from steering.engine.tiny import TINY_MODEL, tiny_random_model

        self.lm = tiny_random_model() if model == TINY_MODEL else load_model(model)
        self.trained: dict[str, dict] = {}  # train_key -> every layer's vectors
        self.computed = 0  # cells this incarnation computed (tests read it)

    def compute(self, cfg: SweepConfig, ds: Dataset):
        from steering.run import sweep

        crash = os.environ.get(CRASH_ONCE_ENV)
        if crash and os.path.exists(crash):  # fault injection for tests: this worker dies mid-study, once
            os.remove(crash)
            os._exit(1)

        key = sweep.train_key(cfg, ds, self.lm.name)
        reused = key in self.trained
        if not reused:
            train_ex = sweep.split_of(cfg, ds).train  # the run's own training items
            pairs = sweep.encode_all(self.lm, train_ex, cfg, ds.name, "train")
            self.trained[key], _ = sweep.trained_vectors(self.lm, ds, cfg, train_ex, pairs, out=None)
        outputs = sweep.compute_run(cfg, self.lm, ds, out=None, vectors=self.trained[key])
        outputs.manifest["vectors_reused"] = reused
        # The driver may have no GPU: ship CPU tensors.
        outputs.vectors = {l: v.detach().cpu() for l, v in outputs.vectors.items()}
        self.computed += 1
        return outputs

    def stats(self) -> dict:
        return {"computed": self.computed, "pid": os.getpid(), "device": str(self.lm.device)}


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _speaks_grpc(host: str, port: int, timeout: float) -> str | None:
    """None when HOST:PORT answers the HTTP/2 preface with a SETTINGS frame, as Ray's gRPC server does; else
    why not. Ray's own join has no timeout: a port that accepts but is not Ray would hang it for minutes."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(HTTP2_PREFACE + bytes.fromhex("000000040000000000"))  # preface + an empty SETTINGS frame
            head = b""
            while len(head) < 9:
                chunk = s.recv(9 - len(head))
                if not chunk:
                    return "it closed the connection: not a Ray (gRPC) server"
                head += chunk
    except TimeoutError:
        return f"it did not answer within {timeout:g} s"
    except OSError as e:
        return e.strerror or str(e)
    if head[3] != 0x04:  # frame type 4 = SETTINGS
        return "it answered, but not as a Ray (gRPC) server"
    return None


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within ``timeout`` seconds (name lookup included) with one line when HOST:PORT is not a Ray
    cluster: it does not answer, or answers but does not speak gRPC (Ray itself would retry or hang)."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise SweepError(f"cannot read --ray-address '{address}': use auto or HOST:PORT, e.g. 127.0.0.1:6379")
    why: list[str | None] = []
    probe = threading.Thread(target=lambda: why.append(_speaks_grpc(host.strip("[]"), int(port), timeout)),
                             daemon=True)
    probe.start()
    probe.join(timeout + 0.5)  # a name lookup cannot be given a timeout: the thread bounds it
    reason = why[0] if why else f"no answer within {timeout:g} s"
    if reason is not None:
        raise SweepError(f"cannot reach the Ray cluster at {address} ({reason}): "
                         "start one with `ray start --head` or check the address")


def _token_mode() -> None:
    """`ray start` turns on token authentication when a token exists (~/.ray/auth_token); a driver joining
    the cluster sends it only in token mode, read when Ray is imported. Mode unset and a token at hand: use it."""
    token = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or \
        (Path.home() / ".ray" / "auth_token").exists()
    if token and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        try:  # Ray already imported (the dashboard's process): refresh the config it cached
            from ray._private.authentication.authentication_token_setup import Config

            Config.initialize("")
        except Exception:  # noqa: BLE001 - older/newer Ray without it: the env var alone is read at import
            pass


def connect(ray_address: str | None, num_cpus: int | None) -> bool:
    """Join the cluster at ``ray_address`` (or start a local one); True when this call started Ray."""
    if ray_address:
        _token_mode()
    try:
        import ray
    except ImportError:
        raise SweepError("the ray executor needs Ray: pip install -r requirements.txt") from None
    if ray_address:
        check_reachable(ray_address)
    if ray.is_initialized():
        return False
    env = runtime_env()
    if ray_address:
        try:
            ray.init(address=ray_address, runtime_env=env, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise SweepError(f"cannot join the Ray cluster at {ray_address}: {str(e).splitlines()[0]}") from None
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=env, log_to_driver=False)
    return True


def runtime_env() -> dict:
    """Ship the steering package itself to the workers: they need its dependencies, not this checkout."""
    return {"py_modules": [str(Path(__file__).resolve().parents[2])]}


def _actor_options(ray) -> dict:
    """One GPU per actor where the cluster has GPUs, else one CPU; restarted and retried when lost."""
    gpus = ray.cluster_resources().get("GPU", 0)
    need = {"num_gpus": 1, "num_cpus": 0} if gpus >= 1 else {"num_cpus": 1}
    return {**need, "max_restarts": 3, "max_task_retries": 3}


_ACTORS: dict[tuple[str, str], object] = {}  # (Ray job, model) -> handle: keeps the loaded model across studies


def _actor(ray, model: str, options: dict, fresh: bool = False):
    """The model's actor in this Ray session (a non-detached actor lives while a handle does)."""
    key = (ray.get_runtime_context().get_job_id(), model)
    if fresh or key not in _ACTORS:
        cls = ray.remote(ModelWorker)
        _ACTORS[key] = cls.options(name=ACTOR_PREFIX + model, get_if_exists=True, **options).remote(model)
    return _ACTORS[key]


def run_groups_ray(groups: list[list[SweepConfig]], out: str | Path, datasets: dict[str, Dataset],
                   progress: CellProgress | None = None, ray_address: str | None = None,
                   num_cpus: int | None = None) -> list[list[SweepResult]]:
    """Every cell of every group, computed on Ray and stored by this process; same order as ``groups``."""
    for group in groups:
        for cfg in group:
            if cfg.layers is None:
                raise SweepError("a study cell needs its layers set explicitly for the ray executor")
            if cfg.dataset not in datasets:
                raise SweepError(f"no loaded dataset for '{cfg.dataset}'")
    results: list[list[SweepResult | None]] = [[None] * len(g) for g in groups]
    todo = []
    for gi, group in enumerate(groups):
        for ci, cfg in enumerate(group):
            cfg.validate()
            stored = find_run(out, settings_of(cfg, datasets[cfg.dataset], cfg.layers))
            if stored is not None:
                results[gi][ci] = load_run(stored, cached=True)
            else:
                todo.append((gi, ci))
    total = sum(len(g) for g in groups)
    done = 0

    def report(gi: int, ci: int) -> None:
        nonlocal done
        done += 1
        if progress:
            cfg = groups[gi][ci]
            progress(f"cell {done}/{total} · {datasets[cfg.dataset].name} {cfg.train_variant}->{cfg.test_variant}"
                     " · stored", 1, 1)

    for gi, group in enumerate(groups):
        for ci in range(len(group)):
            if results[gi][ci] is not None:
                report(gi, ci)
    if not todo:
        return results  # type: ignore[return-value]

    started = connect(ray_address, num_cpus)
    import ray

    try:
        options = _actor_options(ray)
        ds_refs = {name: ray.put(ds) for name, ds in datasets.items()}

        def submit(gi: int, ci: int, fresh: bool = False):
            cfg = groups[gi][ci]
            return _actor(ray, cfg.model, options, fresh).compute.remote(cfg, ds_refs[cfg.dataset])

        # Submission order = execution order on each actor: a group's first cell trains, the rest reuse.
        pending = {submit(gi, ci): (gi, ci, 0) for gi, ci in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            gi, ci, tries = pending.pop(ref)
            try:
                outputs = ray.get(ref)
            except ray.exceptions.RayTaskError as e:  # the cell itself failed: its own message
                cause = e.cause if getattr(e, "cause", None) is not None else e
                raise SweepError(f"cell {groups[gi][ci].dataset} / {groups[gi][ci].test_variant} failed: "
                                 f"{str(cause).splitlines()[0]}") from None
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                    ray.exceptions.ObjectLostError) as e:
                if tries >= RESUBMITS:
                    raise SweepError(f"a Ray worker was lost {tries + 1} times on one cell: "
                                     f"{str(e).splitlines()[0]}") from None
                time.sleep(0.5)  # a fresh actor (named: reattaches if Ray restarted it)
                pending[submit(gi, ci, fresh=True)] = (gi, ci, tries + 1)
                continue
            from steering.run.sweep import store_run

            results[gi][ci] = store_run(out, outputs)
            report(gi, ci)
    finally:
        if started:
            _ACTORS.clear()
            ray.shutdown()
    return results  # type: ignore[return-value]
