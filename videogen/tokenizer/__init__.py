"""MAGVIT-v2 style video tokenizer: causal 3D-CNN encoder/decoder with lookup-free quantization.

Public API: :class:`VideoTokenizer` (``from_preset``, ``from_pretrained``, ``tokenize``, ``detokenize``,
``forward``, ``encode``, ``decode``, ``latent_shape``), :class:`LFQ`, :class:`TokenizerConfig`,
``image_config`` + ``inflate_image_to_video`` (image -> video initialization).
"""

from videogen.tokenizer.config import LFQConfig, TokenizerConfig, image_config
from videogen.tokenizer.inflate import inflate_image_to_video
from videogen.tokenizer.lfq import LFQ, LFQOutput
from videogen.tokenizer.model import EncodeOutput, TokenizerOutput, VideoTokenizer
from videogen.tokenizer.validation import VideoShapeError

__all__ = [
    "LFQ",
    "EncodeOutput",
    "LFQConfig",
    "LFQOutput",
    "TokenizerConfig",
    "TokenizerOutput",
    "VideoShapeError",
    "VideoTokenizer",
    "image_config",
    "inflate_image_to_video",
]
