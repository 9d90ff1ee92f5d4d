"""HTTP service around one :class:`OnlineTuner` (FastAPI; the ``server`` extra).

``POST /suggest``, ``POST /feedback``, ``GET /best``, ``GET /stats``, ``GET /healthz``.
A bearer token, when configured, guards every endpoint except ``/healthz`` (the OpenAPI
description included). Bodies larger than ``max_body_bytes`` get 413 before parsing;
invalid ones get 422 naming the field, the rule and the value; rejected feedback gets
404 (unknown id), 409 (duplicate) or 410 (expired). No rejected request changes the
tuner's state. A feedback is acknowledged only once durable under the journal's fsync
policy; a journal that cannot be written answers 503 and records nothing.

Batches: ``POST /suggest`` with ``{"n": k}`` returns ``{"suggestions": [...]}`` (k
suggestions); ``POST /feedback`` with a JSON list of ``{"id", "reward"}`` objects answers
200 with one result per item (``status`` 200, 404, 409, 410 or 422, and ``detail`` for a
rejected one): valid items count even when others in the batch are rejected, and one
journal write and one fsync cover the whole batch before the 200.

The two hot endpoints are answered by plain ASGI code in front of FastAPI (JSON by orjson,
validated by hand with the same messages); FastAPI serves the rest and the OpenAPI
description of all of them.
"""

from __future__ import annotations

import hmac
import json
import math
from typing import Any, Callable, Union

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from autorag_hp._validation import check_int
from autorag_hp.online._persistence import JournalUnavailable
from autorag_hp.online._tuner import FeedbackRejected, OnlineTuner

__all__ = ["create_app"]

try:
    import orjson as _orjson

    _dumps = _orjson.dumps

    def _loads(raw: bytes) -> Any:
        try:
            return _orjson.loads(raw)
        except _orjson.JSONDecodeError:  # e.g. integers beyond 64 bits, NaN: let json say what it is
            return json.loads(raw)
except ImportError:  # pragma: no cover - depends on the environment
    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    def _loads(raw: bytes) -> Any:
        return json.loads(raw)


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    data = obj if type(obj) is bytes else _dumps(obj)  # bytes: JSON already
    return Response(data, status_code=status, media_type="application/json", headers=headers)


ParamValue = Union[bool, int, float, str]


class Suggested(BaseModel):
    id: str = Field(description="Report the reward under this id with POST /feedback.")
    config: dict[str, ParamValue]
    expires_at: float = Field(description="Seconds since the epoch after which feedback is not counted.")


class SuggestedBatch(BaseModel):
    suggestions: list[Suggested]


class SuggestIn(BaseModel):
    n: int = Field(ge=1, description="How many suggestions (at most the server's max_batch).")


class FeedbackIn(BaseModel):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9]{1,12}-[0-9]{1,15}$",
                    description="The id returned by POST /suggest.")
    reward: float = Field(description="Finite reward of the served configuration (higher is better), within the "
                                      "tuner's reward range.")


class Accepted(BaseModel):
    id: str
    accepted: bool = True


class ItemResult(BaseModel):
    id: Union[str, None] = None
    status: int = Field(description="200 counted; 404 unknown id, 409 duplicate, 410 expired, 422 invalid item.")
    accepted: bool
    detail: Union[str, None] = None
    field: Union[str, None] = None


class BatchAccepted(BaseModel):
    accepted: int = Field(description="How many items were counted.")
    results: list[ItemResult]


class Estimate(BaseModel):
    config: dict[str, ParamValue]
    mean: Union[float, None] = Field(description="Estimated mean reward; null when there is no estimate (NaN).")
    pulls: float = Field(description="Effective number of rewards (fractional when discounted).")
    ci_low: Union[float, None] = Field(description="Lower end of the interval; null when unbounded (-inf).")
    ci_high: Union[float, None] = Field(description="Upper end of the interval; null when unbounded (+inf).")


class Best(BaseModel):
    best: list[Estimate]


class Problem(BaseModel):
    detail: str
    field: Union[str, None] = None


class Health(BaseModel):
    status: str
    detail: Union[str, None] = None


_ERRORS = {
    400: {"model": Problem, "description": "Unreadable request (e.g. a bad Content-Length)."},
    401: {"model": Problem, "description": "Missing or wrong bearer token."},
    413: {"model": Problem, "description": "Request body too large."},
    422: {"model": Problem, "description": "Invalid request; `field` names the offending field."},
    503: {"model": Problem, "description": "The journal cannot be written; nothing was recorded (retry later)."},
}

_CONFIG_CACHE = 65_536  # configurations whose JSON the service keeps (cleared when full)


