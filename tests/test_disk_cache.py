"""The report's on-disk cache (``analysis.disk_cache``) and where a run's artifacts lie on this
machine (``run_layout.local_artifact_dir``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from farfield.analysis import run_layout
from farfield.analysis.disk_cache import cache_key, cached_array, cached_table


def test_a_cached_table_is_computed_once_and_read_back_equal(tmp_path):
    calls = []
    table = pd.DataFrame({"structure_id": ["a", "b"], "atom": [0, 1], "q_pred": [0.25, -0.25],
                          "q_ref": [np.nan, 0.1]})

    def compute():
        calls.append(1)
        return table

    path = tmp_path / "sub" / "charges.parquet"
    first = cached_table(path, compute)
    second = cached_table(path, compute)
    assert len(calls) == 1 and path.is_file()
    pd.testing.assert_frame_equal(first, second, check_dtype=False)
    assert [p.name for p in path.parent.iterdir()] == ["charges.parquet"]  # no temporary file left
    assert cached_table(None, compute) is table and len(calls) == 2


def test_a_cached_array_is_computed_once_and_a_failed_write_leaves_nothing(tmp_path):
    labels = np.array([0, 2, 1, -1], dtype=np.int64)
    path = tmp_path / "clusters.npy"
    assert np.array_equal(cached_array(path, lambda: labels), labels)
    assert np.array_equal(cached_array(path, lambda: pytest.fail("recomputed")), labels)

    def broken():
        return np.array([object()], dtype=object)  # np.save refuses objects without pickle

    with pytest.raises(ValueError):
        cached_array(tmp_path / "bad.npy", broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clusters.npy"]


def test_cache_keys_name_their_parts():
    assert cache_key("a", (1, 2)) == cache_key("a", (1, 2))
    assert len({cache_key("a", (1, 2)), cache_key("a", (1, 3)), cache_key("a", 1, 2), cache_key("a")}) == 4


def test_local_artifact_dir_maps_proxied_and_file_uris(tmp_path):
    server_workspace, other = tmp_path / "ws", tmp_path / "other"
    folder = server_workspace / run_layout.WORKSPACE_ARTIFACTS / "2" / "abc123" / "artifacts"
    folder.mkdir(parents=True)
    other.mkdir()
    proxied = "mlflow-artifacts:/2/abc123/artifacts"
    assert run_layout.local_artifact_dir(proxied, [other, server_workspace]) == folder
    assert run_layout.local_artifact_dir("mlflow-artifacts:/2/zzz/artifacts", [server_workspace]) is None
    assert run_layout.local_artifact_dir(proxied, []) is None
    assert run_layout.local_artifact_dir("mlflow-artifacts:/", [server_workspace]) is None  # not the whole store
    assert run_layout.local_artifact_dir(folder.as_uri(), []) == folder
    assert run_layout.local_artifact_dir(str(folder), []) == folder
    assert run_layout.local_artifact_dir((tmp_path / "missing").as_uri(), []) is None
    assert run_layout.local_artifact_dir("s3://bucket/2/abc123/artifacts", [server_workspace]) is None
    assert run_layout.local_artifact_dir("", [server_workspace]) is None


def test_a_cache_that_cannot_be_written_costs_no_result(tmp_path):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("a file where the cache folder would be")
    table = pd.DataFrame({"x": [1.0, 2.0]})
    assert cached_table(blocked / "t.parquet", lambda: table) is table
    labels = np.arange(3)
    assert np.array_equal(cached_array(blocked / "a.npy", lambda: labels), labels)
