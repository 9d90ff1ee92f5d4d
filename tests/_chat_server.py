"""A loopback OpenAI-compatible chat-completions server for tests.

``ChatServer(mode=...)`` runs in a thread of the test process; ``python tests/_chat_server.py
--mode model`` runs it as a separate process that answers with the real SmolLM2-135M-Instruct
through transformers (greedy), printing ``listening on http://127.0.0.1:PORT`` once ready.
Either way it binds 127.0.0.1 only and shuts itself down after ``lifetime_s`` seconds.

Modes: ``model`` (real answers), ``echo`` (canned answer, no model), ``slow`` (waits
``delay_s`` first), ``garbage`` (HTML with HTTP 200), ``badshape`` (JSON that is not a
chat completion), ``error`` (an OpenAI error object with HTTP 200), ``flaky`` (HTTP 503
for the first ``fail_first`` requests, then echo), ``ratelimit`` (HTTP 429 with
Retry-After, then echo), ``hangup`` (closes the connection without answering).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = ("model", "echo", "slow", "garbage", "badshape", "error", "flaky", "ratelimit", "hangup")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: without this, keep-alive clients wait 40 ms

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json", headers=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers=None) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), headers=headers)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error", headers=None) -> None:
        self._json(status, {"error": {"message": message, "type": kind}}, headers=headers)

    def do_GET(self) -> None:
        if self.path == "/stats":
            self._json(200, self.server.stats_snapshot())
        elif self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": self.server.model_name, "object": "model"}]})
        else:
            self._error(404, f"no route GET {self.path}")

    def do_POST(self) -> None:
        srv = self.server
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with srv.lock:
            srv.requests += 1
            n = srv.requests
        if self.path != "/v1/chat/completions":
            return self._error(404, f"no route POST {self.path}")
        if srv.api_key and self.headers.get("Authorization") != f"Bearer {srv.api_key}":
            return self._error(401, "invalid API key", "authentication_error")
        try:
            body = json.loads(raw)
            messages = body["messages"]
            if not isinstance(messages, list) or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages
            ):
                raise ValueError("messages must be a list of {role, content} objects")
            max_tokens = int(body.get("max_tokens") or 64)
        except (ValueError, KeyError, TypeError) as exc:
            return self._error(400, f"bad request: {exc}")

        mode = srv.mode
        if mode == "slow":
            srv.stop_event.wait(srv.delay_s)
        elif mode == "garbage":
            return self._send(200, b"<html><body>502 Bad Gateway (nginx)</body></html>", "text/html")
        elif mode == "badshape":
            return self._json(200, {"id": "x", "object": "text_completion", "result": "Paris"})
        elif mode == "error":
            return self._json(200, {"error": {"message": "model is overloaded", "type": "server_error"}})
        elif mode == "flaky" and n <= srv.fail_first:
            return self._error(503, "temporarily unavailable", "server_error")
        elif mode == "ratelimit" and n <= srv.fail_first:
            return self._error(429, "rate limited", "rate_limit_error", headers={"Retry-After": "0.1"})
        elif mode == "hangup":
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return None

        if mode == "model":
            text, prompt_tokens, completion_tokens = srv.complete(messages, max_tokens)
        else:
            text, prompt_tokens, completion_tokens = srv.reply, sum(len(m["content"].split()) for m in messages), 1
        with srv.lock:
            srv.chat_answers += 1
        self._json(200, {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", srv.model_name),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class ChatServer:
    """An OpenAI-compatible server on 127.0.0.1 that stops by itself after ``lifetime_s``."""

    def __init__(self, *, mode: str = "echo", lifetime_s: float = 60.0, delay_s: float = 5.0,
                 fail_first: int = 2, api_key: str | None = None, model_name: str = "smollm2-135m-instruct",
                 reply: str = "Paris"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        s = self.httpd
        s.mode, s.delay_s, s.fail_first, s.api_key, s.model_name = mode, delay_s, fail_first, api_key, model_name
        s.reply = reply  # the canned answer of every mode but model
        s.lock = threading.Lock()
        s.gen_lock = threading.Lock()
        s.requests = 0
        s.chat_answers = 0
        s.stop_event = threading.Event()
        s.stats_snapshot = lambda: {"requests": s.requests, "chat_answers": s.chat_answers}
        s.complete = self._complete
        self.lifetime_s = lifetime_s
        self._model = None
        if mode == "model":
            self._load_model()
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> int:
        return self.httpd.requests

    def _load_model(self) -> None:
        from autorag_hp.pipeline._generators import load_smollm2

        self._model = load_smollm2()

    def _complete(self, messages: list[dict[str, str]], max_tokens: int) -> tuple[str, int, int]:
        import torch

        tokenizer, model = self._model
        with self.httpd.gen_lock:
            inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                   return_dict=True)
            with torch.no_grad():
                out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False, temperature=None,
                                     top_p=None, top_k=None,
                                     pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                     else tokenizer.eos_token_id)
        n = int(inputs["input_ids"].shape[1])
        new = out[0][n:]
        return tokenizer.decode(new, skip_special_tokens=True).strip(), n, int(new.shape[0])

    def start(self) -> ChatServer:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        self._timer.cancel()
        self.httpd.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def wait(self) -> None:
        self._thread.join()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, default="model")
    parser.add_argument("--lifetime", type=float, default=300.0, help="seconds before the server stops by itself")
    parser.add_argument("--delay", type=float, default=5.0)
    parser.add_argument("--fail-first", type=int, default=2)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args(argv)
    server = ChatServer(mode=args.mode, lifetime_s=args.lifetime, delay_s=args.delay, fail_first=args.fail_first,
                        api_key=args.api_key)
    server.start()
    print(f"listening on {server.base_url}", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
