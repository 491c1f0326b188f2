"""Dagster resources of the dispatch path: the ops store and the site controllers (never DuckDB)."""

from __future__ import annotations

import dagster as dg

from vpp_pipeline import settings
from vpp_pipeline.dispatch.delivery import (
    DEFAULT_SITE_CONTROLLER_TOKEN,
    DEFAULT_SITE_CONTROLLER_URL,
    SiteControllerClient,
)
from vpp_pipeline.dispatch.outbox import DEFAULT_RETRY_POLICY, RetryPolicy
from vpp_pipeline.ops import DEFAULT_OPS_DB_PATH, OpsStore, is_postgres
from vpp_pipeline.resources import env_or_default


class OpsStoreResource(dg.ConfigurableResource):
    """The ops store: PostgreSQL when ``url`` (``postgresql://...``, from ``VPP_OPS_DB_URL`` as a
    ``dg.EnvVar``: it may hold a password) is set, else the SQLite file ``path`` (``VPP_OPS_DB_PATH``,
    default ``data/ops.sqlite``). :meth:`store` opens it and checks it (never creates one)."""

    path: str = DEFAULT_OPS_DB_PATH
    url: str = ""

    @property
    def location(self) -> str:
        return self.url or self.path

    def store(self) -> OpsStore:
        return OpsStore(self.location)


class SiteControllerResource(dg.ConfigurableResource):
    """The site controllers' HTTP API (docs/site-controller.md); ``token`` is a Bearer token (``dg.EnvVar``).

    ``timeout_s``, ``max_attempts`` and ``backoff_*_s`` shape one delivery; ``retry_*_s`` when an
    undelivered command is re-sent by a later run (see ``vpp_pipeline.dispatch.outbox.RetryPolicy``)."""

    base_url: str = DEFAULT_SITE_CONTROLLER_URL
    token: str = DEFAULT_SITE_CONTROLLER_TOKEN
    timeout_s: float = 5.0
    max_attempts: int = 5
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 4.0
    retry_stale_after_s: float = DEFAULT_RETRY_POLICY.stale_after_s
    retry_backoff_initial_s: float = DEFAULT_RETRY_POLICY.backoff_initial_s
    retry_backoff_max_s: float = DEFAULT_RETRY_POLICY.backoff_max_s

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            stale_after_s=self.retry_stale_after_s,
            backoff_initial_s=self.retry_backoff_initial_s,
            backoff_max_s=self.retry_backoff_max_s,
        )

    def client(self) -> SiteControllerClient:
        return SiteControllerClient(
            self.base_url,
            self.token,
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
            backoff_initial_s=self.backoff_initial_s,
            backoff_max_s=self.backoff_max_s,
        )


def ops_store_resource(location: str | None = None) -> OpsStoreResource:
    """The resource for ``location`` (a SQLite path or a ``postgresql://`` URL), default the
    environment (``VPP_OPS_DB_URL``, else ``VPP_OPS_DB_PATH``)."""
    if location is not None:
        if is_postgres(location):
            return OpsStoreResource(url=str(location))
        return OpsStoreResource(path=str(location))
    path = settings.env("VPP_OPS_DB_PATH", DEFAULT_OPS_DB_PATH)
    if settings.env("VPP_OPS_DB_URL", ""):
        return OpsStoreResource(path=path, url=dg.EnvVar("VPP_OPS_DB_URL"))
    return OpsStoreResource(path=path)


def site_controller_resource() -> SiteControllerResource:
    return SiteControllerResource(
        base_url=env_or_default("SITE_CONTROLLER_URL", DEFAULT_SITE_CONTROLLER_URL),
        token=env_or_default("SITE_CONTROLLER_TOKEN", DEFAULT_SITE_CONTROLLER_TOKEN),
    )
