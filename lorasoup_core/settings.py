"""Process-wide settings read from the environment, with the defaults a local user expects."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field


class Settings(BaseModel):
    """Where lorasoup keeps things. Every field has an environment variable."""

    home: Path = Field(description="Root for local state (LORASOUP_HOME, default ~/.lorasoup).")
    store_uri: str = Field(description="Artifact store root URI (LORASOUP_STORE): file://, s3:// or memory://.")
    model_cache: Path = Field(description="Converted model weights (LORASOUP_MODEL_CACHE).")
    tracking_uri: str = Field(description="MLflow tracking URI (MLFLOW_TRACKING_URI).")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (LORASOUP_S3_ENDPOINT_URL or AWS_ENDPOINT_URL)."
    )

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("LORASOUP_HOME", Path.home() / ".lorasoup")).expanduser()
        return cls(
            home=home,
            store_uri=os.environ.get("LORASOUP_STORE", (home / "artifacts").as_uri()),
            model_cache=Path(os.environ.get("LORASOUP_MODEL_CACHE", home / "models")).expanduser(),
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}"),
            s3_endpoint_url=os.environ.get("LORASOUP_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL"),
        )


def get_settings() -> Settings:
    """Read afresh each call: tests and CLIs change the environment at run time."""
    return Settings.from_env()
