"""Inference around the trained models (``videogen.pipeline.VideoGenPipeline`` is the entry point).

- ``engine``: the COMMIT uses on float clips at the model's size, batched (``InferenceEngine``);
- ``frames``: fitting user frames to the model (resize / crop, frame-rate resampling, boxes);
- ``geometry``: the model's window (frames, size, fps); ``sampling``: ``SamplingOptions``;
- ``result``: ``GenerationResult``; ``output``: atomic writing of mp4 / gif / png;
- ``exports``: default export folders of the training runs, and whether a tokenizer and a transformer
  belong together; ``trained_tasks``: which uses an export's trained tasks serve (``TrainedTasks``).

The evaluation commands built on it live in :mod:`videogen.evaluation`.
"""

from videogen.inference.engine import InferenceEngine
from videogen.inference.result import GenerationResult
from videogen.inference.sampling import SamplingOptions
from videogen.inference.trained_tasks import TrainedTasks

__all__ = [
    "GenerationResult",
    "InferenceEngine",
    "SamplingOptions",
    "TrainedTasks",
]
