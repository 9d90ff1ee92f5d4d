"""Bad input never breaks the service: schema-driven and property-based fuzzing of every endpoint.

Thousands of generated requests (schemathesis from the OpenAPI description, positive and
negative; hypothesis for raw bodies and feedback semantics): no 5xx, responses match the
description, and a rejected request changes neither the tuner's state nor its journal.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import math
from urllib.parse import urlencode

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
import httpx  # noqa: E402
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from autorag_hp.online import OnlineTuner, Persistence, create_app  # noqa: E402
from autorag_hp.space import SearchSpace  # noqa: E402

TOKEN = "fuzz-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SPACE = SearchSpace({"top_k": [1, 3, 5, 8], "embedder": ["bm25", "e5"], "rerank": [True, False], "temp": [0.0, 0.7]})


class Client:
    """Calls an ASGI app directly on one event loop (a TestClient costs ~10 ms per request here)."""

    def __init__(self, app) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()

    def request(self, method, url, *, headers=None, params=None, content=None, json=None, data=None, cookies=None):
        headers = dict(headers or {})
        if json is not None:
            content = _json_dumps(json)
            headers.setdefault("Content-Type", "application/json")
        body = content if content is not None else data
        if isinstance(body, str):
            body = body.encode()
        body = body or b""
        path, _, qs = url.partition("?")
        query = urlencode(params or {}, doseq=True) or qs
        try:
            raw = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
        except UnicodeEncodeError:
            return None  # no HTTP client could send this header
        if body:
            raw.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method.upper(),
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
            "root_path": "", "headers": raw, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
        }
        sent = {"start": None, "body": b""}
        delivered = False

        async def receive():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)

        async def send(msg):
            if msg["type"] == "http.response.start":
                sent["start"] = msg
            elif msg["type"] == "http.response.body":
                sent["body"] += msg.get("body", b"")

        self.loop.run_until_complete(self.app(scope, receive, send))
        start = sent["start"]
        req = httpx.Request(method.upper(), "http://testserver" + path + ("?" + query if query else ""),
                            headers=headers, content=body)
        resp = httpx.Response(start["status"], headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]],
                              content=sent["body"], request=req)
        resp._elapsed = datetime.timedelta(0)  # normally set by a transport; checks read it
        return resp

    def get(self, url, **kw):
        return self.request("GET", url, **kw)

    def post(self, url, **kw):
        return self.request("POST", url, **kw)


def _json_dumps(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "run.jsonl"
    tuner = OnlineTuner(SPACE, persistence=Persistence(path, fsync="never", snapshot_every=0))
    for _ in range(20):  # some history so /best and /stats have content
        s = tuner.suggest()
        tuner.feedback(s.id, 0.5)
    app = create_app(tuner, token=TOKEN, max_body_bytes=4096)
    yield tuner, app, path
    tuner.close()


def _state(tuner: OnlineTuner, path) -> tuple:
    s = tuner.stats()
    s.pop("rejected")
    s.pop("journal")
    return json.dumps(s, sort_keys=True), path.stat().st_size, tuner.strategy.n_told


_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
_EXAMPLES = 300  # per operation and mode: 5 positive + 2 negative runs -> 2,100 requests


def test_schemathesis_every_endpoint(served):
    """Positive and negative cases generated from the OpenAPI description, for every operation."""
    tuner, app, path = served
    client = Client(app)
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json", headers=AUTH).json())
    seen: dict = {"cases": 0, "status": {}}

    def check(case) -> None:
        before = _state(tuner, path)
        kwargs = case.as_transport_kwargs(headers={**AUTH, **(case.headers or {})})
        kwargs.pop("cookies", None)
        response = client.request(kwargs.pop("method"), kwargs.pop("url"), **kwargs)
        assume(response is not None)
        seen["cases"] += 1
        seen["status"][response.status_code] = seen["status"].get(response.status_code, 0) + 1
        assert response.status_code < 500, response.text
        case.validate_response(response, checks=_CHECKS)
        if response.status_code >= 400:
            assert _state(tuner, path) == before, (case.method, case.path, case.body, response.text)
            detail = response.json()
            assert isinstance(detail.get("detail"), str) and detail["detail"]

    for result in schema.get_all_operations():
        operation = result.ok()
        has_input = operation.path in ("/suggest", "/feedback", "/best")  # nothing to make invalid elsewhere
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_input else (GenerationMode.POSITIVE,):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def run(case):
                check(case)

            run()
    assert seen["cases"] >= 1500, seen
    assert any(code >= 400 for code in seen["status"]) and 200 in seen["status"], seen


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    path=st.sampled_from(["/suggest", "/feedback", "/best", "/stats", "/healthz", "/nope"]),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    body=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()), st.just(b"x" * 5000)),
    query=st.dictionaries(st.sampled_from(["n", "x"]), st.text(max_size=6), max_size=2),
    with_token=st.booleans(),
)
def test_arbitrary_requests_never_5xx_and_rejections_change_nothing(served, path, method, body, query, with_token):
    tuner, app, jpath = served
    client = Client(app)
    before = _state(tuner, jpath)
    headers = {"content-type": "application/json", **(AUTH if with_token else {})}
    r = client.request(method, path, content=body, params=query, headers=headers)
    assert r.status_code < 500, r.text
    if not with_token and path != "/healthz":
        assert r.status_code == 401
    elif len(body) > 4096:
        assert r.status_code == 413
    if r.status_code >= 400:
        assert _state(tuner, jpath) == before
        assert isinstance(r.json()["detail"], str)


rewards = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.booleans(),
    st.text(max_size=5),
    st.none(),
    st.lists(st.floats(), max_size=2),
)


@settings(max_examples=700, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(reward=rewards, repeat=st.integers(min_value=1, max_value=3), extra=st.booleans())
def test_feedback_counts_once_and_only_valid_rewards(served, reward, repeat, extra):
    tuner, app, jpath = served
    client = Client(app)
    sid = client.post("/suggest", headers=AUTH).json()["id"]
    body = {"id": sid, "reward": reward}
    if extra:
        body["note"] = "x"
    valid = (
        not extra
        and not isinstance(reward, bool)
        and isinstance(reward, (int, float))
        and math.isfinite(reward)
        and abs(reward) <= 1e6
    )
    n0 = tuner.stats()["feedback"]
    codes = []
    for _ in range(repeat):
        before = _state(tuner, jpath)
        r = client.post("/feedback", content=json.dumps(body, allow_nan=True), headers={**AUTH, "content-type": "application/json"})
        codes.append(r.status_code)
        if r.status_code >= 400:
            assert _state(tuner, jpath) == before
            assert r.json()["field"] in ("reward", "note", "id", "body")
    if valid:
        assert codes == [200] + [409] * (repeat - 1)
        assert tuner.stats()["feedback"] == n0 + 1
    else:
        assert all(c == 422 for c in codes), codes
        assert tuner.stats()["feedback"] == n0


_KINDS = ["valid", "unknown", "dup_in_batch", "answered", "bad_reward", "extra", "not_object"]
_EXPECT = {"valid": 200, "unknown": 404, "dup_in_batch": 409, "answered": 409, "bad_reward": 422, "extra": 422,
           "not_object": 422}


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(plan=st.lists(st.sampled_from(_KINDS), min_size=1, max_size=12),
       bad=st.sampled_from([10**9, "0.5", None, True, [0.5], -1e300]))
def test_batch_feedback_is_answered_per_item_and_counts_each_valid_item_once(served, plan, bad):
    tuner, app, jpath = served
    client = Client(app)
    answered = client.post("/suggest", headers=AUTH).json()["id"]
    assert client.post("/feedback", json={"id": answered, "reward": 0.25}, headers=AUTH).status_code == 200
    fresh = [s["id"] for s in client.post("/suggest", json={"n": len(plan)}, headers=AUTH).json()["suggestions"]]
    items, expect, last_valid = [], [], None
    for k, kind in enumerate(plan):
        if kind == "dup_in_batch" and last_valid is None:
            kind = "unknown"
        item = {"id": fresh[k], "reward": 0.5}
        if kind == "valid":
            last_valid = fresh[k]
        elif kind == "unknown":
            item["id"] = f"999-{k}"
        elif kind == "dup_in_batch":
            item["id"] = last_valid
        elif kind == "answered":
            item["id"] = answered
        elif kind == "bad_reward":
            item["reward"] = bad
        elif kind == "extra":
            item["note"] = "x"
        elif kind == "not_object":
            item = 5
        items.append(item)
        expect.append(_EXPECT[kind])
    n0, before = tuner.stats()["feedback"], _state(tuner, jpath)
    r = client.post("/feedback", json=items, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["status"] for x in body["results"]] == expect, (plan, body)
    valid = expect.count(200)
    assert body["accepted"] == valid == sum(x["accepted"] for x in body["results"])
    assert tuner.stats()["feedback"] == n0 + valid
    for x, item in zip(body["results"], items):
        if x["status"] != 200:
            assert x["detail"] and x["field"]
        elif isinstance(item, dict):
            assert x["id"] == item["id"]
    if not valid:
        assert _state(tuner, jpath) == before  # a batch of rejections changes nothing
    again = client.post("/feedback", json=[i for i, e in zip(items, expect) if e == 200] or [{"id": "1-1", "reward": 0}],
                        headers=AUTH).json()
    assert all(x["status"] in (404, 409) for x in again["results"]) and tuner.stats()["feedback"] == n0 + valid


def test_batch_limits_are_422_naming_the_rule(served):
    tuner, app, jpath = served
    client = Client(app)
    before = _state(tuner, jpath)
    for body, field in [({"n": 0}, "n"), ({"n": 1001}, "n"), ({"n": "3"}, "n"), ({"m": 3}, "m"), ([1, 2], "body"),
                        ({"n": True}, "n")]:
        r = client.post("/suggest", json=body, headers=AUTH)
        assert r.status_code == 422 and r.json()["field"] == field, (body, r.text)
        assert "got" in r.json()["detail"] or "not allowed" in r.json()["detail"]
    r = client.post("/feedback", json=[], headers=AUTH)
    assert r.status_code == 422 and "1 to 1000 items" in r.json()["detail"]
    assert _state(tuner, jpath) == before


def test_wrong_or_missing_token_is_401_everywhere_but_health(served):
    _, app, _ = served
    client = Client(app)
    for method, path in [("POST", "/suggest"), ("POST", "/feedback"), ("GET", "/best"), ("GET", "/stats"),
                         ("GET", "/openapi.json"), ("GET", "/docs")]:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}, {"Authorization": f"bearer {TOKEN}x"}):
            r = client.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/healthz").status_code == 200


def test_openapi_describes_every_endpoint(served):
    _, app, _ = served
    spec = Client(app).get("/openapi.json", headers=AUTH).json()
    assert set(spec["paths"]) == {"/suggest", "/feedback", "/best", "/stats", "/healthz"}
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    fb = spec["paths"]["/feedback"]["post"]
    assert {"200", "401", "404", "409", "410", "413", "422"} <= set(fb["responses"])
