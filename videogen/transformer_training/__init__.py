"""Training the COMMIT transformer: its config (``training_config``), the token caches it trains on
(``data``), one step (``step``: masked inputs and the loss), the run (``loop``) and the sample videos
it writes (``samples``). Built on the generic runtime in :mod:`videogen.training`."""
