"""The sandbox against programs that go past its in-process audit hook (C modules that open files
natively, native calls, a disk filled through /tmp), in every mode a test can force; and its refusal
to fall back from namespaces without an explicit opt-in."""

from __future__ import annotations

import glob
import logging
import os
import shutil
import stat
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from lorasoup_core.bench import _sandbox_host, sandbox

ROOT = os.geteuid() == 0
NOT_ROOT = "setuid mode starts as root and drops to a fresh uid; not root here"
MODES = [
    pytest.param(
        "namespace",
        marks=pytest.mark.skipif(
            not (ROOT and shutil.which("unshare")), reason="namespace mode needs root and unshare"
        ),
    ),
    pytest.param("setuid", marks=pytest.mark.skipif(not ROOT, reason=NOT_ROOT)),
    "plain",  # also without root: it runs as this user
]
OPT_IN = {"namespace": "auto", "setuid": "setuid", "plain": "plain-unsafe"}


@pytest.fixture(params=MODES)
def mode(request, monkeypatch) -> str:
    """A forced mode, with the LORASOUP_SANDBOX setting that accepts it."""
    monkeypatch.setenv("LORASOUP_SANDBOX", OPT_IN[request.param])
    return request.param


@pytest.fixture
def outside():
    """A unique path prefix in /tmp, outside any sandbox; whatever a run left there is removed after
    the test (the old code left such files in plain mode)."""
    prefix = f"/tmp/lorasoup-escape-{uuid.uuid4().hex}"
    yield prefix
    for path in glob.glob(prefix + "*"):
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)


@pytest.fixture
def public_secret():
    """A world-readable file outside the sandbox, like another user's world-readable mlflow.db."""
    directory = tempfile.mkdtemp(dir="/tmp", prefix="lorasoup-home-")
    os.chmod(directory, 0o755)
    secret = f"SECRET-{uuid.uuid4().hex}"
    path = Path(directory, "mlflow.db")
    path.write_text(secret + "\n")
    path.chmod(0o644)
    yield str(path), secret
    shutil.rmtree(directory)


def left_behind(prefix: str) -> list[str]:
    return glob.glob(prefix + "*")


def leaked(result: sandbox.SandboxResult, secret: str) -> bool:
    return any(secret in str(part) for part in (result.value, result.stdout, result.stderr, result.error))


def blocked(result: sandbox.SandboxResult, module: str) -> bool:
    return not result.ok and f"{module} is blocked in the sandbox" in (result.error or "")


# ---------------------------------------------------------------------- modules that bypass the hook


@pytest.mark.parametrize("how", ["connect", "attach"])
def test_sqlite3_cannot_write_outside(mode, outside, how):
    """sqlite3 opens its files natively, without the audit hook's "open" event."""
    target = outside + ".db"
    body = {
        "connect": f"    db = sqlite3.connect({target!r})\n    db.execute('CREATE TABLE t (v)')\n",
        "attach": "    db = sqlite3.connect(':memory:')\n"
        f"    db.execute(\"ATTACH DATABASE '{target}' AS x\")\n    db.execute('CREATE TABLE x.t (v)')\n",
    }[how]
    code = "import sqlite3\ndef solution():\n" + body + "    db.commit()\n    return 'written'\n"
    r = sandbox.run_untrusted(code, _mode=mode)
    assert blocked(r, "sqlite3"), r
    assert left_behind(outside) == []


@pytest.mark.parametrize("source", ["public", "/etc/shadow"])
def test_readline_cannot_read_or_write_outside(mode, outside, public_secret, source):
    path, secret = public_secret if source == "public" else ("/etc/shadow", "root:")
    if not os.path.exists(path):
        pytest.skip(f"no {path} here")
    code = (
        "import readline\ndef solution():\n"
        f"    readline.read_history_file({path!r})\n"
        f"    readline.write_history_file({outside + '.history'!r})\n"
        "    return [readline.get_history_item(i) for i in range(1, readline.get_current_history_length() + 1)]\n"
    )
    r = sandbox.run_untrusted(code, _mode=mode)
    assert blocked(r, "readline"), r
    assert not leaked(r, secret)
    assert left_behind(outside) == []


@pytest.mark.parametrize("how", ["direct", "subinterpreter"])
def test_ctypes_cannot_run_native_code(mode, outside, how):
    """Directly (refused already by the old hook), or from a subinterpreter, which has no audit hook."""
    native = f"import ctypes; ctypes.CDLL(None).system(b'touch {outside}.native')"
    if how == "direct":
        code, module = native.replace("; ", "\n") + "\n", "ctypes"
    else:
        module = "_xxsubinterpreters" if sys.version_info < (3, 13) else "_interpreters"
        try:
            __import__(module)
        except ImportError:
            pytest.skip(f"no {module} in this Python")
        code = f"import {module} as interp\ninterp.run_string(interp.create(), {native!r})\n"
    r = sandbox.run_untrusted(code, entry=None, _mode=mode)
    assert blocked(r, module), r
    assert left_behind(outside) == []


# ------------------------------------------------------------------- files the hook used to let through


def test_hard_link_to_a_file_outside_is_refused(mode, public_secret):
    path, secret = public_secret
    r = sandbox.run_untrusted(f"import os\nos.link({path!r}, 'l')\ndef solution():\n    return open('l').read()\n",
                              _mode=mode)  # fmt: skip
    assert not r.ok and not leaked(r, secret)
    assert "sandbox: os.link on" in r.error, r  # refused by the hook, whatever the kernel would do


