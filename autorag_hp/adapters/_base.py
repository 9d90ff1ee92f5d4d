"""What the framework adapters share: a per-knob build cache, the k policy, prompt rendering
and token counting, around a framework's retriever built once per configuration.

An adapter turns ``factory(config) -> retriever`` (a LangChain retriever or runnable, a
LlamaIndex retriever or index, a Haystack pipeline) into a batch function that
:class:`~autorag_hp.pipeline.adapter.FunctionPipeline` wraps. Per question it

1. asks the configuration's retriever (built by ``factory`` once per configuration and kept);
2. applies the k policy: with ``beyond_k="truncate"`` (default) only the first ``config[top_k]``
   documents, in the retriever's own order, reach the prompt; with ``"keep"`` all of them do;
3. renders the prompt from the question and the kept documents' texts (``prompt``) and counts
   its tokens (``count_tokens``, cl100k_base by default), which is the result's ``prompt_tokens``;
4. optionally generates an answer from the prompt (``llm``).

``latency_s`` is the time spent in the user's stack only (retrieval and generation);
rendering, counting and validation are the library's time. The adapter adds them up in
``stack_seconds`` / ``stack_questions`` (``pipeline.stack``), and the factory's time (building
retrievers and indexes) in ``build_seconds``, which is how ``benchmarks/langchain_stack.py``
separates the stack's time from the library's.
"""

from __future__ import annotations

import functools
import inspect
import json
import time
from typing import Any, Callable, Literal, Mapping, Sequence

from autorag_hp.pipeline._cache import content_hash
from autorag_hp.pipeline._cached import code_fingerprint
from autorag_hp.pipeline.adapter import FunctionPipeline

__all__ = ["cached_per", "DEFAULT_PROMPT", "BEYOND_K", "StackAdapter", "AdapterPipeline"]

DEFAULT_PROMPT = "Answer the question using the context.\n\nContext:\n{context}\n\nQuestion: {question}\nAnswer:"
BEYOND_K = ("truncate", "keep")


def cached_per(*knobs: str) -> Callable[[Callable[[Mapping[str, Any]], Any]], Callable[[Mapping[str, Any]], Any]]:
    """Decorator: build once per value combination of ``knobs`` (the chunking), shared by every configuration.

    >>> @cached_per("chunk_size", "chunk_overlap")
    ... def vector_store(config):           # built once per chunking, not per configuration or question
    ...     return FAISS.from_documents(chunks(config), embeddings)   # doctest: +SKIP

    The wrapper keeps ``builds`` (how many times the function ran) and ``cache`` (key -> value).
    """
    if not knobs or not all(isinstance(k, str) and k for k in knobs):
        raise ValueError(f"cached_per needs one or more knob names (non-empty strings), got {knobs!r}")

    def decorate(fn: Callable[[Mapping[str, Any]], Any]) -> Callable[[Mapping[str, Any]], Any]:
        if not callable(fn):
            raise ValueError(f"cached_per decorates a function of the configuration, got {fn!r}")

        @functools.wraps(fn)
        def wrapper(config: Mapping[str, Any]) -> Any:
            missing = [k for k in knobs if k not in config]
            if missing:
                raise ValueError(
                    f"{getattr(fn, '__qualname__', fn)} is cached per {list(knobs)}, but the configuration "
                    f"has no knob {missing[0]!r} (knobs: {sorted(config)})"
                )
            key = tuple(config[k] for k in knobs)
            if key not in wrapper.cache:
                wrapper.cache[key] = fn(config)
                wrapper.builds += 1
            return wrapper.cache[key]

        wrapper.cache = {}
        wrapper.builds = 0
        wrapper.knobs = knobs
        return wrapper

    return decorate


def _identity(obj: Any) -> str:
    """A prompt template's or model's part of the fingerprint: its code, and its settings (repr) for objects."""
    if inspect.isfunction(obj) or inspect.ismethod(obj) or inspect.isbuiltin(obj):
        return code_fingerprint(obj)  # a function's repr holds its address, which changes every run
    return code_fingerprint(obj) + repr(obj)


