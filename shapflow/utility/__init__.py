"""v(S): the study of a use case (stages, endpoints, coalitions), written once against the model-family
protocol (``protocol``); the families (``unet_family``: pixel and latent, ``lora``: Stable Diffusion + LoRA) are
registered in ``families``; ``stages`` runs the stage chain through a store; ``data_proxy`` is the data proxy q(S),
the property of S's own real images."""

from shapflow.utility.data_proxy import DataProxy, ProxyError, check_proxy, load_proxy
from shapflow.utility.families import FAMILIES, family_of
from shapflow.utility.protocol import CoalitionResult, Context, Family, Models, StageIO, read_stage_meta
from shapflow.utility.stages import cached_store, folder_store, no_store, run_stages
from shapflow.utility.study import UTILITY_METHODS, Study, load_scorer, load_study, stage_properties

__all__ = ["FAMILIES", "UTILITY_METHODS", "CoalitionResult", "Context", "DataProxy", "Family", "Models",
           "ProxyError", "StageIO", "Study", "cached_store", "check_proxy", "family_of", "folder_store", "load_proxy",
           "load_scorer", "load_study", "no_store", "read_stage_meta", "run_stages", "stage_properties"]
