"""v(S): the study of a use case (stages, endpoints, coalitions), written once against the model-family
protocol (``protocol``); the families (``unet``: pixel and latent, ``lora``: Stable Diffusion + LoRA) are
registered in ``families``; ``stages`` runs the stage chain through a store."""

from shapflow.utility.families import FAMILIES, family_of
from shapflow.utility.protocol import CoalitionResult, Context, Family, Models, StageIO, read_stage_meta
from shapflow.utility.stages import cached_store, folder_store, no_store, run_stages
from shapflow.utility.study import UTILITY_METHODS, Study, load_scorer, load_study, stage_properties

__all__ = ["FAMILIES", "UTILITY_METHODS", "CoalitionResult", "Context", "Family", "Models", "StageIO", "Study",
           "cached_store", "family_of", "folder_store", "load_scorer", "load_study", "no_store", "read_stage_meta",
           "run_stages", "stage_properties"]
