
import boto3
import pytest

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.registry import AdapterRegistry, RegistryError
from lorasoup_core.storage import open_store


def _registry(tmp_path, tracking_uri=None, store_uri=None):
    return AdapterRegistry(tracking_uri=tracking_uri or f"sqlite:///{tmp_path / 'mlflow.db'}",
                           store=open_store(store_uri or (tmp_path / "store").as_uri()))


def test_register_is_idempotent_and_round_trips(tmp_path, tiny_pool):
    reg = _registry(tmp_path)
    card = AdapterCard.read(tiny_pool["add"])
    v = reg.register(card, tiny_pool["add"])
    assert v.version == "1" and v.task == "add" and v.rank == 8 and v.targets == ["q_proj", "v_proj"]
    assert reg.get(f"{v.name}@latest").ref == v.ref and v.metrics["val_loss"] == pytest.approx(card.metrics["val_loss"])
    assert reg.register(card, tiny_pool["add"]).ref == v.ref  # same fingerprints: the same version
    assert len(reg.list()) == 1
    assert reg.find(card.base_fingerprint, card.data_fingerprint, card.config_fingerprint).ref == v.ref
    local = reg.download(reg.get(f"{v.name}@latest"), tmp_path / "dl")
    assert (local / "adapter_model.safetensors").read_bytes() == (tiny_pool["add"] / "adapter_model.safetensors").read_bytes()

    other = reg.register(AdapterCard.read(tiny_pool["double"]), tiny_pool["double"])
    assert [x.task for x in reg.list(rank=8, targets=["v_proj", "q_proj"], base_model="tiny-llama")] == ["add", "double"]
    assert reg.list(task="double")[0].ref == other.ref and reg.list(rank=4) == []
    with pytest.raises(RegistryError, match="no adapter version 'lorasoup.tiny-llama.add@champion'"):
        reg.get("lorasoup.tiny-llama.add@champion")


def test_champion_moves_only_on_improvement(tmp_path, tiny_pool):
    reg = _registry(tmp_path)
    card = AdapterCard.read(tiny_pool["add"])
    v1 = reg.register(card, tiny_pool["add"])
    assert reg.set_champion_if_better(v1)
    worse = card.model_copy(update={"config_fingerprint": "b" * 64,
                                    "metrics": {**card.metrics, "val_loss": card.metrics["val_loss"] + 1}})
    v2 = reg.register(worse, tiny_pool["add"])
    assert not reg.set_champion_if_better(v2)
    better = card.model_copy(update={"config_fingerprint": "c" * 64, "metrics": {**card.metrics, "val_loss": 0.0}})
    v3 = reg.register(better, tiny_pool["add"])
    assert reg.set_champion_if_better(v3)
    assert reg.get(f"{v1.name}@champion").version == v3.version == "3"
    assert reg.get(f"{v1.name}@latest").version == "3"
    assert {x.version: x.aliases for x in reg.list(task="add")} == {"1": [], "2": [], "3": ["latest", "champion"]}
    assert not reg.set_champion_if_better(v3)  # equal is no improvement


def test_failed_version_creation_leaves_no_artifact(tmp_path, tiny_pool):
    reg = _registry(tmp_path)
    # a metric name MLflow refuses as a tag key makes the version creation itself fail
    card = AdapterCard.read(tiny_pool["add"]).model_copy(update={"metrics": {"bad\nname": 1.0}})
    with pytest.raises(Exception, match="(?i)invalid"):
        reg.register(card, tiny_pool["add"])
    assert reg.store.list("adapters/") == [] and reg.list() == []


def test_failed_registration_keeps_an_artifact_another_version_uses(tmp_path, tiny_pool):
    reg = _registry(tmp_path)
    card = AdapterCard.read(tiny_pool["add"])
    v1 = reg.register(card, tiny_pool["add"])
    # another base fingerprint (so no existing version matches) but the same store key as v1
    clash = card.model_copy(update={"base_fingerprint": "f" * 64, "metrics": {"bad\nname": 1.0}})
    assert clash.store_key == card.store_key
    with pytest.raises(Exception, match="(?i)invalid"):
        reg.register(clash, tiny_pool["add"])
    assert reg.store.exists(card.store_key) and [x.ref for x in reg.list()] == [v1.ref]
    assert (reg.download(v1, tmp_path / "dl") / "adapter_config.json").is_file()


