"""The sandboxed child (``python -I -c <this source> RESULT_FD CODE_PATH ENTRY GUARDS SITE_DIRS``).

Runs as the unprivileged sandbox user with the sandbox directory as cwd. Before the generated code
runs it empties the environment and (unless GUARDS is "0", a test-only switch for checking the OS
layers alone) installs in-process guards: socket stubs and an audit hook that refuses network,
process creation, ctypes, introspection of other frames' objects, and file access outside the
sandbox directory (reads of the Python installation excepted, so imports work). SITE_DIRS, a JSON
list, names site-packages to add first: a staged interpreter (setuid mode) is outside the venv.

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
import sys
import traceback

_MAX_VALUE_CHARS = 10_000
_READ_FILES = frozenset({"/dev/null", "/dev/urandom"})
_DENIED_EVENT_PREFIXES = (
    "socket.", "subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
    "os.kill", "pty.", "ctypes.", "gc.get_", "sys._current_frames", "resource.setrlimit",
    "resource.prlimit",
)  # fmt: skip
_DENIED_IMPORTS = frozenset({"ctypes", "_ctypes", "_posixsubprocess", "multiprocessing"})
# Events that modify the path at these argument positions.
_WRITE_PATH_EVENTS = {
    "os.remove": (0,), "os.rename": (0, 1), "os.rmdir": (0,), "os.mkdir": (0,), "os.symlink": (1,),
    "os.link": (1,), "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,),
    "os.setxattr": (0,), "os.removexattr": (0,),
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
    realpath, fspath, fsdecode, sep = os.path.realpath, os.fspath, os.fsdecode, os.sep
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    read_roots = tuple(sorted({realpath(p) for p in (*prefixes, *site_dirs)}))
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    denied_prefixes, denied_imports = _DENIED_EVENT_PREFIXES, _DENIED_IMPORTS
    write_events, list_events, read_files = dict(_WRITE_PATH_EVENTS), _LIST_PATH_EVENTS, _READ_FILES

    def under(path: str, root: str) -> bool:
        return path == root or path.startswith(root + sep)

    def allowed(path, write: bool) -> bool:
        if path is None or isinstance(path, int):  # an already-open fd, or the cwd
            return True
        try:
            resolved = realpath(fsdecode(fspath(path)))
        except Exception:  # noqa: BLE001 - anything odd is refused
            return False
        if under(resolved, sandbox):
            return True
        if write:
            return resolved == "/dev/null"
        return resolved in read_files or any(under(resolved, root) for root in read_roots)

    def deny(what: str):
        raise PermissionError(f"sandbox: {what} is not allowed")

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            write = bool(mode and any(c in mode for c in "wax+")) or bool(flags and flags & write_flags)
            if not allowed(path, write):
                deny(f"opening {path!r}")
        elif event in write_events:
            for i in write_events[event]:
                if i < len(args) and not allowed(args[i], True):
                    deny(f"{event} on {args[i]!r}")
        elif event in list_events:
            if args and not allowed(args[0], False):
                deny(f"listing {args[0]!r}")
        elif event == "import":
            if args and str(args[0]).partition(".")[0] in denied_imports:
                raise ImportError(f"sandbox: importing {args[0]} is not allowed")
        elif event.startswith(denied_prefixes):
            deny(event)
        elif event == "object.__setattr__" and len(args) > 1 and args[1] == "__code__":
            deny("replacing a function's code")

    sys.addaudithook(hook)


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
    if guards != "0":
        _install_guards(os.path.realpath(os.getcwd()), site_dirs)
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