class _Invalid(Exception):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Endpoints:
    """The request logic of POST /suggest and POST /feedback, shared by the fast ASGI path and
    the FastAPI routes that document them; also tracks health."""

    def __init__(self, tuner: OnlineTuner, max_batch: int) -> None:
        self.tuner = tuner
        self.max_batch = max_batch
        self.lo, self.hi = tuner.reward_range
        self.suggest_error: str | None = None
        self._config_json: dict[int, bytes] = {}  # configuration index -> its JSON

    # -- parsing -----------------------------------------------------------------------------
    @staticmethod
    def _parse(body: bytes) -> Any:
        try:
            return _loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise _Invalid("body", f"body: must be valid JSON ({str(exc).splitlines()[0][:120]})") from None

    def _item(self, obj: Any, where: str) -> tuple[str, float]:
        if type(obj) is dict and len(obj) == 2:  # the usual item, checked without building any message
            sid, reward = obj.get("id"), obj.get("reward")
            if type(sid) is str and type(reward) is float and self.lo <= reward <= self.hi and 1 <= len(sid) <= 64:
                return sid, reward
        if not isinstance(obj, dict):
            raise _Invalid(where or "body", f"{where or 'body'}: must be an object with 'id' and 'reward', got {_show(obj)}")
        pre = f"{where}." if where else ""
        for key in obj:
            if key not in ("id", "reward"):
                raise _Invalid(f"{pre}{key}", f"{pre}{key}: extra field not allowed (allowed: id, reward)")
        if "id" not in obj:
            raise _Invalid(f"{pre}id", f"{pre}id: field required")
        if "reward" not in obj:
            raise _Invalid(f"{pre}reward", f"{pre}reward: field required")
        sid, reward = obj["id"], obj["reward"]
        if not isinstance(sid, str) or not 1 <= len(sid) <= 64:
            raise _Invalid(f"{pre}id", f"{pre}id: must be a string id returned by POST /suggest, got {_show(sid)}")
        if isinstance(reward, bool) or not isinstance(reward, (int, float)):
            raise _Invalid(f"{pre}reward", f"{pre}reward: must be a number, got {_show(reward)}")
        if not (math.isfinite(reward) and self.lo <= reward <= self.hi):
            raise _Invalid(f"{pre}reward", f"{pre}reward: must be finite and satisfy {self.lo:g} <= reward <= "
                                           f"{self.hi:g}, got {_show(reward)}")
        return sid, float(reward)

    # -- endpoints -----------------------------------------------------------------------------
    def suggest(self, body: bytes) -> tuple[int, Any]:
        n = None
        if body.strip():
            obj = self._parse(body)
            if not isinstance(obj, dict):
                raise _Invalid("body", f"body: must be an object like {{\"n\": 8}} or empty, got {_show(obj)}")
            for key in obj:
                if key != "n":
                    raise _Invalid(key, f"{key}: extra field not allowed (allowed: n)")
            n = obj.get("n")  # {} is one suggestion, as an empty body
            if "n" in obj and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.max_batch):
                raise _Invalid("n", f"n: must be an integer with 1 <= n <= {self.max_batch}, got {_show(n)}")
        try:
            ids, indices, coords, expires = self.tuner._suggest(1 if n is None else n)
        except Exception as exc:
            self.suggest_error = f"suggest failed: {type(exc).__name__}: {exc}"
            return (503 if isinstance(exc, (JournalUnavailable, RuntimeError)) else 500), \
                {"detail": self.suggest_error, "field": None}
        self.suggest_error = None
        # The answer's JSON is assembled from each configuration's JSON, kept per index.
        cache = self._config_json
        exp = _dumps(expires)
        items = []
        for sid, index, c in zip(ids, indices, coords):
            config = cache.get(index)
            if config is None:
                if len(cache) >= _CONFIG_CACHE:
                    cache.clear()
                config = cache[index] = _dumps(self.tuner.space.config_from_coords(c))
            items.append(b'{"id":"%s","config":%s,"expires_at":%s}' % (sid.encode(), config, exp))
        return 200, (items[0] if n is None else b'{"suggestions":[' + b",".join(items) + b"]}")

    async def feedback(self, body: bytes) -> tuple[int, Any]:
        obj = self._parse(body)
        if isinstance(obj, list):
            return await self._feedback_batch(obj)
        sid, reward = self._item(obj, "")
        try:
            ticket = self.tuner.feedback(sid, reward, wait=False)
        except FeedbackRejected as exc:
            return exc.status, {"detail": str(exc), "field": "id"}
        except ValueError as exc:  # e.g. a Beta posterior's [0, 1] rule
            return 422, {"detail": f"reward: {exc}", "field": "reward"}
        except (JournalUnavailable, RuntimeError) as exc:
            return 503, {"detail": str(exc), "field": None}
        if ticket:  # a ticket is a journal's sequence number
            try:
                await self.tuner._journal.wait_async(ticket)  # type: ignore[union-attr]
            except JournalUnavailable as exc:
                return 503, {"detail": str(exc), "field": None}
        return 200, b'{"id":"%s","accepted":true}' % sid.encode()  # a counted id is one this tuner issued

    async def _feedback_batch(self, items: list) -> tuple[int, Any]:
        if not 1 <= len(items) <= self.max_batch:
            raise _Invalid("body", f"body: a feedback list must hold 1 to {self.max_batch} items, got {len(items)}")
        results: list[Any] = [None] * len(items)
        pairs, where = [], []
        for k, obj in enumerate(items):
            try:
                pairs.append(self._item(obj, f"[{k}]"))
                where.append(k)
            except _Invalid as exc:
                sid = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None
                results[k] = {"id": sid, "status": 422, "accepted": False, "detail": exc.detail, "field": exc.field}
        try:
            outcomes, ticket = self.tuner.feedback_many(pairs, wait=False)
        except (JournalUnavailable, RuntimeError) as exc:
            return 503, {"detail": f"{exc} (no item of the batch was counted)", "field": None}
        try:
            await self.tuner.wait_async(ticket)
        except JournalUnavailable as exc:  # written but not known to be durable: not acknowledged
            return 503, {"detail": f"{exc} (the batch is not acknowledged)", "field": None}
        accepted = 0
        for k, (sid, _), outcome in zip(where, pairs, outcomes):
            if outcome is None:  # a counted id is one this tuner issued ("<boot>-<n>"): nothing to escape
                accepted += 1
                results[k] = b'{"id":"%s","status":200,"accepted":true}' % sid.encode()
            elif isinstance(outcome, FeedbackRejected):
                results[k] = {"id": sid, "status": outcome.status, "accepted": False, "detail": str(outcome), "field": "id"}
            else:
                results[k] = {"id": sid, "status": 422, "accepted": False, "detail": f"[{k}].reward: {outcome}",
                              "field": f"[{k}].reward"}
        body = b",".join(r if type(r) is bytes else _dumps(r) for r in results)
        return 200, b'{"accepted":%d,"results":[%s]}' % (accepted, body)

    def health(self) -> tuple[int, dict[str, Any]]:
        journal = getattr(self.tuner, "_journal", None)
        failed = getattr(journal, "failed", None)
        if failed:
            return 503, {"status": "unhealthy", "detail": f"journal: {failed}"}
        if self.suggest_error:
            return 503, {"status": "unhealthy", "detail": self.suggest_error}
        return 200, {"status": "ok"}


