"""The sandbox's disk bounds, and its refusal to run model-written code with less isolation than
namespaces give (setuid mode, or none at all) unless explicitly told to."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from lorasoup_core.bench import sandbox

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="the isolating modes start as root")
ISOLATING = [
    pytest.param(
        "namespace", marks=pytest.mark.skipif(not (ROOT and shutil.which("unshare")), reason="no unshare")
    ),
    pytest.param("setuid", marks=needs_root),
]
# 100 files of 4 MB, 400 MB in all: far more than the 32 MB allowed by default.
FILL = "def solution():\n    for i in range(100):\n        open(f'f{i}', 'wb').write(b'x' * 4 * 2**20)\n"
MANY = "def solution():\n    for i in range(100_000):\n        open(f'f{i}', 'w').close()\n"
GETUID = "import os\ndef solution():\n    return [os.getuid(), os.getgid(), os.getgroups()]\n"


@pytest.fixture
def host_dir_usage(monkeypatch):
    """(bytes, entries) the program left in the host's copy of its directory, seen just before removal."""
    seen: list[tuple[int, int]] = []
    remove = sandbox._remove_tree

    def measure_then_remove(path: str) -> None:
        size = entries = 0
        for root, dirs, files in os.walk(path):
            entries += len(dirs) + len(files)
            size += sum(os.lstat(os.path.join(root, name)).st_blocks * 512 for name in files)
        seen.append((size, entries))
        remove(path)

    monkeypatch.setattr(sandbox, "_remove_tree", measure_then_remove)
    return seen


@pytest.fixture(autouse=True)
def _setuid_accepted(monkeypatch):
    """Most tests here force setuid mode, which runs only with its opt-in (its refusal: fresh_probe)."""
    monkeypatch.setenv("LORASOUP_SANDBOX", "setuid")


@pytest.fixture
def fresh_probe(monkeypatch):
    """Forget the cached probe results; ``LORASOUP_SANDBOX`` unset unless a test sets it."""
    monkeypatch.setattr(sandbox, "_probed", {})
    monkeypatch.delenv("LORASOUP_SANDBOX", raising=False)


def run(code: str, mode: str, **kwargs) -> sandbox.SandboxResult:
    """The default limits: max_disk_mb=32, max_files=1000."""
    return sandbox.run_untrusted(code, _mode=mode, **kwargs)


# ----------------------------------------------------------------------------------------------- disk


@pytest.mark.parametrize("guards", [True, False])
@pytest.mark.parametrize("mode", ISOLATING)
def test_disk_filling_program_is_stopped(host_dir_usage, mode, guards):
    r = run(FILL, mode, _guards=guards)
    assert not r.ok and r.wall_s < 5
    if mode == "namespace":  # a private tmpfs: full at 32 MB, and nothing of it on the host's disk
        assert "No space left on device" in r.error
        assert host_dir_usage[-1][1] == 1  # program.py, written by the harness
    else:  # the directory is on the host's disk, measured while the program runs
        assert r.error == "disk_limit"
        assert host_dir_usage[-1][0] < 200 * 2**20


@pytest.mark.parametrize("mode", ISOLATING)
def test_many_small_files_are_stopped(host_dir_usage, mode):
    r = run(MANY, mode)
    assert not r.ok and r.wall_s < 10
    if mode == "namespace":
        assert "No space left on device" in r.error and host_dir_usage[-1][1] == 1
    else:
        assert r.error == "disk_limit" and host_dir_usage[-1][1] < 20_000


