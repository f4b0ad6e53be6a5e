"""Run model-generated Python (e.g. PAL ``def solution(): ...`` programs) outside the harness process.

Every call starts a fresh ``sys.executable -I`` with an empty environment, a throwaway working
directory and rlimits (CPU, address space, processes, file size, open files, no core dumps). On top
of that, the strongest isolation the host allows is chosen once per process by probing:

``namespace``  root with ``unshare``: new network namespace (no network at all), PID namespace
               (nothing survives the run), mount namespace hiding /root, /home, /tmp, /run, ...
               and the program runs as a fresh unprivileged uid, so RLIMIT_NPROC really applies.
``setuid``     root without namespaces: the program runs as a fresh unprivileged uid.
``plain``      not root: rlimits and the in-process guards only.

In every mode the child installs guards (socket stubs and an audit hook refusing network, process
creation and file access outside its directory; see ``_sandbox_child.py``) before running the code.
Output is read with a cap and the result comes back on a separate pipe.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
_CHILD_SOURCE = (_HERE / "_sandbox_child.py").read_text()
_STAGE_SOURCE = (_HERE / "_sandbox_stage.py").read_text()

# Unprivileged uids handed out per run (no passwd entry needed). A fresh uid per run keeps the
# per-user process count of concurrent sandboxes apart and stops them from signalling each other.
_UID_BASE, _UID_SPAN = 700_000, 100_000
# Directories replaced by an empty tmpfs in namespace mode (private data, world-writable places,
# daemon sockets); the Python installation and the sandbox directory are re-exposed inside them.
_HIDE_DIRS = ("/root", "/home", "/tmp", "/var/tmp", "/dev/shm", "/run", "/mnt", "/media", "/srv")
_HIDE_FILES = ("/etc/passwd", "/etc/group")
_MAX_RESULT_BYTES = 1_000_000
_DRAIN_S = 0.5  # how long to keep reading pipes after the child exited
_PROBE_CODE = "def solution():\n    return 1\n"
MODES = ("namespace", "setuid", "plain")


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of one sandboxed run.

    ``error`` is None when ok, else one of: "timeout" (wall clock), "cpu_limit", "memory",
    "output_limit", "killed[: SIGNAME]", "exit: code N" (SystemExit), "exception: Type: message",
    "missing_entry: ...", "no_result[: exit code N]", "protocol: ...", "setup: ...".
    """

    ok: bool
    value: Any = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    wall_s: float = 0.0
    mode: str = ""


def run_untrusted(
    code: str,
    *,
    entry: str | None = "solution",
    timeout_s: float = 5.0,
    cpu_s: int = 5,
    memory_mb: int = 256,
    max_output_bytes: int = 64_000,
    max_procs: int = 16,
    max_file_mb: int = 16,
    _mode: str | None = None,
    _guards: bool = True,
) -> SandboxResult:
    """Execute ``code`` in a sandboxed subprocess and return ``entry()``'s value (None: just run it).

    Never raises for anything the code does; failures come back as ``ok=False`` with ``error`` set.
    ``_mode`` and ``_guards`` exist for tests only (force an isolation mode; check the OS layers
    without the in-process guards).
    """
    mode = _mode or sandbox_mode()
    if mode not in MODES:
        raise ValueError(f"unknown sandbox mode {mode!r}; known: {', '.join(MODES)}")
    limits = _Limits(timeout_s, cpu_s, memory_mb, max_output_bytes, max_procs, max_file_mb)
    return _execute(code, entry, mode, limits, guards=_guards)


def run_many(codes: Sequence[str], workers: int = 2, **kwargs: Any) -> list[SandboxResult]:
    """Run several programs concurrently, ``workers`` sandboxes at a time; results in input order."""
    sandbox_mode()  # probe once before the threads start
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda code: run_untrusted(code, **kwargs), codes))


_mode_lock = threading.Lock()
_selected_mode: str | None = None


def sandbox_mode() -> str:
    """The strongest isolation mode that works here (probed once per process, then cached)."""
    global _selected_mode
    with _mode_lock:
        if _selected_mode is None:
            _selected_mode = _probe_modes()
        return _selected_mode


