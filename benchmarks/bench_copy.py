"""Does a transformer return the ids it is given? Every position holds its true code; how often is the argmax that code.

    ./run.sh bench copy --transformer runs/transformer-default/export \
        --cache runs/transformer-default/token_cache_val --train-cache runs/transformer-default/token_cache

Each held-out item of ``--cache`` is given with its true tokens at every position (nothing masked) and
the task token of ``--task``, and the argmax at each position is compared with its input. Positions are
grouped by how often their code occurs in ``--train-cache`` (the tokens the model was trained on). The
training loss has this group ("recons": the true-token inputs), so a trained model returns nearly all
of them; where it does not, it predicts from the context and has not learned the code itself, and the
sampler, which feeds back what it sampled and, by default, regenerates the given frames' tokens, loses
those codes. Forward passes only; a minute on CPU.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import numpy as np
import torch

from videogen.errors import UserError
from videogen.token_cache.reader import TokenDataset
from videogen.transformer import CommitTransformer
from videogen.transformer.logits import TokenLogits

# occurrences of a code in the training tokens: the groups of the table
BUCKETS = ((0, 0), (1, 9), (10, 99), (100, 999), (1000, None))


def code_counts(data: TokenDataset, codebook_size: int) -> np.ndarray:
    """How often each code id occurs in every item's tokens: int ``(codebook_size,)``."""
    ids = np.concatenate([data[i]["tokens"].numpy().ravel() for i in range(len(data))])
    return np.bincount(ids, minlength=codebook_size)


def copy_rates(
    model: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], TokenLogits],
    items: Sequence[dict],
    counts: np.ndarray,
) -> list[tuple[tuple[int, int | None], int, int]]:
    """Items (``tokens (T', H', W')``, ``task_id``, ``label``) -> per bucket of ``BUCKETS``: (bucket,
    positions, positions whose argmax is their input id)."""
    returned = np.zeros(len(BUCKETS), dtype=np.int64)
    total = np.zeros(len(BUCKETS), dtype=np.int64)
    with torch.no_grad():
        for item in items:
            tokens = item["tokens"][None]  # (1, T', H', W')
            argmax = model(tokens, item["task_id"][None], item["label"][None]).argmax().reshape(-1)
            ids = tokens.reshape(-1)
            same = (argmax == ids).numpy()
            seen = counts[ids.numpy()]
            for b, (low, high) in enumerate(BUCKETS):
                where = (seen >= low) & (seen <= (high if high is not None else seen.max()))
                total[b] += where.sum()
                returned[b] += (same & where).sum()
    return [(bucket, int(n), int(k)) for bucket, n, k in zip(BUCKETS, total, returned)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transformer", default="runs/transformer-default/export")
    parser.add_argument("--cache", default="runs/transformer-default/token_cache_val", help="items probed")
    parser.add_argument(
        "--train-cache", default="runs/transformer-default/token_cache", help="where codes are counted"
    )
    parser.add_argument("--task", default="frame_prediction", help="the task token given")
    parser.add_argument("--limit", type=int, default=16, help="items at most")
    args = parser.parse_args()
    model = CommitTransformer.from_pretrained(args.transformer).eval()
    data = TokenDataset(args.cache)
    if args.task not in data.tasks:
        raise UserError(f"task {args.task!r} is not in '{args.cache}' (it has {', '.join(data.tasks)})")
    counts = code_counts(TokenDataset(args.train_cache), model.config.codebook_size)
    items = [data.item(i, args.task) for i in range(min(args.limit, len(data)))]
    print(f"transformer {args.transformer}: {len(items)} items of {args.cache}, task {args.task};")
    print(f"{int((counts > 0).sum())} of {model.config.codebook_size} codes occur in {args.train_cache}\n")
    print("| code occurs in training | positions | argmax = input |")
    print("|---|---:|---:|")
    for (low, high), n, k in copy_rates(model, items, counts):
        label = f"{low}" if high == low else f"{low}-{high}" if high is not None else f">= {low}"
        print(f"| {label} times | {n} | {k / n:.1%} |" if n else f"| {label} times | 0 | - |")


if __name__ == "__main__":
    main()
