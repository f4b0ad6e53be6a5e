"""Tensor-only `adapter_model.bin` weights (2023 PEFT repos such as LoraHub's pool), read without running code.

Unpickling calls whatever the file names, so a `.bin` is read only when two independent checks agree:
a scan of its pickle opcodes (which runs nothing) finds no global beyond the tensor rebuild functions,
storage classes, dtypes and OrderedDict, and `torch.load(weights_only=True)`, whose unpickler refuses any
other global too, returns a mapping of names to plain tensors. Anything else is refused with one line
naming the file and the first global or object that is not a tensor. The importer then stores the
tensors as safetensors, so nothing downstream ever reads a pickle.
"""

from __future__ import annotations

import pickle
import pickletools
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

PICKLE, SAFETENSORS = "adapter_model.bin", "adapter_model.safetensors"
# torch.save's own globals for a dict of tensors (protocol 2 writes `collections OrderedDict` for hooks)
_REBUILD = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor_v3"),
            ("torch._utils", "_rebuild_parameter"), ("collections", "OrderedDict")}
_STRINGS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"}
_PUTS, _GETS = {"PUT", "BINPUT", "LONG_BINPUT"}, {"GET", "BINGET", "LONG_BINGET"}
_LEGACY_PICKLES = 5  # torch's pre-1.6 format: magic, protocol, sys info, data, storage keys; then raw bytes


class PickleRefused(ValueError):
    """Weights that are not a tensor-only pickle; the message is one line naming the file and why."""


def _allowed(module: str, name: str) -> bool:
    if (module, name) in _REBUILD:
        return True
    if module != "torch":
        return False
    import torch

    if re.fullmatch(r"[A-Z][A-Za-z0-9]*Storage", name):
        return isinstance(getattr(torch, name, None), type)
    return isinstance(getattr(torch, name, None), torch.dtype)  # _rebuild_tensor_v3 names the dtype


def pickle_globals(stream: Any) -> list[str]:
    """`module.name` of every global one pickle in `stream` refers to, read from its opcodes without
    unpickling. A global whose name the scan cannot follow (built on the stack) is `?`, never allowed."""
    found, memo, pushed = [], {}, []  # pushed: what the last opcodes left on the stack, when a string
    for op, arg, _ in pickletools.genops(stream):
        if op.name in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            found.append(f"{module}.{name}")
        elif op.name == "STACK_GLOBAL":
            names = pushed[-2:]
            found.append(".".join(names) if len(names) == 2 and all(isinstance(n, str) for n in names) else "?")
        elif op.name in ("EXT1", "EXT2", "EXT4"):  # copyreg's extension registry: a global by number
            found.append(f"?extension {arg}")
        if op.name in _STRINGS:
            pushed.append(arg)
        elif op.name in _PUTS or op.name == "MEMOIZE":  # these store the top of the stack, pushing nothing
            memo[arg if op.name in _PUTS else len(memo)] = pushed[-1] if pushed else None
        elif op.name in _GETS:
            pushed.append(memo.get(arg))
        else:
            pushed.append(None)
    return found


def _scan(path: Path) -> list[str]:
    """The globals of every pickle in a torch file (the zip format's data.pkl, or the legacy stream)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(names) != 1:
                raise PickleRefused(f"{path.name} is a zip without exactly one data.pkl, not a torch weights file")
            return pickle_globals(z.read(names[0]))
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        raise ValueError("a zip archive whose directory is missing")
    if not head.startswith(b"\x80"):
        raise ValueError("neither a torch zip archive nor a pickle")
    found = []
    with open(path, "rb") as f:
        for _ in range(_LEGACY_PICKLES):
            found += pickle_globals(f)
    return found


def _readable(name: str) -> str:
    return name.replace("__builtin__.", "builtins.")


def _one_line(err: Exception) -> str:
    """A loader's error as one line, without its advice to turn the safety check off."""
    text = " ".join(str(err).split()) or type(err).__name__
    return "not a plain tensor file" if "weights_only" in text else text[:300]


def read_tensor_pickle(path: Path, label: str) -> dict[str, Any]:
    """{name: tensor} from a tensor-only `.bin`, each tensor its own contiguous copy (safetensors refuses
    shared storage). Raises PickleRefused naming `label` and the file."""
    import torch

    where = f"{label}: {path.name}"
    try:
        refs = _scan(path)
    except PickleRefused as err:
        raise PickleRefused(f"{label}: {err}") from None
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as err:  # truncated or not a pickle at all
        raise PickleRefused(f"{where} is not a readable torch weights file, truncated or corrupt "
                            f"({type(err).__name__}: {_one_line(err)})") from None
    code = [_readable(g) for g in refs if g.startswith("?") or not _allowed(*g.rsplit(".", 1))]
    if code:
        more = f" (and {len(code) - 1} more)" if len(code) > 1 else ""
        raise PickleRefused(f"{where} is a pickle that calls {code[0]}{more}, not only tensors; refusing to load it "
                            "(unpickling it would run that code)")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # a global the scan allowed but torch does not: refuse all the same
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        name = found.group(1) if found else "code"
        name = name if "." in name or not found else f"builtins.{name}"  # torch names builtins bare
        raise PickleRefused(f"{where} is a pickle that calls {_readable(name)}, not only tensors; refusing to load "
                            "it") from None
    except Exception as err:  # truncated zips, missing records: one line, no traceback
        raise PickleRefused(f"{where} is not a readable torch weights file, truncated or corrupt "
                            f"({type(err).__name__}: {_one_line(err)})") from None
    if not isinstance(loaded, dict):
        raise PickleRefused(f"{where} holds a {type(loaded).__name__}, not a mapping of tensor names to tensors")
    for key, value in loaded.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor) or value.layout != torch.strided:
            raise PickleRefused(f"{where}: entry {key!r} is a {type(value).__name__}, not a dense tensor; only "
                                "tensor-only weights are imported")
    return {key: value.detach().clone().contiguous() for key, value in loaded.items()}


def convert(adapter_dir: Path, label: str, out: Path, copied: tuple[str, ...]) -> tuple[Path, dict[str, str]]:
    """`out`: the files `copied` of the adapter and its pickle's tensors as safetensors; returns (out, what the
    adapter card records about the conversion). Raises PickleRefused."""
    from safetensors.torch import save_file

    from lorasoup_core.fingerprint import sha256_file

    tensors = read_tensor_pickle(adapter_dir / PICKLE, label)
    out.mkdir(parents=True)
    for name in copied:
        if (adapter_dir / name).is_file():
            shutil.copyfile(adapter_dir / name, out / name)
    save_file(tensors, str(out / SAFETENSORS), metadata={"format": "pt"})
    return out, {"file": PICKLE, "sha256": sha256_file(adapter_dir / PICKLE), "stored_as": SAFETENSORS,
                 "read_with": "torch.load(weights_only=True) after an opcode scan found only tensors"}
