"""The sandboxed child (``python -I -c <this source> RESULT_FD CODE_PATH ENTRY GUARDS SITE_DIRS``).

Runs as the unprivileged sandbox user with the sandbox directory as cwd. Before the generated code
runs it empties the environment (HOME, TMPDIR, TMP, TEMP then name the sandbox directory) and (unless
GUARDS is "0", a test-only switch for checking the OS layers alone) installs in-process guards: socket
stubs, an import block on modules that act past the audit hook (sqlite3 and readline open files
without an ``open`` event, ctypes calls native code, subinterpreters run without the hook, ...), and an
audit hook that refuses those imports, network, process creation, introspection of other frames'
objects, symlinks, leaving the sandbox directory, and file access outside it (reads of the Python
installation excepted, so imports work). SITE_DIRS, a JSON list, names site-packages to add first: a
staged interpreter (setuid mode) is outside the venv.

The audit hook is a second layer, not the sandbox: CPython documents that audit hooks cannot stop
determined code. Namespaces, the unprivileged uid and rlimits set by the parent are what contain
hostile programs; the hook makes the common cases fail fast with a clear error.

The result is one JSON line written to RESULT_FD, a pipe separate from stdout, so that printing
cannot fake it by accident. Never imported by the harness; standard library only.
"""

import builtins
import json
import operator
import os
import site
import stat
import sys
import traceback

_MAX_VALUE_CHARS = 10_000
_READ_FILES = frozenset({"/dev/null", "/dev/urandom"})
_DENIED_EVENT_PREFIXES = (
    "socket.", "subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
    "os.kill", "pty.", "ctypes.", "gc.get_", "sys._current_frames", "resource.setrlimit",
    "resource.prlimit", "sqlite3.", "syslog.", "cpython.PyInterpreterState_New",
    "os.symlink",  # a link swapped between the hook's check and the open would lead anywhere
)  # fmt: skip
# Modules whose C code reaches files, processes or memory without the audit events checked below:
# sqlite3 opens (ATTACH, VACUUM INTO) and readline reads/writes files natively, _posixshmem creates
# files in /dev/shm, Tcl (tkinter) has its own file and exec commands, spwd reads /etc/shadow, nis
# talks to the network, ossaudiodev opens devices, a subinterpreter runs without this hook, the test
# modules poke at memory. Blocked by name (and dotted submodules); PAL programs need none of them.
_BLOCKED_MODULES = frozenset({
    "ctypes", "_ctypes", "_ctypes_test", "_posixsubprocess", "multiprocessing", "_multiprocessing",
    "_posixshmem", "sqlite3", "_sqlite3", "readline", "tkinter", "_tkinter", "_dbm", "_gdbm", "spwd",
    "nis", "ossaudiodev",
})  # fmt: skip
_BLOCKED_PREFIXES = ("_test", "_xx", "_interp")  # _testcapi & co., subinterpreters (3.11-3.12, 3.13+)
# Events that modify the path at these argument positions (a hard link's source too: the file would
# be reachable, writable, under a path inside the sandbox).
_WRITE_PATH_EVENTS = {
    "os.remove": (0,), "os.rename": (0, 1), "os.rmdir": (0,), "os.mkdir": (0,), "os.link": (0, 1),
    "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,), "os.setxattr": (0,),
    "os.removexattr": (0,),
}  # fmt: skip
_LIST_PATH_EVENTS = frozenset({"os.listdir", "os.scandir"})


def _install_guards(sandbox: str, site_dirs: list) -> None:
    import socket  # imported now so that the stubs below are what user code sees

    def blocked(*_args, **_kwargs):
        raise PermissionError("sandbox: network access is disabled")

    class NoSocket(socket.socket):  # a subclass keeps `class X(socket.socket)` in stdlib importable
        def __init__(self, *_args, **_kwargs):
            blocked()

    socket.socket = NoSocket
    for name in ("create_connection", "create_server", "socketpair", "fromfd", "getaddrinfo",
                 "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getfqdn"):  # fmt: skip
        setattr(socket, name, blocked)

    # Everything the hook uses is bound here, in immutable form, so user code cannot retarget it.
    realpath, fspath, fsdecode, sep, os_stat = os.path.realpath, os.fspath, os.fsdecode, os.sep, os.stat
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    read_roots = tuple(sorted({realpath(p) for p in (*prefixes, *site_dirs)}))
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    dir_flags = os.O_DIRECTORY | os.O_PATH
    denied_prefixes, s_isdir = _DENIED_EVENT_PREFIXES, stat.S_ISDIR
    write_events, list_events, read_files = dict(_WRITE_PATH_EVENTS), _LIST_PATH_EVENTS, _READ_FILES

    def under(path: str, root: str) -> bool:
        return path == root or path.startswith(root + sep)

    def resolve(path):
        try:
            return realpath(fsdecode(fspath(path)))
        except Exception:  # noqa: BLE001 - anything odd is refused
            return None

    def allowed(path, write: bool, opening: bool = False, flags=0) -> bool:
        if path is None or isinstance(path, int):  # an already-open fd, or the cwd
            return True
        resolved = resolve(path)
        if resolved is None:
            return False
        if under(resolved, sandbox):
            return True
        if write:
            return resolved == "/dev/null"
        # No directory fds from outside: paths relative to one (dir_fd=) would dodge these checks.
        if opening and (flags and flags & dir_flags or is_dir(resolved)):
            return False
        return resolved in read_files or any(under(resolved, root) for root in read_roots)

    def is_dir(path: str) -> bool:
        try:
            return s_isdir(os_stat(path).st_mode)
        except OSError:
            return False

    is_blocked, refuse_import = _module_block()

    def deny(what: str):
        raise PermissionError(f"sandbox: {what} is not allowed")

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            write = bool(mode and any(c in mode for c in "wax+")) or bool(flags and flags & write_flags)
            if not allowed(path, write, True, flags):
                deny(f"opening {path!r}")
        elif event in write_events:
            for i in write_events[event]:
                if i < len(args) and not allowed(args[i], True):
                    deny(f"{event} on {args[i]!r}")
        elif event in list_events:
            if args and not allowed(args[0], False):
                deny(f"listing {args[0]!r}")
        elif event == "import":  # also raised when an extension module is loaded, however found
            if args and is_blocked(args[0]):
                refuse_import(args[0])
        elif event == "os.chdir":  # relative paths are checked against the sandbox directory
            if not args or isinstance(args[0], int) or resolve(args[0]) != sandbox:
                deny(f"changing directory to {args[0] if args else None!r}")
        elif event.startswith(denied_prefixes):
            deny(event)
        elif event == "object.__setattr__" and len(args) > 1 and args[1] == "__code__":
            deny("replacing a function's code")

    sys.addaudithook(hook)
    for name in [n for n in sys.modules if is_blocked(n)]:  # none expected; never hand one out
        del sys.modules[name]
    sys.meta_path.insert(0, _blocking_finder())


