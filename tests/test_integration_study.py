"""A study on SmolLM2 over three public datasets x id,ood: one training per dataset, tables consistent
with the runs, the CLI's table and Spearman lines, and a second run served from the store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steering.analyses.study import stats as study_stats
from steering.analyses.study.compute import run_study
from steering.analyses.study.spec import make_spec
from steering.cli import main as cli
from steering.run import sweep

pytestmark = pytest.mark.integration
DATASETS = "corrigible-neutral-HHH,subscribes-to-deontology,myopic-reward"


def test_study_on_smollm2_three_datasets(smollm, shared_datasets, tmp_path, monkeypatch, capsys):
    calls = []
    real = sweep.train_vectors
    monkeypatch.setattr(sweep, "train_vectors", lambda *a, **k: calls.append(1) or real(*a, **k))
    spec = make_spec("integ", "smollm2-135m", DATASETS, "id,ood", "0.4", str(shared_datasets), n_train=16, n_test=10)
    study = run_study(spec, tmp_path, models={"smollm2-135m": smollm})
    assert study.layer("smollm2-135m") == 12 and len(study.meta["cells"]) == 15 and len(calls) == 3
    d = study.datasets
    assert len(d) == 15 and (d.n == 10).all() and set(d.layer) == {12}
    pd.testing.assert_frame_equal(d, study_stats.dataset_rows(study.examples))
    persona = d[d.dataset == "subscribes-to-deontology"]
    assert (persona.share_yes >= 0).all()  # persona items carry the Yes/No factor, A/B items do not
    assert (d[d.dataset == "myopic-reward"].share_yes == 0).all()
    assert np.allclose(d.share_ab + d.share_yes + d.share_unexplained, 1)
    # the CLI reads the same study back from the store and prints its tables
    rc = cli.main(
        [
            "study",
            "--name",
            "integ",
            "--datasets",
            DATASETS,
            "--data-dir",
            str(shared_datasets),
            "--variants",
            "id,ood",
            "--layer",
            "0.4",
            "--n-train",
            "16",
            "--n-test",
            "10",
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and len(calls) == 3
    assert out.count("sorted by median steerability") == 5 and "BASE->BASE vs BASE->SYS_POS" in out
    assert f"study directory: {study.path}" in out