@pytest.mark.parametrize("mode", ISOLATING)
def test_nothing_is_left_in_shared_writable_dirs(mode):
    """Without the guards the program tries /tmp & co. directly: refused (namespace) or removed (setuid)."""
    name = f"lorasoup-fill-{uuid.uuid4().hex}"
    targets = [os.path.join(d, name) for d in ("/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(d)]
    code = (
        "import os\ndef solution():\n    done = []\n"
        f"    for path in {targets!r}:\n"
        "        try:\n            os.makedirs(path)\n            open(path + '/x', 'wb').write(b'x' * 2**20)\n"
        "            done.append(path)\n        except OSError:\n            pass\n    return done\n"
    )
    r = run(code, mode, _guards=False)
    assert r.ok, r
    if mode == "namespace":
        assert r.value == []
    assert [t for t in targets if os.path.exists(t)] == []


@needs_root
@pytest.mark.skipif(not shutil.which("unshare"), reason="no unshare")
def test_namespace_mounts_are_read_only_outside_the_tmpfs():
    """A world-writable directory the namespace does not hide still cannot be written."""
    parent = next((d for d in ("/var/lib", "/var/cache", "/opt") if os.path.isdir(d)), None)
    if parent is None:
        pytest.skip("no directory outside the hidden ones")
    public = tempfile.mkdtemp(dir=parent, prefix="lorasoup-test-")
    try:
        os.chmod(public, 0o777)
        existing = Path(public, "existing.txt")
        existing.write_text("host")
        existing.chmod(0o666)
        code = (
            f"import os\nopen({str(existing)!r}, 'a').write('pwned')\n"
            f"open(os.path.join({public!r}, 'new.bin'), 'wb').write(b'x' * 2**20)\n"
        )
        r = run(code, "namespace", entry=None, _guards=False)
        assert not r.ok and "Read-only file system" in r.error
        assert existing.read_text() == "host" and os.listdir(public) == ["existing.txt"]
    finally:
        shutil.rmtree(public)


# ------------------------------------------------------------------------------------ who runs the code


def test_no_isolation_is_refused_with_instructions(fresh_probe, monkeypatch):
    """unshare unavailable and the setuid drop failing: neither plain as root nor plain at all."""
    monkeypatch.setattr(sandbox, "_unshare_available", lambda: False)
    monkeypatch.setattr(sandbox, "_probe", lambda mode: "setup: simulated failure")
    for attempt in (sandbox.sandbox_mode, lambda: sandbox.run_untrusted("x = 1\n", entry=None),
                    lambda: sandbox.run_many(["x = 1\n"])):  # fmt: skip
        with pytest.raises(sandbox.SandboxUnavailableError) as info:
            attempt()
        message = str(info.value)
        assert "LORASOUP_SANDBOX=plain-unsafe" in message and "unshare" in message
        assert f"it runs as uid {os.geteuid()}," in message  # who plain mode would run it as


def test_explicit_opt_in_runs_plain(fresh_probe, monkeypatch):
    monkeypatch.setattr(sandbox, "_unshare_available", lambda: False)
    monkeypatch.setattr(sandbox, "_probe", lambda mode: "setup: simulated failure")
    monkeypatch.setenv("LORASOUP_SANDBOX", "plain-unsafe")
    assert sandbox.sandbox_mode() == "plain"
    r = sandbox.run_untrusted("def solution():\n    return 6 * 7\n")
    assert r.ok and r.value == 42 and r.mode == "plain"


def test_forced_plain_needs_the_opt_in_too(fresh_probe):
    with pytest.raises(sandbox.SandboxUnavailableError, match="LORASOUP_SANDBOX=plain-unsafe"):
        sandbox.run_untrusted("def solution():\n    return 1\n", _mode="plain")


def test_unknown_setting_is_an_error(fresh_probe, monkeypatch):
    monkeypatch.setenv("LORASOUP_SANDBOX", "plain")
    with pytest.raises(ValueError, match="plain-unsafe"):
        sandbox.sandbox_mode()


@needs_root
def test_setuid_mode_runs_as_a_fresh_unprivileged_uid():
    """Also where the interpreter lives under a 0700 home (e.g. pyenv in /root): it gets staged."""
    r = sandbox.run_untrusted(GETUID, _mode="setuid")
    assert r.ok, r
    uid, gid, groups = r.value
    assert uid != 0 and sandbox._UID_BASE <= uid < sandbox._UID_BASE + sandbox._UID_SPAN
    assert gid == uid and groups == []
    r = sandbox.run_untrusted("import json, fractions\ndef solution():\n    return float(fractions.Fraction(1, 8))\n",
                              _mode="setuid")  # fmt: skip
    assert r.ok and r.value == 0.125


@needs_root
def test_without_unshare_root_falls_back_to_setuid_when_accepted(fresh_probe, monkeypatch):
    monkeypatch.setattr(sandbox, "_unshare_available", lambda: False)
    monkeypatch.setenv("LORASOUP_SANDBOX", "setuid")
    assert sandbox.sandbox_mode() == "setuid"
    r = sandbox.run_untrusted(GETUID)
    assert r.ok and r.mode == "setuid" and r.value[0] != 0


@needs_root
def test_setuid_mode_leaves_no_process_behind():
    """No PID namespace there: a child that left the process group is still killed (by uid)."""
    code = (
        "import os, time\npid = os.fork()\nif pid == 0:\n    os.setsid()\n    time.sleep(60)\n    os._exit(0)\n"
        "def solution():\n    return [pid, os.getuid()]\n"
    )
    r = sandbox.run_untrusted(code, _mode="setuid", _guards=False)
    assert r.ok, r
    pid, uid = r.value  # without a PID namespace the sandbox's pid is the host's
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return
    assert f"Uid:\t{uid}\t" not in status or "State:\tZ" in status  # dead, not yet reaped by init