def _module_block():
    """(is_blocked, refuse_import) for blocked module names, in closures of their own: what user code
    can reach through the finder on sys.meta_path shares no cell with the audit hook."""
    modules, prefixes = _BLOCKED_MODULES, _BLOCKED_PREFIXES

    def is_blocked(name) -> bool:
        top = str(name).partition(".")[0]
        return top in modules or top.startswith(prefixes)

    def refuse_import(name):
        raise ModuleNotFoundError(f"sandbox: {name} is blocked in the sandbox (it acts past the sandbox's "
                                  "checks)", name=str(name))  # fmt: skip

    return is_blocked, refuse_import


def _blocking_finder():
    """First on sys.meta_path, so that importlib finds no spec for a blocked module either."""
    is_blocked, refuse_import = _module_block()

    class BlockedFinder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if is_blocked(name):
                refuse_import(name)
            return None

    return BlockedFinder


def _encode(value):
    """A JSON-friendly form of the entry's return value: numbers stay numbers, the rest is repr'd."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value[:_MAX_VALUE_CHARS]
    try:
        return operator.index(value)  # numpy / sympy integers
    except Exception:  # noqa: BLE001
        pass
    try:
        return float(value)  # Fraction, Decimal, numpy floats
    except Exception:  # noqa: BLE001
        pass
    try:
        text = json.dumps(value)
        if len(text) <= _MAX_VALUE_CHARS:
            return json.loads(text)
    except Exception:  # noqa: BLE001
        pass
    return repr(value)[:_MAX_VALUE_CHARS]


def _describe(exc: BaseException) -> str:
    try:
        return f"exception: {type(exc).__name__}: {exc}"[:1000]
    except Exception:  # noqa: BLE001 - a hostile __str__
        return f"exception: {type(exc).__name__}"


def main() -> None:
    result_fd, code_path, entry, guards = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    site_dirs = json.loads(sys.argv[5])
    with open(code_path, encoding="utf-8") as f:
        source = f.read()
    for directory in site_dirs:
        site.addsitedir(directory)
    os.environ.clear()  # locale coercion may have added LC_CTYPE, setuid mode LD_LIBRARY_PATH
    sandbox = os.path.realpath(os.getcwd())
    # Scratch files (tempfile, ~) go to the sandbox directory, the one place that is cleaned and capped.
    os.environ.update(HOME=sandbox, TMPDIR=sandbox, TMP=sandbox, TEMP=sandbox)
    if guards != "0":
        _install_guards(sandbox, site_dirs)
    main_pid = os.getpid()
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(source, code_path, "exec"), namespace)
        if not entry:
            report = {"ok": True, "value": None}
        elif not callable(namespace.get(entry)):
            report = {"ok": False, "error": f"missing_entry: no function {entry!r} defined"}
        else:
            report = {"ok": True, "value": _encode(namespace[entry]())}
    except MemoryError:
        report = {"ok": False, "error": "memory"}
    except SystemExit as exc:
        report = {"ok": False, "error": f"exit: code {exc.code!r}"[:200]}
    except BaseException as exc:  # noqa: BLE001 - everything the code raises is a result
        report = {"ok": False, "error": _describe(exc)}
        try:  # skip this bootstrap's own frame; a runaway recursion would print forever
            traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next, limit=-30)
        except BaseException:  # noqa: BLE001
            pass
    if os.getpid() != main_pid:  # a forked copy of this process must not report
        os._exit(0)
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass
    try:
        payload = json.dumps(report).encode()
    except Exception:  # noqa: BLE001
        payload = json.dumps({"ok": False, "error": "unencodable result"}).encode()
    view = memoryview(payload + b"\n")
    while view:
        view = view[os.write(result_fd, view) :]
    os._exit(0)


if __name__ == "__main__":
    main()