@pytest.mark.slow
def test_real_mlflow_server_with_s3_artifacts(tmp_path, tiny_pool, mlflow_server, s3_bucket, moto_server):
    reg = _registry(tmp_path, tracking_uri=mlflow_server, store_uri=f"s3://{s3_bucket}/lorasoup")
    from lorasoup_core import tracking

    with tracking.run("registry-test", "train add", tracking_uri=mlflow_server) as run_id:
        tracking.log_metrics(run_id, {"val_loss": 1.0}, tracking_uri=mlflow_server)
        tracking.log_json(run_id, {"hello": 1}, "notes/hello.json", tracking_uri=mlflow_server)
    card = AdapterCard.read(tiny_pool["add"])
    v = reg.register(card, tiny_pool["add"], run_id=run_id)
    assert v.store_uri.startswith(f"s3://{s3_bucket}/lorasoup/adapters/tiny-llama/add/") and v.run_id == run_id
    assert reg.set_champion_if_better(v) and reg.register(card, tiny_pool["add"]).ref == v.ref
    again = AdapterRegistry(tracking_uri=mlflow_server, store=open_store(f"s3://{s3_bucket}/lorasoup"))
    assert again.find(card.base_fingerprint, card.data_fingerprint, card.config_fingerprint).ref == v.ref
    champion = again.get(f"{v.name}@champion")
    assert champion.aliases == ["latest", "champion"] and champion.metrics["val_loss"] == card.metrics["val_loss"]
    local = again.download(champion, tmp_path / "dl")
    for name in ("adapter_config.json", "adapter_model.safetensors", "lorasoup_card.json"):
        assert (local / name).read_bytes() == (tiny_pool["add"] / name).read_bytes()
    assert again.client.get_run(run_id).data.tags["lorasoup.model_version"] == v.ref
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=moto_server).list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert any(k.startswith("lorasoup/adapters/tiny-llama/add/") and k.endswith("adapter_model.safetensors") for k in keys)
    assert any(k.startswith("mlflow/") and k.endswith("notes/hello.json") for k in keys)


def test_versions_resolve_after_the_home_moves(tmp_path, tiny_pool):
    """Sources are relative to the store root: a moved home (database and store together) still resolves,
    downloads verified files, and counts its artifacts as referenced (nothing reported as an orphan)."""
    import shutil

    old, new = tmp_path / "old-home", tmp_path / "new-home"
    old.mkdir()
    reg = _registry(old)
    v = reg.register(AdapterCard.read(tiny_pool["add"]), tiny_pool["add"])
    assert v.store_uri.startswith((old / "store").as_uri()) and v.store_key.startswith("adapters/tiny-llama/add/")
    shutil.move(old, new)

    moved = _registry(new)
    again = moved.get(f"{v.name}/{v.version}")
    assert again.store_uri == (new / "store").as_uri() + "/" + v.store_key
    local = moved.download(again, tmp_path / "dl")
    assert (local / "adapter_model.safetensors").read_bytes() == (tiny_pool["add"] / "adapter_model.safetensors").read_bytes()
    assert moved.orphans() == [] and [x.store_uri for x in moved.list()] == [again.store_uri]
    # registering the same adapter again finds the version; a new one lands in the moved store
    assert moved.register(AdapterCard.read(tiny_pool["add"]), tiny_pool["add"]).ref == v.ref
    other = moved.register(AdapterCard.read(tiny_pool["double"]), tiny_pool["double"])
    assert other.store_uri.startswith((new / "store").as_uri())


