"""Inference around the trained models (``videogen.pipeline.VideoGenPipeline`` is the entry point).

- ``engine``: the COMMIT uses on float clips at the model's size, batched (``InferenceEngine``);
- ``frames``: fitting user frames to the model (resize / crop, frame-rate resampling, boxes);
- ``geometry``: the model's window (frames, size, fps); ``sampling``: ``SamplingOptions``;
- ``result``: ``GenerationResult``; ``output``: atomic writing of mp4 / gif / png;
- ``exports``: default export folders of the training runs, and whether a tokenizer and a transformer
  belong together; ``trained_tasks``: which uses an export's trained tasks serve (``TrainedTasks``);
- ``evaluate_transformer`` (+ ``evaluate_generation``): every trained task against its baseline and the
  tokenizer ceiling; ``evaluate_prediction`` / ``evaluate_tokenizer``: frame prediction alone (the demo)
  and the tokenizer, on held-out clips (``eval_data``).
"""

from videogen.inference.engine import InferenceEngine
from videogen.inference.evaluate_prediction import evaluate_frame_prediction, format_prediction_table
from videogen.inference.evaluate_tokenizer import evaluate_tokenizer, format_tokenizer_table
from videogen.inference.evaluate_transformer import evaluate_transformer, format_transformer_table
from videogen.inference.result import GenerationResult
from videogen.inference.sampling import SamplingOptions
from videogen.inference.trained_tasks import TrainedTasks

__all__ = [
    "GenerationResult",
    "InferenceEngine",
    "SamplingOptions",
    "TrainedTasks",
    "evaluate_frame_prediction",
    "evaluate_tokenizer",
    "evaluate_transformer",
    "format_prediction_table",
    "format_tokenizer_table",
    "format_transformer_table",
]
