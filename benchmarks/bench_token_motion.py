"""Can the transformer learn to move tokens? Frame prediction on synthetic token grids, no tokenizer.

    ./run.sh bench token_motion                       # the default recipe: tiny, 300 steps of 4 grids
    ./run.sh bench token_motion --steps 900 --every 300 --grid-conv 3

Each grid is ``(5, 16, 16)`` code ids: a static background (one of ``--background-codes`` codes per
position, fixed over time) and two objects of 7x4 tokens filled with random codes, each moving
by a whole token per latent frame (a random velocity in {-1, 0, 1}^2, not both 0; reflected at the
walls). Latent frames 0-1 are given, 2-4 predicted: the motion is in the tokens themselves, exactly, so
a model that has learned "find each object's velocity, write its codes one step further" is right
everywhere, and one that copies the last given latent frame is right only where nothing moved. The
training is the default run's: the ``tiny`` transformer (rotary positions), AdamW lr 1e-3, 15 warmup
steps then cosine, batch 4, the COMMIT loss on frame prediction alone (fresh grids every step: no
data limit). Every ``--every`` steps: argmax accuracy (one pass, every predicted position masked) on
64 held-out grids, on the ids that equal the previous latent frame's ("kept"), on the others
("changed"), and on the changed ids that hold an object's code ("moved": the object arrived there; about
79% of the changed ids; the rest is background the object uncovered, mostly hidden in both given frames,
so no model can know it). ``--fixed-velocity`` gives every object the same velocity (one token right), so no velocity
has to be read from the given frames: only the copy one place over is left to learn. ``--mask-future``
masks every predicted position in every step (the cosine share leaves many visible, and a visible
neighbour in the same latent frame is an easier source than the previous frame).
``--object-codes N`` draws the objects' codes from N codes instead of 4080 (each code seen more often).
The architecture options are the transformer's: ``--grid-conv K``, ``--window T H W``
(``attention_window``), ``--position``, ``--sub-tokens bits``, ``--token-input bits`` with ``--head untied``.
Real digits (``./run.sh bench fp_bounds``) get 7-11% of their changed ids right.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from videogen.errors import UserError
from videogen.transformer import CommitTransformer
from videogen.transformer.masking import commit_loss, mix_tokens, prepare_training_inputs
from videogen.transformer.vocab import MASK_ID, TASK_IDS

GRID = (5, 16, 16)
GIVEN = 2  # latent frames 0-1, as frame prediction from 5 frames


def positions(start: int, velocity: int, frames: int, room: int) -> list[int]:
    """Whole-token positions ``0 .. room`` over ``frames`` latent frames, reflected at the walls."""
    out, p, v = [], start, velocity
    for _ in range(frames):
        out.append(p)
        if not 0 <= p + v <= room:
            v = -v
        p += v
    return out


def make_grids(
    batch: int,
    generator: torch.Generator,
    codebook: int = 4096,
    background_codes: int = 16,
    object_size: tuple[int, int] = (7, 4),
    velocity: tuple[int, int] | None = None,
) -> torch.Tensor:
    """``(batch, 5, 16, 16)`` int64: static background codes ``[0, background_codes)``, two moving
    objects of random codes from the rest of the codebook (the second drawn over the first), each with
    a random velocity, or all with ``velocity`` (rows, columns per latent frame)."""
    frames, height, width = GRID
    oh, ow = object_size
    grids = torch.randint(0, background_codes, (batch, 1, height, width), generator=generator)
    grids = grids.expand(-1, frames, -1, -1).clone()
    for b in range(batch):
        for _ in range(2):
            codes = torch.randint(background_codes, codebook, (oh, ow), generator=generator)
            step = velocity
            while step is None or not any(step):
                step = torch.randint(-1, 2, (2,), generator=generator).tolist()
            y0 = int(torch.randint(0, height - oh + 1, (1,), generator=generator))
            x0 = int(torch.randint(0, width - ow + 1, (1,), generator=generator))
            ys = positions(y0, step[0], frames, height - oh)
            xs = positions(x0, step[1], frames, width - ow)
            for t, (y, x) in enumerate(zip(ys, xs)):
                grids[b, t, y : y + oh, x : x + ow] = codes
    return grids


def condition(grids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame prediction's condition: the given latent frames' true ids, and the bool mask ``(B, 5, 16, 16)``."""
    mask = torch.zeros_like(grids, dtype=torch.bool)
    mask[:, :GIVEN] = True
    return torch.where(mask, grids, 0), mask


