"""A study on SmolLM2 over three public datasets x id,ood: one training per dataset, tables consistent
with the runs, the CLI's table and Spearman lines, and a second run served from the store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_study_shares import _direct_r2

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
    # Spurious shares against a direct least-squares fit of each cell's slopes (test_study._direct_r2).
    ex = study.examples
    for row in d.itertuples():
        g = ex[(ex.dataset == row.dataset) & (ex.test_variant == row.test_variant)]
        s, a = g.slope.to_numpy(dtype=float), g.pos_is_A.to_numpy(dtype=float)
        yes = pd.to_numeric(g.pos_is_yes, errors="coerce").to_numpy(dtype=float)
        assert a.std() > 0 and row.share_ab == pytest.approx(_direct_r2(s, [a]))
        if row.dataset == "subscribes-to-deontology":  # persona items carry the Yes/No factor
            assert yes.std() > 0 and row.share_why == ""
            assert row.share_yes == pytest.approx(_direct_r2(s, [a, yes]) - _direct_r2(s, [a]))
            assert row.share_unexplained == pytest.approx(1 - _direct_r2(s, [a, yes]))
        else:  # A/B items have no Yes/No answer: that share is undefined (NaN with a reason), not 0
            assert np.isnan(row.share_yes) and "Yes/No share undefined: no item has" in row.share_why
            assert row.share_unexplained == pytest.approx(1 - _direct_r2(s, [a]))
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
