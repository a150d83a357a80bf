"""Inference around the trained models (``videogen.pipeline.VideoGenPipeline`` is the entry point).

- ``engine``: the COMMIT uses on float clips at the model's size, batched (``InferenceEngine``);
- ``frames``: fitting user frames to the model (resize / crop, frame-rate resampling, boxes);
- ``geometry``: the model's window (frames, size, fps); ``sampling``: ``SamplingOptions``;
- ``result``: ``GenerationResult``; ``output``: atomic writing of mp4 / gif / png;
- ``exports``: default export folders of the training runs;
- ``evaluate_prediction`` / ``evaluate_tokenizer``: metrics on held-out clips (``eval_data``).
"""

from videogen.inference.engine import InferenceEngine
from videogen.inference.evaluate_prediction import evaluate_frame_prediction, format_prediction_table
from videogen.inference.evaluate_tokenizer import evaluate_tokenizer, format_tokenizer_table
from videogen.inference.result import GenerationResult
from videogen.inference.sampling import SamplingOptions

__all__ = [
    "GenerationResult",
    "InferenceEngine",
    "SamplingOptions",
    "evaluate_frame_prediction",
    "evaluate_tokenizer",
    "format_prediction_table",
    "format_tokenizer_table",
]
