"""What frame prediction scores without predicting motion, and where a transformer's beliefs stand.

    ./run.sh bench fp_bounds                                      # non-learned rows only
    ./run.sh bench fp_bounds --tokenizer runs/tokenizer-default/export --transformer runs/transformer-default/export

Held-out clips (``--data``, default the sample data's held-out digits) are read whole (``--clip-frames``
frames); the scored window is their centered ``--num-frames`` frames, as in ``./run.sh eval transformer``,
with the first ``--cond-frames`` given. PSNR / SSIM over the predicted frames. Two tables:

1. **Bounds of not predicting motion.** Copy the last given frame (the task's baseline); the true
   background (each pixel's median over the whole clip: the digits erased, an oracle that no model
   given 5 frames has); the last given frame fading linearly into that background (weight 1 to 0 over
   the predicted frames: what a model that knows where the digits were, but not where they go, could
   at best blur toward). A model that only erases or fades the digits cannot beat these rows.
   With a transformer: its **one-pass beliefs**, every predicted position masked (the sampler's first
   step), decoded as the argmax ids and as the **expected code** (each position's code vector averaged
   over the model's distribution: the mean of its beliefs, as a squared-error estimate would be), and
   the tokenizer's reconstruction of the truth (the ceiling).
2. With a transformer: per predicted latent frame, the argmax's accuracy on the positions whose true id
   equals the previous latent frame's at the same place ("kept": copying would be right) and on the
   others ("changed": what predicting the future asks for).
"""

from __future__ import annotations

import argparse
import math

import torch

from videogen.errors import UserError
from videogen.evaluation.baselines import copy_last_frame, frame_prediction_scores
from videogen.evaluation.eval_data import eval_batches
from videogen.transformer.logits import TokenLogits
from videogen.transformer.tasks import build_condition, get_task
from videogen.transformer.vocab import MASK_ID


def clip_background(clip: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, H, W)`` -> ``(B, C, 1, H, W)``: each pixel's median over time (moving content removed)."""
    return clip.median(dim=2, keepdim=True).values


def fade_into(last: torch.Tensor, background: torch.Tensor, frames: int) -> torch.Tensor:
    """``(B, C, 1, H, W)`` twice -> ``(B, C, frames, H, W)``: weight 1 -> 0 on ``last``, the rest ``background``."""
    weight = torch.linspace(1.0, 0.0, frames, dtype=last.dtype, device=last.device).view(1, 1, -1, 1, 1)
    return weight * last + (1 - weight) * background


def bit_marginals(logits: TokenLogits) -> torch.Tensor:
    """``(B, N, bits)``: P(binary digit j of the code id is 1), lowest digit first, from any head layout
    whose heads cover whole binary digits (one head, two split heads, one head per digit)."""
    out = []
    for log_probs, size in zip(logits.log_probs(), logits.sizes):
        digits = int(math.log2(size))
        if 2**digits != size:
            raise UserError(f"expected codes need power-of-two heads; this model has heads {logits.sizes}")
        ids = torch.arange(size, device=log_probs.device)
        table = ((ids[:, None] >> torch.arange(digits, device=ids.device)) & 1).float()  # (size, digits)
        out.append(log_probs.exp() @ table)
    return torch.cat(out, dim=-1)


def expected_codes(logits: TokenLogits, tokenizer) -> torch.Tensor:
    """``(B, C, N)``: each position's code vector averaged over the model's distribution.

    Binary quantizers (LFQ, BSQ) map each binary digit of the id to one channel, linearly, so the mean
    code is ``low + (high - low) * P(digit = 1)``; other quantizers need one head over every code.
    """
    size = logits.num_codes
    binary = 2 ** int(math.log2(size)) == size and tokenizer.latent_channels == int(math.log2(size))
    if binary:
        extremes = tokenizer.indices_to_codes(torch.tensor([[[[0]]], [[[size - 1]]]]))  # (2, C, 1, 1, 1)
        low, high = extremes[0, :, 0, 0, 0], extremes[1, :, 0, 0, 0]  # every digit 0 / every digit 1
        return (low + (high - low) * bit_marginals(logits)).transpose(1, 2)
    if len(logits.sizes) != 1:
        raise UserError("expected codes of a non-binary quantizer need a transformer with one output head")
    table = tokenizer.indices_to_codes(torch.arange(size).view(1, size, 1, 1))[0, :, :, 0, 0]  # (C, K)
    return (logits.log_probs()[0].exp() @ table.T).transpose(1, 2)


def kept_and_changed(argmax: torch.Tensor, truth: torch.Tensor, predicted: torch.Tensor) -> dict:
    """Grids ``(B, T', H', W')`` and bool ``predicted`` ``(T',)`` -> ``{(t, "kept"|"changed"): (positions, right)}``
    for each predicted latent frame ``t >= 1`` (kept: the true id equals the true id one latent frame earlier)."""
    counts = {}
    for t in range(1, truth.shape[1]):
        if not predicted[t]:
            continue
        kept = truth[:, t] == truth[:, t - 1]
        right = argmax[:, t] == truth[:, t]
        for name, where in (("kept", kept), ("changed", ~kept)):
            counts[(t, name)] = (int(where.sum()), int((right & where).sum()))
    return counts


