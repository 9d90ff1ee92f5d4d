"""RAG pipelines to tune: the protocol, the reference pipeline, evaluation sets and metrics.

Importing this package is cheap: embedding models, faiss and transformers load lazily,
on first use.
"""

from __future__ import annotations

from autorag_hp.pipeline._cache import ArrayStore, JsonStore, content_hash, default_cache_dir
from autorag_hp.pipeline._chunking import Chunking, chunk_corpus, get_tokenizer, register_tokenizer, split_sentences
from autorag_hp.pipeline._compression import (
    Compressor,
    ExtractiveCompressor,
    list_compressors,
    make_compressor,
    register_compressor,
)
from autorag_hp.pipeline._datasets import QADataset, dataset_fingerprint, load_dataset, load_hf, load_jsonl, load_squad, register_loader
from autorag_hp.pipeline._default import default_space, load_default_dataset
from autorag_hp.pipeline._generators import (
    EndpointResponseError,
    EndpointUnavailableError,
    GeneratedAnswer,
    Generator,
    GeneratorError,
    OpenAIGenerator,
    PromptTemplate,
    RetryPolicy,
    list_generators,
    make_generator,
    register_generator,
)
from autorag_hp.pipeline._cached import CachedPipeline, code_fingerprint, pipeline_fingerprint
from autorag_hp.pipeline.adapter import FunctionPipeline, PipelineOutputError, PipelineSignatureError, function_pipeline
from autorag_hp.pipeline._grid import GridResult, run_grid
from autorag_hp.pipeline._judge import JudgeCorrectness, JudgeFaithfulness, JudgeOutputError, JudgeTemplate
from autorag_hp.pipeline._metrics import (
    QUALITY_METRICS,
    Metric,
    answer_in_context,
    list_metrics,
    make_metric,
    register_metric,
    score_batch,
    exact_match,
    gold_recall,
    normalize_answer,
    reward,
    score_result,
    token_f1,
)
from autorag_hp.pipeline._objective import PipelineObjective
from autorag_hp.pipeline._semantic import SemanticSimilarity
from autorag_hp.pipeline._protocol import Passage, PipelineResult, Question, RAGPipeline
from autorag_hp.pipeline._reference import ReferencePipeline
from autorag_hp.pipeline._retrievers import (
    DenseRetriever,
    Encoder,
    Retriever,
    list_embedders,
    make_retriever,
    register_embedder,
)

__all__ = [
    # protocol
    "RAGPipeline",
    "Question",
    "Passage",
    "PipelineResult",
    # the reference pipeline and its parts
    "ReferencePipeline",
    "Chunking",
    "chunk_corpus",
    "split_sentences",
    "get_tokenizer",
    "register_tokenizer",
    "Retriever",
    "DenseRetriever",
    "Encoder",
    "make_retriever",
    "register_embedder",
    "list_embedders",
    "Compressor",
    "ExtractiveCompressor",
    "make_compressor",
    "register_compressor",
    "list_compressors",
    "Generator",
    "make_generator",
    "register_generator",
    "list_generators",
    "GeneratedAnswer",
    "OpenAIGenerator",
    "PromptTemplate",
    "RetryPolicy",
    "GeneratorError",
    "EndpointUnavailableError",
    "EndpointResponseError",
    "FunctionPipeline",
    "PipelineOutputError",
    "PipelineSignatureError",
    "function_pipeline",
    "CachedPipeline",
    "code_fingerprint",
    "pipeline_fingerprint",
    # evaluation
    "QADataset",
    "dataset_fingerprint",
    "load_dataset",
    "load_squad",
    "load_jsonl",
    "load_hf",
    "register_loader",
    "load_default_dataset",
    "default_space",
    "QUALITY_METRICS",
    "normalize_answer",
    "exact_match",
    "token_f1",
    "answer_in_context",
    "gold_recall",
    "score_result",
    "score_batch",
    "Metric",
    "make_metric",
    "list_metrics",
    "register_metric",
    "SemanticSimilarity",
    "JudgeCorrectness",
    "JudgeFaithfulness",
    "JudgeTemplate",
    "JudgeOutputError",
    "reward",
    "PipelineObjective",
    "run_grid",
    "GridResult",
    # caches
    "default_cache_dir",
    "content_hash",
    "ArrayStore",
    "JsonStore",
]
