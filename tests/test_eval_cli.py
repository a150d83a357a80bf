"""``run.sh eval transformer | tokenizer`` on a real manifest of mp4 clips with tiny random exported models."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from inference_helpers import SIZE, WINDOW, export_tiny_models, single_thread, write_manifest_clips

from videogen.cli import main
from videogen.data.video_dataset import VideoClipDataset
from videogen.evaluation import copy_last_frame, frame_prediction_scores, psnr
from videogen.inference.evaluate_prediction import evaluate_frame_prediction
from videogen.inference.sampling import SamplingOptions
from videogen.pipeline import VideoGenPipeline

KEYS = (
    "psnr",
    "ssim",
    "copy_last_frame_psnr",
    "copy_last_frame_ssim",
    "tokenizer_psnr",
    "tokenizer_ssim",
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    yield from single_thread()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    tokenizer, transformer = export_tiny_models(root / "models")
    manifest = write_manifest_clips(root / "data", count=3, num_frames=12)
    # a stand-in feature extractor for FVD: TorchScript like the real I3D file
    with warnings.catch_warnings():  # torch.jit is deprecated, but I3D files are TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(FakeI3D()).save(str(root / "i3d.pt"))
    return {"tokenizer": tokenizer, "transformer": transformer, "manifest": manifest, "i3d": root / "i3d.pt"}


class FakeI3D(torch.nn.Module):
    """(B, 3, T, 224, 224) -> (B, 2): mean and std of each clip (fewer dims than clips: full-rank covariance)."""

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        flat = videos.flatten(1)
        return torch.stack([flat.mean(dim=1), flat.std(dim=1)], dim=1)


def test_eval_transformer_writes_json_with_the_documented_keys(setup, tmp_path, capsys) -> None:
    out = tmp_path / "metrics.json"
    args = ["eval", "transformer", "--data", setup["manifest"], "--tokenizer", setup["tokenizer"]]
    args += [
        "--transformer",
        setup["transformer"],
        "--cond-frames",
        "5",
        "--steps",
        "3",
        "--i3d",
        setup["i3d"],
    ]
    assert main([*map(str, args), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())["frame_prediction"]
    for key in (*KEYS, "fvd", "tokenizer_fvd"):
        assert math.isfinite(metrics[key]), key
    assert metrics["num_clips"] == 3 and metrics["num_cond_frames"] == 5 and metrics["num_frames"] == WINDOW
    assert len(metrics["psnr_per_frame"]) == WINDOW - 5
    assert metrics["condition_frames_in_scores"] is False
    table = capsys.readouterr().out
    assert "copy last frame" in table and "tokenizer (ceiling)" in table and "FVD" in table


def test_frame_prediction_scores_match_a_direct_computation(setup) -> None:
    pipe = VideoGenPipeline.from_pretrained(setup["tokenizer"], setup["transformer"], device="cpu")
    result = evaluate_frame_prediction(
        pipe.engine,
        setup["manifest"],
        num_cond_frames=1,
        limit=2,
        options=SamplingOptions(steps=2),
        progress=False,
    )["frame_prediction"]
    dataset = VideoClipDataset(setup["manifest"], num_frames=WINDOW, resolution=SIZE, train=False)
    truth = torch.stack([dataset[i]["video"] for i in range(2)])  # the first two clips, centered windows
    copy = frame_prediction_scores(copy_last_frame(truth, 1), truth, 1)
    recon = pipe.engine.reconstruct(truth)
    assert result["num_clips"] == 2
    assert result["copy_last_frame_psnr"] == pytest.approx(float(copy["psnr"].per_sample.mean()), rel=1e-5)
    assert result["copy_last_frame_ssim"] == pytest.approx(float(copy["ssim"].per_sample.mean()), rel=1e-5)
    expected = psnr(recon[:, :, 1:], truth[:, :, 1:]).per_sample.mean()
    assert result["tokenizer_psnr"] == pytest.approx(float(expected), rel=1e-5)


def test_eval_tokenizer(setup, tmp_path, capsys) -> None:
    out = tmp_path / "tok.json"
    args = [
        "eval",
        "tokenizer",
        "--data",
        setup["manifest"],
        "--tokenizer",
        setup["tokenizer"],
        "--limit",
        "2",
    ]
    args += ["--num-frames", "5", "--resolution", "16", "--out", out]
    assert main(list(map(str, args))) == 0
    metrics = json.loads(out.read_text())["tokenizer"]
    assert metrics["num_clips"] == 2 and metrics["latent_shape"] == [2, 4, 4]
    assert math.isfinite(metrics["psnr"]) and -1 <= metrics["ssim"] <= 1
    assert metrics["codebook"]["num_tokens"] == 2 * 2 * 4 * 4
    assert 0 < metrics["codebook"]["usage_fraction"] <= 1
    assert "perplexity" in capsys.readouterr().out


@pytest.mark.parametrize("target", ["transformer", "tokenizer"])
def test_eval_missing_data_is_a_user_error(setup, tmp_path, capsys, target) -> None:
    args = ["eval", target, "--data", str(tmp_path / "none.jsonl"), "--tokenizer", str(setup["tokenizer"])]
    if target == "transformer":
        args += ["--transformer", str(setup["transformer"])]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.jsonl" in err[0] and "Traceback" not in err[0]
