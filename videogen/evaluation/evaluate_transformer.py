"""Every trained use of a transformer, scored on held-out clips next to a non-learned baseline and the
tokenizer's ceiling (``./run.sh eval transformer``).

One row per task; a task the export was not trained on gets no row (it is listed as not trained):

| row | given | scored on | baseline |
|---|---|---|---|
| ``frame_prediction`` | the first c frames (c: as trained) | the predicted frames | copy the last given frame |
| ``interpolation`` | the first and the last frame | the frames between | linear blend of the two |
| ``inpaint_central`` | all but the central box | the box | mean colour of the known pixels, per frame |
| ``outpaint_central`` | the central box | the rest of the frame | edge replicate of the box |
| ``image_generation`` | a class | an image of it | chance |
| ``class_generation`` | a class | a clip of it | chance |

Clip rows: one sample per held-out clip (its centered window), the known pixels pasted back into
every method's output (model, baseline, the baseline's clip through the tokenizer, and the tokenizer's
reconstruction of the true clip: the ceiling of a token model), PSNR / SSIM over the region only
(``evaluation.image_metrics``). The baseline through the tokenizer is what a model that learned nothing
but to reproduce its filled-in input returns; for frame prediction it is where COMMIT's decoding
starts (the condition video: the last given frame copied), so a model must beat it, not only the
baseline, to have predicted anything.

Class rows: ``samples_per_class`` images or ``clips_per_class`` clips of every class, judged by a small
frame classifier of the data's labels, beside its accuracy on the held-out real clips and on their
tokenizer reconstructions, chance, and the fraction of distinct outputs (``evaluation.evaluate_generation``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from videogen.errors import UserError
from videogen.evaluation import (
    I3DFeatures,
    copy_last_frame,
    edge_replicate,
    frechet_distance_from_features,
    linear_blend,
    mean_fill,
    region_scores,
)
from videogen.evaluation.classifier import FrameClassifier
from videogen.evaluation.eval_data import eval_batches
from videogen.evaluation.evaluate_generation import (
    CLASS_ROWS,
    DUPLICATE_PSNR_DB,
    RealClassScores,
    generation_row,
)
from videogen.evaluation.evaluate_prediction import RunningMean
from videogen.inference.engine import InferenceEngine
from videogen.inference.sampling import SamplingOptions
from videogen.transformer.tasks import central_box, get_task

CLIP_ROWS = {  # row -> (name, what is scored: formatted with the sizes below, baseline)
    "frame_prediction": ("frame prediction", "{p} predicted frames ({c} given)", "copy last frame"),
    "interpolation": (
        "interpolation",
        "{m} middle frames (first, last given)",
        "linear blend of first and last",
    ),
    "inpaint_central": ("inpainting", "central {h}x{w} box", "mean colour of the known pixels"),
    "outpaint_central": ("outpainting", "outside the central {h}x{w} box", "edge replicate of the box"),
}
ROWS = (*CLIP_ROWS, *CLASS_ROWS)
METHODS = ("", "baseline_", "baseline_tokenizer_", "tokenizer_")


def plan_rows(engine: InferenceEngine, asked: list[str] | None) -> tuple[list[str], list[str]]:
    """(rows to score, rows not trained). ``asked``: rows by task name or code (None: every trained one);
    an asked row the export was not trained on is a :class:`UserError` naming the tasks it has."""
    trained = engine.trained
    has_classes = engine.num_classes > 0
    if asked is None:
        rows = [r for r in ROWS if trained.serves(r, r in CLASS_ROWS) and (r in CLIP_ROWS or has_classes)]
        return rows, [r for r in ROWS if r not in rows]
    not_trained = [r for r in ROWS if not trained.serves(r, r in CLASS_ROWS)]
    rows = []
    for name in asked:
        row = get_task(name).name
        row = {"inpaint": "inpaint_central", "outpaint": "outpaint_central"}.get(row, row)
        if row not in ROWS:
            raise UserError(f"eval transformer scores {', '.join(ROWS)}; {name!r} is not one of them")
        if row in CLASS_ROWS and not has_classes:
            raise UserError(f"{row} is scored per class, but transformer {trained.source} has no classes")
        trained.require(row, row in CLASS_ROWS)
        rows.append(row)
    return list(dict.fromkeys(rows)), not_trained  # rows not asked for are neither


def _clip_row(
    engine: InferenceEngine, row: str, truth: torch.Tensor, options: SamplingOptions, c: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The model's output, the baseline and the known-pixel mask ``(B, T, H, W)`` of one clip row."""
    batch, _, frames, height, width = truth.shape
    uncond = engine.class_ids(None, batch)
    known = torch.zeros(batch, frames, height, width, dtype=torch.bool, device=truth.device)
    y0, x0, y1, x1 = central_box(height, width)
    if row == "frame_prediction":
        pred = engine.predict(truth[:, :, :c], frames, uncond, options, paste_condition=False)
        known[:, :c] = True
        baseline = copy_last_frame(truth, c)
    elif row == "interpolation":
        pred = engine.interpolate(truth[:, :, :1], truth[:, :, -1:], uncond, options).video
        known[:, [0, frames - 1]] = True
        baseline = linear_blend(truth)
    elif row == "inpaint_central":
        pred = engine.inpaint(truth, (y0, x0, y1, x1), uncond, options).video
        known[:] = True
        known[:, :, y0:y1, x0:x1] = False
        baseline = mean_fill(truth, known)
    else:
        pred = engine.outpaint(truth, "central", uncond, options).video
        known[:, :, y0:y1, x0:x1] = True
        baseline = edge_replicate(truth, (y0, x0, y1, x1))
    return pred, baseline, known


