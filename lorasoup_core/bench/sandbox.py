"""Run model-generated Python (e.g. PAL ``def solution(): ...`` programs) outside the harness process.

Every call starts a fresh ``python -I`` with an empty environment (HOME and TMPDIR name its
directory), a throwaway working directory and rlimits (CPU, address space, processes, file size,
open files, no core dumps). On top of that, the strongest isolation the host allows and
``LORASOUP_SANDBOX`` accepts is chosen once per process by probing:

``namespace``  root with ``unshare``: new network namespace (no network at all), PID namespace
               (nothing survives the run), mount namespace hiding /root, /home, /tmp, /run, ...
               with every mount read-only except the working directory, a private tmpfs of
               ``max_disk_mb`` / ``max_files``; the program runs as a fresh unprivileged uid, so
               RLIMIT_NPROC really applies. Always accepted.
``setuid``     root without namespaces, accepted with ``LORASOUP_SANDBOX=setuid``: the program runs
               as a fresh unprivileged uid (from a staged copy of the interpreter when it lives in a
               private directory such as /root) with the host's filesystem, network and /proc. What
               that uid owns in its directory and in /tmp, /var/tmp, /dev/shm, /run/lock (and their
               world-writable subdirectories) counts against ``max_disk_mb`` / ``max_files`` (polled;
               the run is killed when over) and is removed afterwards.
``plain``      no isolation, accepted with ``LORASOUP_SANDBOX=plain-unsafe``: the program runs with
               the harness's own privileges (maybe root); only its directory counts against the cap.

Anything else is refused, also a mode forced with ``_mode``: :class:`SandboxUnavailableError` says
what each opt-in leaves unisolated; a fallback in use logs that once as a warning.

In every mode the child installs guards before running the code (socket stubs, a block on modules
that act past the audit hook such as sqlite3, readline and ctypes, and an audit hook refusing network,
process creation and file access outside its directory; see ``_sandbox_child.py``). Audit hooks
cannot stop determined code: the guards are a second layer behind namespaces (and the uid), and all
there is against what the fallbacks leave unisolated. Output is read with a cap and the result comes
back on a separate pipe.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorasoup_core.bench import _sandbox_host as host
from lorasoup_core.bench._sandbox_host import Limits as _Limits

log = logging.getLogger(__name__)

_CHILD_SOURCE = (Path(__file__).resolve().parent / "_sandbox_child.py").read_text()

# Unprivileged uids handed out per run (no passwd entry needed). A fresh uid per run keeps the
# per-user process count of concurrent sandboxes apart and stops them from signalling each other.
_UID_BASE, _UID_SPAN = 700_000, 100_000
_MAX_RESULT_BYTES = 1_000_000
_DRAIN_S = 0.5  # how long to keep reading pipes after the child exited
_WATCH_S = 0.05  # how often (at most) the disk use of a run without a private tmpfs is measured
_PROBE_CODE = "def solution():\n    return 1\n"
_PROBE_LIMITS = _Limits(30.0, 10, 512, 64_000, 16, 1, 8, 64)
MODES = ("namespace", "setuid", "plain")  # strongest first
ENV_VAR, SETUID_OPT_IN, PLAIN_OPT_IN = "LORASOUP_SANDBOX", "setuid", "plain-unsafe"
_OPT_IN = {"setuid": SETUID_OPT_IN, "plain": PLAIN_OPT_IN}  # the setting that accepts a fallback


class SandboxUnavailableError(RuntimeError):
    """No mode that ``LORASOUP_SANDBOX`` accepts works here (the message says what the opt-ins leave open)."""


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of one sandboxed run.

    ``error`` is None when ok, else one of: "timeout" (wall clock), "cpu_limit", "memory",
    "output_limit", "disk_limit" (the directory, in setuid mode with the uid's files in /tmp & co.,
    over max_disk_mb / max_files where no tmpfs bounds it; in namespace mode a full disk is the
    program's own "exception: OSError: [Errno 28] ..."),
    "killed[: SIGNAME]", "exit: code N" (SystemExit), "exception: Type: message",
    "missing_entry: ...", "no_result[: exit code N]", "protocol: ...", "setup: ...".
    ``wall_s`` is the whole run: start, execution, and the teardown of what it left (a killed PID
    namespace can take the kernel a second or two to remove).
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
    max_disk_mb: int = 32,
    max_files: int = 1000,
    _mode: str | None = None,
    _guards: bool = True,
) -> SandboxResult:
    """Execute ``code`` in a sandboxed subprocess and return ``entry()``'s value (None: just run it).

    Never raises for anything the code does; failures come back as ``ok=False`` with ``error`` set.
    Raises :class:`SandboxUnavailableError` where no mode that ``LORASOUP_SANDBOX`` accepts works.
    ``_mode`` and ``_guards`` exist for tests only (force an isolation mode; check the OS layers
    without the in-process guards).
    """
    mode = _mode or sandbox_mode()
    if mode not in MODES:
        raise ValueError(f"unknown sandbox mode {mode!r}; known: {', '.join(MODES)}")
    if MODES.index(mode) > _weakest_accepted():  # also when forced: a fallback is never the default
        raise SandboxUnavailableError(_refusal({mode: f"forced without {ENV_VAR}={_OPT_IN[mode]}"}))
    if mode != "namespace":
        _warn_once(mode, {})
    limits = _Limits(
        timeout_s, cpu_s, memory_mb, max_output_bytes, max_procs, max_file_mb, max_disk_mb, max_files
    )
    return _execute(code, entry, mode, limits, guards=_guards)


def run_many(codes: Sequence[str], workers: int = 2, **kwargs: Any) -> list[SandboxResult]:
    """Run several programs concurrently, ``workers`` sandboxes at a time; results in input order."""
    sandbox_mode()  # probe once before the threads start
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda code: run_untrusted(code, **kwargs), codes))


_mode_lock = threading.Lock()
_probed: dict[str, str | None] = {}  # isolating mode -> None when it works here, else why not
_warned: set[str] = set()


def sandbox_mode() -> str:
    """The strongest isolation mode that works here and ``LORASOUP_SANDBOX`` accepts (probed once per
    process, then cached); :class:`SandboxUnavailableError` when there is none."""
    weakest = _weakest_accepted()
    why_not: dict[str, str] = {}
    with _mode_lock:
        if os.geteuid() != 0:
            why_not["namespace, setuid"] = "not root (both start as root, then drop to a fresh uid)"
        elif not _unshare_available():
            why_not["namespace"] = "no util-linux `unshare` on PATH"
        for mode in _isolating_candidates():
            if MODES.index(mode) > weakest:
                why_not[mode] = f"not accepted without {ENV_VAR}={_OPT_IN[mode]}"
                break
            if mode not in _probed:
                _probed[mode] = _probe(mode)
            if _probed[mode] is None:
                if mode != "namespace":
                    _warn_once(mode, why_not)
                return mode
            why_not[mode] = _probed[mode]
        if weakest < MODES.index("plain"):
            raise SandboxUnavailableError(_refusal(why_not))
        _warn_once("plain", why_not)
        return "plain"


def _weakest_accepted() -> int:
    """The index in MODES of the weakest mode ``LORASOUP_SANDBOX`` accepts."""
    value = os.environ.get(ENV_VAR, "").strip()
    accepted = {"": "namespace", "auto": "namespace", SETUID_OPT_IN: "setuid", PLAIN_OPT_IN: "plain"}
    if value not in accepted:
        raise ValueError(f"{ENV_VAR}={value!r}: expected 'auto' (the default: namespaces only), "
                         f"{SETUID_OPT_IN!r} or {PLAIN_OPT_IN!r}")  # fmt: skip
    return MODES.index(accepted[value])


def _not_isolated(mode: str) -> str:
    """What a fallback mode leaves to the in-process guards alone (which determined code can bypass)."""
    if mode == "setuid":
        return ("it runs as a fresh unprivileged uid without namespaces: the network, files any user may read, "
                "/proc, and world-writable files and directories are kept from it only by in-process guards "
                "that determined code can bypass; its files in /tmp, /var/tmp, /dev/shm, /run/lock and their "
                "world-writable subdirectories count against max_disk_mb and are removed after the run, those "
                "elsewhere are bounded only per file by max_file_mb")  # fmt: skip
    return (f"nothing is isolated: it runs as uid {os.geteuid()}, kept from this user's files, network and "
            "processes only by in-process guards that determined code can bypass; only its own directory "
            "counts against max_disk_mb")  # fmt: skip


def _warn_once(mode: str, why_not: dict[str, str]) -> None:
    if mode not in _warned:
        _warned.add(mode)
        why = f"; {_describe(why_not)}" if why_not else ""
        log.warning("sandbox: running model-written code in %r mode (%s=%s%s): %s",
                    mode, ENV_VAR, os.environ.get(ENV_VAR, ""), why, _not_isolated(mode))  # fmt: skip


def _unshare_available() -> bool:
    return shutil.which("unshare") is not None


def _isolating_candidates() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["namespace", "setuid"] if _unshare_available() else ["setuid"]


def _probe(mode: str) -> str | None:
    """None when ``mode`` runs a trivial program correctly here, else why not."""
    result = _execute(_PROBE_CODE, "solution", mode, _PROBE_LIMITS, guards=True)
    if result.ok and result.value == 1:
        return None
    reason = " ".join(part for part in (result.error or "wrong result", result.stderr[-300:].strip()) if part)
    log.info("sandbox: %r isolation unavailable: %s", mode, reason)
    return reason


def _describe(why_not: dict[str, str]) -> str:
    return "; ".join(f"{mode}: {why}" for mode, why in why_not.items())


def _refusal(why_not: dict[str, str]) -> str:
    return (f"sandbox: refusing to run model-written code: no mode {ENV_VAR} accepts works here ({_describe(why_not)}). "
            "Full isolation needs root with util-linux `unshare` and mount/PID/network namespaces allowed (in a "
            "container, e.g. CAP_SYS_ADMIN and no seccomp block on unshare). To accept less, set "
            f"{ENV_VAR}={SETUID_OPT_IN} (as root; {_not_isolated('setuid')}) or {ENV_VAR}={PLAIN_OPT_IN} "
            f"(also without root; {_not_isolated('plain')}).")  # fmt: skip


def _execute(code: str, entry: str | None, mode: str, limits: _Limits, *, guards: bool) -> SandboxResult:
    start = time.monotonic()
    workdir = os.path.realpath(tempfile.mkdtemp(prefix="lorasoup-sbx-"))
    result_r, result_w = os.pipe()
    proc, shared = None, ()
    try:
        code_path = os.path.join(workdir, "program.py")
        with open(code_path, "w", encoding="utf-8") as f:
            f.write(code)
        os.chmod(code_path, 0o644)
        uid = _UID_BASE + secrets.randbelow(_UID_SPAN) if mode != "plain" else None
        executable, env, site_dirs, watch = sys.executable, {}, (), None
        try:
            if mode == "setuid":
                interpreter = host.unprivileged_interpreter()
                executable, env, site_dirs = interpreter.executable, interpreter.env, interpreter.site_dirs
                os.chown(workdir, uid, uid)
                shared = host.shared_writable_dirs(range(_UID_BASE, _UID_BASE + _UID_SPAN))
            child_argv = [executable, "-I", "-u", "-X", "utf8", "-c", _CHILD_SOURCE, str(result_w), code_path,
                          entry or "", "1" if guards else "0", json.dumps(list(site_dirs))]  # fmt: skip
            if mode == "namespace":  # the stage mounts a size-limited tmpfs on workdir
                argv = host.namespace_argv(child_argv, workdir, code_path, uid, result_w, limits)
            else:  # on the host's disk: measure the directory (and the uid's files in /tmp & co.)
                argv, max_bytes = child_argv, limits.max_disk_mb * 2**20
                watch = lambda: host.disk_over(workdir, max_bytes, limits.max_files, uid, shared)  # noqa: E731
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=workdir,
                start_new_session=True,  # one process group to kill on timeout
                pass_fds=(result_w,),
                preexec_fn=host.preexec(limits, mode, uid),
            )
        except OSError as exc:
            return SandboxResult(False, error=f"setup: {exc}", wall_s=time.monotonic() - start, mode=mode)
        os.close(result_w)
        result_w = -1
        out, err, report_bytes, reason = _collect(proc, result_r, start + limits.timeout_s, limits, watch)
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
            if mode == "setuid":  # no PID namespace: also get those that left the group
                host.kill_uid(uid)
        for fd in (result_r, result_w):
            if fd >= 0:
                os.close(fd)
        _remove_tree(workdir)
        if mode == "setuid" and proc is not None:  # then what it left in /tmp & co.
            host.sweep_shared_dirs(uid, shared)


def _collect(proc: subprocess.Popen, result_fd: int, deadline: float, limits: _Limits,
             over_disk: Callable[[], bool] | None = None):  # fmt: skip
    """Read stdout, stderr and the result pipe until EOF, the deadline, or a cap is exceeded."""
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    buffers = {out_fd: bytearray(), err_fd: bytearray(), result_fd: bytearray()}
    caps = {out_fd: limits.max_output_bytes, err_fd: limits.max_output_bytes, result_fd: _MAX_RESULT_BYTES}
    reason = None
    exited_at = None
    next_watch = time.monotonic()
    with selectors.DefaultSelector() as selector:
        for fd in buffers:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map() and reason is None:
            now = time.monotonic()
            if exited_at is None and _has_exited(proc.pid):
                exited_at = now
                _kill_group(proc.pid)  # stragglers that still hold the pipes open
                if over_disk is not None and over_disk():  # finished over the cap between two polls
                    reason = "disk_limit"
                    break
            until = deadline if exited_at is None else min(deadline, exited_at + _DRAIN_S)
            if now >= until:
                reason = "timeout" if exited_at is None else None
                break
            if over_disk is not None and exited_at is None and now >= next_watch:
                if over_disk():
                    reason = "disk_limit"
                    break
                # a big /tmp makes a scan slow: keep scanning to at most a tenth of the time
                next_watch = time.monotonic() + max(_WATCH_S, 9 * (time.monotonic() - now))
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


def _await_group_exit(pgid: int, timeout_s: float = 10.0) -> None:
    """Wait until the killed group is gone: a PID namespace's processes die after its parent was
    reaped, and the kernel's teardown of a killed namespace takes 1-2 s on some hosts (longer under
    load); nothing of a run may outlive it. Returns as soon as the group is empty."""
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


_remove_tree = host.remove_tree  # a module name, so tests can look at the directory before it goes
