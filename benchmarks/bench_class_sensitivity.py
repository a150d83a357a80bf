"""Does a transformer use the class? Masked-token loss on labelled grids given the right, a wrong, or no class.

    ./run.sh bench class_sensitivity --transformer runs/transformer-default/export \
        --cache runs/transformer-default/token_cache_images

Each labelled item of the token cache (latent frame 0: an image grid, as image generation sees it) is
masked at fixed random positions (``--ratios``, one draw per ratio, seeded), given the generation task
token and (a) its own class, (b) another class drawn uniformly from the rest, (c) UNCOND, and scored
by the cross-entropy summed over a grid's masked positions (nats per image) and the exact accuracy.
A model that uses the class scores (a) better than (b) and (c). The class is one of K values, so to
a calibrated model it is worth at most log K nats per image (2.3 for 10 classes): averaged per token
the difference is at most ~0.01 nats, which reads as "ignored" though it is not. The last column uses
the transformer as a classifier (the class with the lowest CE, as a generative classifier): well above
chance means the model knows what each class looks like in tokens, and generated images that still
miss the class point at decoding, not at the class conditioning. Forward passes only; a minute on CPU.
"""

from __future__ import annotations

import argparse
import math

import torch

from videogen.errors import UserError
from videogen.token_cache.reader import TokenDataset
from videogen.transformer import CommitTransformer
from videogen.transformer.vocab import MASK_ID, TASK_IDS


def masked_ce(model: CommitTransformer, tokens: torch.Tensor, masked: torch.Tensor, classes: torch.Tensor):
    """``(B, 1, H', W')`` grids, bool mask of the same shape, ``(B,)`` class ids -> ``(B,)`` summed CE over each
    grid's masked positions (nats per image) and ``(B,)`` exact predictions among them."""
    tasks = torch.full((tokens.shape[0],), TASK_IDS["generation"])
    with torch.no_grad():
        logits = model(tokens.masked_fill(masked, MASK_ID), tasks, classes)
    flat, where = tokens.flatten(1), masked.flatten(1).float()
    ce = (logits.cross_entropy(flat) * where).sum(1)
    hits = ((logits.argmax() == flat).float() * where).sum(1)
    return ce, hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transformer", default="runs/transformer-default/export")
    parser.add_argument(
        "--cache", default="runs/transformer-default/token_cache_images", help="a token cache"
    )
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.9], help="masked fractions")
    parser.add_argument("--limit", type=int, default=256, help="labelled items at most")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = CommitTransformer.from_pretrained(args.transformer).eval()
    data = TokenDataset(args.cache)
    items = [item for item in (data[i] for i in range(len(data))) if int(item["label"]) >= 0][: args.limit]
    if not items or model.config.num_classes < 2:
        raise UserError(f"'{args.cache}' has no labelled items or the transformer has fewer than 2 classes")
    tokens = torch.stack([item["tokens"][:1] for item in items])  # (B, 1, H', W'): latent frame 0
    labels = torch.stack([item["label"] for item in items])
    num_classes, batch = model.config.num_classes, tokens.shape[0]
    generator = torch.Generator().manual_seed(args.seed)
    other = (labels + torch.randint(1, num_classes, (batch,), generator=generator)) % num_classes
    rows = {"right": labels, "wrong": other, "none (UNCOND)": torch.full((batch,), num_classes)}
    print(
        f"\n{args.transformer} on {batch} labelled grids of {args.cache}: masked-token CE summed over a "
        "grid (nats per image) / exact accuracy; as a classifier: the class whose CE is lowest (top-1, "
        f"chance {1 / num_classes:.0%}); the class is worth at most log {num_classes} = "
        f"{math.log(num_classes):.2f} nats per image to a calibrated model\n"
    )
    print("| masked | " + " | ".join(f"{name} class" for name in rows) + " | as a classifier |")
    print("|---:|" + "---|" * (len(rows) + 1))
    for ratio in args.ratios:
        masked = torch.rand(tokens.shape, generator=generator) < ratio
        count = masked.flatten(1).sum(1).clamp_min(1)
        cells = []
        for classes in rows.values():
            ce, hits = masked_ce(model, tokens, masked, classes)
            cells.append(f"{ce.mean().item():.1f} / {(hits / count).mean().item():.1%}")
        per_class = torch.stack(
            [masked_ce(model, tokens, masked, torch.full((batch,), k))[0] for k in range(num_classes)], 1
        )  # (B, K)
        top1 = (per_class.argmin(1) == labels).float().mean().item()
        print(f"| {ratio:.0%} | " + " | ".join(cells) + f" | {top1:.0%} |")


if __name__ == "__main__":
    main()