def _probe_modes() -> str:
    candidates = ["plain"]
    if os.geteuid() == 0:
        candidates = ["namespace", "setuid", "plain"] if shutil.which("unshare") else ["setuid", "plain"]
    limits = _Limits(30.0, 10, 512, 64_000, 16, 1)
    for mode in candidates:
        result = _execute(_PROBE_CODE, "solution", mode, limits, guards=True)
        if result.ok and result.value == 1:
            if mode != candidates[0]:
                log.warning("sandbox: using %r isolation (stronger modes failed)", mode)
            return mode
        log.info("sandbox: %r isolation unavailable: %s %s", mode, result.error, result.stderr[-500:])
    raise RuntimeError("sandbox: not even the plain mode can run Python here")


@dataclass(frozen=True)
class _Limits:
    timeout_s: float
    cpu_s: int
    memory_mb: int
    max_output_bytes: int
    max_procs: int
    max_file_mb: int


def _execute(code: str, entry: str | None, mode: str, limits: _Limits, *, guards: bool) -> SandboxResult:
    start = time.monotonic()
    workdir = os.path.realpath(tempfile.mkdtemp(prefix="lorasoup-sbx-"))
    result_r, result_w = os.pipe()
    proc = None
    try:
        code_path = os.path.join(workdir, "program.py")
        with open(code_path, "w", encoding="utf-8") as f:
            f.write(code)
        os.chmod(code_path, 0o644)
        uid = _UID_BASE + secrets.randbelow(_UID_SPAN) if mode != "plain" else None
        if uid is not None:
            os.chown(workdir, uid, uid)
        child_argv = [sys.executable, "-I", "-u", "-X", "utf8", "-c", _CHILD_SOURCE,
                      str(result_w), code_path, entry or "", "1" if guards else "0"]  # fmt: skip
        if mode == "namespace":
            argv = _namespace_argv(child_argv, workdir, uid, result_w)
        else:
            argv = child_argv
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={},
                cwd=workdir,
                start_new_session=True,  # one process group to kill on timeout
                pass_fds=(result_w,),
                preexec_fn=_preexec(limits, mode, uid),
            )
        except OSError as exc:
            return SandboxResult(False, error=f"setup: {exc}", wall_s=time.monotonic() - start, mode=mode)
        os.close(result_w)
        result_w = -1
        out, err, report_bytes, reason = _collect(proc, result_r, start + limits.timeout_s, limits)
        _kill_group(proc.pid)
        returncode = proc.wait()
        _await_group_exit(proc.pid)
        return _classify(out, err, report_bytes, reason, returncode, mode, time.monotonic() - start)
    finally:
        if proc is not None:
            if proc.returncode is None:  # only while unreaped is the pid surely still our group's
                _kill_group(proc.pid)
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        for fd in (result_r, result_w):
            if fd >= 0:
                os.close(fd)
        _remove_tree(workdir)


def _namespace_argv(child_argv: list[str], workdir: str, uid: int, result_fd: int) -> list[str]:
    needed = _outermost(
        [workdir, os.path.dirname(os.path.realpath(sys.executable))]
        + [os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)]
    )
    hide_dirs = []
    for candidate in _outermost([os.path.realpath(d) for d in _HIDE_DIRS if os.path.isdir(d)]):
        if not any(_is_under(candidate, path) for path in needed):  # never hide what we need
            hide_dirs.append(candidate)
    config = {
        "argv": child_argv,
        "uid": uid,
        "cwd": workdir,
        "result_fd": result_fd,
        "hide_dirs": hide_dirs,
        "expose": [p for p in needed if any(_is_under(p, h) for h in hide_dirs)],
        "hide_files": [f for f in _HIDE_FILES if os.path.isfile(f)],
    }
    unshare = shutil.which("unshare") or "unshare"
    return [unshare, "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--",
            sys.executable, "-I", "-c", _STAGE_SOURCE, json.dumps(config)]  # fmt: skip


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _outermost(paths: list[str]) -> list[str]:
    """Drop paths that lie inside another path of the list."""
    unique = sorted(set(paths))
    return [p for p in unique if not any(q != p and _is_under(p, q) for q in unique)]


def _preexec(limits: _Limits, mode: str, uid: int | None):
    """Runs in the forked child before exec: apply rlimits, then (setuid mode) drop privileges."""
    nproc = limits.max_procs
    if mode == "plain":  # RLIMIT_NPROC counts all of this user's tasks, not just the sandbox's
        nproc += _count_own_tasks()
    rlimits = [
        (resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1)),  # SIGXCPU first, SIGKILL 1 s later
        (resource.RLIMIT_AS, (limits.memory_mb * 2**20,) * 2),
        (resource.RLIMIT_NPROC, (nproc, nproc)),
        (resource.RLIMIT_FSIZE, (limits.max_file_mb * 2**20,) * 2),
        (resource.RLIMIT_NOFILE, (64, 64)),
        (resource.RLIMIT_CORE, (0, 0)),
    ]

    def apply() -> None:
        for which, value in rlimits:
            resource.setrlimit(which, value)
        if mode == "setuid" and uid is not None:  # namespace mode drops inside the stage instead
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

    return apply


