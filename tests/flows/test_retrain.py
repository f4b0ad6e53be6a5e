"""retrain_pool: only the adapter whose data changed is retrained; champion moves only on improvement."""

from __future__ import annotations

import pytest

from lorasoup_core.registry import AdapterRegistry
from lorasoup_core.storage import open_store
from tests.flows.conftest import TINY_POOL, tiny_config, write_config

pytestmark = pytest.mark.slow


def test_retrain_only_what_changed(tmp_path, prefect_api):
    from flows.retrain_pool import retrain_pool

    cfg = tiny_config(tmp_path)
    path = write_config(tmp_path, cfg)
    first = retrain_pool(config=str(path), rerun_experiments=False)
    assert sorted(first.trained) == sorted(TINY_POOL)
    assert retrain_pool(config=str(path)).trained == []  # nothing changed: nothing trained, nothing re-run

    cfg["pool"]["tasks"][1]["seed"] = 7  # new data for count_items only
    write_config(tmp_path, cfg)
    second = retrain_pool(config=str(path), rerun_experiments=False)
    assert second.trained == ["count_items"] and sorted(second.skipped) == sorted(set(TINY_POOL) - {"count_items"})
    reg = AdapterRegistry(cfg["tracking"]["tracking_uri"], open_store(cfg["storage"]["uri"]))
    versions = reg.list(task="count_items")
    assert [v.version for v in versions] == ["1", "2"]
    champion = reg.get(f"{versions[0].name}@champion")
    better = min(versions, key=lambda v: v.metrics["val_loss"])
    assert champion.version == better.version
    assert reg.get(f"{versions[0].name}@latest").version == "2"
