"""Adapters that make a LangChain, LlamaIndex or Haystack retrieval stack tunable.

Each lives in its own module and imports its framework only there (extras ``langchain``,
``llamaindex``, ``haystack``):

- :mod:`autorag_hp.adapters.langchain`: :class:`LangChainPipeline` over a retriever or runnable per configuration;
- :mod:`autorag_hp.adapters.llamaindex`: :class:`LlamaIndexPipeline` over a retriever or index per configuration;
- :mod:`autorag_hp.adapters.haystack`: :class:`HaystackPipeline` over a Haystack ``Pipeline`` per configuration.

All three are :class:`~autorag_hp.pipeline.FunctionPipeline`\\ s, so ``Study``, ``run_grid`` and
``autorag-hp tune --pipeline`` take them as they are; :func:`cached_per` builds an index once
per chunking. How knobs map and how prompt tokens are counted: each module's docstring and
docs/tune-your-stack.md.
"""

from __future__ import annotations

from autorag_hp.adapters._base import BEYOND_K, DEFAULT_PROMPT, cached_per

__all__ = ["cached_per", "DEFAULT_PROMPT", "BEYOND_K"]
