"""shapflow: Shapley values of data contributors for global properties of diffusion models.

Stages are plain functions (``shapflow.utility.study``), the Shapley engine is pure numpy
(``shapflow.shapley``), and MLflow tracking lives in ``shapflow.tracking`` only.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
