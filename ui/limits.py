"""How much work one visitor may start in the shared-demo mode: every bound in one place.

Each bound is an environment variable read when used (a bad value is one line naming it); the README's
"Serving a demo" lists them. ``ui.demo`` applies them only in demo mode; ``make run`` is unbounded.
Pure checks (no Streamlit), so they are unit-tested directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from steering.core.config import env_int
from steering.errors import SweepError

# name -> (environment variable, default). Defaults let the bundled and Figure-1 ID studies, a full
# sweep of the registry models (30 and 18 layers) and the paper's 100/50 split run as they are.
BOUNDS = {
    "cells": ("STEERING_DEMO_MAX_CELLS", 40),  # models x concepts x variant pairs of one study
    "items": ("STEERING_DEMO_MAX_ITEMS", 200),  # n_train and n_test, each
    "layers": ("STEERING_DEMO_MAX_LAYERS", 32),  # layers of one sweep (the Layer sweep page sweeps them all)
    "multipliers": ("STEERING_DEMO_MAX_MULTIPLIERS", 15),  # points of the multiplier grid
    "concepts": ("STEERING_DEMO_MAX_CONCEPTS", 8),  # concepts of an entanglement matrix (n x n cells)
    "jobs": ("STEERING_DEMO_JOBS", 1),  # long computations running at once; the others wait in a queue
}
RAY_ENV = "STEERING_ALLOW_RAY"  # the Ray executor starts processes: only when the operator says so


@dataclass(frozen=True)
class Limits:
    cells: int
    items: int
    layers: int
    multipliers: int
    concepts: int
    jobs: int
    ray: bool

    @classmethod
    def from_env(cls) -> "Limits":
        ray = os.environ.get(RAY_ENV, "").strip().lower() in ("1", "true", "yes", "on")
        return cls(ray=ray, **{name: env_int(var, default) for name, (var, default) in BOUNDS.items()})

    def _over(self, what: str, n: int, bound: str) -> None:
        limit = getattr(self, bound)
        if n > limit:
            raise SweepError(f"{what} is {n}; this server allows at most {limit} "
                             f"(the operator sets {BOUNDS[bound][0]})")

    def check_items(self, n_train: int, n_test: int) -> None:
        self._over("the number of training items", int(n_train), "items")
        self._over("the number of test items", int(n_test), "items")

    def check_sweep(self, n_layers: int, n_train: int, n_test: int, n_multipliers: int) -> None:
        """One sweep (a run, diagnostics, an imported vector's evaluation, side effects of a run)."""
        self._over("the number of layers to sweep", n_layers, "layers")
        self.check_items(n_train, n_test)
        self._over("the number of multipliers", n_multipliers, "multipliers")

    def check_study(self, n_cells: int, n_train: int, n_test: int, n_multipliers: int, executor: str) -> None:
        self._over("the number of cells of this study (models x concepts x variant pairs)", n_cells, "cells")
        self.check_items(n_train, n_test)
        self._over("the number of multipliers", n_multipliers, "multipliers")
        if executor != "local" and not self.ray:
            raise SweepError(f"the {executor} executor is not offered on this server: use local "
                             f"(the operator allows Ray with {RAY_ENV}=1)")

    def check_concepts(self, n: int) -> None:
        self._over("the number of concepts of the entanglement matrix", n, "concepts")
