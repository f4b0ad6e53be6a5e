"""Stage 1 of a namespaced sandbox run (executed as ``python -I -c <this source> <config json>``).

It runs as root inside fresh mount, network and PID namespaces made by ``unshare`` and is PID 1
there, so when it exits the kernel kills every process left in the namespace (fork-bomb debris
included). It hides the host's private and writable directories behind empty tmpfs mounts,
re-exposing only the Python installation and the sandbox directory, then starts the real child
as an unprivileged uid and waits for it. The child's fate is passed on as the exit status
(128 + signal for a signal, like a shell), because ``unshare`` itself mangles signal deaths.

This file is never imported by the harness; it must depend on the standard library only.
"""

import ctypes
import json
import os
import subprocess
import sys

MS_NOSUID, MS_NODEV, MS_BIND, MS_REC = 2, 4, 4096, 16384
PR_SET_NO_NEW_PRIVS = 38


def _encode(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _mount(libc, source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    if libc.mount(_encode(source), _encode(target), _encode(fstype), flags, _encode(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _report_setup_error(result_fd: int, exc: BaseException) -> None:
    message = json.dumps({"ok": False, "error": f"setup: {type(exc).__name__}: {exc}"})
    os.write(result_fd, message.encode() + b"\n")


def main() -> int:
    cfg = json.loads(sys.argv[1])
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        os.umask(0o022)
        # Keep handles on the paths to re-expose before the tmpfs mounts hide them.
        handles = {path: os.open(path, os.O_PATH | os.O_DIRECTORY) for path in cfg["expose"]}
        for hidden in cfg["hide_dirs"]:
            _mount(libc, "tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m")
        for path, fd in handles.items():
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(libc, f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC, None)
            os.close(fd)
        for hidden_file in cfg["hide_files"]:
            _mount(libc, "/dev/null", hidden_file, None, MS_BIND, None)
        # setuid binaries can no longer raise privileges for anything started from here on.
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        child = subprocess.Popen(
            cfg["argv"],
            user=cfg["uid"],
            group=cfg["uid"],
            extra_groups=[],
            pass_fds=(cfg["result_fd"],),
            env={},
            cwd=cfg["cwd"],
        )
    except Exception as exc:  # noqa: BLE001 - any setup failure is reported, never run unguarded
        _report_setup_error(cfg["result_fd"], exc)
        return 125
    returncode = child.wait()
    return 128 - returncode if returncode < 0 else returncode


if __name__ == "__main__":
    os._exit(main())
