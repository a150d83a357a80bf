"""The demo's report: ``metrics.json`` gathered from the stages, and ``report.md`` / ``report.html`` with the
metrics next to the baselines and every GIF / PNG (links relative to the demo folder)."""

from __future__ import annotations

import html
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from videogen.training.logger import format_duration

USES = (
    ("predict", "Frame prediction", "The first {c} frames of a held-out clip condition the next {p}"),
    (
        "interpolate",
        "Interpolation",
        "The {n} frames from the first to the last frame of a window, both ends given",
    ),
    ("inpaint", "Inpainting", "The central box (half the height and width) regenerated in every frame"),
    ("outpaint", "Outpainting", "Only the central box kept, everything around it generated"),
)
COMMANDS = {
    "predict": "./run.sh predict --input clip.mp4 --cond-frames {c} --out pred.gif --side-by-side",
    "interpolate": "./run.sh interpolate --first a.png --last b.png --out mid.gif",
    "inpaint": "./run.sh inpaint --input clip.mp4 --box 16,16,48,48 --out fixed.gif --side-by-side",
    "outpaint": "./run.sh outpaint --input clip.mp4 --mode central --placement keep --out wide.gif --side-by-side",
    "generate": "./run.sh generate --class 3 --out image.png",
}


def collect_metrics(
    out: Path, stages: dict[str, dict], budget_minutes: float, elapsed_s: float
) -> dict[str, Any]:
    """``metrics.json``: frame prediction (model, copy-last-frame, tokenizer), tokenizer reconstruction,
    training and stage wall times (seconds, summed over interrupted and resumed invocations)."""
    prediction = json.loads((out / stages["evaluate"]["file"]).read_text())["frame_prediction"]
    training = {
        name: {
            "steps": stages[name].get("steps"),
            "s_per_step": stages[name].get("s_per_step"),
            "wall_s": stages[name]["seconds"],
        }
        for name in ("tokenizer", "transformer")
    }
    seconds = {name: stage["seconds"] for name, stage in stages.items()}
    return {
        "frame_prediction": prediction,
        "tokenizer": stages["tokenizer"]["held_out"],
        "training": training,
        "stage_seconds": seconds,
        "total_s": sum(seconds.values()),
        "this_invocation_s": elapsed_s,
        "budget_minutes": budget_minutes,
        "machine": machine(),
    }


def machine() -> str:
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"{os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}"


def _blocks(metrics: dict[str, Any], stages: dict[str, dict], out: Path) -> list[tuple[str, Any]]:
    """The report as ``(kind, value)`` blocks: ``h1``/``h2``/``h3``/``p``/``code``/``table``/``media``."""
    fp, tok, train = metrics["frame_prediction"], metrics["tokenizer"], metrics["training"]
    c, size = fp["num_cond_frames"], "x".join(map(str, fp["resolution"]))
    p = fp["num_frames"] - c
    blocks: list[tuple[str, Any]] = [
        ("h1", "videogen demo"),
        (
            "p",
            f"Made by `./run.sh demo` on {metrics['machine']}: {format_duration(metrics['total_s'])} in all "
            f"(budget {metrics['budget_minutes']:g} min). Moving-digit clips ({stages['data']['train_clips']} "
            f"for training, {stages['data']['val_clips']} held out), {fp['num_frames']} frames of {size}.",
        ),
        ("h2", "Frame prediction on held-out clips"),
        (
            "p",
            f"{fp['num_clips']} clips: {c} condition frames, {p} predicted; PSNR / SSIM over the predicted "
            "frames only (one sample per clip, nothing pasted back).",
        ),
        (
            "table",
            [
                ["method", "PSNR (dB)", "SSIM"],
                ["COMMIT transformer (this demo)", f"{fp['psnr']:.2f}", f"{fp['ssim']:.4f}"],
                [
                    "copy last condition frame (baseline)",
                    f"{fp['copy_last_frame_psnr']:.2f}",
                    f"{fp['copy_last_frame_ssim']:.4f}",
                ],
                [
                    "tokenizer reconstruction (ceiling)",
                    f"{fp['tokenizer_psnr']:.2f}",
                    f"{fp['tokenizer_ssim']:.4f}",
                ],
            ],
        ),
        ("h2", "Tokenizer"),
        (
            "p",
            f"Held-out reconstruction ({tok['num_clips']} clips): PSNR {tok['psnr']:.2f} dB, SSIM {tok['ssim']:.4f}, "
            f"codebook usage {tok['used_codes']} / {tok['codebook_size']} ({100 * tok['codebook_usage']:.1f}%), "
            f"perplexity {tok['perplexity']:.1f}.",
        ),
    ]
    if (out / "tokenizer" / "reconstructions.gif").is_file():
        blocks.append(("media", ("tokenizer/reconstructions.gif", "input | reconstruction")))
    rows = [["stage", "steps", "s / step", "wall time"]]
    for name, seconds in metrics["stage_seconds"].items():
        t = train.get(name)
        if t is None:
            rows.append([name, "", "", format_duration(seconds)])
        else:
            rate = f"{t['s_per_step']:.2f}" if t["s_per_step"] else "-"
            rows.append(
                [f"{name} (training, export, evaluation)", str(t["steps"]), rate, format_duration(seconds)]
            )
    rows.append(["total", "", "", format_duration(metrics["total_s"])])
    blocks += [("h2", "Wall time"), ("table", rows)]
    blocks += _uses(stages["showcase"], c, p)
    return blocks