def test_models_and_versions_carry_readable_tags_and_descriptions(tmp_path, tiny_pool):
    reg = _registry(tmp_path)
    card = AdapterCard.read(tiny_pool["add"])
    v = reg.register(card, tiny_pool["add"])
    model = reg.client.get_registered_model(v.name)
    assert model.tags == {"task": "add", "base_model": "tiny-llama", "origin": card.origin, "adapter": "add"}
    assert "LoRA adapters for add on tiny-llama" in model.description
    mv = reg.client.get_model_version(v.name, v.version)
    assert f"val_loss {card.metrics['val_loss']:.4f}" in mv.description and v.store_key in mv.description
    # a composed card: method, candidates and weights as tags a person can read (largest weight first)
    composed = card.model_copy(update={
        "name": "add-lorahub", "origin": "composed", "config_fingerprint": "d" * 64,
        "lineage": {"method": "lorahub", "label": "lorahub", "candidates": ["a", "b", "c"],
                    "versions": ["m.a/1", "m.b/2", "m.c/1"], "weights": [0.1, -0.7, 0.3]}})
    cv = reg.register(composed, tiny_pool["add"])
    assert cv.tags["lineage.method"] == "lorahub" and cv.tags["lineage.candidates"] == "m.a/1, m.b/2, m.c/1"
    assert cv.tags["lineage.weights"] == "b -0.700, c +0.300, a +0.100"
    assert reg.client.get_registered_model(cv.name).tags["method"] == "lorahub"
    assert [m.name for m in reg.client.search_registered_models("tags.origin = 'composed'")] == [cv.name]
    reg.record_score(cv, "count_then_add", 0.25, (0.1, 0.45), 20, run_id="r1")
    tags = reg.get(cv.ref).tags
    assert tags["score.count_then_add"] == "25.0 [10.0, 45.0] on 20 test examples" and tags["score_run.count_then_add"] == "r1"


def test_per_module_lineage_weights_read_as_their_mean(tmp_path, tiny_pool):
    reg = _registry(tmp_path)
    card = AdapterCard.read(tiny_pool["add"]).model_copy(update={
        "name": "add-cat", "origin": "composed", "config_fingerprint": "e" * 64,
        "lineage": {"method": "cat", "candidates": ["a", "b"], "weights": {"q": [1.0, 0.2], "v": [0.0, 0.4]}}})
    assert reg.register(card, tiny_pool["add"]).tags["lineage.weights"] == "a +0.500, b +0.300"


@pytest.mark.parametrize("other_is_better", [True, False])
def test_a_champion_set_by_another_process_at_the_same_moment_is_decided_again(tmp_path, tiny_pool, other_is_better):
    """Two processes settling `champion` at once: MLflow's SQL store inserts a model's first alias without a
    lock, so the slower insert fails on the unique constraint. That failure is injected here (the other
    process's alias is written just before ours, then ours raises what the store raises); the slower one
    reads the champion again and keeps the better version."""
    from mlflow.exceptions import MlflowException

    reg = _registry(tmp_path)
    card = AdapterCard.read(tiny_pool["add"])
    loss = card.metrics["val_loss"]
    ours = reg.register(card.model_copy(update={"config_fingerprint": "a" * 64}), tiny_pool["add"])
    theirs = reg.register(card.model_copy(update={"config_fingerprint": "b" * 64, "metrics": {
        **card.metrics, "val_loss": loss - 1 if other_is_better else loss + 1}}), tiny_pool["add"])
    real, calls = reg.client.set_registered_model_alias, []

    def racing(name, alias, version):
        calls.append(version)
        if len(calls) == 1:  # the other process wins the race to the first insert
            real(name, alias, theirs.version)
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: registered_model_aliases.name")
        return real(name, alias, version)

    reg.client.set_registered_model_alias = racing
    assert reg.set_champion_if_better(ours) == (not other_is_better)
    champion = reg.get(f"{ours.name}@champion").version
    assert champion == (theirs.version if other_is_better else ours.version)
    assert len(calls) == (1 if other_is_better else 2)
