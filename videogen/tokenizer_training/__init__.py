"""Training the tokenizer: its config (``training_config``), one step (``step``: reconstruction, quantizer
and GAN losses over two engines), the run (``loop``: data, checkpoints, export) and its held-out
evaluation (``evaluation``). Built on the generic runtime in :mod:`videogen.training`."""
