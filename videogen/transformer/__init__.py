"""COMMIT transformer (MAGVIT v1 with MAGVIT-v2 sub-token heads): model, tasks, masking, sampler."""

from videogen.transformer.config import TransformerConfig
from videogen.transformer.logits import TokenLogits
from videogen.transformer.model import CommitTransformer
from videogen.transformer.sampler import SamplerStep, sample
from videogen.transformer.tasks import TASKS, TaskCondition, TaskSpec, build_condition, get_task
from videogen.transformer.vocab import MASK_ID, TASK_IDS, UNCOND_TASK_ID

__all__ = [
    "MASK_ID",
    "TASKS",
    "TASK_IDS",
    "UNCOND_TASK_ID",
    "CommitTransformer",
    "TaskCondition",
    "TaskSpec",
    "SamplerStep",
    "TokenLogits",
    "TransformerConfig",
    "build_condition",
    "get_task",
    "sample",
]
