"""The token cache: clips encoded once by a tokenizer into memmapped shards that the transformer trains on.

One room above the models (it runs the tokenizer and builds each task's condition): ``format`` (the
on-disk layout: index, settings, shards, checksums), ``inputs`` (the clip windows and conditions to
encode), ``writer`` (:func:`build_token_cache`, resumable shard by shard) and ``reader``
(:class:`TokenDataset`, the training side).
"""