def test_directory_fd_outside_is_refused(mode):
    """A path relative to a directory fd (dir_fd=) is not what the hook resolves: none from outside."""
    name = f"lorasoup-escape-{uuid.uuid4().hex}"
    target = Path(sys.base_prefix, name)  # the old hook let plain mode (as root) write here
    code = (
        f"import os, sys\nfd = os.open(sys.base_prefix, os.O_RDONLY)\n"
        f"os.close(os.open({name!r}, os.O_WRONLY | os.O_CREAT, dir_fd=fd))\n"
    )
    try:
        r = sandbox.run_untrusted(code, entry=None, _mode=mode)
        assert not r.ok and "sandbox: opening" in r.error, r
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


def test_scratch_files_stay_in_the_sandbox(mode):
    """HOME and TMPDIR name the sandbox directory: tempfile and ~ land there, and go with it."""
    code = (
        "import os, tempfile\ndef solution():\n    fd, path = tempfile.mkstemp()\n    os.close(fd)\n"
        "    return [os.getcwd(), path, os.path.expanduser('~'), os.environ.get('TMPDIR')]\n"
    )
    r = sandbox.run_untrusted(code, _mode=mode)
    assert r.ok, r
    cwd, path, home, tmpdir = r.value
    assert os.path.dirname(path) == cwd == home == tmpdir
    assert not os.path.exists(path)


# ------------------------------------------------------------------------- the disk outside its directory


@pytest.mark.skipif(not ROOT, reason=NOT_ROOT)
@pytest.mark.parametrize("where", ["/tmp", "/var/tmp", "/dev/shm", "world-writable subdirectory"])
def test_setuid_disk_cap_covers_shared_writable_dirs(monkeypatch, outside, where):
    """Without the guards (what determined code gets) a setuid run writes 50 MB into /tmp & co. with a
    5 MB cap: killed as "disk_limit", and nothing of it is left. The old code watched only its own
    directory: the run finished."""
    monkeypatch.setenv("LORASOUP_SANDBOX", "setuid")
    if where.startswith("world"):
        os.mkdir(outside)
        os.chmod(outside, 0o1777)  # made by someone else, writable by anyone (like /tmp itself)
        monkeypatch.setattr(_sandbox_host, "_shared_found", None)  # it is newer than the cached walk
        directory = outside
    elif os.path.isdir(where) and os.stat(where).st_mode & stat.S_IWOTH:
        directory = where
    else:
        pytest.skip(f"no world-writable {where} here")
    target = os.path.join(directory, f"lorasoup-fill-{uuid.uuid4().hex}")
    code = (
        "import os, time\ndef solution():\n"
        f"    os.mkdir({target!r})\n"
        f"    for i in range(50):\n        open(os.path.join({target!r}, f'f{{i}}'), 'wb').write(b'x' * 2**20)\n"
        "    time.sleep(30)  # still running: killed by the watcher, not the 20 s timeout\n"
    )
    try:
        r = sandbox.run_untrusted(
            code, _mode="setuid", _guards=False, max_disk_mb=5, max_file_mb=64, timeout_s=20
        )
        assert not r.ok and r.error == "disk_limit", r
        assert r.wall_s < 10
        assert not os.path.exists(target)
    finally:
        shutil.rmtree(target, ignore_errors=True)


# ------------------------------------------------------------------------------- falling back at all


@pytest.fixture
def no_namespaces(monkeypatch, request):
    """Namespaces unavailable: no unshare, or its probe failing (the probe of other modes is real)."""
    monkeypatch.setattr(sandbox, "_probed", {})
    monkeypatch.setattr(sandbox, "_warned", set(), raising=False)  # raising=False: the old code had none
    monkeypatch.delenv("LORASOUP_SANDBOX", raising=False)
    if request.param == "no unshare":
        monkeypatch.setattr(sandbox, "_unshare_available", lambda: False)
    else:
        real_probe = sandbox._probe
        monkeypatch.setattr(
            sandbox, "_probe", lambda m: "setup: simulated failure" if m == "namespace" else real_probe(m)
        )
    return request.param


@pytest.mark.parametrize("no_namespaces", ["no unshare", "namespace probe fails"], indirect=True)
def test_no_fallback_without_opt_in(no_namespaces):
    for attempt in (sandbox.sandbox_mode, lambda: sandbox.run_untrusted("x = 1\n", entry=None),
                    lambda: sandbox.run_many(["x = 1\n"]),
                    lambda: sandbox.run_untrusted("x = 1\n", entry=None, _mode="setuid")):  # fmt: skip
        with pytest.raises(sandbox.SandboxUnavailableError) as info:
            attempt()
        message = str(info.value)
        assert "\n" not in message
        assert "LORASOUP_SANDBOX=setuid" in message and "LORASOUP_SANDBOX=plain-unsafe" in message
        assert "the network, files any user may read" in message  # what setuid mode leaves open
        assert "nothing is isolated" in message  # ... and plain mode


@pytest.mark.skipif(not ROOT, reason=NOT_ROOT)
@pytest.mark.parametrize("no_namespaces", ["no unshare", "namespace probe fails"], indirect=True)
def test_setuid_opt_in_warns_once_what_is_not_isolated(no_namespaces, monkeypatch, caplog):
    monkeypatch.setenv("LORASOUP_SANDBOX", "setuid")
    with caplog.at_level(logging.WARNING, logger=sandbox.__name__):
        assert sandbox.sandbox_mode() == "setuid"
        r = sandbox.run_untrusted("def solution():\n    return 7\n")
        sandbox.run_untrusted("def solution():\n    return 7\n")
    assert r.ok and r.value == 7 and r.mode == "setuid"
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "'setuid' mode (LORASOUP_SANDBOX=setuid" in warnings[0]
    assert "the network, files any user may read" in warnings[0] and "/dev/shm" in warnings[0]
