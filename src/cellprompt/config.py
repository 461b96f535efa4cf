"""Settings, read from the environment (`CELLPROMPT_*`), `.env` and `cellprompt.toml`.

One place decides where things live so that tests can point every folder at a
temporary directory with environment variables alone.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def _default_cache_dir() -> Path:
    """The user's cache folder (`~/.cache/cellprompt` on Linux, `~/Library/Caches/cellprompt` on
    macOS): downloads and built-in datasets are reused by every project, and a command run in
    some folder never fills that folder."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("cellprompt"))


class Settings(BaseSettings):
    """Every knob of cellprompt; see README for the environment variable names."""

    model_config = SettingsConfigDict(
        env_prefix="CELLPROMPT_",
        env_file=".env",
        extra="ignore",
        toml_file="cellprompt.toml",
    )

    # Unset: `<cache_dir>/datasets` (see `_datasets_in_cache`); set it to keep them elsewhere.
    datasets_dir: Path = Field(default=Path("datasets"))
    outputs_dir: Path = Field(default=Path("outputs"))
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    state_dir: Path | None = None  # sandbox state (sockets, workspaces); short path

    sandbox_backend: str = "auto"
    sandbox_memory: str = "4g"
    sandbox_cpus: float = 2.0
    sandbox_pids: int = 512
    # /workspace is a tmpfs counted in the sandbox's memory: at most half the memory limit
    sandbox_workspace_quota: str = "2g"
    sandbox_reply_cap: int = 16 << 20  # bytes of one /execute reply, outputs and metadata included
    # under root, each bwrap sandbox runs as its own host uid in [base, base + 2**20): never 0
    sandbox_host_uid_base: int = 1_600_000_000
    docker_image: str | None = None
    docker_base_image: str = "python:3.11-slim"
    docker_build_network: str | None = None  # e.g. "host" for an engine without a bridge

    census_uri: str | None = None  # a SOMA collection (local path or s3://) overriding the release
    census_release_directory_url: str | None = None  # release.json location (URL or path)
    census_mirrors_url: str | None = None
    census_mirror: str | None = None  # a mirror name from mirrors.json (default: its "default")
    census_h5ads_uri: str | None = None  # source .h5ad folder, with census_uri or to override
    census_connect_timeout_s: float = 10.0  # every Census request: connection
    census_read_timeout_s: float = 60.0  # every Census request: silence before giving up

    executor: str = "local"  # "local" | "ray": where `run` and `evolve` execute trials
    ray_address: str | None = None  # "auto", "ray://host:port", or None for a local cluster

    openai_base_url: str | None = None
    llm_timeout_s: float = 120.0
    llm_max_retries: int = 5
    llm_retry_base_s: float = 1.0  # first backoff wait; doubles per retry, with jitter
    llm_retry_max_wait_s: float = 60.0  # cap on any single wait, Retry-After included
    llm_cache_dir: Path | None = None  # opt-in on-disk response cache
    prices: dict[str, dict[str, float]] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            TomlConfigSettingsSource(settings_cls),
        )

    @model_validator(mode="after")
    def _datasets_in_cache(self) -> Settings:
        """Datasets default to the cache folder, not `./datasets`: `datasets show builtin:…` in
        any folder used to write megabytes there. A configured `datasets_dir` (env, `.env`,
        `cellprompt.toml`) is kept as it is."""
        if "datasets_dir" not in self.model_fields_set:
            self.datasets_dir = self.cache_dir / "datasets"
        return self

    def sandbox_state_dir(self) -> Path:
        """Short folder for sandbox state (Unix socket paths max out at 108 bytes).

        Mode 0711: nobody else may list it; each sandbox's folder guards itself.
        """
        import os
        import tempfile

        path = self.state_dir or Path(tempfile.gettempdir()) / f"cellprompt-{os.getuid()}"
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
        if path.is_symlink() or st.st_uid != os.getuid():  # a shared /tmp: someone planted it
            from cellprompt.errors import SandboxError

            raise SandboxError(f"sandbox state folder {path} is not a folder of yours: remove it "
                               "or set CELLPROMPT_STATE_DIR to a private folder")
        path.chmod(0o711)  # others may traverse to a sandbox's stage folder (bwrap under root)
        return path


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def size_bytes(value: str | int) -> int:
    """Bytes from `"512m"`, `"4g"`, `"1.5G"`, `"4gb"`, `"4GiB"` or a plain number (binary units,
    as the memory and quota settings are written); `ValueError` for anything else."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([bkmgt]?)i?b?\s*", str(value).lower())
    if not m:
        raise ValueError(f"{value!r} is not a size")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; `reset_settings()` re-reads them (tests, `configure`)."""
    return Settings()


def reset_settings() -> None:
    get_settings.cache_clear()


def settings_with(**overrides: Any) -> Settings:
    return get_settings().model_copy(update=overrides)
