"""LoraHub's pool imported through a hub: a real HTTP hub on 127.0.0.1 (hubkit) serving an organisation laid
out like LoraHub's, read by huggingface_hub itself: listing, pinned downloads, card metadata, `.bin` weights,
a repo that 404s and a truncated transfer (one line each, the rest import), reruns that import nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.pool import import_adapters
from lorasoup_core.registry import AdapterRegistry
from lorasoup_core.storage import open_store
from tests.lorasoup_core.pool.hubkit import HubServer, commit_of, write_repo

POOL = "lorahub:flan-t5-large"
BIN, SAFE = "adapter_model.bin", "adapter_model.safetensors"
GOOD = ["lorahub/flan_t5_large-anli_r1", "lorahub/flan_t5_large-boolq", "lorahub/flan_t5_large-wiki_qa"]
GONE, SHORT = "lorahub/flan_t5_large-gone", "lorahub/flan_t5_large-short"


@pytest.fixture
def hub_root(tmp_path, tiny_t5) -> Path:
    root = tmp_path / "hub"
    write_repo(root, GOOD[0], tiny_t5, 1, weights="safetensors", examples=["premise: a. hypothesis: b.", "p: c."])
    write_repo(root, GOOD[1], tiny_t5, 0)
    write_repo(root, GOOD[2], tiny_t5, 2)
    write_repo(root, GONE, tiny_t5, 3)
    write_repo(root, SHORT, tiny_t5, 4)
    write_repo(root, "lorahub/flan_t5_xl-boolq", tiny_t5, 5)  # another base: not the pool
    write_repo(root, "someone/flan_t5_large-boolq", tiny_t5, 6)  # another organisation
    return root


def _online(monkeypatch, url: str, cache: Path) -> None:
    """This process talks to the test's hub (huggingface_hub read HF_HUB_OFFLINE once, at import)."""
    import huggingface_hub.constants as hf

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(cache))


def _weight_gets(server: HubServer) -> int:
    return sum(1 for m, p in server.requests if m == "GET" and p.endswith((BIN, SAFE)))


def test_lorahub_pool_imports_through_a_hub_server(tmp_path, hub_root, tiny_t5, registry, monkeypatch):
    with HubServer(hub_root) as server:
        server.gone.add(GONE)
        server.short.add((SHORT, BIN))
        _online(monkeypatch, server.url, tmp_path / "hf-cache")
        report = import_adapters([POOL], tiny_t5, registry)

        assert sorted(report.ok) == GOOD, report.rejected
        assert report.rejected == {
            GONE: f"{GONE}: cannot read the hub repository (HTTP 404: no such repository at {server.url})",
            SHORT: f"{SHORT}: cannot download {BIN} (truncated transfer: file should be of size "
                   f"{(hub_root / SHORT / BIN).stat().st_size} but has size {(hub_root / SHORT / BIN).stat().st_size // 2})",
        }
        touched = {p.split("/")[1] + "/" + p.split("/")[2] for _, p in server.requests if p.count("/") > 3}
        assert "lorahub/flan_t5_xl-boolq" not in touched and "someone/flan_t5_large-boolq" not in touched

        for repo in GOOD:  # each version: its repo and the commit it was downloaded at
            v = report.ok[repo]
            assert (v.origin, v.tags["hub_repo"], v.tags["hub_revision"]) == ("imported", repo, commit_of(hub_root / repo))
        boolq = report.ok[GOOD[1]]
        assert boolq.name == "lorasoup.tiny-t5.flan_t5_large-boolq"
        stored = registry.download(boolq, tmp_path / "dl")
        assert not (stored / BIN).exists()
        want = torch.load(hub_root / GOOD[1] / BIN, weights_only=True)
        got = load_file(str(stored / SAFE))
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
        card = AdapterCard.read(stored)
        assert card.training["hub"] == {"repo": GOOD[1], "revision": commit_of(hub_root / GOOD[1]),
                                        "endpoint": server.url}
        assert card.training["card_metadata"] == {"license": "mit", "base_model": "google/flan-t5-large",
                                                  "datasets": ["lorahub/boolq"], "tags": ["lora", "lorahub"],
                                                  "library_name": "peft"}
        assert card.training["converted_from"]["file"] == BIN
        assert any(f"{BIN} holds only tensors" in w for w in report.warnings[GOOD[1]])
        assert "converted_from" not in AdapterCard.read(registry.download(report.ok[GOOD[0]], tmp_path / "dl0")).training
        assert AdapterCard.read(tmp_path / "dl0").training["embedding_from"] == "2 examples"

        # a rerun: what is registered at the commit the hub serves is not downloaded again
        gets = _weight_gets(server)
        again = import_adapters([POOL], tiny_t5, registry)
        assert sorted(again.resumed) == GOOD and {r: again.ok[r].ref for r in GOOD} == {r: report.ok[r].ref for r in GOOD}
        assert _weight_gets(server) == gets + 1, "only the short file was fetched again"
        assert set(again.rejected) == {GONE, SHORT}

        # a new commit of one repo is a new version of it; the others stay as they are
        write_repo(tmp_path / "next", GOOD[1], tiny_t5, 7)
        (hub_root / GOOD[1] / BIN).write_bytes((tmp_path / "next" / GOOD[1] / BIN).read_bytes())
        third = import_adapters([POOL], tiny_t5, registry)
        assert third.ok[GOOD[1]].ref == "lorasoup.tiny-t5.flan_t5_large-boolq/2" and GOOD[1] not in third.resumed
        assert sorted(third.resumed) == [GOOD[0], GOOD[2]]

        # the CLI says which sources were already registered, and names each rejected one in one line
        from typer.testing import CliRunner

        from lorasoup_core.cli import app

        cli = CliRunner().invoke(app, ["pool", "import", POOL, "--model", "tiny-t5", "--store",
                                       (tmp_path / "store").as_uri(), "--tracking-uri", registry.client.tracking_uri])
        assert cli.exit_code == 1, cli.output
        assert all(f"already registered {r} -> {third.ok[r].ref}" in cli.output for r in GOOD), cli.output
        assert f"rejected: {GONE}: cannot read the hub repository (HTTP 404" in cli.output, cli.output
        assert "imported 3, rejected 2" in cli.output, cli.output
    assert sorted(v.ref for v in registry.list()) == sorted([*(report.ok[r].ref for r in GOOD), third.ok[GOOD[1]].ref])

    # the hub gone and HF_HUB_OFFLINE set: a cached repo still resolves (nothing imported twice), the pool
    # cannot be listed
    import huggingface_hub.constants as hf

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    offline = import_adapters([GOOD[2], POOL], tiny_t5, registry)
    assert offline.resumed == [GOOD[2]] and offline.ok[GOOD[2]].ref == report.ok[GOOD[2]].ref
    assert offline.rejected == {POOL: f"{POOL}: listing the hub pool needs the network (HF_HUB_OFFLINE is set)"}
    # another registry, the same machine: the repo imports from the Hugging Face cache, at its cached commit
    other = AdapterRegistry(tracking_uri=f"sqlite:///{tmp_path / 'other.db'}", store=open_store((tmp_path / "o").as_uri()))
    cached = import_adapters([GOOD[2], "lorahub/flan_t5_large-never_fetched"], tiny_t5, other)
    assert cached.ok[GOOD[2]].tags["hub_revision"] == commit_of(hub_root / GOOD[2]) and not cached.resumed
    assert cached.rejected == {"lorahub/flan_t5_large-never_fetched": "lorahub/flan_t5_large-never_fetched: cannot "
                               "download the hub adapter (not in the local Hugging Face cache and HF_HUB_OFFLINE is set)"}