class _TunerApp(FastAPI):
    """FastAPI with a front door: bearer token and body size limit before any parsing, and the
    two hot endpoints answered directly (no routing, no pydantic)."""

    front: dict[str, Any]

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        f = self.front
        length = None
        auth = b""
        for k, v in scope["headers"]:
            if k == b"authorization":
                auth = v
            elif k == b"content-length":
                length = v
        path = scope["path"]
        if f["expected"] is not None and path != "/healthz":
            if not hmac.compare_digest(auth, f["expected"]):
                return await _send(send, 401, {"detail": "missing or wrong bearer token", "field": "Authorization"},
                                   [(b"www-authenticate", b"Bearer")])
        max_body = f["max_body"]
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return await _send(send, 400, {"detail": "Content-Length must be an integer", "field": "Content-Length"})
            if n > max_body:
                return await _send(send, 413, _too_large(max_body, n))
        method = scope["method"]
        if method == "GET" or method == "HEAD":
            return await super().__call__(scope, receive, send)
        # Read the whole (small) body first so that an oversized chunked body is refused too.
        chunks = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body = msg.get("body", b"")
            size += len(body)
            if size > max_body:
                return await _send(send, 413, _too_large(max_body, size))
            chunks.append(body)
            if not msg.get("more_body", False):
                break
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if method == "POST" and (path == "/suggest" or path == "/feedback"):
            ep: _Endpoints = f["endpoints"]
            try:
                status, out = ep.suggest(data) if path == "/suggest" else await ep.feedback(data)
            except _Invalid as exc:
                status, out = 422, {"detail": exc.detail, "field": exc.field}
            return await _send(send, status, out)
        buffered = {"type": "http.request", "body": data, "more_body": False}
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return buffered
            return await receive()

        await super().__call__(scope, replay, send)


def _too_large(limit: int, got: int) -> dict[str, Any]:
    return {"detail": f"request body must be at most {limit} bytes, got {got}", "field": "body"}


