"""What a tokenizer export's tokens look like to the transformer, and where its reconstruction error sits.

    ./run.sh bench tokens                                          # runs/tokenizer-default/export, 64x64
    ./run.sh bench tokens --tokenizer runs/demo/tokenizer/export --resolution 32
    ./run.sh bench tokens --offsets 0,8,16 --bits                  # + windows at later starts, + per-bit costs

Held-out clips (``--data``, default the sample data's held-out digits), ``--num-frames`` frames from
frame ``--start``. Prints three tables:

1. **Reconstruction per frame** of the window at each ``--offsets`` start. If frames 5..16 are worse than
   frames 1..4 at every start, the drop is the position in the window (what the tokenizer was trained
   on), not the content of those frames.
2. **Token statistics**: per latent frame, the fraction of positions whose id equals the previous latent
   frame's at the same place (how much a "copy" would already predict), the same fraction over the
   positions where nothing moved (no pixel within one token changes over the frames of both latent
   frames) and over a still video (each clip's first frame held for the whole window: what the
   tokenizer does to content that does not change), and the marginal entropy of the ids in bits
   (log2 of the codebook = uniform, no structure to learn).
3. With ``--bits`` (binary quantizers: LFQ, BSQ): per sign bit, the held-out PSNR when that bit is
   flipped in every token and when it is replaced by a coin flip (a transformer that cannot predict
   it), the median ``|z|`` of the encoder output, and how often the sign agrees with the previous latent frame.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from videogen.data.manifest import read_manifest
from videogen.data.transforms import crop, crop_offsets, resize_short_side, to_model_range
from videogen.evaluation.image_metrics import psnr
from videogen.tokenizer.model import VideoTokenizer
from videogen.video_io import read_video

ROOT = Path(__file__).resolve().parents[1]


def load_clips(manifest: str, num_clips: int, start: int, num_frames: int, size: int) -> torch.Tensor:
    """``(N, 3, T, size, size)`` in [-1, 1]: frames ``start .. start + T - 1`` of the first clips long enough."""
    rows = read_manifest(manifest)
    clips = []
    for path, frames in zip(rows.paths, rows.num_frames):
        if frames < start + num_frames:
            continue
        frames = torch.from_numpy(read_video(path, np.arange(start, start + num_frames)))  # (T, H, W, 3)
        frames = resize_short_side(frames.permute(0, 3, 1, 2), size)  # (T, 3, H', W'), as training reads
        clips.append(to_model_range(crop(frames, *crop_offsets(*frames.shape[-2:], size), size)))
        if len(clips) == num_clips:
            break
    if not clips:
        raise SystemExit(f"error: no clip of {manifest} has {start + num_frames} frames")
    return torch.stack(clips)


def per_frame_table(tokenizer: VideoTokenizer, args: argparse.Namespace) -> str:
    lines = [
        "| window start | mean PSNR | " + " | ".join(f"f{i}" for i in range(args.num_frames)) + " |",
        "|---:|---:|" + "---:|" * args.num_frames,
    ]
    for start in args.offsets:
        clips = load_clips(args.data, args.num_clips, start, args.num_frames, args.resolution)
        with torch.no_grad():
            frames = psnr(tokenizer.detokenize(tokenizer.tokenize(clips)), clips).per_frame.mean(0)
        cells = " | ".join(f"{v:.1f}" for v in frames.tolist())
        lines.append(f"| {start} | {frames.mean():.2f} | {cells} |")
    return "\n".join(lines)


def entropy_bits(ids: torch.Tensor) -> float:
    counts = torch.unique(ids, return_counts=True)[1].double()
    p = counts / counts.sum()
    return float(-(p * p.log2()).sum())


def still_positions(
    clips: torch.Tensor, temporal: int, spatial: int, threshold: float = 0.05
) -> torch.Tensor:
    """``(N, 3, T, H, W)`` clips -> bool ``(N, T', H', W')``: True at latent ``(t, h, w)`` (t >= 1) when no
    pixel within one token of ``(h, w)`` changes by more than ``threshold`` over the frames of latent
    frames ``t - 1`` and ``t`` (latent 0 is frame 0, latent t frames ``temporal*(t-1)+1 .. temporal*t``)."""
    change = (clips[:, :, 1:] - clips[:, :, :-1]).abs().amax(1)  # (N, T-1, H, W): frame i -> i + 1
    lat_frames = (clips.shape[2] - 1) // temporal + 1
    still = torch.zeros(
        clips.shape[0], lat_frames, clips.shape[3] // spatial, clips.shape[4] // spatial, dtype=torch.bool
    )
    for t in range(1, lat_frames):
        first = max(0, temporal * (t - 2) + 1)  # first frame of latent t - 1
        moved = change[:, first : temporal * t].amax(1) > threshold  # (N, H, W)
        cells = F.max_pool2d(moved.float().unsqueeze(1), spatial)  # (N, 1, H', W')
        still[:, t] = F.max_pool2d(cells, 3, 1, 1).squeeze(1) == 0  # one token of margin
    return still


def token_table(
    tokens: torch.Tensor, codebook_size: int, still: torch.Tensor, still_video: torch.Tensor
) -> str:
    """``tokens``, ``still_video`` (the tokens of each clip's first frame held): ``(N, T', H', W')`` ids;
    ``still``: where nothing moved (:func:`still_positions`)."""
    lines = [
        "| latent frame | same id as the previous latent frame | where nothing moved (share of the grid) "
        f"| a still video | id entropy (bits; uniform = {math.log2(codebook_size):.1f}) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for t in range(tokens.shape[1]):
        if t == 0:
            lines.append(f"| 0 | - | - | - | {entropy_bits(tokens[:, 0]):.2f} |")
            continue
        same = tokens[:, t] == tokens[:, t - 1]
        here = still[:, t]
        where = f"{same[here].float().mean():.3f} ({here.float().mean():.2f})" if here.any() else "- (0.00)"
        held = (still_video[:, t] == still_video[:, t - 1]).float().mean()
        lines.append(
            f"| {t} | {same.float().mean():.3f} | {where} | {held:.3f} | {entropy_bits(tokens[:, t]):.2f} |"
        )
    return "\n".join(lines)


def bit_table(tokenizer: VideoTokenizer, clips: torch.Tensor) -> str:
    with torch.no_grad():
        z = tokenizer.encode_latents(clips)  # (N, bits, T', H', W')
        codes = tokenizer.quantizer.quantize(z)[0]  # +-c per bit (c = 1 for LFQ, 1/sqrt(bits) for BSQ)
        signs = codes.sign()
        base = psnr(tokenizer.decode(codes).clamp(-1, 1), clips).per_sample.mean()
        lines = [
            f"all bits kept: {base:.2f} dB",
            "",
            "| bit | PSNR, bit flipped everywhere | PSNR, bit a coin flip | median abs z | same sign as previous latent frame |",
            "|---:|---:|---:|---:|---:|",
        ]
        generator = torch.Generator().manual_seed(0)
        for bit in range(z.shape[1]):
            flipped = codes.clone()
            flipped[:, bit] *= -1
            coin = codes.clone()
            coin[:, bit] *= torch.randint(0, 2, coin[:, bit].shape, generator=generator).float() * 2 - 1
            scores = [
                psnr(tokenizer.decode(s).clamp(-1, 1), clips).per_sample.mean() for s in (flipped, coin)
            ]
            agree = (signs[:, bit, 1:] == signs[:, bit, :-1]).float().mean()
            lines.append(
                f"| {bit} | {scores[0]:.2f} | {scores[1]:.2f} | {z[:, bit].abs().median():.3f} | {agree:.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokenizer", default="runs/tokenizer-default/export")
    parser.add_argument("--data", default="data/sample/val.jsonl", help="held-out clips (a manifest)")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--num-clips", type=int, default=40)
    parser.add_argument("--num-frames", type=int, default=17)
    parser.add_argument("--start", type=int, default=8, help="first frame of the window of tables 2 and 3")
    parser.add_argument("--offsets", default="0", help="window starts of table 1, comma-separated")
    parser.add_argument("--bits", action="store_true", help="per-bit table (LFQ / BSQ exports)")
    args = parser.parse_args()
    args.offsets = [int(v) for v in args.offsets.split(",")]
    tokenizer = VideoTokenizer.from_pretrained(ROOT / args.tokenizer).eval()
    print(f"tokenizer {args.tokenizer}: {tokenizer.codebook_size} codes; held-out clips of {args.data}\n")
    print("Reconstruction PSNR (dB) per frame:\n\n" + per_frame_table(tokenizer, args) + "\n")
    clips = load_clips(args.data, args.num_clips, args.start, args.num_frames, args.resolution)
    with torch.no_grad():
        tokens = tokenizer.tokenize(clips)
        still_video = tokenizer.tokenize(clips[:, :, :1].expand_as(clips).contiguous())
    still = still_positions(clips, tokenizer.temporal_factor, tokenizer.spatial_factor)
    print("Token ids:\n\n" + token_table(tokens, tokenizer.codebook_size, still, still_video) + "\n")
    if args.bits:
        print("Sign bits:\n\n" + bit_table(tokenizer, clips))


if __name__ == "__main__":
    main()