def _cli(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, str]:
    proc = subprocess.run([str(Path(sys.executable).parent / "lorasoup"), *args], capture_output=True, text=True,
                          timeout=300, env=env)
    return proc, f"$ lorasoup {' '.join(args)}\nexit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def test_a_killed_hub_import_resumes_without_importing_twice_and_the_pool_composes(tmp_path, tiny_t5):
    """`lorasoup pool import lorahub:flan-t5-large` killed (SIGKILL) right after registering its first adapter,
    then run again: every adapter once, its downloaded files not fetched again; then `lorasoup compose` on a
    BBH target with a random 2 of the imported pool, as LoraHub's protocol does with 20."""
    root = tmp_path / "hub"
    for seed, repo in enumerate(GOOD):
        write_repo(root, repo, tiny_t5, seed)
    store, db = (tmp_path / "store").as_uri(), f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "LORASOUP_FAULT")}
    env |= {"HF_HOME": str(tmp_path / "hf"), "LORASOUP_HOME": str(tmp_path / "home"), "LORASOUP_STORE": store,
            "MLFLOW_TRACKING_URI": db, "OMP_NUM_THREADS": "1", "COLUMNS": "300"}
    registry = AdapterRegistry(tracking_uri=db, store=open_store(store))
    with HubServer(root) as server:
        env["HF_ENDPOINT"] = server.url
        args = ["pool", "import", POOL, "--model", "tiny-t5"]
        killed, shown = _cli(args, {**env, "LORASOUP_FAULT": "hub-import-registered"})
        assert killed.returncode == -signal.SIGKILL, shown
        first = [v for v in registry.list()]
        assert [(v.name, v.version, v.tags.get("hub_repo")) for v in first] == [
            ("lorasoup.tiny-t5.flan_t5_large-anli_r1", "1", None)], shown  # registered, killed before its tags

        rerun, shown = _cli(args, env)
        assert rerun.returncode == 0 and "Traceback" not in rerun.stderr, shown
        for repo in GOOD:
            assert f"registered {repo} -> lorasoup.tiny-t5.{repo.split('/')[1]}/1" in rerun.stdout, shown
        assert "imported 3, rejected 0" in rerun.stdout, shown
        assert all(server.downloads(repo, BIN) == 1 for repo in GOOD), server.requests  # the cache kept them
        versions = registry.list()
        assert [(v.version, v.tags["hub_repo"]) for v in versions] == [("1", repo) for repo in GOOD], shown


    composed, shown = _cli(["compose", "--target", "bbh:navigate", "--method", "lorahub", "--filter", "random",
                            "-k", "2", "--model", "tiny-t5", "--seed", "1", "--set", "budget=3"], env)
    assert composed.returncode == 0, shown
    made = [v for v in registry.list(origin="composed")]
    assert len(made) == 1, shown
    picked = made[0].tags["lineage.candidates"].split(", ")
    assert len(picked) == 2 and all(p.startswith("lorasoup.tiny-t5.flan_t5_large-") for p in picked), made[0].tags