async def _send(send: Callable, status: int, body: Any, extra: list | None = None) -> None:
    data = body if type(body) is bytes else _dumps(body)  # bytes: JSON already
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def create_app(
    tuner: OnlineTuner,
    *,
    token: str | None = None,
    max_body_bytes: int = 65_536,
    max_batch: int = 1_000,
    close_tuner_on_shutdown: bool = False,
) -> FastAPI:
    """A FastAPI app serving ``tuner``; ``token`` (if given) is required as ``Authorization: Bearer``.
    ``max_batch`` bounds ``n`` of a batch suggest and the length of a feedback list."""
    if not isinstance(tuner, OnlineTuner):
        raise ValueError(f"tuner must be an OnlineTuner, got {type(tuner).__name__}")
    if token is not None and (not isinstance(token, str) or not token or not token.isprintable()):
        raise ValueError("token must be a non-empty printable string or None")
    check_int("max_body_bytes", max_body_bytes, minimum=64)
    check_int("max_batch", max_batch, minimum=1)
    lo, hi = tuner.reward_range
    endpoints = _Endpoints(tuner, max_batch)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if close_tuner_on_shutdown:
            tuner.close()

    app = _TunerApp(
        title="autorag-hp online tuner",
        version="1",
        description="Chooses a RAG configuration per request and learns from the rewards reported back.",
        lifespan=lifespan,
    )
    app.front = {"expected": f"Bearer {token}".encode() if token else None, "max_body": max_body_bytes,
                 "endpoints": endpoints}

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            field = "body"
        else:
            field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query")) or "body"
        return _json({"detail": f"{field}: {first.get('msg', 'invalid')}, got {_show(first.get('input'))}",
                      "field": field}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        field = "body" if exc.status_code == 400 else None
        return _json({"detail": str(exc.detail), "field": field}, exc.status_code, getattr(exc, "headers", None))

    async def _routed(call: Any, request: Request) -> Response:
        # Reached only when the app is mounted behind another router (the front door answers
        # these paths itself); the same logic either way.
        try:
            status, out = await call(await request.body())
        except _Invalid as exc:
            status, out = 422, {"detail": exc.detail, "field": exc.field}
        return _json(out, status)

    async def _suggest_async(body: bytes) -> tuple[int, Any]:
        return endpoints.suggest(body)

    suggest_body = {"required": False, "content": {"application/json": {"schema": {
        "type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": max_batch}},
        "additionalProperties": False}}}}
    item_schema = {"type": "object", "additionalProperties": False, "required": ["id", "reward"], "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[0-9]{1,12}-[0-9]{1,15}$"},
        "reward": {"type": "number", "minimum": lo, "maximum": hi}}}
    feedback_body = {"required": True, "content": {"application/json": {"schema": {"oneOf": [
        item_schema, {"type": "array", "items": item_schema, "minItems": 1, "maxItems": max_batch}]}}}}

    @app.post("/suggest", summary="Configuration(s) to serve next",
              description="Empty body or `{}`: one suggestion. `{\"n\": k}`: `{\"suggestions\": [...]}` with k of them.",
              responses={200: {"model": Union[Suggested, SuggestedBatch], "description": "Suggestion(s)."},
                         **_ERRORS, 500: {"model": Problem, "description": "The strategy failed; /healthz reports it."}},
              openapi_extra={"requestBody": suggest_body})
    async def suggest(request: Request) -> Response:
        return await _routed(_suggest_async, request)

    @app.post(
        "/feedback",
        summary="Report the reward of a suggestion, or of many (each counted once)",
        description=("One `{id, reward}` object, answered 200/404/409/410/422; or a list of them, answered 200 with "
                     "one result per item (valid items count even when others are rejected; one fsync covers "
                     "the batch)."),
        openapi_extra={"requestBody": feedback_body},
        responses={
            200: {"model": Union[Accepted, BatchAccepted], "description": "Counted (durable) / per-item results."},
            **_ERRORS,
            404: {"model": Problem, "description": "Unknown id."},
            409: {"model": Problem, "description": "Feedback for this id was already received."},
            410: {"model": Problem, "description": "The suggestion expired; feedback not counted."},
        },
    )
    async def feedback(request: Request) -> Response:
        return await _routed(endpoints.feedback, request)

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

    @app.get("/healthz", response_model=Health, summary="Health (no token needed)",
             responses={503: {"model": Health, "description": "Unhealthy: the journal failed or suggesting fails."}})
    async def healthz() -> Response:
        status, out = endpoints.health()
        return _json(out, status)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
            for path, ops in schema["paths"].items():
                for op in ops.values():
                    if path == "/healthz":
                        op.get("responses", {}).pop("422", None)
                    elif token:
                        op["security"] = [{"bearerAuth": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
