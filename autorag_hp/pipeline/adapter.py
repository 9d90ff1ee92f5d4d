"""Wrap your own RAG stack as a tunable pipeline with a plain function.

>>> def my_rag(config, question):
...     contexts = my_retriever.search(question, k=config["top_k"])
...     return {"answer": my_llm(question, contexts), "contexts": contexts, "prompt_tokens": 812}
>>> pipeline = FunctionPipeline(my_rag, t_max=4000)                 # doctest: +SKIP
>>> objective = PipelineObjective(pipeline, dataset, metric="f1")   # doctest: +SKIP

The function gets a plain ``dict`` configuration and one question's text (or, with
``batch=True``, the list of texts of a batch) and returns, per question, a mapping with

==============  =================================================================
``contexts``    required: the texts that reached the prompt (list of str)
``answer``      the generated answer (str), or None/absent for retrieval-only stacks
``prompt_tokens`` the prompt's token count (int >= 0); may be left out when
                ``count_tokens`` is given, which then counts question + contexts
``retrieved_ids`` ids of the retrieved passages, for the ``gold_recall`` metric
``latency_s``   seconds; measured around the call when absent
``extra``       anything else worth keeping (a mapping)
==============  =================================================================

or a :class:`~autorag_hp.pipeline.PipelineResult`. Anything else fails with an error that
names the function, the question and the field. A function written the other way round,
``fn(questions, config)``, is named as such (:class:`PipelineSignatureError`): by its
parameter names when it is built, or on its first call, which is then retried once with
the arguments swapped to tell a swapped order from a bug inside the stack.

``fingerprint`` identifies the stack for the outcome cache (see
:mod:`autorag_hp.pipeline._cached`); left out, it is derived from the function's code and
the file that defines it.
"""

from __future__ import annotations

import difflib
import inspect
import math
import time
from typing import Any, Callable, Mapping, Sequence

from autorag_hp.pipeline._protocol import PipelineResult, Question

__all__ = ["FunctionPipeline", "function_pipeline", "PipelineOutputError", "PipelineSignatureError"]

_FIELDS = ("contexts", "answer", "prompt_tokens", "retrieved_ids", "latency_s", "extra")


class PipelineOutputError(ValueError):
    """A wrapped function returned something that is not a valid pipeline result."""


class PipelineSignatureError(ValueError):
    """A wrapped function takes its arguments in another order than ``fn(config, question)``."""


_QUESTION_NAMES = {"question", "questions", "query", "queries", "q", "qs", "text", "texts", "prompt", "prompts"}
_CONFIG_NAMES = {"config", "cfg", "conf", "configuration", "params", "parameters", "knobs", "settings", "hp",
                 "hparams", "hyperparameters"}


def _swap_hint(fn: Any, batch: bool) -> str:
    q = "questions" if batch else "question"
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return (f"FunctionPipeline calls fn(config, {q}), but {name} takes ({q}, config); "
            f"wrap it as FunctionPipeline(lambda config, {q}: {name}({q}, config), ...)")


def _describe(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= limit else text[:limit] + '...'}"


