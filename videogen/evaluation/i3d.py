"""FVD: I3D features of real and generated clips, compared by Frechet distance.

The feature extractor is a TorchScript file the user supplies (nothing is downloaded). The expected
file is StyleGAN-V's ``i3d_torchscript.pt``, a port of the TF-Hub Kinetics-400 I3D used by the
original FVD code; it is called as ``model(videos, rescale=False, resize=False, return_features=True)``
on float videos (B, 3, T, 224, 224) in [-1, 1] and returns the 400-d pre-softmax logits (B, 400).
Any other module whose ``forward`` lacks those keywords is called as ``model(videos)`` on the same
input and must return features (B, ...) (flattened to (B, D)).

We do the resize ourselves, so the protocol is explicit: clamp to [-1, 1], resize every frame to
224x224 (no crop, aspect ratio not kept) with ``resize_mode``:

* ``"bilinear"``: ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``,
  half-pixel centers, no antialiasing (the common PyTorch FVD ports);
* ``"tf1_bilinear"``: TF1 ``tf.image.resize_bilinear`` (no half-pixel centers), as in the original
  TF FVD code and MAGVIT v1. The two give slightly different FVD; report which one you used.

FVD is biased in the number of clips and depends on the clip length: compare numbers only at equal
counts and frames (StyleGAN-V ``fvd2048_16f``: 2048 vs 2048 clips of 16 frames). I3D needs at least
9 frames; 16 is standard.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from tqdm import tqdm

from videogen.errors import UserError
from videogen.evaluation.frechet import frechet_distance_from_features

I3D_RESOLUTION = 224
STYLEGAN_V_KWARGS = {"rescale": False, "resize": False, "return_features": True}
RESIZE_MODES = ("bilinear", "tf1_bilinear")


def load_torchscript(path: str | Path, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """Load a TorchScript feature extractor from ``path`` (eval mode, on ``device``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"I3D file '{path}' not found (or not a file); download StyleGAN-V's i3d_torchscript.pt "
            "yourself and pass its path"
        )
    try:
        # the file format is TorchScript, so torch.jit.load it is; its deprecation warning is not news
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*torch.jit.load.* is deprecated", category=DeprecationWarning
            )
            model = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError) as error:
        reason = str(error).split(".")[0][:100]
        raise UserError(
            f"I3D file '{path}' is not a TorchScript archive ({reason}); "
            "pass StyleGAN-V's i3d_torchscript.pt or another torch.jit.save'd module"
        ) from error
    return model.eval()


def _forward_argument_names(model: torch.nn.Module) -> set[str]:
    if isinstance(model, torch.jit.ScriptModule):
        return {argument.name for argument in model.forward.schema.arguments}
    return set(inspect.signature(model.forward).parameters)


def _tf1_bilinear_matrix(in_size: int, out_size: int, dtype: torch.dtype) -> torch.Tensor:
    """(out, in) weights of TF1 resize_bilinear (align_corners=False, half_pixel_centers=False)."""
    source = torch.arange(out_size, dtype=torch.float64) * (in_size / out_size)
    low = source.floor().long().clamp(max=in_size - 1)
    high = (low + 1).clamp(max=in_size - 1)
    frac = source - low.double()
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    matrix.index_put_((rows, low), 1.0 - frac, accumulate=True)
    matrix.index_put_((rows, high), frac, accumulate=True)
    return matrix.to(dtype)


def resize_frames(videos: torch.Tensor, size: int = I3D_RESOLUTION, mode: str = "bilinear") -> torch.Tensor:
    """Resize every frame: (B, C, T, H, W) -> (B, C, T, size, size); ``mode`` as in the module doc."""
    if mode not in RESIZE_MODES:
        raise UserError(f"resize mode '{mode}' is unknown; choose from {', '.join(RESIZE_MODES)}")
    batch, _, _, height, width = videos.shape
    if (height, width) == (size, size):
        return videos
    if mode == "tf1_bilinear":
        rows = _tf1_bilinear_matrix(height, size, videos.dtype).to(videos.device)
        cols = _tf1_bilinear_matrix(width, size, videos.dtype).to(videos.device)
        return torch.einsum("yh,bcthw,xw->bctyx", rows, videos, cols)
    frames = rearrange(videos, "b c t h w -> (b t) c h w")
    frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)
    return rearrange(frames, "(b t) c h w -> b c t h w", b=batch)