@torch.no_grad()
def kept_changed_accuracy(
    model: CommitTransformer, grids: torch.Tensor, background_codes: int = 16
) -> dict[str, float]:
    """One pass, every predicted position masked: argmax accuracy on the ids of latents 2-4 kept from the
    previous latent frame, on the changed ones, and on the changed ones that hold an object's code
    ("moved": the object arrived there; the other changed ids are background it uncovered, most of it
    hidden in both given frames, so no model can know it)."""
    model.eval()
    cond, mask = condition(grids)
    argmax = []
    for part in torch.split(torch.where(mask, cond, MASK_ID), 16):  # 16 grids of 4096 logits at a time
        task = torch.full((len(part),), TASK_IDS["frame_prediction"])
        classes = torch.full((len(part),), model.uncond_class_id)
        argmax.append(model(part, task, classes).argmax().view_as(part))
    argmax = torch.cat(argmax)
    model.train()
    right = (argmax == grids)[:, GIVEN:]
    kept = grids[:, GIVEN:] == grids[:, GIVEN - 1 : -1]
    moved = ~kept & (grids[:, GIVEN:] >= background_codes)  # an object's code arrived: copyable
    return {
        "kept": right[kept].float().mean().item(),
        "changed": right[~kept].float().mean().item(),
        "moved": right[moved].float().mean().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--grid-conv", type=int, default=0)
    parser.add_argument("--sub-tokens", default="single", help="single (one 4096-way head) or bits")
    parser.add_argument(
        "--window",
        type=int,
        nargs=3,
        default=None,
        metavar=("T", "H", "W"),
        help="attention_window radius of layers 0, 2 (default: every layer global)",
    )
    parser.add_argument("--position", default="rope", help="rope, learned or both")
    parser.add_argument("--head", default="tied", help="tied (to the code tables) or untied")
    parser.add_argument(
        "--token-input", default="table", help="table (one vector per code) or bits (the 12 binary digits)"
    )
    parser.add_argument("--background-codes", type=int, default=16)
    parser.add_argument(
        "--object-codes",
        type=int,
        default=4080,
        help="how many codes the objects draw from (after the background's)",
    )
    parser.add_argument(
        "--fixed-velocity",
        action="store_true",
        help="every object starts one token right per latent frame (reflected at the wall)",
    )
    parser.add_argument(
        "--mask-future",
        action="store_true",
        help="mask every predicted position in every step (as at the sampler's first step), not a cosine share",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = CommitTransformer.from_preset(
        "tiny",
        codebook_size=4096,
        num_classes=10,
        position=args.position,
        grid_conv=args.grid_conv,
        attention_window=tuple(args.window) if args.window else None,
        sub_tokens=args.sub_tokens,
        token_input=args.token_input,
        head=args.head,
        max_frames=GRID[0],
        max_height=GRID[1],
        max_width=GRID[2],
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.96), weight_decay=0.045)
    warmup = 15

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))  # cosine to 10%, as the config

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    train_gen = torch.Generator().manual_seed(args.seed + 1)
    velocity = (0, 1) if args.fixed_velocity else None
    codebook = args.background_codes + args.object_codes
    if codebook > 4096:
        raise UserError(
            f"--background-codes + --object-codes = {codebook} exceeds the 4096 codes of the model"
        )
    held_out = make_grids(
        64, torch.Generator().manual_seed(12345), codebook, args.background_codes, velocity=velocity
    )
    task_ids = torch.full((args.batch,), TASK_IDS["frame_prediction"])
    class_ids = torch.full((args.batch,), model.uncond_class_id)
    kept_share = (held_out[:, GIVEN:] == held_out[:, GIVEN - 1 : -1]).float().mean().item()
    print(
        f"tiny transformer ({model.num_parameters() / 1e6:.1f}M), {args.position} positions, grid_conv {args.grid_conv}, window {args.window}, sub-tokens "
        f"{args.sub_tokens}, input {args.token_input}, head {args.head}, objects of {args.object_codes} codes, velocities {'(0, 1) for all' if velocity else 'random'}, "
        f"{'every predicted position masked' if args.mask_future else 'cosine mask share'}, "
        f"lr {args.lr}, batch {args.batch}; held-out: 64 grids, {kept_share:.0%} of the "
        "predicted ids kept from the previous latent frame\n"
    )
    print(
        "| step | train mask loss | kept ids right | changed ids right | moved object ids right | s / step |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    train_seconds, loss_value = 0.0, float("nan")
    for step in range(1, args.steps + 1):
        start = time.perf_counter()
        grids = make_grids(args.batch, train_gen, codebook, args.background_codes, velocity=velocity)
        cond, mask = condition(grids)
        inputs = prepare_training_inputs(
            grids, cond, mask, task_ids, class_ids, uncond_class_id=model.uncond_class_id, generator=train_gen
        )
        masked, model_input = inputs.masked, inputs.inputs
        if args.mask_future:
            masked = masked | ~mask
            model_input = mix_tokens(grids, cond, inputs.cond_mask, masked)
        logits = model(model_input, inputs.task_ids, inputs.class_ids)
        out = commit_loss(logits, grids, masked, inputs.cond_mask)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        loss_value = out.metrics.get("mask_loss", loss_value)
        train_seconds += time.perf_counter() - start
        if step % args.every == 0 or step == args.steps:
            seconds = train_seconds / step
            acc = kept_changed_accuracy(model, held_out, args.background_codes)
            print(
                f"| {step} | {loss_value:.3f} | {acc['kept']:.1%} | {acc['changed']:.1%} | {acc['moved']:.1%} "
                f"| {seconds:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