class FunctionPipeline:
    """A :class:`~autorag_hp.pipeline.RAGPipeline` made from ``fn(config, question)``.

    ``batch=True``: ``fn(config, questions)`` answers a whole batch and returns a list in
    the same order. ``pass_question=True`` hands over :class:`Question` objects (with
    ``id``, ``text``, ``answers``) instead of the question text. ``count_tokens`` is a
    callable ``str -> int`` or a tokenizer name (``"words"``, ``"cl100k_base"``,
    ``"hf:<model>"``). ``t_max`` is the token scale of the reward's cost term.
    ``fingerprint`` names the stack for the outcome cache; by default it is derived from the
    function's code and the file defining it (:attr:`fingerprint`).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        batch: bool = False,
        pass_question: bool = False,
        count_tokens: Callable[[str], int] | str | None = None,
        t_max: float | None = None,
        name: str | None = None,
        fingerprint: str | None = None,
    ) -> None:
        if not callable(fn):
            raise ValueError(f"fn must be callable as fn(config, question), got {_describe(fn)}")
        label = name or getattr(fn, "__qualname__", None) or type(fn).__name__
        try:
            sig = inspect.signature(fn)
            sig.bind({}, "q")
        except TypeError:
            raise ValueError(
                f"fn must accept two positional arguments (config, question{'s' if batch else ''}), "
                f"got {getattr(fn, '__qualname__', fn)!r} with signature {inspect.signature(fn)}"
            ) from None
        except ValueError:  # builtins without a signature: trust them
            pass
        else:
            names = [p.name.lower() for p in sig.parameters.values()
                     if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:2]
            if len(names) == 2 and names[0] in _QUESTION_NAMES and names[1] in _CONFIG_NAMES:
                raise PipelineSignatureError(_swap_hint(fn, batch) + f" (its signature is {sig})")
        if fingerprint is not None and (not isinstance(fingerprint, str) or not fingerprint):
            raise ValueError(f"fingerprint must be a non-empty string, got {fingerprint!r}")
        self._fingerprint = fingerprint
        self._checked = False
        self.fn = fn
        self.batch = bool(batch)
        self.pass_question = bool(pass_question)
        if isinstance(count_tokens, str):
            from autorag_hp.pipeline._chunking import get_tokenizer

            count_tokens = get_tokenizer(count_tokens).count
        if count_tokens is not None and not callable(count_tokens):
            raise ValueError(f"count_tokens must be a callable str -> int or a tokenizer name, got {_describe(count_tokens)}")
        self.count_tokens = count_tokens
        if t_max is not None and (
            isinstance(t_max, bool) or not isinstance(t_max, (int, float)) or not math.isfinite(t_max) or t_max <= 0
        ):
            raise ValueError(f"t_max must be a positive number of tokens, got {t_max!r}")
        self.t_max = float(t_max) if t_max is not None else None
        self.name = label

    @property
    def fingerprint(self) -> str:
        """The stack's identity for the outcome cache: the one given, else derived from the code."""
        if self._fingerprint is None:
            from autorag_hp.pipeline._cache import content_hash
            from autorag_hp.pipeline._cached import code_fingerprint

            tok = getattr(self.count_tokens, "__qualname__", repr(self.count_tokens))
            self._fingerprint = content_hash(code_fingerprint(self.fn), repr((self.batch, self.pass_question, tok)))
        return self._fingerprint

    def __repr__(self) -> str:
        return f"FunctionPipeline({self.name!r}, batch={self.batch}, t_max={self.t_max})"

    def run(self, config: Mapping[str, Any], questions: Sequence[Question]) -> list[PipelineResult]:
        """Call the function and validate what it returns (one result per question)."""
        if not isinstance(config, Mapping):
            raise ValueError(f"config must be a mapping of knob -> value, got {_describe(config)}")
        questions = list(questions)
        for i, q in enumerate(questions):
            if not isinstance(q, Question):
                raise ValueError(f"questions[{i}] must be a Question, got {_describe(q)}")
        if not questions:
            return []
        args = questions if self.pass_question else [q.text for q in questions]
        if self.batch:
            start = time.perf_counter()
            out = self._call(dict(config), list(args), None)
            each = (time.perf_counter() - start) / len(questions)
            if isinstance(out, (str, bytes, Mapping)) or not isinstance(out, Sequence):
                raise PipelineOutputError(
                    f"{self.name} (batch) must return a list with one result per question, got {_describe(out)}"
                )
            if len(out) != len(questions):
                raise PipelineOutputError(
                    f"{self.name} (batch) must return one result per question: got {len(out)} results "
                    f"for {len(questions)} questions"
                )
            return [self._validate(o, q, i, config, each) for i, (o, q) in enumerate(zip(out, questions))]
        results = []
        for i, (q, a) in enumerate(zip(questions, args)):
            start = time.perf_counter()
            out = self._call(dict(config), a, q)
            results.append(self._validate(out, q, i, config, time.perf_counter() - start))
        return results

    def _call(self, config: dict[str, Any], arg: Any, question: Question | None) -> Any:
        try:
            out = self.fn(config, arg)
        except Exception as exc:
            if not self._checked and isinstance(exc, (TypeError, KeyError, AttributeError, IndexError, ValueError)):
                self._check_swapped(config, arg, exc)
            if hasattr(exc, "add_note"):
                where = f"question {question.id!r}" if question is not None else "a batch of questions"
                exc.add_note(f"raised by the wrapped pipeline function {self.name} on {where} under config {config}")
            raise
        self._checked = True
        return out

    def _check_swapped(self, config: dict[str, Any], arg: Any, exc: Exception) -> None:
        """The first call failed: retry once as fn(arg, config); if that works, the order is swapped."""
        try:
            self.fn(arg, dict(config))
        except Exception:
            self._checked = True
            return  # a bug of its own, not the argument order
        raise PipelineSignatureError(
            f"{_swap_hint(self.fn, self.batch)} (fn(config, ...) raised {type(exc).__name__}: {exc}; "
            f"fn(..., config) worked)"
        ) from exc

    def _validate(
        self, out: Any, q: Question, index: int, config: Mapping[str, Any], measured: float
    ) -> PipelineResult:
        where = f"{self.name} returned for question {index} ({q.id!r}) under config {dict(config)}"

        def fail(rule: str) -> PipelineOutputError:
            return PipelineOutputError(f"{where}: {rule}")

        if isinstance(out, PipelineResult):
            out = {
                "contexts": out.contexts, "answer": out.answer, "prompt_tokens": out.prompt_tokens,
                "retrieved_ids": out.retrieved_ids, "latency_s": out.latency_s or None, "extra": out.extra,
            }
        if not isinstance(out, Mapping):
            raise fail(
                f"expected a mapping with keys {list(_FIELDS)} (or a PipelineResult), got {_describe(out)}"
            )
        unknown = [k for k in out if k not in _FIELDS]
        if unknown:
            k = unknown[0]
            close = difflib.get_close_matches(str(k), _FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise fail(f"unknown key {k!r}{hint}; allowed keys are {list(_FIELDS)} (put other data under 'extra')")
        if "contexts" not in out:
            raise fail("the 'contexts' key is required (the texts that reached the prompt; [] if none)")
        contexts = out["contexts"]
        if isinstance(contexts, (str, bytes)) or not isinstance(contexts, Sequence):
            raise fail(f"'contexts' must be a list of strings, got {_describe(contexts)}")
        for j, c in enumerate(contexts):
            if not isinstance(c, str):
                raise fail(f"'contexts'[{j}] must be a string, got {_describe(c)}")
        answer = out.get("answer")
        if answer is not None and not isinstance(answer, str):
            raise fail(f"'answer' must be a string or None, got {_describe(answer)}")
        tokens = out.get("prompt_tokens")
        if tokens is None:
            if self.count_tokens is None:
                raise fail(
                    "'prompt_tokens' is missing: return the prompt's token count, or build "
                    "FunctionPipeline(..., count_tokens='cl100k_base' or a callable) to count question + contexts"
                )
            tokens = int(self.count_tokens(q.text)) + sum(int(self.count_tokens(c)) for c in contexts)
        elif isinstance(tokens, bool) or not isinstance(tokens, int) and not (
            isinstance(tokens, float) and tokens.is_integer()
        ):
            raise fail(f"'prompt_tokens' must be an integer >= 0, got {_describe(tokens)}")
        if tokens < 0:
            raise fail(f"'prompt_tokens' must be an integer >= 0, got {tokens!r}")
        ids = out.get("retrieved_ids") or []
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence) or not all(isinstance(x, str) for x in ids):
            raise fail(f"'retrieved_ids' must be a list of strings, got {_describe(ids)}")
        latency = out.get("latency_s")
        if latency is None:
            latency = measured
        elif isinstance(latency, bool) or not isinstance(latency, (int, float)) or not (
            math.isfinite(latency) and latency >= 0
        ):
            raise fail(f"'latency_s' must be a finite number >= 0, got {_describe(latency)}")
        extra = out.get("extra") or {}
        if not isinstance(extra, Mapping):
            raise fail(f"'extra' must be a mapping, got {_describe(extra)}")
        return PipelineResult(
            contexts=list(contexts),
            prompt_tokens=int(tokens),
            answer=answer,
            latency_s=float(latency),
            retrieved_ids=list(ids),
            extra=dict(extra),
        )


def function_pipeline(
    fn: Callable[..., Any] | None = None, **options: Any
) -> FunctionPipeline | Callable[[Callable[..., Any]], FunctionPipeline]:
    """Decorator form of :class:`FunctionPipeline`: ``@function_pipeline(t_max=4000)``."""
    if fn is not None:
        return FunctionPipeline(fn, **options)
    return lambda f: FunctionPipeline(f, **options)
