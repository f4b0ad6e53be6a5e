"""A Hugging Face hub on 127.0.0.1 for the hub-import tests, and adapters laid out like LoraHub's pool.

No installable server serves purely local repos with the listing endpoint: olah (a self-hosted mirror)
serves local git repos offline but proxies `/api/models?author=` upstream, and its fastapi-utils pins
psutil<6 (the project pins 7.2.2). So this is the part of the hub's HTTP API that huggingface_hub's
`list_models`, `model_info` and `hf_hub_download` use, over real sockets: repos are directories
`<root>/<org>/<name>/`, the commit is a hash of their files, and a test can make a repo 404 or a file's
transfer come short of the size the hub announced.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

LEGACY_CONFIG = {  # a 2023 PEFT (0.2/0.3) adapter_config.json, as in LoraHub's repos
    "base_model_name_or_path": "google/flan-t5-large", "bias": "none", "enable_lora": None, "fan_in_fan_out": False,
    "inference_mode": True, "lora_alpha": 32, "lora_dropout": 0.1, "merge_weights": False, "modules_to_save": None,
    "peft_type": "LORA", "r": 4, "target_modules": ["q", "v"], "task_type": "SEQ_2_SEQ_LM"}


def commit_of(repo_dir: Path) -> str:
    h = hashlib.sha1()
    for f in sorted(p for p in repo_dir.iterdir() if p.is_file()):
        h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


class HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.gone: set[str] = set()  # listed, but 404 for everything else (deleted after listing)
        self.short: set[tuple[str, str]] = set()  # (repo, file): the body stops at half the announced size
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def repos(self) -> list[str]:
        return sorted(f"{o.name}/{r.name}" for o in self.root.iterdir() if o.is_dir() for r in o.iterdir() if r.is_dir())

    def downloads(self, repo: str, name: str) -> int:
        """GET requests for one file (HEADs are metadata, not downloads)."""
        return sum(1 for m, p in self.requests if m == "GET" and p.startswith(f"/{repo}/resolve/")
                   and p.endswith(f"/{name}"))

    def __enter__(self) -> HubServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: HubServer

    def log_message(self, *args) -> None:  # the tests read server.requests instead
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, length: int | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value) -> None:
        self._send(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

    def _missing(self, code: str) -> None:
        self._send(404, json.dumps({"error": code}).encode(), {"X-Error-Code": code, "X-Error-Message": code})

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        with self.server.lock:
            self.server.requests.append((self.command, path))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) == 2:
            return self._list(urllib.parse.parse_qs(url.query))
        if parts[:2] == ["api", "models"] and len(parts) in (4, 6):
            return self._info("/".join(parts[2:4]), parts[5] if len(parts) == 6 else "main")
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._file("/".join(parts[:2]), parts[3], "/".join(parts[4:]))
        self._missing("NotFound")

    def _repo(self, repo: str, revision: str) -> Path | None:
        d = self.server.root / repo
        if repo in self.server.gone or not d.is_dir():
            self._missing("RepoNotFound")
            return None
        if revision not in ("main", commit_of(d)):
            self._missing("RevisionNotFound")
            return None
        return d

    def _list(self, query: dict) -> None:
        author, search = query.get("author", [""])[0], query.get("search", [""])[0]
        limit = int(query.get("limit", ["1000"])[0])
        repos = [r for r in self.server.repos() if r.startswith(f"{author}/") and search in r.split("/", 1)[1]]
        self._json([{"id": r, "modelId": r, "author": author, "private": False, "tags": ["peft"]} for r in repos][:limit])

    def _info(self, repo: str, revision: str) -> None:
        from huggingface_hub.repocard import metadata_load

        d = self._repo(repo, revision)
        if d is None:
            return
        readme = d / "README.md"
        self._json({"id": repo, "modelId": repo, "author": repo.split("/")[0], "sha": commit_of(d), "private": False,
                    "cardData": (metadata_load(readme) if readme.is_file() else None) or {},
                    "siblings": [{"rfilename": f.name} for f in sorted(d.iterdir()) if f.is_file()]})

    def _file(self, repo: str, revision: str, name: str) -> None:
        d = self._repo(repo, revision)
        if d is None:
            return
        f = d / name
        if not f.is_file():
            return self._missing("EntryNotFound")
        data = f.read_bytes()
        headers = {"X-Repo-Commit": commit_of(d), "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                   "Accept-Ranges": "bytes"}
        if self.command == "GET" and (repo, name) in self.server.short:
            return self._send(200, data[: len(data) // 2], headers)  # less than the HEAD announced
        start = 0
        if (rng := self.headers.get("Range", "")).startswith("bytes="):
            start = int(rng[6:].split("-")[0] or 0)
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self._send(206 if start else 200, data[start:], headers)


# -- adapters laid out like LoraHub's ----------------------------------------------------------------------
def lora_state_dict(base, seed: int) -> dict[str, torch.Tensor]:
    """A PEFT LoRA's state dict on a copy of a tiny T5 (q and v, rank 4, random B: not a no-op)."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    torch.manual_seed(seed)
    model = get_peft_model(copy.deepcopy(base.model), LoraConfig(r=4, lora_alpha=32, target_modules=["q", "v"],
                                                                 task_type="SEQ_2_SEQ_LM", init_lora_weights=False))
    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def write_repo(root: Path, repo: str, base, seed: int, weights: str = "bin", card: dict | None = None,
               examples: list[str] | None = None) -> Path:
    """A hub repo as LoraHub published them: a 2023 adapter_config.json, adapter_model.bin (torch.save of
    the state dict, as PEFT 0.3 did) or .safetensors, a README card with metadata, optional examples."""
    from safetensors.torch import save_file

    d = root / repo
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text(json.dumps(LEGACY_CONFIG, indent=2))
    tensors = lora_state_dict(base, seed)
    if weights == "bin":
        torch.save(tensors, d / "adapter_model.bin")
    else:
        save_file(tensors, str(d / "adapter_model.safetensors"), metadata={"format": "pt"})
    task = repo.split("-", 1)[1]
    meta = card if card is not None else {"library_name": "peft", "license": "mit", "base_model": "google/flan-t5-large",
                                          "datasets": [f"lorahub/{task}"], "tags": ["lora", "lorahub"]}
    front = "".join(f"{k}: {json.dumps(v)}\n" for k, v in meta.items())
    (d / "README.md").write_text(f"---\n{front}---\n# {repo}\n\nA LoRA of google/flan-t5-large for {task}.\n")
    if examples:
        (d / "examples.jsonl").write_text("".join(json.dumps({"input": x}) + "\n" for x in examples))
    return d


class _Payload:
    """Unpickled normally, runs `exec(code)`: what a hostile `.bin` does."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def hostile_bin(path: Path, tensors: dict[str, torch.Tensor], marker: Path) -> Path:
    """A torch.save file of real LoRA tensors plus one entry that, unpickled normally, writes `marker`."""
    torch.save({**tensors, "base_model.model.payload": _Payload(f"open({str(marker)!r}, 'w').write('ran')")}, path)
    return path
