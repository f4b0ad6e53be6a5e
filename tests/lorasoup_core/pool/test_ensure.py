import json

import mlflow
import pytest
from pydantic import ValidationError

from lorasoup_core.adapters import TrainingConfig
from lorasoup_core.data import load_task
from lorasoup_core.pool import PoolConfig, ensure_adapter, ensure_pool
from lorasoup_core.tracking import RunContext

TRAINING = TrainingConfig(steps=20, lr=1e-2, batch_size=8, max_validation=8)


def _pool(task_dirs, **extra) -> PoolConfig:
    return PoolConfig(training=TRAINING, embed_examples=0,
                      tasks=[{"source": "jsonl", "name": n, "path": str(p)} for n, p in task_dirs.items()], **extra)


def train_pool(pool: PoolConfig, registry, base, progress: bool = False):
    return ensure_pool(pool, base, registry, RunContext("pool-test", registry.client.tracking_uri), progress=progress)


def _runs(registry) -> list:
    exp = registry.client.get_experiment_by_name("pool-test")
    return registry.client.search_runs([exp.experiment_id]) if exp else []


def test_rerun_trains_nothing_and_changed_data_retrains_only_that_task(tmp_path, tiny_llama, task_dirs, registry,
                                                                       write_task):
    first = train_pool(_pool(task_dirs), registry, base=tiny_llama, progress=False)
    assert sorted(first.trained) == sorted(task_dirs) and first.skipped == []
    assert len(registry.list()) == 3 and len(_runs(registry)) == 3

    v = first.versions["length"]
    assert v.task == "length" and v.base_model == "tiny-llama" and v.rank == 8 and v.targets == ["q_proj", "v_proj"]
    assert v.aliases == ["latest", "champion"] and v.store_uri.startswith((tmp_path / "store").as_uri())
    run = registry.client.get_run(v.run_id)  # the training run is linked to the version and holds the curve
    assert run.data.params["task"] == "length" and run.data.params["lr"] == "0.01"
    assert run.data.tags["lorasoup.model_version"] == v.ref
    curve = registry.client.get_metric_history(v.run_id, "train_loss")
    assert [m.step for m in curve] == list(range(1, 21))
    assert run.data.metrics["val_loss"] == pytest.approx(v.metrics["val_loss"])
    assert v.metrics["val_loss"] < v.metrics["val_loss_base"]  # 20 steps already learn something

    again = train_pool(_pool(task_dirs), registry, base=tiny_llama, progress=False)
    assert again.trained == [] and sorted(again.skipped) == sorted(task_dirs)
    assert len(registry.list()) == 3 and len(_runs(registry)) == 3  # no version, no run
    assert {t: x.ref for t, x in again.versions.items()} == {t: x.ref for t, x in first.versions.items()}

    write_task(tmp_path / "data", "last_letter", ["walnut", "yellow", "orange", "purple", "velvet", "anchor"])  # one task's data changes
    changed = train_pool(_pool(task_dirs), registry, base=tiny_llama, progress=False)
    assert changed.trained == ["last_letter"] and len(registry.list()) == 4
    old, new = first.versions["last_letter"], changed.versions["last_letter"]
    assert new.name == old.name and new.version == "2" and "latest" in new.aliases
    assert new.data_fingerprint != old.data_fingerprint and new.config_fingerprint == old.config_fingerprint
    champion = registry.get(f"{new.name}@champion")  # moved only when val_loss improved
    assert champion.version == ("2" if new.metrics["val_loss"] < old.metrics["val_loss"] else "1")
    assert "latest" not in registry.get(old.ref).aliases

    overridden = train_pool(_pool(task_dirs, overrides={"first_letter": {"steps": 21}}), registry, base=tiny_llama,
                            progress=False)
    assert overridden.trained == ["first_letter"] and len(registry.list()) == 5


def test_training_run_nests_under_the_active_run(tiny_llama, task_dirs):
    from lorasoup_core.registry import AdapterRegistry
    from lorasoup_core.storage import open_store

    registry = AdapterRegistry(store=open_store())  # the session's MLFLOW_TRACKING_URI, as mlflow's fluent API
    task = load_task({"source": "jsonl", "name": "first_letter", "path": str(task_dirs["first_letter"])})
    mlflow.set_experiment("pool-nesting")
    run = RunContext("pool-nesting", registry.client.tracking_uri)
    with mlflow.start_run() as parent:
        ensured = ensure_adapter(tiny_llama, task, TRAINING.model_copy(update={"steps": 3}), registry, run,
                                 embed_examples=0, progress=False)
    version = ensured.version
    assert ensured.trained and registry.client.get_run(version.run_id).data.tags["mlflow.parentRunId"] == \
        parent.info.run_id
    again = ensure_adapter(tiny_llama, task, TRAINING.model_copy(update={"steps": 3}), registry, run, progress=False)
    assert not again.trained and again.version.ref == version.ref


def test_pool_config_errors_name_the_task(task_dirs):
    """Overrides are validated when the config is read, before any model or registry is touched."""
    with pytest.raises(ValidationError, match="overrides name task.*nope"):
        _pool(task_dirs, overrides={"nope": {"steps": 2}})
    with pytest.raises(ValidationError, match="overrides.length.stepz: Extra inputs"):
        _pool(task_dirs, overrides={"length": {"stepz": 2}})
    with pytest.raises(ValidationError, match="length listed more than once"):
        PoolConfig(tasks=[{"source": "jsonl", "name": "length", "path": str(task_dirs["length"])}] * 2)


