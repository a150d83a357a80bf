"""videogen: discrete-token video generation (causal 3D-CNN LFQ tokenizer + COMMIT transformer)."""

__version__ = "0.1.0"