class I3DFeatures:
    """Clip features for FVD: videos (B, 3, T, H, W) in [-1, 1] -> float32 CPU features (B, D).

    ``model`` is a path to a TorchScript file (see the module doc) or a module already in memory.
    ``call`` records how it is called: ``"stylegan_v"`` (with ``STYLEGAN_V_KWARGS``) or ``"plain"``.
    """

    def __init__(
        self,
        model: str | Path | torch.nn.Module,
        device: str | torch.device = "cpu",
        resize_mode: str = "bilinear",
        batch_size: int = 8,
    ) -> None:
        if resize_mode not in RESIZE_MODES:
            raise UserError(f"resize mode '{resize_mode}' is unknown; choose from {', '.join(RESIZE_MODES)}")
        self.device = torch.device(device)
        self.source = str(model) if isinstance(model, (str, Path)) else type(model).__name__
        if isinstance(model, (str, Path)):
            model = load_torchscript(model, self.device)
        self.model = model.to(self.device).eval()
        self.call = "stylegan_v" if set(STYLEGAN_V_KWARGS) <= _forward_argument_names(self.model) else "plain"
        self.resize_mode = resize_mode
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor) -> torch.Tensor:
        if videos.dim() != 5 or videos.shape[1] != 3:
            raise UserError(
                f"FVD: expected videos (B, 3, T, H, W) in [-1, 1]; got shape {tuple(videos.shape)}"
            )
        features = []
        for start in range(0, videos.shape[0], self.batch_size):
            chunk = videos[start : start + self.batch_size].to(self.device, torch.float32).clamp(-1.0, 1.0)
            chunk = resize_frames(chunk, I3D_RESOLUTION, self.resize_mode)  # (b, 3, T, 224, 224)
            if self.call == "stylegan_v":
                output = self.model(chunk, **STYLEGAN_V_KWARGS)
            else:
                output = self.model(chunk)
            if not isinstance(output, torch.Tensor) or output.dim() < 2 or output.shape[0] != chunk.shape[0]:
                got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                raise UserError(
                    f"FVD feature extractor '{self.source}' returned {got} for {chunk.shape[0]} clips; "
                    "it must return features (B, D)"
                )
            features.append(output.reshape(output.shape[0], -1).float().cpu())
        return torch.cat(features)


def _batches(videos: Iterable[torch.Tensor] | torch.Tensor) -> Iterator[torch.Tensor]:
    if isinstance(videos, torch.Tensor):
        yield videos
    else:
        yield from videos


def _collect_features(
    videos: Iterable[torch.Tensor] | torch.Tensor,
    extractor: I3DFeatures,
    num_videos: int | None,
    min_frames: int,
    name: str,
    progress: bool,
) -> tuple[torch.Tensor, int, tuple[int, int]]:
    """Features (N, D) of up to ``num_videos`` clips; also their frame count and (H, W)."""
    features: list[torch.Tensor] = []
    count, frames, resolution = 0, None, None
    with tqdm(total=num_videos, desc=f"FVD {name}", unit="clip", disable=not progress) as bar:
        for batch in _batches(videos):
            if batch.dim() != 5 or batch.shape[1] != 3:
                raise UserError(
                    f"FVD {name} videos: expected (B, 3, T, H, W) in [-1, 1]; got {tuple(batch.shape)}"
                )
            if frames is None:
                frames, resolution = batch.shape[2], (batch.shape[3], batch.shape[4])
                if frames < min_frames:
                    raise UserError(
                        f"FVD {name} clips have {frames} frames; I3D needs >= {min_frames} (16 is standard)"
                    )
            elif batch.shape[2] != frames:
                raise UserError(
                    f"FVD {name} clips have {batch.shape[2]} and {frames} frames; use one clip length"
                )
            if num_videos is not None:
                batch = batch[: num_videos - count]
            features.append(extractor(batch))
            count += batch.shape[0]
            bar.update(batch.shape[0])
            if num_videos is not None and count >= num_videos:
                break
    if num_videos is not None and count < num_videos:
        raise UserError(f"FVD: asked for {num_videos} {name} clips but got only {count}; lower num_videos")
    if count < 2:
        raise UserError(f"FVD: got {count} {name} clips; need at least 2 (2048 is standard)")
    return torch.cat(features), frames, resolution


def compute_fvd(
    real_videos: Iterable[torch.Tensor] | torch.Tensor,
    fake_videos: Iterable[torch.Tensor] | torch.Tensor,
    i3d_path: str | Path | torch.nn.Module,
    *,
    num_videos: int | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    resize_mode: str = "bilinear",
    min_frames: int = 9,
    progress: bool = True,
) -> dict:
    """FVD between two sets of clips, with the protocol that produced it.

    real_videos, fake_videos: batches (B, 3, T, H, W) in [-1, 1] (an iterable of them, or one tensor);
    both sides must have the same T. ``num_videos``: use exactly that many clips per side (error if
    fewer); None uses all. ``i3d_path``: the TorchScript file (or a module in memory).

    Returns a JSON-ready dict: ``fvd`` (float), ``num_real``, ``num_fake``, ``num_frames``,
    ``real_resolution`` and ``fake_resolution`` ([H, W] before resizing), ``i3d_resolution`` (224),
    ``resize_mode``, ``feature_dim``, ``i3d`` (path), ``i3d_call`` ("stylegan_v" | "plain").
    """
    extractor = I3DFeatures(i3d_path, device=device, resize_mode=resize_mode, batch_size=batch_size)
    real, real_frames, real_resolution = _collect_features(
        real_videos, extractor, num_videos, min_frames, "real", progress
    )
    fake, fake_frames, fake_resolution = _collect_features(
        fake_videos, extractor, num_videos, min_frames, "fake", progress
    )
    if real_frames != fake_frames:
        raise UserError(
            f"FVD: real clips have {real_frames} frames, fake clips {fake_frames}; use one clip length"
        )
    return {
        "fvd": frechet_distance_from_features(real, fake),
        "num_real": real.shape[0],
        "num_fake": fake.shape[0],
        "num_frames": real_frames,
        "real_resolution": list(real_resolution),
        "fake_resolution": list(fake_resolution),
        "i3d_resolution": I3D_RESOLUTION,
        "resize_mode": resize_mode,
        "feature_dim": real.shape[1],
        "i3d": extractor.source,
        "i3d_call": extractor.call,
    }
