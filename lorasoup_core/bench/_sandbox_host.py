"""Host-side preparation of a sandboxed run, for ``sandbox.py`` only: the rlimits and privilege drop
applied before exec, the namespace stage's configuration, an interpreter that an unprivileged uid can
start, and the disk bounds of the modes that have no private tmpfs (setuid, plain).
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import shutil
import signal
import site
import stat
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).resolve().parent
STAGE_SOURCE = (_HERE / "_sandbox_stage.py").read_text()

# Directories replaced by an empty tmpfs in namespace mode (private data, world-writable places,
# daemon sockets); the Python installation is re-exposed inside them.
_HIDE_DIRS = ("/root", "/home", "/tmp", "/var/tmp", "/dev/shm", "/run", "/mnt", "/media", "/srv")
_HIDE_FILES = ("/etc/passwd", "/etc/group")
# World-writable places a setuid-mode program can reach (with TMPDIR and their world-writable
# subdirectories): what its fresh uid owns there counts against the disk cap and is removed after.
_SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
_SHARED_RESCAN_S = 30.0  # the walk finding their world-writable subdirectories is cached this long
_STAGE_SKIP = frozenset({"site-packages", "test"})  # not needed to run the stdlib; large


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    cpu_s: int
    memory_mb: int
    max_output_bytes: int
    max_procs: int
    max_file_mb: int
    max_disk_mb: int
    max_files: int


def preexec(limits: Limits, mode: str, uid: int | None):
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


# ------------------------------------------------------------------------------------ namespace mode


def namespace_argv(child_argv: list[str], workdir: str, program: str, uid: int, result_fd: int,
                   limits: Limits) -> list[str]:  # fmt: skip
    needed = _outermost(
        [os.path.dirname(os.path.realpath(sys.executable))]
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
        "program": program,
        "disk": f"size={limits.max_disk_mb}m,nr_inodes={limits.max_files + 2}",  # + root dir, program
        "result_fd": result_fd,
        "hide_dirs": hide_dirs,
        "expose": [p for p in needed if any(_is_under(p, h) for h in hide_dirs)],
        "hide_files": [f for f in _HIDE_FILES if os.path.isfile(f)],
    }
    unshare = shutil.which("unshare") or "unshare"
    return [unshare, "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--",
            sys.executable, "-I", "-c", STAGE_SOURCE, json.dumps(config)]  # fmt: skip


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _outermost(paths: list[str]) -> list[str]:
    """Drop paths that lie inside another path of the list."""
    unique = sorted(set(paths))
    return [p for p in unique if not any(q != p and _is_under(p, q) for q in unique)]


# ------------------------------------------------------------------------- setuid mode's interpreter


@dataclass(frozen=True)
class Interpreter:
    """How to start Python as an unprivileged uid: executable, environment, site dirs to add."""

    executable: str
    env: dict[str, str]
    site_dirs: tuple[str, ...]


_interpreter_lock = threading.Lock()
_interpreter: Interpreter | None = None


def unprivileged_interpreter() -> Interpreter:
    """``sys.executable`` when other users can reach it and its installation, else a staged copy (made
    once per process, removed at exit). Raises OSError when neither works."""
    global _interpreter
    with _interpreter_lock:
        if _interpreter is None:
            _interpreter = _find_or_stage()
        return _interpreter


def _find_or_stage() -> Interpreter:
    real_exe = os.path.realpath(sys.executable)
    prefixes = {
        os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    }
    if all(others_can_read(p) for p in (real_exe, *prefixes)):
        return Interpreter(sys.executable, {}, ())
    # E.g. pyenv under a 0700 /root: a dropped uid cannot even exec the binary. Hard links (no data
    # copied on the same filesystem) give the base installation a path it can reach; the venv's
    # site-packages are added by the child when readable.
    root = _stage_base_installation(real_exe)
    site_dirs = tuple(p for p in site.getsitepackages() if os.path.isdir(p) and others_can_read(p))
    executable = os.path.join(root, "bin", os.path.basename(real_exe))
    return Interpreter(executable, {"LD_LIBRARY_PATH": os.path.join(root, "lib")}, site_dirs)


def _stage_base_installation(real_exe: str) -> str:
    base = os.path.realpath(sys.base_prefix)
    stdlib = os.path.realpath(sysconfig.get_path("stdlib"))
    libdir = sysconfig.get_config_var("LIBDIR") or os.path.join(base, "lib")
    root = tempfile.mkdtemp(prefix="lorasoup-sbx-python-")
    atexit.register(shutil.rmtree, root, True)
    os.chmod(root, 0o755)
    if not others_can_read(root):
        raise OSError(f"staging dir {root} is not reachable by other users (TMPDIR inside a private dir?)")
    relative = os.path.relpath(stdlib, base)
    if relative.startswith(".."):  # Python finds its stdlib as <prefix>/lib/pythonX.Y
        relative = os.path.join("lib", os.path.basename(stdlib))
    _mirror(stdlib, os.path.join(root, relative))
    parts = relative.split(os.sep)
    for sub in ["bin", "lib", *(os.path.join(*parts[:i]) for i in range(1, len(parts)))]:
        os.makedirs(os.path.join(root, sub), exist_ok=True)
        os.chmod(os.path.join(root, sub), 0o755)  # whatever the umask
    _link_or_copy(real_exe, os.path.join(root, "bin", os.path.basename(real_exe)))
    for name in os.listdir(libdir) if os.path.isdir(libdir) else ():  # a shared libpython
        if name.startswith("libpython") and ".so" in name:
            _link_or_copy(os.path.join(libdir, name), os.path.join(root, "lib", name))
    return root


def _mirror(source: str, target: str) -> None:
    for dirpath, dirnames, filenames in os.walk(source):
        if dirpath == source:
            dirnames[:] = [d for d in dirnames if d not in _STAGE_SKIP]
        here = os.path.join(target, os.path.relpath(dirpath, source))
        os.makedirs(here, exist_ok=True)
        os.chmod(here, 0o755)  # whatever the umask
        for name in filenames:
            _link_or_copy(os.path.join(dirpath, name), os.path.join(here, name))


def _link_or_copy(source: str, target: str) -> None:
    try:
        mode = os.stat(source).st_mode
    except OSError:  # a dangling link
        return
    if mode & stat.S_IROTH:
        try:
            os.link(source, target)
            return
        except OSError:  # another filesystem, or links refused: copy
            pass
    shutil.copyfile(source, target)
    os.chmod(target, 0o755 if mode & stat.S_IXUSR else 0o644)  # a copy's mode never touches the source


def others_can_read(path: str) -> bool:
    """Whether a uid without rights of its own can reach and read ``path`` (x on every ancestor)."""
    real = os.path.realpath(path)
    ancestors, parent = [], os.path.dirname(real)
    while True:
        ancestors.append(parent)
        if parent == "/":
            break
        parent = os.path.dirname(parent)
    try:
        if any(not os.stat(a).st_mode & stat.S_IXOTH for a in ancestors):
            return False
        mode = os.stat(real).st_mode
    except OSError:
        return False
    need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
    return mode & need == need


# ----------------------------------------------------------------- disk bounds without a tmpfs


def disk_over(workdir: str, max_bytes: int, max_entries: int, uid: int | None = None,
              shared: tuple[str, ...] = ()) -> bool:  # fmt: skip
    """Whether the run's directory plus what ``uid`` owns in the ``shared`` directories holds more than
    ``max_bytes`` (allocated) or ``max_entries`` entries; never follows links, stops once over."""
    budget = [max_bytes, max_entries]
    if _tree_over(workdir, budget):
        return True
    for directory in shared if uid is not None else ():
        for path, st in _entries(directory):
            if st.st_uid != uid or path == workdir:
                continue
            if _charge(budget, st) or (stat.S_ISDIR(st.st_mode) and _tree_over(path, budget)):
                return True
    return False


def _entries(directory: str) -> Iterator[tuple[str, os.stat_result]]:
    """(path, lstat) of each entry of `directory`; an unreadable directory or entry (gone meanwhile, no
    permission) is skipped."""
    try:
        listing = os.scandir(directory)
    except OSError:
        return
    with listing:
        for entry in listing:
            try:
                yield entry.path, entry.stat(follow_symlinks=False)
            except OSError:
                continue


def _charge(budget: list[int], st: os.stat_result) -> bool:
    budget[0] -= st.st_blocks * 512
    budget[1] -= 1
    return budget[0] < 0 or budget[1] < 0


def _tree_over(path: str, budget: list[int]) -> bool:
    stack = [path]
    while stack:
        for entry, st in _entries(stack.pop()):
            if _charge(budget, st):
                return True
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry)
    return False


_shared_lock = threading.Lock()
_shared_found: tuple[float, tuple[str, ...]] | None = None


def shared_writable_dirs(skip_owners: range) -> tuple[str, ...]:
    """The world-writable directories a fresh uid can reach at or under /tmp, /var/tmp, /dev/shm,
    /run/lock and TMPDIR. Directories owned by ``skip_owners`` (other runs') are not walked."""
    global _shared_found
    with _shared_lock:
        if _shared_found is None or time.monotonic() - _shared_found[0] > _SHARED_RESCAN_S:
            roots = {os.path.realpath(d) for d in (*_SHARED_WRITABLE, tempfile.gettempdir())}
            _shared_found = (time.monotonic(), _world_writable(sorted(roots), skip_owners))
        return _shared_found[1]


def _world_writable(roots: list[str], skip_owners: range) -> tuple[str, ...]:
    found, seen = [], set()
    stack = [r for r in roots if os.path.isdir(r)]  # one the uid cannot enter just holds nothing of it
    while stack:
        directory = stack.pop()
        try:
            st = os.stat(directory)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        if st.st_mode & stat.S_IWOTH:
            found.append(directory)
        for entry, sub in _entries(directory):
            if stat.S_ISDIR(sub.st_mode) and sub.st_mode & stat.S_IXOTH and sub.st_uid not in skip_owners:
                stack.append(entry)
    return tuple(sorted(found))


def kill_uid(uid: int, timeout_s: float = 1.0) -> None:
    """SIGKILL every process of ``uid``: kill(-1) from a child that became that uid reaches them all,
    also those that left the process group (setuid mode has no PID namespace). Then wait until none
    is alive, so nothing writes while its files are swept."""
    pid = os.fork()
    if pid == 0:  # only syscalls here: the parent may have threads
        try:
            os.setgid(uid)
            os.setuid(uid)
            for _ in range(3):  # again, for anything a fork in flight created
                os.kill(-1, signal.SIGKILL)  # its result says nothing: 0 if any other process exists
                time.sleep(0.002)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    deadline = time.monotonic() + timeout_s
    while _live_pids_of(uid) and time.monotonic() < deadline:
        time.sleep(0.005)


def _live_pids_of(uid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:  # the status, not the entry's owner: that is root while a process is not dumpable
            status = Path(entry.path, "status").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)] and not fields.get("State", "").startswith("Z"):
            found.append(int(entry.name))
    return found


def sweep_shared_dirs(uid: int, shared: tuple[str, ...]) -> None:
    """Remove what a finished setuid run left in the ``shared`` world-writable directories: its uid is
    fresh and its processes are dead, so whatever that uid owns there is the run's."""
    for directory in shared:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
                if st.st_uid != uid:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    remove_tree(entry.path)
                else:
                    os.unlink(entry.path)
            except OSError:
                continue


def remove_tree(path: str) -> None:
    """Remove a directory even if the program made parts of it unreadable."""
    shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(path):
        for root, dirs, _files in os.walk(path):
            for d in dirs:
                try:
                    os.chmod(os.path.join(root, d), 0o700)
                except OSError:
                    pass
        shutil.rmtree(path, ignore_errors=True)