class Scores:
    def __init__(self) -> None:
        self.rows: dict[str, list[torch.Tensor]] = {}

    def add(self, name: str, pred: torch.Tensor, truth: torch.Tensor, cond_frames: int) -> None:
        scores = frame_prediction_scores(pred.clamp(-1, 1), truth, cond_frames)
        self.rows.setdefault(name, []).append(torch.stack([s.per_sample for s in scores.values()], 1))

    def table(self) -> str:
        lines = ["| prediction | PSNR | SSIM |", "|---|---:|---:|"]
        for name, values in self.rows.items():
            psnr, ssim = torch.cat(values).mean(0).tolist()
            lines.append(f"| {name} | {psnr:.2f} | {ssim:.3f} |")
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/sample/val.jsonl")
    parser.add_argument("--tokenizer", help="with --transformer: its tokenizer export")
    parser.add_argument("--transformer", help="a transformer export trained on frame prediction")
    parser.add_argument("--clip-frames", type=int, default=33, help="frames read per clip (the background)")
    parser.add_argument("--num-frames", type=int, default=17, help="the scored window (a transformer's own)")
    parser.add_argument("--cond-frames", type=int, default=5)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=40)
    args = parser.parse_args()
    engine = None
    if args.transformer:
        from videogen.pipeline import VideoGenPipeline

        engine = VideoGenPipeline.from_pretrained(args.tokenizer, args.transformer, "cpu").engine
        engine.trained.require("frame_prediction", False)
        args.num_frames, args.size = engine.num_frames, engine.frame_size[0]
    if not args.cond_frames < args.num_frames <= args.clip_frames:
        raise UserError(f"need cond-frames < num-frames <= clip-frames, got {args}")
    count, batches = eval_batches(args.data, args.clip_frames, (args.size, args.size), limit=args.limit)
    c, start = args.cond_frames, (args.clip_frames - args.num_frames) // 2
    scores, tokens = Scores(), {}
    with torch.no_grad():
        for batch in batches:
            clip = batch["video"]  # (B, 3, clip_frames, H, W)
            truth = clip[:, :, start : start + args.num_frames]
            given = truth[:, :, :c]
            background = clip_background(clip)
            scores.add("copy last frame", copy_last_frame(truth, c), truth, c)
            rest = args.num_frames - c
            scores.add(
                "true background (oracle)",
                torch.cat([given, background.expand(-1, -1, rest, -1, -1)], 2),
                truth,
                c,
            )
            fading = fade_into(given[:, :, -1:], background, rest)
            scores.add(
                "last frame fading into the true background (oracle)", torch.cat([given, fading], 2), truth, c
            )
            if engine is None:
                continue
            tokenizer, model = engine.tokenizer, engine.transformer
            shape = tokenizer.latent_shape(*truth.shape[2:])
            condition = build_condition("frame_prediction", truth, shape, num_cond_frames=c)
            cond_tokens, mask = tokenizer.tokenize(condition.video), condition.latent_mask
            size = len(truth)
            task_ids = torch.full((size,), get_task("frame_prediction").task_id)
            logits = model(torch.where(mask, cond_tokens, MASK_ID), task_ids, engine.class_ids(None, size))
            argmax = torch.where(mask, cond_tokens, logits.argmax().view(size, *shape))
            scores.add("transformer, one pass: argmax ids", tokenizer.detokenize(argmax), truth, c)
            mean = expected_codes(logits, tokenizer).reshape(size, -1, *shape)
            mean = torch.where(mask[:, None], tokenizer.indices_to_codes(cond_tokens), mean)
            scores.add("transformer, one pass: expected code", tokenizer.decode(mean), truth, c)
            true_tokens = tokenizer.tokenize(truth)
            scores.add("tokenizer reconstruction (ceiling)", tokenizer.detokenize(true_tokens), truth, c)
            predicted = ~mask.reshape(size, shape[0], -1).all(-1).all(0)  # (T',) latent frames to predict
            for key, (n, k) in kept_and_changed(argmax, true_tokens, predicted).items():
                total = tokens.get(key, (0, 0))
                tokens[key] = (total[0] + n, total[1] + k)
    print(
        f"{count} clips of {args.data}: frames {start}..{start + args.num_frames - 1} of {args.clip_frames}, {c} given\n"
    )
    print(scores.table())
    if tokens:
        print("\n| predicted latent frame | ids | positions | argmax right |")
        print("|---|---|---:|---:|")
        for (t, name), (n, k) in sorted(tokens.items()):
            print(f"| {t} | {name} | {n} | {k / max(n, 1):.1%} |")


if __name__ == "__main__":
    main()
