"""HTTP service around one :class:`OnlineTuner` (FastAPI; the ``server`` extra).

``POST /suggest``, ``POST /feedback``, ``GET /best``, ``GET /stats``, ``GET /healthz``.
A bearer token, when configured, guards every endpoint except ``/healthz`` (the OpenAPI
description included). Bodies larger than ``max_body_bytes`` get 413 before parsing;
invalid ones get 422 naming the field; rejected feedback gets 404 (unknown id),
409 (duplicate) or 410 (expired). No rejected request changes the tuner's state.
A feedback is acknowledged only once durable under the journal's fsync policy.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Awaitable, Callable, Union

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from autorag_hp.online._tuner import FeedbackRejected, OnlineTuner

__all__ = ["create_app"]

try:
    import orjson as _orjson

    def _dumps(obj: Any) -> bytes:
        return _orjson.dumps(obj)
except ImportError:  # pragma: no cover - depends on the environment
    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_dumps(obj), status_code=status, media_type="application/json", headers=headers)


ParamValue = Union[bool, int, float, str]


class Suggested(BaseModel):
    id: str = Field(description="Report the reward under this id with POST /feedback.")
    config: dict[str, ParamValue]
    expires_at: float = Field(description="Seconds since the epoch after which feedback is not counted.")


class Accepted(BaseModel):
    id: str
    accepted: bool = True


class Estimate(BaseModel):
    config: dict[str, ParamValue]
    mean: float
    pulls: float = Field(description="Effective number of rewards (fractional when discounted).")
    ci_low: float
    ci_high: float


class Best(BaseModel):
    best: list[Estimate]


class Problem(BaseModel):
    detail: str
    field: str | None = None


class Health(BaseModel):
    status: str


_ERRORS = {
    400: {"model": Problem, "description": "Unreadable request (e.g. a body that is not UTF-8 JSON)."},
    401: {"model": Problem, "description": "Missing or wrong bearer token."},
    413: {"model": Problem, "description": "Request body too large."},
    422: {"model": Problem, "description": "Invalid request; `field` names the offending field."},
}


class _Guard:
    """ASGI middleware: bearer token and body size limit, before any parsing."""

    def __init__(self, app: Callable[..., Awaitable[None]], *, token: str | None, max_body: int,
                 open_paths: frozenset[str]) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None
        self.max_body = max_body
        self.open_paths = open_paths

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = None
        auth = b""
        for k, v in scope["headers"]:
            if k == b"authorization":
                auth = v
            elif k == b"content-length":
                length = v
        if self.expected is not None and scope["path"] not in self.open_paths:
            if not hmac.compare_digest(auth, self.expected):
                return await _send(send, 401, {"detail": "missing or wrong bearer token", "field": "Authorization"},
                                   [(b"www-authenticate", b"Bearer")])
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return await _send(send, 400, {"detail": "Content-Length must be an integer", "field": "Content-Length"})
            if n > self.max_body:
                return await _send(send, 413, _too_large(self.max_body, n))
            if n == 0:
                return await self.app(scope, receive, send)
        if scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        # Read the whole (small) body first so that an oversized chunked body is refused too.
        chunks = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body = msg.get("body", b"")
            size += len(body)
            if size > self.max_body:
                return await _send(send, 413, _too_large(self.max_body, size))
            chunks.append(body)
            if not msg.get("more_body", False):
                break
        buffered = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return buffered
            return await receive()

        await self.app(scope, replay, send)


def _too_large(limit: int, got: int) -> dict[str, Any]:
    return {"detail": f"request body must be at most {limit} bytes, got {got}", "field": "body"}


async def _send(send: Callable, status: int, body: dict[str, Any], extra: list | None = None) -> None:
    data = _dumps(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": data})


def create_app(
    tuner: OnlineTuner,
    *,
    token: str | None = None,
    max_body_bytes: int = 16_384,
    close_tuner_on_shutdown: bool = False,
) -> FastAPI:
    """A FastAPI app serving ``tuner``; ``token`` (if given) is required as ``Authorization: Bearer``."""
    if not isinstance(tuner, OnlineTuner):
        raise ValueError(f"tuner must be an OnlineTuner, got {type(tuner).__name__}")
    if token is not None and (not isinstance(token, str) or not token or not token.isprintable()):
        raise ValueError("token must be a non-empty printable string or None")
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 64:
        raise ValueError(f"max_body_bytes must be an integer >= 64, got {max_body_bytes!r}")
    lo, hi = tuner.reward_range

    class FeedbackIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9]{1,12}-[0-9]{1,15}$",
                        description="The id returned by POST /suggest.")
        reward: float = Field(ge=lo, le=hi, allow_inf_nan=False, strict=True,
                              description="Finite reward of the served configuration (higher is better).")

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if close_tuner_on_shutdown:
            tuner.close()

    app = FastAPI(
        title="autorag-hp online tuner",
        version="1",
        description="Chooses a RAG configuration per request and learns from the rewards reported back.",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            field = "body"
        else:
            field = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return _json({"detail": f"{field}: {first.get('msg', 'invalid')}", "field": field}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        field = "body" if exc.status_code == 400 else None
        return _json({"detail": str(exc.detail), "field": field}, exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(FeedbackRejected)
    async def rejected(request: Request, exc: FeedbackRejected) -> Response:
        return _json({"detail": str(exc), "field": "id"}, exc.status)

    @app.post("/suggest", response_model=Suggested, responses={**_ERRORS}, summary="Configuration to serve next")
    async def suggest() -> Response:
        s = tuner.suggest()
        return _json({"id": s.id, "config": s.config, "expires_at": s.expires_at})

    async def feedback(body: FeedbackIn) -> Response:
        try:
            ticket = tuner.feedback(body.id, body.reward, wait=False)
        except FeedbackRejected:
            raise
        except ValueError as exc:  # e.g. a Beta posterior's [0, 1] rule
            return _json({"detail": f"reward: {exc}", "field": "reward"}, 422)
        await tuner.wait_async(ticket)
        return _json({"id": body.id, "accepted": True})

    # The body model is built per app (its bounds are the tuner's reward range), so the
    # annotation must be the class itself, not the postponed string.
    feedback.__annotations__["body"] = FeedbackIn
    app.post(
        "/feedback",
        response_model=Accepted,
        summary="Report the reward of a suggestion (counted once)",
        responses={
            **_ERRORS,
            404: {"model": Problem, "description": "Unknown id."},
            409: {"model": Problem, "description": "Feedback for this id was already received."},
            410: {"model": Problem, "description": "The suggestion expired; feedback not counted."},
        },
    )(feedback)

    @app.get("/best", response_model=Best, responses={**_ERRORS}, summary="Best configurations so far")
    async def best(n: int = Query(1, ge=1, le=100, description="How many configurations.")) -> Response:
        recs = tuner.best(n)
        return _json({"best": [
            {"config": r.config, "mean": r.mean, "pulls": r.pulls, "ci_low": r.ci_low, "ci_high": r.ci_high}
            for r in recs
        ]})

    @app.get("/stats", response_model=dict[str, Any], responses={**_ERRORS}, summary="Counters and state")
    async def stats() -> Response:
        return _json(tuner.stats())

    @app.get("/healthz", response_model=Health, summary="Liveness (no token needed)")
    async def healthz() -> Response:
        return _json({"status": "ok"})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
            for path, ops in schema["paths"].items():
                for op in ops.values():
                    op.get("responses", {}).pop("422", None) if path in ("/healthz",) else None
                    if path != "/healthz" and token:
                        op["security"] = [{"bearerAuth": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(_Guard, token=token, max_body=max_body_bytes, open_paths=frozenset({"/healthz"}))
    return app
