"""FeatureStore: a thin facade over the repo, the registry and (later) the stores.

It holds no logic of its own beyond wiring: each verb calls the module that
owns the concept, so the facade stays small as parts are added.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from featurestore.code_version import git_sha
from featurestore.config import RepoConfig, load_config
from featurestore.errors import EntityInputError, MissingExtraError, did_you_mean
from featurestore.registry import (
    ApplyResult,
    Registry,
    RegistrySnapshot,
    ResolvedFeature,
    TrainingSetRecord,
)
from featurestore.registry.plan import Change, Plan
from featurestore.registry.snapshot import ViewVersion
from featurestore.repo import RepoContents, load_repo

if TYPE_CHECKING:
    from featurestore.materialize.job import ViewRun
    from featurestore.offline.join import OfflineEngine
    from featurestore.offline.rebuild import Rebuilt
    from featurestore.offline.training import TrainingSet
    from featurestore.offline.writer import OfflineStore
    from featurestore.online.catalog import Catalog
    from featurestore.online.client import OnlineClient
    from featurestore.online.response import OnlineResponse
    from featurestore.online.store import OnlineStore
    from featurestore.online.writer import WriteStats
    from featurestore.policy.keys import Credential, KeyRing
    from featurestore.push import Pusher, PushResult
    from featurestore.registry.audit import AuditQueue
    from featurestore.streaming.status import StreamStats


class FeatureStore:
    """Entry point for a feature repo: ``FeatureStore("feature_repo")``."""

    def __init__(
        self,
        repo_path: str | os.PathLike[str] = ".",
        *,
        config: RepoConfig | None = None,
        registry: Registry | None = None,
        online_store: OnlineStore | None = None,
    ) -> None:
        self.config = config or load_config(repo_path)
        self._registry = registry
        self._online_store = online_store

    @property
    def project(self) -> str:
        """The project this repo's definitions belong to (``project:`` in featurestore.yaml)."""
        return self.config.project

    @cached_property
    def registry(self) -> Registry:
        """The registry the config names, or the one passed in; opened on first use."""
        return self._registry or Registry(self.config.registry_url)

    @cached_property
    def online_store(self) -> OnlineStore:
        """The repo's online store (``online_store_from_config``), or the one passed in."""
        if self._online_store is not None:
            return self._online_store
        from featurestore.online.store import online_store_from_config

        return online_store_from_config(self.config)

    def close(self) -> None:
        """Land buffered pushes, flush the audit queue and close what this store opened
        (never what was passed in)."""
        if "pusher" in self.__dict__:
            self.pusher.close()
        if "audit_queue" in self.__dict__:
            self.audit_queue.flush()
        if "_online" in self.__dict__:
            self._online.close()
        if self._online_store is None and "online_store" in self.__dict__:
            self.online_store.close()
        if self._registry is None and "registry" in self.__dict__:
            self.registry.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- definitions ----------------------------------------------------------

    def load_repo(self) -> RepoContents:
        """The repo's definitions, loaded from its Python files (every problem reported at once)."""
        return load_repo(self.config.repo_path)

    def plan(self) -> Plan:
        """What ``apply`` would change in the registry, without changing it."""
        return self.registry.plan(self.load_repo())

    def apply(self, *, on_change: Callable[[Change], None] | None = None) -> ApplyResult:
        """Write the repo's definitions to the registry atomically (``on_change`` sees
        each change); applying the same repo again changes nothing."""
        result = self.registry.apply(
            self.load_repo(), on_change=on_change, code_version=git_sha(self.config.repo_path)
        )
        self._registry_changed()
        return result

    def _registry_changed(self) -> None:
        """This process changed the registry: its own lookups see it at once (other
        processes within their refresh interval)."""
        if "_online" in self.__dict__:
            self._online.catalog = self.catalog(previous=self._online.catalog)

    # -- registry reads -------------------------------------------------------

    def snapshot(self) -> RegistrySnapshot:
        """The project's current definitions and versions, as one consistent read."""
        return self.registry.snapshot(self.project)

    def versions(self, view: str) -> list[ViewVersion]:
        """Every version of ``view``, oldest first, retired ones included."""
        return self.registry.versions(self.project, view)

    def resolve(self, refs: list[str] | tuple[str, ...]) -> list[ResolvedFeature]:
        """Resolve feature references and feature-service names to view versions."""
        return self.snapshot().resolve_all(refs)

    # -- offline ----------------------------------------------------------------

    def offline_store(self) -> OfflineStore:
        """The Parquet offline store of this project (tables per view version)."""
        from featurestore.offline.writer import OfflineStore

        return OfflineStore(self.config.offline_store_path, self.project)

    def offline_engine(self, engine: str = "duckdb", **options: Any) -> OfflineEngine:
        """``duckdb`` (default, embedded) or ``spark`` (the repo's spark.master and conf)."""
        if engine == "duckdb":
            from featurestore.offline.duckdb_engine import DuckDBEngine

            return DuckDBEngine(**options)
        if engine == "spark":
            try:
                from featurestore.offline.spark_engine import SparkEngine, session_from_config
            except ImportError as exc:
                raise MissingExtraError("pyspark", "spark") from exc
            return SparkEngine(options.get("session") or session_from_config(self.config))
        raise EntityInputError(
            f"Unknown engine {engine!r}.{did_you_mean(engine, ['duckdb', 'spark'])} "
            "Use 'duckdb' or 'spark'."
        )

    def get_training_data(
        self,
        entities: Any = None,
        *,
        features: Sequence[str] | None = None,
        feature_service: str | None = None,
        model: str | None = None,
        timestamp_column: str = "event_timestamp",
        full_feature_names: bool = False,
        engine: str | OfflineEngine = "duckdb",
        output_path: str | os.PathLike[str] | None = None,
        as_of: datetime | str | None = None,
        spine: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> TrainingSet:
        """Point-in-time correct features for each entity row (see ``offline/join.py``).

        ``entities``: a pyarrow Table, pandas DataFrame or Parquet path with the
        join keys and ``timestamp_column`` (UTC; naive times are taken as UTC).
        Ask with exactly one of ``features``, ``feature_service`` or ``model``
        (a model reads its pinned versions). Returns a TrainingSet whose
        ``.table`` is a pyarrow Table, or streams to ``output_path``; either way
        the build is recorded in the registry for lineage. ``as_of``: read only
        the offline rows that had landed by then (what the store knew at that time).
        ``spine="view"`` (instead of ``entities``): the entity rows are that view's own
        rows with event time in [``start``, ``end``) (see ``offline/spine.py``).
        """
        from featurestore.offline.spine import entity_source
        from featurestore.offline.training import build_training_set

        runner = self.offline_engine(engine) if isinstance(engine, str) else engine
        return build_training_set(
            registry=self.registry,
            snapshot=self.snapshot(),
            offline_root=self.config.offline_store_path,
            engine=runner,
            entities=entity_source(entities, spine, start, end, timestamp_column),
            features=features,
            feature_service=feature_service,
            model=model,
            timestamp_column=timestamp_column,
            full_feature_names=full_feature_names,
            output_path=output_path,
            policy_default=self.config.policy_default,
            mask_key=self.mask_key(),
            as_of=as_of,
        )

    def rebuild_training_set(
        self,
        training_set: int,
        out: str | os.PathLike[str] | None = None,
        *,
        engine: str | OfflineEngine | None = None,
    ) -> Rebuilt:
        """Recorded training set ``training_set`` joined again as of the offline commits it
        read, checked against its fingerprint (see ``offline/rebuild.py``)."""
        from featurestore.offline.rebuild import rebuild_training_set

        return rebuild_training_set(self, training_set, out, engine=engine)

    def delete_training_set(self, training_set: int) -> TrainingSetRecord:
        """Forget a recorded training set: its record and profiles (audited), its entity
        rows, and its hold on the offline files it read (they go at the next gc)."""
        from featurestore.offline.training_inputs import release_inputs
        from featurestore.registry.database import whoami

        actor = whoami()
        record = self.registry.delete_training_set(self.project, training_set, actor=actor)
        release_inputs(
            self.config.offline_store_path,
            self.project,
            training_set,
            record.offline_manifests,
            by=f"training-sets delete by {actor}",
        )
        return record

    # -- materialization --------------------------------------------------------------

    def materialize(
        self,
        views: list[str] | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        incremental: bool = False,
        engine: str = "auto",
        progress: Callable[[str], None] = lambda _m: None,
    ) -> list[ViewRun]:
        """Run the batch job for ``views`` (default: every batch view): source -> validate
        -> offline and online stores, each run recorded. See ``materialize/job.py``."""
        from featurestore.materialize.job import materialize

        return materialize(
            self,
            views,
            start=start,
            end=end,
            incremental=incremental,
            engine=engine,
            progress=progress,
        )

    def stream(
        self,
        views: list[str] | None = None,
        *,
        max_events: int | None = None,
        until_caught_up: bool = False,
        seconds: float | None = None,
        group: str | None = None,
        flush_seconds: float = 5.0,
        metrics_port: int | None = None,
        progress: Callable[[str], None] = lambda _m: None,
    ) -> list[StreamStats]:
        """Run the stream consumer of ``views`` (default: every streaming view), as
        ``featurestore stream`` does, until ``max_events`` events were consumed (accepted
        or dead-lettered, per view), the topics are caught up, ``seconds`` have passed, or
        SIGTERM/Ctrl-C (without a condition: only those). It then lands, commits and
        returns each view's counters. See ``streaming/consumer.py``."""
        import threading

        try:
            from featurestore.streaming import consumer
        except ImportError as exc:
            raise MissingExtraError("kafka", "kafka") from exc
        from featurestore.streaming.until import Until

        until = Until(max_events, until_caught_up, seconds)
        return consumer.run(
            self,
            views or self.snapshot().streaming_views(),
            group=group,
            flush_seconds=flush_seconds,
            metrics_port=metrics_port,
            progress=progress,
            handle_signals=threading.current_thread() is threading.main_thread(),
            until=None if until.forever else until,
        )

    def backfill(
        self,
        view: str,
        *,
        source: str = "source",
        progress: Callable[[str], None] = lambda _m: None,
    ) -> dict[str, Any]:
        """``featurestore stream backfill``: compute a streaming view's rows on Spark from
        historical events (``source``: the KafkaSource's batch_source; ``log``: the events
        the stream landed) and commit them offline. See ``streaming/spark_batch.py``."""
        try:
            from featurestore.streaming.spark_batch import backfill
        except ImportError as exc:
            raise MissingExtraError("pyspark", "spark") from exc
        return backfill(self, view, source=source, progress=progress)

    # -- online -------------------------------------------------------------------

    def catalog(self, previous: Catalog | None = None) -> Catalog:
        """The registry snapshot, API keys and policies that lookups are planned from;
        online denials and masks are audited in the background. With ``previous`` (an
        older catalog), its lookup plans that nothing changed under are kept."""
        from featurestore.online.catalog import Catalog

        previous_snapshot = previous.snapshot if previous is not None else None
        snapshot = self.registry.snapshot(self.project, previous=previous_snapshot)
        return Catalog(
            snapshot,
            policy_default=self.config.policy_default,
            mask_key=self.mask_key(),
            keys=self.key_ring(),
            on_decision=self.audit_queue.put,
            previous=previous,
        )

    def key_ring(self) -> KeyRing:
        """The project's API keys as the registry holds them now (revoked ones included)."""
        from featurestore.policy.keys import KeyRing

        return KeyRing(self.project, self.registry.credentials.records(self.project))

    @cached_property
    def audit_queue(self) -> AuditQueue:
        """Where online decisions are queued for the audit log (written in the background)."""
        from featurestore.registry.audit import AuditQueue
        from featurestore.registry.database import whoami

        return AuditQueue(self.registry.audit, self.project, whoami())

    def mask_key(self) -> bytes:
        """The key of masked values' hashes: ``FEATURESTORE_MASK_KEY``, or one made once in
        the state folder (set the variable when several hosts must agree)."""
        env = os.environ.get("FEATURESTORE_MASK_KEY")
        if env:
            return env.encode()
        path = self.config.state_dir / "mask.key"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".mask.key.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(32).hex().encode())
            try:
                os.link(tmp, path)  # atomic; if another process won, its key is the key
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
            return path.read_bytes()

    def refreshed(self, catalog: Catalog) -> Catalog:
        """``catalog`` if the registry has not changed since, else a new one (with the
        plans of ``catalog`` that the change left valid)."""
        if self.registry.serial(self.project) == catalog.serial:
            return catalog
        return self.catalog(previous=catalog)

    def online_client(self, **options: Any) -> OnlineClient:
        """A lookup client on this repo's online store; it follows registry changes within
        ``refresh_seconds`` (default 1 s). ``api_key`` defaults to FEATURESTORE_API_KEY;
        ``require_key`` to ``online_store.require_api_key``; ``cache`` to a new
        ``LookupCache`` of ``online_store.cache`` (None when it is off). See ``OnlineClient``."""
        from featurestore.online.cache import LookupCache
        from featurestore.online.client import OnlineClient

        options.setdefault("api_key", os.environ.get("FEATURESTORE_API_KEY") or None)
        options.setdefault("require_key", self.config.require_api_key)
        if "cache" not in options:
            options["cache"] = LookupCache.from_config(self.config.online_cache)
        return OnlineClient(self.online_store, self.catalog(), refresh=self.refreshed, **options)

    @cached_property
    def _online(self) -> OnlineClient:
        return self.online_client()

    def get_online_features(
        self,
        entities: Any,
        *,
        model: str | None = None,
        features: Sequence[str] | None = None,
        full_feature_names: bool = False,
        api_key: str | None = None,
    ) -> OnlineResponse:
        """Latest values for each entity row, with per-feature status and event time.

        ``entities``: ``[{"user_id": 1}, ...]`` or ``{"user_id": [1, ...]}``. Ask with
        ``model`` (its pinned versions) or ``features`` (references and service names).
        One Redis round trip, whatever the number of rows and views. ``api_key`` names
        the caller (its model's policies apply; see docs/governance.md).
        """
        return self._online.get_online_features(
            entities,
            model=model,
            features=features,
            full_feature_names=full_feature_names,
            api_key=api_key,
        )

    async def get_online_features_async(
        self,
        entities: Any,
        *,
        model: str | None = None,
        features: Sequence[str] | None = None,
        full_feature_names: bool = False,
        api_key: str | None = None,
    ) -> OnlineResponse:
        """``get_online_features`` for asyncio code: one round trip, no thread."""
        return await self._online.get_online_features_async(
            entities,
            model=model,
            features=features,
            full_feature_names=full_feature_names,
            api_key=api_key,
        )

    # -- credentials ----------------------------------------------------------------

    def create_credential(
        self, model: str, *, expires_at: datetime | None = None, description: str = ""
    ) -> tuple[Credential, str]:
        """A new API key for ``model``: ``(credential, key)``. Only a salted hash is
        stored: the key cannot be shown again."""
        from featurestore.registry.database import whoami

        found = self.registry.credentials.create(
            self.project, model, actor=whoami(), expires_at=expires_at, description=description
        )
        self._registry_changed()
        return found

    def create_push_credential(
        self,
        views: Sequence[str],
        *,
        expires_at: datetime | None = None,
        description: str = "",
    ) -> tuple[Credential, str]:
        """A new push-only API key for ``views``: it may push rows to them (``POST
        /v1/push``) and reads nothing. ``(credential, key)``; the key is shown once."""
        from featurestore.registry.database import whoami

        found = self.registry.credentials.create_push(
            self.project,
            list(views),
            actor=whoami(),
            expires_at=expires_at,
            description=description,
        )
        self._registry_changed()
        return found

    def create_operator_credential(
        self, *, expires_at: datetime | None = None, description: str = ""
    ) -> tuple[Credential, str]:
        """A new operator's key, for the web UI (``featurestore ui``): it reads the
        registry's pages and no feature values. ``(credential, key)``; shown once."""
        from featurestore.registry.database import whoami

        found = self.registry.credentials.create_operator(
            self.project, actor=whoami(), expires_at=expires_at, description=description
        )
        self._registry_changed()
        return found

    def revoke_credential(self, key_id: str) -> Credential:
        """Revoke an API key (``fsk_<id>_...`` or its id): idempotent and audited; servers
        refuse it within their refresh interval."""
        from featurestore.registry.credentials import key_id_of
        from featurestore.registry.database import whoami

        revoked = self.registry.credentials.revoke(self.project, key_id_of(key_id), actor=whoami())
        self._registry_changed()
        return revoked

    def online_writer(self) -> OnlineStore:
        """What writes online values: the online store (``write``, ``write_table``,
        ``delete_entities``, ``delete_version``; a value never replaces a newer one)."""
        return self.online_store

    def write_online(self, view: str, rows: Any, *, version: int | None = None) -> WriteStats:
        """Write an Arrow table of feature rows to ``view``'s latest (or given) version;
        a value never replaces a newer one."""
        from featurestore.online.layout import ViewLayout

        snapshot = self.snapshot()
        vv = snapshot.view_version(view, version)
        layout = ViewLayout.from_view(
            self.project, snapshot.feature_view(view, vv.version), vv.version
        )
        return self.online_writer().write_table(layout, rows)

    @cached_property
    def pusher(self) -> Pusher:
        """What ``push`` writes through (its offline buffer is landed on ``close``)."""
        from featurestore.push.pusher import build_pusher

        def snapshot() -> RegistrySnapshot:
            self._online.maybe_refresh()  # within refresh_seconds of a change, as lookups
            return self._online.catalog.snapshot

        return build_pusher(self, snapshot)

    def push(
        self,
        view: str,
        rows: Any,
        to: str = "online",
        *,
        version: int | None = None,
    ) -> PushResult:
        """Write rows a service computed to ``view`` (latest or ``version``): ``to`` is
        "online", "offline" or "online_and_offline". ``rows``: a list of dicts or a dict
        of columns, with the join keys, ``event_timestamp`` and features.

        All or nothing: any bad row (checked as the stream consumer checks events) raises
        PushRejected listing each, and nothing is written. Online values never regress
        to an older event time; offline rows are buffered and landed in batches
        (``push/buffer.py``), and on ``close``."""
        return self.pusher.push(view, rows, to, version=version)

    def cleanup_online(self) -> dict[str, int]:
        """Remove the online values of every retired version; returns fields removed per version."""
        from featurestore.online.layout import ViewLayout

        snapshot = self.snapshot()
        writer = self.online_writer()
        removed = {}
        for vv in snapshot.retired_versions():
            layout = ViewLayout.from_version(snapshot, vv)
            removed[vv.label] = writer.delete_version(layout)
        return removed

    def retire(self, view: str, version: int, *, remove_online: bool = True) -> ViewVersion:
        """Stop serving ``view@v<version>`` and remove its online values.

        If Redis is unreachable the version is retired anyway, and
        OnlineStoreUnavailable says to run ``featurestore online cleanup`` later.
        """
        from featurestore.errors import OnlineStoreUnavailable
        from featurestore.online.layout import ViewLayout

        retired = self.registry.retire_version(self.project, view, version)
        self._registry_changed()
        if remove_online:
            layout = ViewLayout.from_version(self.snapshot(), retired)
            try:
                self.online_writer().delete_version(layout)
            except OnlineStoreUnavailable as exc:
                raise OnlineStoreUnavailable(
                    f"{retired.label} is retired, but its online values stay in Redis until "
                    f"removed: {exc}"
                ) from exc
        return retired

    def promote(self, model: str) -> dict[str, int]:
        """Pin ``model`` to the latest version of each view it reads; returns the new pins."""
        pins = self.registry.promote(self.project, model)
        self._registry_changed()
        return pins
