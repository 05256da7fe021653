"""The UI's ASGI app: pages behind an operator's login, their assets, security headers.

``create_ui(store)`` is an app whose routes start at ``/`` and are meant to be mounted at
``/ui`` (``featurestore ui`` serves it alone, ``featurestore serve --ui`` beside the
API), so a page has the same URL either way: ``/ui/views/user_profile``.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from featurestore.errors import FeatureStoreError
from featurestore.registry.audit import AuditRecord
from featurestore.ui import pages
from featurestore.ui.access import Access, login_form, no_key, safe_next
from featurestore.ui.headers import SecurityHeaders
from featurestore.ui.page import Handler, PageContext
from featurestore.ui.render import STATIC, Renderer, static_file
from featurestore.ui.session import COOKIE, Sessions
from featurestore.ui.state import UiState
from featurestore.urls import redact

if TYPE_CHECKING:
    from featurestore.policy.keys import Credential
    from featurestore.store import FeatureStore

log = logging.getLogger("featurestore.ui")
PREFIX = "/ui"
CONTENT_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
NAV = (("Catalog", ""), ("Runs", "runs"), ("Training sets", "training-sets"), ("Audit", "audit"))


class Ui:
    """The routes' shared state: the registry view, sessions and templates."""

    def __init__(self, store: FeatureStore, prefix: str, refresh_seconds: float) -> None:
        self.store = store
        self.prefix = prefix
        self.state = UiState(store, refresh_seconds=refresh_seconds)
        self.access = Access(self.state, Sessions(store.mask_key()))
        self.renderer = Renderer(prefix)

    def html(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        common = {
            "project": self.state.project,
            "nav": [(label, self.renderer.url(path)) for label, path in NAV],
            "here": request.url.path,
            "operator": None,
            "title": "",
        }
        return HTMLResponse(self.renderer.page(template, **{**common, **context}), status)

    def failure(
        self, request: Request, exc: Exception, operator: Credential | None
    ) -> HTMLResponse:
        if isinstance(exc, FeatureStoreError):
            status, message = exc.http_status, redact(str(exc))
        else:  # the traceback stays in the log, under an id the page shows
            status, ref = 500, uuid.uuid4().hex[:12]
            log.exception("UI page %s failed (ref %s)", request.url.path, ref)
            message = f"Something went wrong on our side (ref {ref}); the server's log has it."
        return self.html(
            request, "error.html", status, operator=operator, message=message, code=status
        )

    def login_redirect(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(self.renderer.url("login", next=target), 303)

    async def context(self, request: Request) -> PageContext | Response:
        """The page's context, or the response that replaces the page (log in, 401)."""
        try:
            operator = self.access.operator(request)
        except FeatureStoreError as exc:
            return self.failure(request, exc, None)
        if operator is None:
            if request.url.path.startswith(self.prefix + "/api/"):
                return JSONResponse({"detail": str(no_key())}, 401)
            return self.login_redirect(request)
        return PageContext(
            self.state,
            self.renderer,
            operator,
            dict(request.path_params),
            dict(request.query_params),
        )

    def page(self, handler: Handler) -> Any:
        async def endpoint(request: Request) -> Response:
            ctx = await self.context(request)
            if isinstance(ctx, Response):
                return ctx
            try:
                rendered = await run_in_threadpool(handler, ctx)
            except Exception as exc:
                return self.failure(request, exc, ctx.operator)
            return self.html(
                request,
                rendered.template,
                rendered.status,
                operator=ctx.operator,
                title=rendered.title,
                **rendered.context,
            )

        return endpoint

    def api(self, handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            ctx = await self.context(request)
            if isinstance(ctx, Response):
                return ctx
            try:
                return JSONResponse(await run_in_threadpool(handler, ctx))
            except FeatureStoreError as exc:
                return JSONResponse({"detail": redact(str(exc))}, exc.http_status)

        return endpoint

    async def login_page(self, request: Request) -> Response:
        target = safe_next(request.query_params.get("next"), self.prefix)
        try:
            if self.access.operator(request) is not None:
                return RedirectResponse(target, 303)
        except FeatureStoreError:
            pass  # a bad bearer header: show the form
        return self.html(request, "login.html", title="Log in", next=target, error="")

    async def login(self, request: Request) -> Response:
        try:
            form = await login_form(request)
            target = safe_next(form.get("next"), self.prefix)
            credential, token, max_age = self.access.login(form.get("key", ""))
        except FeatureStoreError as exc:
            log.warning("UI login refused from %s: %s", _client(request), exc)
            return self.html(
                request,
                "login.html",
                exc.http_status,
                title="Log in",
                next=safe_next(request.query_params.get("next"), self.prefix),
                error=redact(str(exc)),
            )
        await run_in_threadpool(
            self.store.registry.audit.append,
            AuditRecord(
                project=self.state.project,
                action="ui_login",
                actor=credential.label,
                subject="operator",
                detail={"client": _client(request), "description": credential.description},
            ),
        )
        response = RedirectResponse(target, 303)
        response.set_cookie(
            COOKIE,
            token,
            max_age=max_age,
            path=self.prefix,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse(self.renderer.url("login"), 303)
        response.delete_cookie(COOKIE, path=self.prefix, httponly=True, samesite="strict")
        return response

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("Not found", 404, media_type="text/plain")
        suffix = name[name.rfind(".") :]
        return Response(
            static_file(name),
            media_type=CONTENT_TYPES[suffix],
            headers={"cache-control": "public, max-age=31536000, immutable"},
        )


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def create_ui(
    store: FeatureStore, *, prefix: str = PREFIX, refresh_seconds: float = 1.0
) -> Starlette:
    """The UI's routes, to mount at ``prefix`` (they link to each other under it)."""
    ui = Ui(store, prefix, refresh_seconds)
    routes = [
        Route("/login", ui.login_page, methods=["GET"]),
        Route("/login", ui.login, methods=["POST"]),
        Route("/logout", ui.logout, methods=["POST"]),
        Route("/static/{name}", ui.static, methods=["GET"]),
        *(Route(path, ui.page(h), methods=["GET"]) for path, h in pages.HTML),
        *(Route(path, ui.api(h), methods=["GET"]) for path, h in pages.JSON),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(SecurityHeaders)
    app.state.ui = ui
    return app


def standalone(store: FeatureStore, *, refresh_seconds: float = 1.0) -> Starlette:
    """``featurestore ui``: the UI at ``/ui``, and ``/`` sending a browser there."""

    async def home(_request: Request) -> Response:
        return RedirectResponse(PREFIX + "/", 307)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/", home),
            Route("/healthz", healthz),
            Mount(PREFIX, create_ui(store, refresh_seconds=refresh_seconds)),
        ]
    )


def standalone_from_env() -> Starlette:
    """The factory ``featurestore ui`` gives uvicorn (the repo from ``FEATURESTORE_REPO``)."""
    import os
    from pathlib import Path

    from featurestore.store import FeatureStore
    from featurestore.urls import redact_logs

    redact_logs()
    store = FeatureStore(Path(os.environ.get("FEATURESTORE_REPO", ".")))
    return standalone(
        store, refresh_seconds=float(os.environ.get("FEATURESTORE_REFRESH_SECONDS", "1.0"))
    )
