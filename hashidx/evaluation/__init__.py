"""How good the codes are: retrieval metrics, evaluating a run, and the asymmetric-vs-symmetric benchmark."""

from hashidx.evaluation.bench import run_bench
from hashidx.evaluation.evaluate import evaluate_run
from hashidx.evaluation.metrics import retrieval_metrics
from hashidx.evaluation.report import write_report

__all__ = ["evaluate_run", "retrieval_metrics", "run_bench", "write_report"]