class StackAdapter:
    """The batch function ``(config, questions) -> [result mapping]`` behind every adapter.

    Subclasses implement :meth:`retrieve` (question -> the framework's documents, in rank
    order), :meth:`text` and :meth:`doc_id` for one document, and may convert the factory's
    product in :meth:`prepare` (once per configuration).
    """

    framework = "stack"

    def __init__(
        self,
        factory: Callable[[dict[str, Any]], Any],
        *,
        top_k: str | None = "top_k",
        beyond_k: Literal["truncate", "keep"] = "truncate",
        prompt: str | Callable[[str, list[str]], str] | Any | None = None,
        llm: Any = None,
        id_key: str | None = "id",
        count_tokens: Callable[[str], int] | str = "cl100k_base",
    ) -> None:
        if not callable(factory):
            raise ValueError(f"factory must be callable as factory(config) -> retriever, got {factory!r}")
        if top_k is not None and (not isinstance(top_k, str) or not top_k):
            raise ValueError(f"top_k must be the name of the knob that holds k (a string) or None, got {top_k!r}")
        if beyond_k not in BEYOND_K:
            raise ValueError(f"beyond_k must be one of {list(BEYOND_K)}, got {beyond_k!r}")
        if id_key is not None and (not isinstance(id_key, str) or not id_key):
            raise ValueError(f"id_key must be a metadata key (a non-empty string) or None, got {id_key!r}")
        self.factory = factory
        self.top_k = top_k
        self.beyond_k = beyond_k
        self.prompt = DEFAULT_PROMPT if prompt is None else prompt
        if not (isinstance(self.prompt, str) or callable(self.prompt) or callable(getattr(self.prompt, "format", None))):
            raise ValueError(
                f"prompt must be a template string with {{context}} and {{question}}, a callable "
                f"(question, contexts) -> str, or a prompt template with format(), got {prompt!r}"
            )
        if llm is not None and not (callable(llm) or hasattr(llm, "invoke") or hasattr(llm, "complete")):
            raise ValueError(f"llm must be a callable prompt -> str, a runnable (invoke) or an LLM (complete), got {llm!r}")
        self.llm = llm
        self.id_key = id_key
        self.token_name = count_tokens if isinstance(count_tokens, str) else code_fingerprint(count_tokens)
        if isinstance(count_tokens, str):
            from autorag_hp.pipeline._chunking import get_tokenizer

            count_tokens = get_tokenizer(count_tokens).count
        if not callable(count_tokens):
            raise ValueError(f"count_tokens must be a tokenizer name or a callable str -> int, got {count_tokens!r}")
        self.count_tokens = count_tokens
        self.builds = 0
        self.stack_seconds = 0.0  # time spent in the user's stack per question (retrieval, generation)
        self.stack_questions = 0
        self.build_seconds = 0.0  # time spent in the factory (building retrievers and indexes)
        self._retrievers: dict[str, Any] = {}

    # -- framework hooks ----------------------------------------------------------------
    def prepare(self, built: Any, config: Mapping[str, Any]) -> Any:
        """Turn what ``factory`` returned into something :meth:`retrieve` queries (default: as is)."""
        return built

    def retrieve(self, retriever: Any, question: str, config: Mapping[str, Any]) -> Sequence[Any]:
        raise NotImplementedError

    def text(self, doc: Any) -> str:
        raise NotImplementedError

    def doc_id(self, doc: Any) -> str | None:
        raise NotImplementedError

    # -- the pieces ------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Identifies the stack for the outcome cache: the adapter, the factory's code and every setting.

        The factory's code is :func:`~autorag_hp.pipeline._cached.code_fingerprint`: its source
        and the whole file that defines it; state the code does not show (files an index is
        built from, model weights) is not part of it: pass ``fingerprint=`` when that changes.
        """
        prompt = self.prompt if isinstance(self.prompt, str) else _identity(self.prompt)
        llm = "" if self.llm is None else _identity(self.llm)
        return content_hash(
            self.framework, code_fingerprint(self.factory), code_fingerprint(type(self)),
            code_fingerprint(StackAdapter), str(self.top_k), self.beyond_k, prompt, llm, str(self.id_key),
            self.token_name,
        )

    def retriever_for(self, config: Mapping[str, Any]) -> Any:
        """The configuration's retriever, built by ``factory`` on first use and kept."""
        key = json.dumps(dict(config), sort_keys=True, default=str)
        if key not in self._retrievers:
            start = time.perf_counter()
            self._retrievers[key] = self.prepare(self.factory(dict(config)), config)
            self.build_seconds += time.perf_counter() - start
            self.builds += 1
        return self._retrievers[key]

    def k_of(self, config: Mapping[str, Any]) -> int | None:
        if self.top_k is None:
            return None
        if self.top_k not in config:
            raise ValueError(f"top_k={self.top_k!r} names no knob of the configuration (knobs: {sorted(config)})")
        k = config[self.top_k]
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"knob {self.top_k!r} must be a positive integer k, got {k!r}")
        return k

    def render(self, question: str, contexts: list[str], docs: Sequence[Any]) -> str:
        if isinstance(self.prompt, str):
            return self.prompt.format(context="\n\n".join(contexts), question=question)
        if callable(getattr(self.prompt, "format", None)) and not inspect.isfunction(self.prompt):
            return str(self.prompt.format(context="\n\n".join(contexts), question=question))
        return str(self.prompt(question, contexts))

    def answer(self, prompt: str) -> str:
        llm = self.llm
        if hasattr(llm, "invoke"):
            out = llm.invoke(prompt)
        elif hasattr(llm, "complete"):
            out = llm.complete(prompt)
        else:
            out = llm(prompt)
        for attr in ("content", "text"):
            if not isinstance(out, str) and isinstance(getattr(out, attr, None), str):
                out = getattr(out, attr)
        if not isinstance(out, str):
            raise ValueError(f"llm must produce a string (or a message with .content/.text), got {type(out).__name__}")
        return out

    def __call__(self, config: dict[str, Any], questions: list[str]) -> list[dict[str, Any]]:
        retriever = self.retriever_for(config)
        k = self.k_of(config)
        out = []
        for question in questions:
            start = time.perf_counter()
            docs = list(self.retrieve(retriever, question, config))
            stack_s = time.perf_counter() - start
            returned = len(docs)
            if k is not None and self.beyond_k == "truncate":
                docs = docs[:k]
            contexts = [self.text(d) for d in docs]
            ids: list[str] = []
            if self.id_key is not None:
                for d in docs:
                    pid = self.doc_id(d)
                    if pid is None:
                        raise ValueError(
                            f"a document returned by the {self.framework} retriever has no {self.id_key!r} id "
                            f"in its metadata (pass id_key=None to skip retrieved ids, or the key your "
                            f"documents carry): {contexts[len(ids)][:80]!r}"
                        )
                    if pid not in ids:
                        ids.append(pid)
            prompt = self.render(question, contexts, docs)
            answer = None
            if self.llm is not None:
                start = time.perf_counter()
                answer = self.answer(prompt)
                stack_s += time.perf_counter() - start
            out.append({
                "contexts": contexts,
                "prompt_tokens": int(self.count_tokens(prompt)),
                "answer": answer,
                "retrieved_ids": ids,
                "latency_s": stack_s,
                "extra": {"returned": returned},
            })
            self.stack_seconds += stack_s
            self.stack_questions += 1
        return out