@torch.no_grad()
def evaluate_transformer(
    engine: InferenceEngine,
    data: str | Path,
    *,
    rows: list[str] | None = None,
    num_cond_frames: int | None = None,
    limit: int | None = None,
    batch_size: int = 4,
    options: SamplingOptions | None = None,
    conditioned_options: SamplingOptions | None = None,
    classifier: FrameClassifier | None = None,
    classifier_record: dict[str, Any] | None = None,
    samples_per_class: int = 10,
    clips_per_class: int = 4,
    i3d: str | Path | torch.nn.Module | None = None,
    backend: str = "decord",
    progress: bool = True,
) -> dict:
    """Score ``rows`` (default: every trained one, see the module doc) on the held-out clips of ``data``.

    ``classifier``: for the class rows (without one they are skipped, with the reason). ``i3d``: an I3D
    TorchScript file or module: FVD of frame prediction (whole clips, against the true clips).
    ``options`` decode the class rows, ``conditioned_options`` (default: ``options``) the clip rows (the
    tasks given part of the video). Returns ``{"transformer_eval": {...}}`` (see
    :func:`format_transformer_table`).
    """
    options = options or SamplingOptions()
    conditioned_options = conditioned_options or options
    rows, not_trained = plan_rows(engine, rows)
    skipped: dict[str, str] = {}
    if classifier is None or classifier.num_classes != engine.num_classes:
        reason = (
            "no classifier (labelled classifier data) given"
            if classifier is None
            else f"the classifier knows {classifier.num_classes} classes, the transformer {engine.num_classes}"
        )
        skipped = {row: reason for row in rows if row in CLASS_ROWS}
        rows = [row for row in rows if row not in CLASS_ROWS]
    if not rows:
        raise UserError(
            f"nothing to evaluate: transformer {engine.trained.source} was trained on "
            f"{engine.trained.describe()}"
            + (f" ({'; '.join(f'{k}: {v}' for k, v in skipped.items())})" if skipped else "")
        )
    c = engine.default_cond_frames if num_cond_frames is None else num_cond_frames
    engine.check_cond_frames(c)
    count, batches = eval_batches(
        data,
        engine.num_frames,
        engine.frame_size,
        fps=engine.geometry.fps,
        limit=limit,
        batch_size=batch_size,
        backend=backend,
    )
    clip_rows = [r for r in rows if r in CLIP_ROWS]
    class_rows = [r for r in rows if r in CLASS_ROWS]
    extractor = (
        I3DFeatures(i3d, device=engine.device) if i3d is not None and "frame_prediction" in rows else None
    )
    features: dict[str, list[torch.Tensor]] = {"real": [], "pred": [], "recon": []}
    means: dict[str, dict[str, RunningMean]] = {row: {} for row in clip_rows}
    real_scores = RealClassScores(classifier, class_rows) if class_rows else None
    work = count * len(clip_rows) + count * bool(class_rows)
    work += engine.num_classes * (
        samples_per_class * ("image_generation" in class_rows)
        + clips_per_class * ("class_generation" in class_rows)
    )
    with tqdm(total=work, desc="eval transformer", unit="sample", disable=not progress) as bar:
        for batch in batches:
            truth = batch["video"].to(engine.device)
            labels = torch.as_tensor(batch["label"]).to(engine.device)
            recon = engine.reconstruct(truth)
            for row in clip_rows:
                pred, baseline, known = _clip_row(engine, row, truth, conditioned_options, c)
                region = ~known
                paste = known.unsqueeze(1)
                # the baseline through the tokenizer: what a model that only reproduces its filled-in
                # input returns (frame prediction: where COMMIT's decoding starts, the copied frame)
                through = engine.reconstruct(torch.where(paste, truth, baseline))
                for prefix, video in zip(METHODS, (pred, baseline, through, recon)):
                    scores = region_scores(torch.where(paste, truth, video), truth, region)
                    for metric, value in scores.items():
                        means[row].setdefault(prefix + metric, RunningMean()).add(value.per_sample)
                if extractor is not None and row == "frame_prediction":
                    for name, video in (("real", truth), ("pred", pred), ("recon", recon)):
                        features[name].append(extractor(video))
                bar.update(truth.shape[0])
            if real_scores is not None:
                real_scores.add(truth, recon, labels)
                bar.update(truth.shape[0])
        tasks: dict[str, dict[str, Any]] = {}
        frames, (height, width) = engine.num_frames, engine.frame_size
        y0, x0, y1, x1 = central_box(height, width)
        sizes = {"p": frames - c, "c": c, "m": frames - 2, "h": y1 - y0, "w": x1 - x0}
        for row in clip_rows:
            name, region, baseline = CLIP_ROWS[row]
            tasks[row] = {
                "name": name,
                "code": get_task(row).code,
                "scored_on": region.format(**sizes),
                "baseline": baseline,
                "num_clips": count,
                **{key: mean.value() for key, mean in means[row].items()},
            }
        if "frame_prediction" in tasks:
            tasks["frame_prediction"]["num_cond_frames"] = c
            if extractor is not None:
                real = torch.cat(features["real"])
                tasks["frame_prediction"]["fvd"] = frechet_distance_from_features(
                    real, torch.cat(features["pred"])
                )
                tasks["frame_prediction"]["tokenizer_fvd"] = frechet_distance_from_features(
                    real, torch.cat(features["recon"])
                )
                tasks["frame_prediction"]["fvd_i3d"] = extractor.source
        for row in class_rows:
            per_class = samples_per_class if row == "image_generation" else clips_per_class
            tasks[row] = generation_row(engine, row, classifier, per_class, batch_size, options, bar)
            tasks[row].update(real_scores.record(row))
    geometry = engine.geometry
    return {
        "transformer_eval": {
            "num_clips": count,
            "window": {
                "num_frames": geometry.num_frames,
                "height": geometry.height,
                "width": geometry.width,
                "fps": geometry.fps,
            },
            "sampling": dataclasses.asdict(options),  # the class rows'
            "conditioned_sampling": dataclasses.asdict(conditioned_options),  # the clip rows'
            "trained_tasks": dict(engine.trained.weights),
            "tasks": tasks,
            "not_trained": not_trained,
            "skipped": skipped,
            "classifier": classifier_record,
        }
    }


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def _pair(top1: float | None, top2: float | None) -> str:
    return "-" if top1 is None else f"{100 * top1:.0f}% / {100 * top2:.0f}%"


