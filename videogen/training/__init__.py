"""Training infrastructure: DeepSpeed engines, checkpoints, EMA, logging and the generic loop.

DeepSpeed itself is imported only when a run starts (:func:`setup_distributed`,
:func:`create_engine`), so importing this package stays cheap.
"""

from videogen.export import export_model, export_pretrained, load_export
from videogen.training.checkpoint import CheckpointManager
from videogen.training.config import (
    CheckpointConfig,
    EngineConfig,
    LogConfig,
    OptimizerConfig,
    RunConfig,
    ScheduleConfig,
    TrainConfig,
)
from videogen.training.deepspeed_config import build_deepspeed_config, compute_dtype, resolve_precision
from videogen.training.deepspeed_engine import (
    apply_activation_checkpointing,
    create_engine,
    default_param_groups,
    to_device,
)
from videogen.training.distributed import (
    DistInfo,
    distributed_session,
    setup_distributed,
    teardown_distributed,
)
from videogen.training.ema import EMA
from videogen.training.guard import NonFiniteGuard, TrainingDivergedError
from videogen.training.logger import MetricAverager, MetricsLogger, video_grid
from videogen.training.lr_schedule import LRMultiplier, lr_multiplier
from videogen.training.rng_state import seed_everything
from videogen.training.signals import StopSignal
from videogen.training.trainer import Trainer

__all__ = [
    "EMA",
    "CheckpointConfig",
    "CheckpointManager",
    "DistInfo",
    "EngineConfig",
    "LRMultiplier",
    "LogConfig",
    "MetricAverager",
    "MetricsLogger",
    "NonFiniteGuard",
    "OptimizerConfig",
    "RunConfig",
    "ScheduleConfig",
    "StopSignal",
    "TrainConfig",
    "Trainer",
    "TrainingDivergedError",
    "apply_activation_checkpointing",
    "build_deepspeed_config",
    "compute_dtype",
    "create_engine",
    "default_param_groups",
    "distributed_session",
    "export_model",
    "export_pretrained",
    "load_export",
    "lr_multiplier",
    "resolve_precision",
    "seed_everything",
    "setup_distributed",
    "teardown_distributed",
    "to_device",
    "video_grid",
]
