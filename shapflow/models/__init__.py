"""Model builders and safe (pickle-free) model files."""

from shapflow.models.io import architecture, load_unet, save_unet
from shapflow.models.unet import build_unet, count_parameters

__all__ = ["architecture", "build_unet", "count_parameters", "load_unet", "save_unet"]