def _uses(show: dict[str, Any], c: int, p: int) -> list[tuple[str, Any]]:
    blocks: list[tuple[str, Any]] = [
        ("h2", "Uses"),
        (
            "p",
            "Each side-by-side GIF shows what the model was given (gray = unknown) | its output | the truth.",
        ),
    ]
    for key, title, text in USES:
        blocks += [
            ("h3", title),
            ("p", text.format(c=c, p=p, n=c + p) + "."),
            ("code", COMMANDS[key].format(c=c)),
        ]
        for i, clip in enumerate(show["clips"]):
            blocks.append(
                ("media", (clip["files"][f"{key}.sbs"], f"held-out clip {i} (label {clip['label']})"))
            )
    blocks += [("h3", "Generation"), ("code", COMMANDS["generate"])]
    for clip in show["clips"]:
        blocks.append(
            ("media", (clip["files"]["generate.png"], f"unconditional image (seed {clip['seed']})"))
        )
        blocks.append(("media", (clip["files"]["generate.gif"], f"unconditional clip (seed {clip['seed']})")))
    if "classes" in show:
        blocks.append(
            ("p", "Class-conditional: one image and one clip per class, classes 0 to 9 left to right.")
        )
        blocks.append(("media", (show["classes"]["image"], "class-conditional images")))
        blocks.append(("media", (show["classes"]["video"], "class-conditional clips")))
    return blocks


def _markdown(blocks: list[tuple[str, Any]]) -> str:
    lines: list[str] = []
    for kind, value in blocks:
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + value, ""]
        elif kind == "p":
            lines += [value, ""]
        elif kind == "code":
            lines += ["```bash", value, "```", ""]
        elif kind == "table":
            head, *rows = value
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
        elif kind == "media":
            path, caption = value
            lines += [f"![{caption}]({path})  ", f"*{caption}*", ""]
    return "\n".join(lines)


def _html(blocks: list[tuple[str, Any]]) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><meta charset='utf-8'><title>videogen demo</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}img{image-rendering:pixelated;"
        "min-width:12em}td,th{padding:0 1em}</style>",
    ]
    for kind, value in blocks:
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{esc(value)}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{esc(value)}</p>")
        elif kind == "code":
            parts.append(f"<pre>{esc(value)}</pre>")
        elif kind == "table":
            head, *rows = value
            parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in rows]
            parts.append("</table>")
        elif kind == "media":
            path, caption = value
            parts.append(
                f"<figure><img src='{esc(path)}' alt='{esc(caption)}'><figcaption>{esc(caption)}"
                "</figcaption></figure>"
            )
    return "\n".join(parts) + "\n"


def write_report(out: Path, metrics: dict[str, Any], stages: dict[str, dict]) -> Path:
    """Write ``report.md`` and ``report.html`` into ``out``; returns the Markdown file."""
    blocks = _blocks(metrics, stages, out)
    (out / "report.html").write_text(_html(blocks))
    path = out / "report.md"
    path.write_text(_markdown(blocks))
    return path
