"""How good the codes are: retrieval metrics, evaluating a run, and the asymmetric-vs-symmetric benchmark."""

from typing import TYPE_CHECKING

from hashidx.io.lazy import lazy_exports

# The names this subpackage exports; each loads its module on first use (hashidx.io.lazy).
if TYPE_CHECKING:
    from hashidx.evaluation.bench import run_bench
    from hashidx.evaluation.evaluate import evaluate_run
    from hashidx.evaluation.metrics import retrieval_metrics
    from hashidx.evaluation.report import write_report

__all__, __getattr__, __dir__ = lazy_exports(__name__)
