"""The words of an attribution request that the command line needs before anything heavy is imported: the
estimator names and the default one, the convergence threshold, the executors, how overrides are written.

Their single home: ``shapley.api`` keys its estimators by ``METHOD_NAMES`` and ``execution.dispatch`` its
executors by ``EXECUTORS`` (tests/config checks both), so ``shapflow run --use-case nosuch`` can be answered
without importing torch, scikit-learn or MLflow.
"""

from __future__ import annotations

import re

__all__ = ["DEFAULT_METHOD", "DEFAULT_THRESHOLD", "EXECUTORS", "METHOD_NAMES", "split_overrides"]

METHOD_NAMES = ("leverage", "surrogate-shapley", "surrogate-banzhaf", "kernelshap-paired", "kernelshap-paper",
                "permutation", "banzhaf-msr", "loo", "datamodels", "exact-shapley", "exact-banzhaf")
# best on the market-shaped games and never much worse on the classic ones: docs/results/estimators-2026-12-03.md
DEFAULT_METHOD = "surrogate-shapley"
DEFAULT_THRESHOLD = 0.05  # converged when max std <= 5% of the range of the values
EXECUTORS = ("local", "ray")


def split_overrides(text: str | tuple[str, ...] | list[str]) -> list[str]:
    """``"sft.steps=50 sampling.num_images=128"`` (spaces or commas between items) -> a list of overrides.

    A comma inside a value (``model.block_out_channels=[8,16]``) stays: items split only before ``key=``.
    """
    if not isinstance(text, str):
        return [item for part in text for item in split_overrides(part)]
    return [item for item in re.split(r"[\s,]+(?=[A-Za-z_][\w.]*=)", text.strip()) if item.strip(" ,")]