def _count_own_tasks() -> int:
    uid, total = os.getuid(), 0
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                total += len(os.listdir(f"/proc/{entry.name}/task"))
        except OSError:
            continue
    return total


def _collect(proc: subprocess.Popen, result_fd: int, deadline: float, limits: _Limits):
    """Read stdout, stderr and the result pipe until EOF, the deadline, or a cap is exceeded."""
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    buffers = {out_fd: bytearray(), err_fd: bytearray(), result_fd: bytearray()}
    caps = {out_fd: limits.max_output_bytes, err_fd: limits.max_output_bytes, result_fd: _MAX_RESULT_BYTES}
    reason = None
    exited_at = None
    with selectors.DefaultSelector() as selector:
        for fd in buffers:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map() and reason is None:
            now = time.monotonic()
            if exited_at is None and _has_exited(proc.pid):
                exited_at = now
                _kill_group(proc.pid)  # stragglers that still hold the pipes open
            until = deadline if exited_at is None else min(deadline, exited_at + _DRAIN_S)
            if now >= until:
                reason = "timeout" if exited_at is None else None
                break
            for key, _ in selector.select(timeout=min(0.05, until - now)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                buffer = buffers[key.fd]
                room = caps[key.fd] - len(buffer)
                buffer += chunk[: max(room, 0)]
                if len(chunk) > room:
                    reason = "output_limit" if key.fd != result_fd else "protocol: result too large"
                    break
    if reason is not None:
        _kill_group(proc.pid)
    return bytes(buffers[out_fd]), bytes(buffers[err_fd]), bytes(buffers[result_fd]), reason


def _has_exited(pid: int) -> bool:
    """True once the child has exited, without reaping it (its pid stays ours to kill the group)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _await_group_exit(pgid: int, timeout_s: float = 2.0) -> None:
    """Wait (briefly) until the killed group is gone: a PID namespace's processes die after its parent
    was reaped, and under load that can take a moment; nothing of a run may outlive it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        _kill_group(pgid)
        time.sleep(0.01)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _classify(out: bytes, err: bytes, report_bytes: bytes, reason: str | None, returncode: int,
              mode: str, wall_s: float) -> SandboxResult:  # fmt: skip
    stdout = out.decode("utf-8", errors="replace")
    stderr = err.decode("utf-8", errors="replace")

    def done(ok: bool, value: Any = None, error: str | None = None) -> SandboxResult:
        return SandboxResult(ok, value, stdout, stderr, error, wall_s, mode)

    if reason is not None:
        return done(False, error=reason)
    lines = report_bytes.strip().splitlines()
    if len(lines) > 1:
        return done(False, error="protocol: more than one result message")
    if lines:
        try:
            report = json.loads(lines[0])
            return done(bool(report["ok"]), report.get("value"), report.get("error"))
        except (ValueError, KeyError, TypeError):
            return done(False, error="protocol: unreadable result message")
    # No report: the process died or exited early. In namespace mode the stage encodes a signal
    # death as 128 + signal; elsewhere Popen reports it as a negative return code.
    signum = -returncode if returncode < 0 else 0
    if mode == "namespace" and returncode > 128:
        signum = returncode - 128
    if signum == signal.SIGXCPU:
        return done(False, error="cpu_limit")
    if signum == signal.SIGKILL:
        return done(False, error="killed")
    if signum:
        name = signal.Signals(signum).name if signum in signal.valid_signals() else str(signum)
        return done(False, error=f"killed: {name}")
    return done(False, error="no_result" if returncode == 0 else f"no_result: exit code {returncode}")


def _remove_tree(path: str) -> None:
    """Remove the sandbox directory even if the program made parts of it unreadable."""
    shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(path):
        for root, dirs, _files in os.walk(path):
            for d in dirs:
                try:
                    os.chmod(os.path.join(root, d), 0o700)
                except OSError:
                    pass
        shutil.rmtree(path, ignore_errors=True)
