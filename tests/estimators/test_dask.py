"""A search runs unchanged on a Dask cluster through joblib's Dask backend (issue #6).

Needs the ``dask`` extra (``pip install -e ".[dask]"``); skipped without it.
"""

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.model_selection import GridSearchCV

from sk_ecprune.estimators import PrunedMLPClassifier

distributed = pytest.importorskip("distributed", reason="needs the dask extra")


def _torch_threads():
    return torch.get_num_threads()


def test_grid_search_on_a_local_dask_cluster_equals_the_serial_search(tmp_path):
    X, y = make_blobs(n_samples=60, n_features=4, centers=3, random_state=0)
    est = PrunedMLPClassifier(
        hidden_layer_sizes=(8,), max_epochs=3, finetune_epochs=2, lr=1e-2, random_state=0
    )
    grid = {"prune_ratio": [0.0, 0.5, 0.8]}
    serial = GridSearchCV(est, grid, cv=2, n_jobs=1).fit(X, y)

    # Real worker processes, reachable on the loopback interface only. The dense stage is
    # cached in a directory all workers share (here the local disk).
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster, distributed.Client(cluster) as client:
        # Dask's nanny starts workers with OMP_NUM_THREADS=1: one torch thread per task,
        # so 2 workers x 1 task x 1 thread never oversubscribe the cores.
        assert set(client.run(_torch_threads).values()) == {1}
        search = GridSearchCV(clone(est).set_params(memory=str(tmp_path)), grid, cv=2)
        with distributed.get_task_stream(client) as tasks, joblib.parallel_backend("dask"):
            search.fit(X, y)
        assert len(tasks.data) > 0  # the fits ran on the cluster
        workers = {task["worker"] for task in tasks.data}
        assert workers <= set(client.scheduler_info()["workers"])

    assert len(list(tmp_path.rglob("output.pkl"))) == 3  # 2 folds + the refit
    # The workers run one torch thread, this process more: other kernels, so the networks
    # agree up to rounding (far below the 1e-2 a wrong fit would change). The accuracies of
    # well-separated blobs do not move with rounding.
    for key in ("split0_test_score", "split1_test_score", "mean_test_score", "rank_test_score"):
        np.testing.assert_array_equal(search.cv_results_[key], serial.cv_results_[key])
    assert search.best_params_ == serial.best_params_
    np.testing.assert_allclose(search.predict_proba(X), serial.predict_proba(X), rtol=1e-5)
