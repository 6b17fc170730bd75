"""Fast settings: a seconds-long configuration of the digits use cases (tests, demos, benchmarks of the
tracking overhead). Real data and models, tiny trainings and samples; values from it are not worth reading."""

__all__ = ["FAST_SETTINGS"]

FAST_SETTINGS = ("train.steps=30", "train.warmup_steps=2", "train.batch_size=32", "finetune.steps=5",
                 "finetune.warmup_steps=0", "finetune.batch_size=32", "sft.steps=3", "sft.batch_size=16",
                 "sampling.num_images=32", "sampling.num_inference_steps=3", "sampling.batch_size=32",
                 "property.classifier_steps=100")