def _decoding(options: dict[str, Any]) -> str:
    """``"12 sampling steps at temperature 1"`` from a ``SamplingOptions`` dict."""
    steps, temperature = options["steps"], options["temperature"]
    return f"{steps} sampling step{'' if steps == 1 else 's'} at temperature {temperature:g}"


def format_transformer_table(result: dict) -> str:
    """Markdown tables of :func:`evaluate_transformer`'s result: one row per task."""
    m = result["transformer_eval"]
    w = m["window"]
    lines = [
        f"transformer on {m['num_clips']} held-out clips of {w['num_frames']}x{w['height']}x{w['width']}, "
        f"{_decoding(m.get('conditioned_sampling', m['sampling']))} "
        f"(generation: {_decoding(m['sampling'])}); known pixels pasted back, scores over the generated "
        "region only",
    ]
    clip = {k: v for k, v in m["tasks"].items() if k in CLIP_ROWS}
    if clip:
        lines += [
            "",
            "| task | scored on | baseline | PSNR (dB) model | baseline | baseline through the tokenizer "
            "| tokenizer (ceiling) | SSIM model | baseline | baseline through the tokenizer | tokenizer (ceiling) |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in clip.values():
            lines.append(
                f"| {row['name']} ({row['code']}) | {row['scored_on']} | {row['baseline']} | "
                + " | ".join(_num(row[p + "psnr"], 2) for p in METHODS)
                + " | "
                + " | ".join(_num(row[p + "ssim"], 3) for p in METHODS)
                + " |"
            )
        fp = clip.get("frame_prediction", {})
        if "fvd" in fp:
            lines.append(f"\nframe prediction FVD {fp['fvd']:.1f} (tokenizer {fp['tokenizer_fvd']:.1f})")
    gen = {k: v for k, v in m["tasks"].items() if k in CLASS_ROWS}
    if gen:
        lines += [
            "",
            "| task | samples | requested class (top-1 / top-2) | chance | tokenizer (ceiling) "
            "| classifier on real frames | distinct outputs | most common answer |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in gen.values():
            lines.append(
                f"| {row['name']} ({row['code']}) | {row['num_samples']} ({row['samples_per_class']} per class) | "
                f"{_pair(row['accuracy'], row['top2_accuracy'])} | {100 * row['chance']:.0f}% | "
                f"{_pair(row['tokenizer_accuracy'], row['tokenizer_top2_accuracy'])} | "
                f"{_pair(row['real_accuracy'], row['real_top2_accuracy'])} | "
                f"{100 * row['distinct_fraction']:.0f}% | "
                f"{row['most_common_answer']} ({100 * row['most_common_answer_share']:.0f}%) |"
            )
    notes = []
    if m["not_trained"]:
        notes.append(f"not trained (no row): {', '.join(m['not_trained'])}")
    for row, reason in m["skipped"].items():
        notes.append(f"{row} skipped: {reason}")
    c = m.get("classifier")
    if c and gen:
        made = "cached" if c.get("cached") else f"trained in {c['train_seconds']} s"
        notes.append(
            f"classifier: {c['architecture']}, {c['train_frames']} real frames of "
            f"{c['description']['train_data']}; held-out top-1 / top-2 "
            f"{_pair(c['held_out_accuracy'], c['held_out_top2_accuracy'])} on {c['held_out_frames']} frames "
            f"({made}, seed {c['seed']})"
        )
    if gen:
        notes.append(
            f"distinct outputs: samples of a class not within {DUPLICATE_PSNR_DB:g} dB PSNR of an earlier one; "
            "most common answer: the class the classifier gave most often over all samples, with its share "
            "(one class for every sample = collapse to what it sees as that class; confusion matrix in the JSON)"
        )
    return "\n".join(lines + ([""] + notes if notes else []))
