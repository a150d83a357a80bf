"""Every use of the pipeline on one held-out clip, written as GIFs / PNGs (for the demo's report).

Writes into ``out_dir``:

- ``predict.gif``: the first ``c`` frames condition one window of frame prediction;
- ``interpolate.gif``: the window between the clip's first and last window frame;
- ``inpaint.gif``: the central box (H/4..3H/4 x W/4..3W/4) regenerated in every frame;
- ``outpaint.gif``: only the central box kept, the rest regenerated (``placement="keep"``);
- ``generate.png`` (an image) and ``generate.gif`` (a window), of ``class_id`` when given (the other
  uses go without a class: their tasks are trained without one);

and for the first four a ``<name>.sbs.gif``: what the model was given (gray = unknown) | output | truth.
Each file is written atomically.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from videogen.errors import UserError
from videogen.inference.frames import check_frames
from videogen.inference.output import write_output
from videogen.inference.result import GenerationResult
from videogen.transformer.tasks import central_box


def run_showcase(
    pipe: Any,
    clip: np.ndarray,
    out_dir: str | Path,
    *,
    fps: float | None = None,
    num_cond_frames: int | None = None,
    class_id: int | None = None,
    **sampling: Any,
) -> dict[str, Path]:
    """Run predict, interpolate, inpaint, outpaint and generate with ``pipe`` (a ``VideoGenPipeline``) on
    ``clip`` (uint8 ``(T, H, W, 3)`` at ``fps``, at least one window long after resampling).

    Returns ``{name: path}`` for every file written (``predict``, ``predict.sbs``, ..., ``generate.png``,
    ``generate.gif``). ``sampling``: the pipeline's sampling keyword arguments (``seed``, ``steps``, ...).
    """
    clip = check_frames(clip, "clip")
    out_dir = Path(out_dir)
    window = pipe.num_frames
    c = pipe.engine.default_cond_frames if num_cond_frames is None else num_cond_frames
    common = {"output": "result", **sampling}
    results: dict[str, GenerationResult] = {}
    results["predict"] = pipe.predict(clip, c, window, fps=fps, **common)
    truth = results["predict"].truth
    if truth is None or len(truth) < window:
        raise UserError(f"the showcase clip must hold at least {window} frames at the model's rate")
    interpolated = pipe.interpolate(truth[0], truth[window - 1], window, **common)
    results["interpolate"] = dataclasses.replace(interpolated, truth=truth)
    height, width = clip.shape[1:3]
    results["inpaint"] = pipe.inpaint(clip, central_box(height, width), fps=fps, **common)
    results["outpaint"] = pipe.outpaint(clip, "central", placement="keep", fps=fps, **common)
    paths: dict[str, Path] = {}
    for name, result in results.items():
        paths[name] = write_output(out_dir / f"{name}.gif", result.frames, result.fps)
        paths[f"{name}.sbs"] = write_output(out_dir / f"{name}.sbs.gif", result.side_by_side(), result.fps)
    image = pipe.generate(class_id, 1, **sampling)  # the class is for generation only
    paths["generate.png"] = write_output(out_dir / "generate.png", image)
    generated = pipe.generate(class_id, window, output="result", **sampling)
    paths["generate.gif"] = write_output(out_dir / "generate.gif", generated.frames, generated.fps)
    return paths