class AdapterPipeline(FunctionPipeline):
    """A :class:`~autorag_hp.pipeline.FunctionPipeline` (batch mode) over a :class:`StackAdapter`.

    Subclasses name their adapter in ``adapter``. ``fingerprint`` names the stack for the
    outcome cache; by default it is :meth:`StackAdapter.fingerprint` (the factory's code and
    every option here): pass a new one when something the code does not show changes.
    """

    adapter: type[StackAdapter] = StackAdapter

    def __init__(
        self,
        factory: Callable[[dict[str, Any]], Any],
        *,
        top_k: str | None = "top_k",
        beyond_k: Literal["truncate", "keep"] = "truncate",
        prompt: Any = None,
        llm: Any = None,
        id_key: str | None = "id",
        count_tokens: Callable[[str], int] | str = "cl100k_base",
        t_max: float | None = None,
        name: str | None = None,
        fingerprint: str | None = None,
        **framework_options: Any,
    ) -> None:
        self.stack = self.adapter(factory, top_k=top_k, beyond_k=beyond_k, prompt=prompt, llm=llm, id_key=id_key,
                                  count_tokens=count_tokens, **framework_options)
        label = name or f"{self.stack.framework}:{getattr(factory, '__qualname__', type(factory).__name__)}"
        super().__init__(self.stack, batch=True, t_max=t_max, name=label,
                         fingerprint=fingerprint or self.stack.fingerprint())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, beyond_k={self.stack.beyond_k!r}, t_max={self.t_max})"
