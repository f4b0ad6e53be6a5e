"""A lorahub search that fails ends at once, with one error naming the target and the adapters, and the
process exits: nevergrad's COBYLA (NGOpt at budget 40, one worker) runs in a thread that used to wait
forever for the `tell` of a failed evaluation, so `lorasoup compose` printed the error and hung."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from lorasoup_core.adapters import AdapterCard, TrainingConfig, train_lora
from lorasoup_core.compose import Candidate, CompositionError, compose
from tests.lorasoup_core.compose.conftest import skill_task

EXIT_WITHIN_S = 60  # the failing run exits in seconds; a hang is killed at the timeout below
HARD_TIMEOUT_S = 90


def _nan_copy(src: Path, dst: Path, name: str) -> Path:
    """A copy of a trained adapter under another name, one NaN in a lora_B (a broken training run)."""
    shutil.copytree(src, dst)
    f = dst / "adapter_model.safetensors"
    tensors = load_file(f)
    tensors[next(k for k in tensors if "lora_B" in k)][0, 0] = float("nan")
    save_file(tensors, f)
    card = AdapterCard.read(src)
    card.model_copy(update={"name": name, "task": name, "data_fingerprint": "f" * 64}).write(dst)
    return dst


def _messaging_threads() -> list[threading.Thread]:
    from nevergrad.optimization.recaster import _MessagingThread

    return [t for t in threading.enumerate() if isinstance(t, _MessagingThread) and t.is_alive()]


@pytest.fixture(scope="module")
def adapters(tiny_llama, tmp_path_factory):
    """Two briefly trained tiny-llama adapters with cards, and a broken copy of the first."""
    root = tmp_path_factory.mktemp("search_failure")
    out = {}
    for skill in ("add", "first_item"):
        train_lora(tiny_llama, skill_task(skill), TrainingConfig(steps=2, max_validation=2), root / skill,
                   progress=False, embed_examples=0)
        out[skill] = root / skill
    out["broken"] = _nan_copy(root / "add", root / "broken", "broken")
    return out


def test_nan_objective_names_the_broken_adapter_and_stops_the_search(tiny_llama, adapters):
    task = skill_task("count_items")
    cands = [Candidate(n, p, AdapterCard.read(p)) for n, p in adapters.items()]
    try:
        with pytest.raises(CompositionError) as err:
            compose("lorahub", tiny_llama, cands, task, task.train[:3], {"budget": 40})
        message = str(err.value)
        assert "objective is nan" in message and "'count_items'" in message, message
        assert "NaN/inf weights: broken;" in message and "add=" in message and "first_item=" in message, message
        deadline = time.time() + 10
        while _messaging_threads() and time.time() < deadline:
            time.sleep(0.1)
        assert not _messaging_threads(), "the optimizer's thread still waits for a tell"
    finally:
        for t in _messaging_threads():  # should this test fail: still let the test process exit
            t.stop()


def test_any_error_in_the_objective_stops_the_search(tiny_llama, adapters, monkeypatch):
    from lorasoup_core.compose import lorahub

    calls = []

    def failing(self, w):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("device lost")
        return real(self, w)

    real = lorahub.Objective.__call__
    monkeypatch.setattr(lorahub.Objective, "__call__", failing)
    task = skill_task("count_items")
    good = [Candidate(n, adapters[n], AdapterCard.read(adapters[n])) for n in ("add", "first_item")]
    try:
        with pytest.raises(RuntimeError, match="device lost") as err:
            compose("lorahub", tiny_llama, good, task, task.train[:3], {"budget": 40})
        notes = "\n".join(getattr(err.value, "__notes__", []))
        assert "target 'count_items' over candidates add, first_item: evaluation 3 of 40" in notes, notes
        deadline = time.time() + 10
        while _messaging_threads() and time.time() < deadline:
            time.sleep(0.1)
        assert not _messaging_threads(), "the optimizer's thread still waits for a tell"
    finally:
        for t in _messaging_threads():
            t.stop()


SCRIPT = """
import sys
from pathlib import Path

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.compose import Candidate, compose
from lorasoup_core.data import load_task
from lorasoup_core.models import load_model

base = load_model("tiny-llama", device="cpu")
task = load_task({"source": "skills", "name": "count_items", "n_train": 20, "n_validation": 0, "n_test": 8})
cands = [Candidate(Path(p).name, Path(p), AdapterCard.read(p)) for p in sys.argv[1:]]
compose("lorahub", base, cands, task, task.train[:3], {"budget": 40})  # NGOpt -> COBYLA in a thread
"""


def _run(cmd: list[str], env: dict[str, str]) -> tuple[int | None, str, str, float]:
    """Run `cmd`, killed after HARD_TIMEOUT_S; its exit status, stdout, stderr and seconds."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=HARD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    return proc.returncode, stdout, stderr, time.monotonic() - start


def test_a_failed_search_lets_the_process_exit(adapters, tmp_path):
    """The error propagates out of the script (its traceback kept alive to the end, as Prefect keeps a failed
    task's): the process must still exit, in seconds, not wait on the optimizer's thread."""
    script = tmp_path / "compose_broken.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rc, stdout, stderr, seconds = _run([sys.executable, str(script), *map(str, adapters.values())], env)
    shown = f"exit {rc} after {seconds:.0f} s (killed at {HARD_TIMEOUT_S} s)\nstdout:\n{stdout}\nstderr:\n{stderr}"
    assert rc == 1 and seconds < EXIT_WITHIN_S, shown
    assert "CompositionError: lorahub objective is nan for target 'count_items'" in stderr, shown
    assert "NaN/inf weights: broken;" in stderr, shown


def test_lorasoup_compose_exits_on_a_broken_adapter(adapters, tmp_path):
    """`lorasoup compose` over a registry holding a NaN adapter: exit 2 with the adapter named, in seconds."""
    from lorasoup_core.registry import AdapterRegistry
    from lorasoup_core.storage import open_store

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store_uri = (tmp_path / "store").as_uri()
    reg = AdapterRegistry(tracking_uri=tracking_uri, store=open_store(store_uri))
    for path in adapters.values():
        reg.register(AdapterCard.read(path), path)
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "LORASOUP_STORE": store_uri,
           "LORASOUP_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    cmd = [str(Path(sys.executable).parent / "lorasoup"), "compose", "--model", "tiny-llama", "--target",
           "skills:count_items", "--method", "lorahub", "--filter", "random", "-k", "3"]  # budget 40: COBYLA
    rc, stdout, stderr, seconds = _run(cmd, env)
    shown = f"exit {rc} after {seconds:.0f} s\nstdout:\n{stdout}\nstderr:\n{stderr}"
    assert rc == 2 and seconds < EXIT_WITHIN_S, shown
    flat = " ".join(stderr.replace("│", " ").split())  # typer's error panel wraps long lines
    assert "objective is nan for target 'count_items'" in flat and "NaN/inf weights: broken;" in flat, shown
    assert "Traceback" not in stderr, shown
