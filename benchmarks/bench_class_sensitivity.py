"""Does a transformer use the class? Masked-token loss on labelled grids given the right, a wrong, or no class.

    ./run.sh bench class_sensitivity --transformer runs/transformer-default/export \
        --cache runs/transformer-default/token_cache_images

Each labelled item of the token cache (latent frame 0: an image grid, as image generation sees it) is
masked at fixed random positions (``--ratios``, one draw per ratio, seeded), given the generation task
token and (a) its own class, (b) another class drawn uniformly from the rest, (c) UNCOND, and scored
by the cross-entropy and exact accuracy over the masked positions. A model that uses the class scores
(a) better than (b) and (c), most of all with most of the grid masked; equal rows mean the class token
is ignored, and no sampling setting (guidance included) can then make generated images follow the
requested class. Forward passes only, no sampling; a few seconds on CPU.
"""

from __future__ import annotations

import argparse

import torch

from videogen.errors import UserError
from videogen.token_cache.reader import TokenDataset
from videogen.transformer import CommitTransformer
from videogen.transformer.vocab import MASK_ID, TASK_IDS


def scores(model: CommitTransformer, tokens: torch.Tensor, masked: torch.Tensor, classes: torch.Tensor):
    """``(B, 1, H', W')`` grids, bool mask of the same shape, ``(B,)`` class ids -> (CE, accuracy) over masked."""
    tasks = torch.full((tokens.shape[0],), TASK_IDS["generation"])
    with torch.no_grad():
        logits = model(tokens.masked_fill(masked, MASK_ID), tasks, classes)
    flat, where = tokens.flatten(1), masked.flatten(1)
    ce = logits.cross_entropy(flat)[where].mean().item()
    acc = (logits.argmax() == flat)[where].float().mean().item()
    return ce, acc


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
    print(f"\n{args.transformer} on {batch} labelled grids of {args.cache} (CE nats / exact accuracy)\n")
    print("| masked | " + " | ".join(f"{name} class" for name in rows) + " |")
    print("|---:|" + "---|" * len(rows))
    for ratio in args.ratios:
        masked = torch.rand(tokens.shape, generator=generator) < ratio
        cells = [scores(model, tokens, masked, classes) for classes in rows.values()]
        print(f"| {ratio:.0%} | " + " | ".join(f"{ce:.3f} / {acc:.1%}" for ce, acc in cells) + " |")


if __name__ == "__main__":
    main()
