"""The models-from-code file of every registered shapflow model: MLflow copies it into the model and runs it on
``mlflow.pyfunc.load_model`` (so nothing is unpickled). Not imported by shapflow itself; see ``pyfunc``."""

from mlflow.models import set_model

from shapflow.tracking.pyfunc import StageModel

set_model(StageModel())
