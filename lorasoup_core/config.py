"""Experiment configuration: pydantic models loaded from YAML files under configs/.

Each config file starts with a comment giving the command that runs it. Sections that belong to
a subsystem (training, composition, evaluation) are defined beside that subsystem and collected
here; unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class MethodSettings(StrictModel):
    """A compared method's parameters (a composer's, a baseline's); each method declares its own subclass
    beside its function (`lorasoup_core.methods`)."""


def validate_settings(method: str, cls: type[MethodSettings], values: Any) -> MethodSettings:
    """`values` (a mapping, another settings object's explicitly set fields, or None) as `method`'s settings
    class: an unknown key or a bad value is one ValueError that names the method and lists what it accepts."""
    if isinstance(values, cls):
        return values
    if isinstance(values, MethodSettings):
        values = values.model_dump(exclude_unset=True)
    try:
        return cls.model_validate(dict(values or {}))
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in err.errors())
        accepted = ", ".join(cls.model_fields) or "no settings"
        raise ValueError(f"settings of method {method!r}: {problems} (it accepts: {accepted})") from None


class ConfigError(ValueError):
    """A config file that cannot be read or does not validate; names the file and the field."""


class ModelConfig(StrictModel):
    spec: str = Field("smollm2-135m", description="Base model: preset name, .gguf path, HF directory or hub id.")
    device: str = Field("auto", description="auto (CUDA if available, else CPU), cpu, cuda, cuda:1 ...")
    dtype: str = Field("auto", description="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16.")


class StorageConfig(StrictModel):
    uri: str | None = Field(None, description="Artifact store root; default LORASOUP_STORE or file://~/.lorasoup/artifacts.")
    s3_endpoint_url: str | None = Field(None, description="Endpoint of an S3-compatible service (MinIO, moto, R2 ...).")

    def cache_identity(self) -> None:
        """Where artifacts are kept is no part of what a result is (adapters are named by their content)."""
        return None


class TrackingConfig(StrictModel):
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; default MLFLOW_TRACKING_URI or sqlite under LORASOUP_HOME.")
    experiment: str | None = Field(None, description="MLflow experiment name; default: the config's name "
                                   "(one experiment per config).")


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str], where: str) -> dict[str, Any]:
    """`KEY=VALUE` overrides over a config mapping: KEY is a dotted path (`eval.limit`), VALUE is YAML
    (`[0]`, `20`, `{filters: [loss]}`); missing sections are created."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where}: override {item!r} is not KEY=VALUE (e.g. seeds=[0] or eval.limit=20)")
        node = data
        *parents, leaf = key.strip().split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{where}: override {item!r}: {part!r} is not a section")
            node = child
        try:
            node[leaf] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"{where}: override {item!r}: its value is not YAML ({err})") from None
    return data


def load_config(path: str | Path, model: type[M], overrides: list[str] | None = None) -> M:
    """Validate a YAML file (with `KEY=VALUE` overrides, see apply_overrides) against a pydantic model;
    errors name the file and the field path."""
    data = read_yaml(path)
    if overrides:
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: overrides need a mapping at the top level")
        data = apply_overrides(data, overrides, str(path))
    try:
        return model.model_validate(data)
    except ValidationError as err:
        lines = [f"{path}: invalid config ({err.error_count()} problem(s))"]
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
            lines.append(f"  {loc}: {e['msg']}")
        raise ConfigError("\n".join(lines)) from None
