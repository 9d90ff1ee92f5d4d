"""A tuning run of any RAG pipeline as one object: :class:`Study`.

>>> study = Study(FunctionPipeline(run_stack, batch=True), "squad.json", "space.toml",
...               strategy="structured-tt", budget=0.2, run_dir="runs/mine")       # doctest: +SKIP
>>> result = study.run()                                                           # doctest: +SKIP
>>> result.best(3), result.simple_regret, result.recall(5)                         # doctest: +SKIP

``autorag-hp tune`` is a thin argument parser over it.
"""

from __future__ import annotations

from autorag_hp.study._resolve import load_pipeline, open_pipeline, probe_pipeline
from autorag_hp.study._study import Study, StudyResult, parse_budget

__all__ = ["Study", "StudyResult", "load_pipeline", "open_pipeline", "probe_pipeline", "parse_budget"]