def test_finished_training_is_registered_not_retrained(tmp_path, tiny_llama, task_dirs, registry, monkeypatch):
    """A training that finished but whose registration failed (here: the store is unreachable) is reused by
    the next `lorasoup pool train`: registered, not trained again."""
    import yaml
    from typer.testing import CliRunner

    from lorasoup_core.cli import app
    from lorasoup_core.pool import ensure as ensure_mod
    from lorasoup_core.registry import AdapterRegistry

    task = load_task({"source": "jsonl", "name": "length", "path": str(task_dirs["length"])})
    training = TRAINING.model_copy(update={"steps": 4})

    def unreachable(*args, **kwargs):
        raise ConnectionError("store unreachable")

    monkeypatch.setattr(AdapterRegistry, "register", unreachable)
    with pytest.raises(ConnectionError):
        ensure_adapter(tiny_llama, task, training, registry, RunContext("pool-cli", registry.client.tracking_uri),
                       embed_examples=0, progress=False)
    monkeypatch.undo()
    assert registry.list() == []

    def no_training(*args, **kwargs):
        raise AssertionError("a finished training was trained again")

    monkeypatch.setattr(ensure_mod, "train_lora", no_training)
    cfg = {"model": {"spec": "tiny-llama", "device": "cpu"},
           "pool": {"embed_examples": 0, "training": training.model_dump(),
                    "tasks": [{"source": "jsonl", "name": "length", "path": str(task_dirs["length"])}]},
           "storage": {"uri": registry.store.uri_for("")},
           "tracking": {"tracking_uri": registry.client.tracking_uri, "experiment": "pool-cli"}}
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = CliRunner().invoke(app, ["pool", "train", "--config", str(path), "--no-progress"])
    assert out.exit_code == 0, out.output
    [version] = registry.list()
    assert registry.client.get_run(version.run_id).data.tags["lorasoup.reused_local_training"] == "true"
    assert [m.step for m in registry.client.get_metric_history(version.run_id, "train_loss")] == [1, 2, 3, 4]


def test_pool_train_cli_twice_then_list(tmp_path, task_dirs):
    import yaml
    from typer.testing import CliRunner

    from lorasoup_core.cli import app

    db = f"sqlite:///{tmp_path / 'cli.db'}"
    cfg = {"model": {"spec": "tiny-llama", "device": "cpu"},
           "pool": {"embed_examples": 0, "training": {"steps": 5, "max_validation": 4},
                    "tasks": [{"source": "jsonl", "name": n, "path": str(task_dirs[n])}
                              for n in ("length", "first_letter")]},
           "storage": {"uri": (tmp_path / "cli-store").as_uri()},
           "tracking": {"tracking_uri": db, "experiment": "pool-cli"}}
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump(cfg))
    runner = CliRunner()
    first = runner.invoke(app, ["pool", "train", "--config", str(path), "--no-progress"])
    assert first.exit_code == 0, first.output
    assert "length: lorasoup.tiny-llama.length/1 (trained)" in first.output and "trained 2, skipped 0" in first.output
    second = runner.invoke(app, ["pool", "train", "--config", str(path), "--no-progress"])
    assert second.exit_code == 0 and "trained 0, skipped 2" in second.output, second.output
    listed = runner.invoke(app, ["pool", "list", "--task", "length", "--rank", "8", "--tracking-uri", db, "--json"])
    rows = json.loads(listed.output)
    assert [(r["name"], r["version"], r["task"], r["base"], r["rank"], r["origin"], r["aliases"]) for r in rows] == [
        ("lorasoup.tiny-llama.length", "1", "length", "tiny-llama", 8, "trained", "latest,champion")]
    assert isinstance(rows[0]["val_loss"], float) and rows[0]["uri"].startswith("file://")
    table = runner.invoke(app, ["pool", "list", "--task", "length", "--tracking-uri", db])
    assert table.exit_code == 0 and "lorasoup.tiny-llama.length" in table.output and "val_loss" in table.output
    bad = runner.invoke(app, ["pool", "list", "--origin", "bogus", "--tracking-uri", db])
    assert bad.exit_code == 2 and "bogus" in bad.output and "trained" in bad.output
    path.write_text(yaml.safe_dump({**cfg, "trainig": {}}))
    bad = runner.invoke(app, ["pool", "train", "--config", str(path)])
    assert bad.exit_code == 2 and "trainig" in bad.output
    cfg["pool"]["overrides"] = {"length": {"stepz": 3}}  # a misspelt override key: one error, nothing trained
    path.write_text(yaml.safe_dump(cfg))
    bad = runner.invoke(app, ["pool", "train", "--config", str(path)])
    assert bad.exit_code == 2 and "overrides.length.stepz" in bad.output and "Traceback" not in bad.output


def test_skills_pool_config_is_valid():
    from pathlib import Path

    from lorasoup_core.data import UPSTREAM_SKILLS
    from lorasoup_core.experiment import load_pool_file

    path = Path(__file__).resolve().parents[3] / "configs" / "pool_skills.yaml"
    assert path.read_text().startswith("# lorasoup pool train --config configs/pool_skills.yaml")
    cfg = load_pool_file(path)
    pool = cfg.pool
    assert cfg.model.spec == "smollm2-135m" and [load_task(t).name for t in pool.tasks] == UPSTREAM_SKILLS
    assert pool.training_for("date_add").steps == 100 and pool.training_for("add").steps == pool.training.steps
    demo = load_pool_file(path.parent / "demo.yaml")  # an experiment's pool, trained under its experiment
    assert demo.experiment_name == "lorasoup-demo" and demo.pool.task_names[0] == "add"
