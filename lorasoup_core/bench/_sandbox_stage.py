"""Stage 1 of a namespaced sandbox run (executed as ``python -I -c <this source> <config json>``).

It runs as root inside fresh mount, network and PID namespaces made by ``unshare`` and is PID 1
there, so when it exits the kernel kills every process left in the namespace (fork-bomb debris
included). It hides the host's private and writable directories behind empty tmpfs mounts,
re-exposing only the Python installation, makes every mount read-only, then gives the sandbox
directory a fresh size- and inode-limited tmpfs (the program's only writable place, gone with the
namespace: nothing it writes reaches the host's disk), and starts the real child as an
unprivileged uid and waits for it. The child's fate is passed on as the exit status
(128 + signal for a signal, like a shell), because ``unshare`` itself mangles signal deaths.

This file is never imported by the harness; it must depend on the standard library only.
"""

import ctypes
import json
import os
import re
import subprocess
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
PR_SET_NO_NEW_PRIVS = 38
# statvfs flags of a mount -> the mount flags that keep them through the read-only remount.
_KEEP_FLAGS = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)


def _encode(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _mount(libc, source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    if libc.mount(_encode(source), _encode(target), _encode(fstype), flags, _encode(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _make_all_readonly(libc) -> None:
    """Remount every reachable mount read-only (this namespace's copies; the host's stay as they are)."""
    with open("/proc/self/mountinfo") as f:
        points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4]) for line in f]
    for point in points:
        try:
            flags = os.statvfs(point).f_flag
        except OSError:  # under a hidden directory: unreachable anyway
            continue
        if not flags & os.ST_RDONLY:
            keep = sum(mount_flag for st_flag, mount_flag in _KEEP_FLAGS if flags & st_flag)
            _mount(libc, "none", point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep, None)


def _report_setup_error(result_fd: int, exc: BaseException) -> None:
    message = json.dumps({"ok": False, "error": f"setup: {type(exc).__name__}: {exc}"})
    os.write(result_fd, message.encode() + b"\n")


def main() -> int:
    cfg = json.loads(sys.argv[1])
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        os.umask(0o022)
        with open(cfg["program"], "rb") as f:  # read before the host's copy is hidden
            program = f.read()
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
        os.makedirs(cfg["cwd"], exist_ok=True)
        _make_all_readonly(libc)
        uid = cfg["uid"]
        _mount(libc, "tmpfs", cfg["cwd"], "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
               f"{cfg['disk']},mode=700,uid={uid},gid={uid}")  # fmt: skip
        with open(cfg["program"], "wb") as f:
            f.write(program)
        # setuid binaries can no longer raise privileges for anything started from here on.
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        child = subprocess.Popen(
            cfg["argv"],
            user=uid,
            group=uid,
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
