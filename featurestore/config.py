"""``featurestore.yaml``: where a feature repo's project keeps its state.

Every setting has a local default, so a repo with only ``project: name``
works on one machine. Values may use ``${VAR}`` or ``${VAR:-default}`` to read
the environment: that is how deployments pass a shared registry URL or a
Redis password without editing the repo. Relative paths are relative to the
repo folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featurestore.config_sections import (
    CacheConfig,
    PushConfig,
    cache_config,
    check_keys,
    duration_seconds,
    push_config,
    serving_limits,
)
from featurestore.definitions._base import check_name
from featurestore.errors import DefinitionError, RepoConfigError
from featurestore.serving.limits import ServingLimits

CONFIG_FILE = "featurestore.yaml"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

_DEFAULTS: dict[str, Any] = {
    "registry": "data/registry.db",
    # keep_training_inputs: how long files a recorded training set read are kept (null:
    # while its record exists), e.g. 365d; see featurestore/offline/pins.py.
    "offline_store": {"path": "data/offline", "keep_training_inputs": None},
    "online_store": {
        "redis_url": "redis://127.0.0.1:6379/0",
        "cluster": False,
        "require_api_key": False,
        "cache": None,  # off; see CacheConfig
    },
    "kafka": {"bootstrap_servers": "127.0.0.1:9092"},
    "spark": {"master": "local[*]", "conf": {}},
    "policy": {"default": "allow"},
    "serving": {"limits": {}},
    "push": None,  # see PushConfig
    "state_dir": ".featurestore",
    "ignore": [],
}


@dataclass(frozen=True, slots=True)
class RepoConfig:
    repo_path: Path
    project: str
    registry_url: str
    offline_store_path: Path
    redis_url: str
    kafka_bootstrap_servers: str
    redis_cluster: bool = False  # online_store.cluster: redis_url is any node of a Redis Cluster
    spark_master: str = "local[*]"
    spark_conf: dict[str, str] = field(default_factory=dict)
    policy_default: str = "allow"
    require_api_key: bool = False  # in-process lookups too (the HTTP server always does)
    state_dir: Path = Path(".featurestore")
    ignore: tuple[str, ...] = ()
    online_cache: CacheConfig | None = None  # online_store.cache; None: no cache
    serving_limits: ServingLimits = field(default_factory=ServingLimits)  # off unless set
    push: PushConfig = field(default_factory=PushConfig)  # the push API's batching
    keep_training_inputs_seconds: float | None = None  # None: while the record exists


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, where) for v in value]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise RepoConfigError(
            f"{CONFIG_FILE}: '{where}' uses ${{{name}}}, which is not set. Export {name} or "
            f"write ${{{name}:-default}} to give a default."
        )

    return _ENV.sub(sub, value)


def registry_url(value: str, repo_path: Path) -> str:
    """A path (relative to the repo) becomes a SQLite URL; URLs pass through."""
    if "://" in value:
        return value
    path = Path(value)
    if not path.is_absolute():
        path = repo_path / path
    return f"sqlite:///{path}"


def load_config(repo_path: str | os.PathLike[str]) -> RepoConfig:
    """Read ``featurestore.yaml`` in ``repo_path``; raise RepoConfigError naming the setting."""
    import yaml

    repo = Path(repo_path).resolve()
    path = repo / CONFIG_FILE
    if not path.is_file():
        raise RepoConfigError(
            f"No {CONFIG_FILE} in {repo}. A feature repo is a folder with {CONFIG_FILE} "
            "(at least `project: <name>`) and Python definition files; pass --repo PATH or cd "
            "into one."
        )
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RepoConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise RepoConfigError(f"{path}: must be a mapping of settings, e.g. `project: demo`.")
    allowed = {"project": None, **_DEFAULTS}
    check_keys("", raw, allowed)
    raw = _expand(raw, "")
    if "project" not in raw:
        raise RepoConfigError(f"{path}: 'project' is required, e.g. `project: payments`.")
    try:
        check_name("project", raw["project"])
    except DefinitionError as exc:
        raise RepoConfigError(f"{path}: {exc}") from exc

    sections: dict[str, dict[str, Any]] = {}
    for name in ("offline_store", "online_store", "kafka", "spark", "policy", "serving"):
        given = raw.get(name) or {}
        if not isinstance(given, dict):
            raise RepoConfigError(f"{path}: '{name}' must be a mapping.")
        check_keys(name, given, _DEFAULTS[name])
        sections[name] = {**_DEFAULTS[name], **given}
    for flag in ("require_api_key", "cluster"):
        value = sections["online_store"][flag]
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            value = value.strip().lower() == "true"  # from ${VAR:-false}: YAML saw a string
        if not isinstance(value, bool):
            raise RepoConfigError(f"{path}: online_store.{flag} must be true or false.")
        sections["online_store"][flag] = value
    cache = cache_config(sections["online_store"]["cache"], path)
    if sections["policy"]["default"] not in ("allow", "deny"):
        raise RepoConfigError(f"{path}: policy.default must be 'allow' or 'deny'.")
    ignore = raw.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(i, str) for i in ignore):
        raise RepoConfigError(f"{path}: 'ignore' must be a list of glob patterns.")

    def local(value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else repo / p

    return RepoConfig(
        repo_path=repo,
        project=raw["project"],
        registry_url=registry_url(str(raw.get("registry", _DEFAULTS["registry"])), repo),
        offline_store_path=local(str(sections["offline_store"]["path"])),
        redis_url=str(sections["online_store"]["redis_url"]),
        kafka_bootstrap_servers=str(sections["kafka"]["bootstrap_servers"]),
        redis_cluster=sections["online_store"]["cluster"],
        spark_master=str(sections["spark"]["master"]),
        spark_conf={str(k): str(v) for k, v in (sections["spark"]["conf"] or {}).items()},
        policy_default=sections["policy"]["default"],
        require_api_key=sections["online_store"]["require_api_key"],
        state_dir=local(str(raw.get("state_dir", _DEFAULTS["state_dir"]))),
        ignore=tuple(ignore),
        online_cache=cache,
        serving_limits=serving_limits(sections["serving"]["limits"], path),
        push=push_config(raw.get("push"), path),
        keep_training_inputs_seconds=duration_seconds(
            "offline_store.keep_training_inputs",
            sections["offline_store"]["keep_training_inputs"],
            path,
        ),
    )
