"""``run.sh eval transformer | tokenizer`` on a real manifest of mp4 clips with tiny random exported models:
one row per trained task next to its baseline and the tokenizer ceiling, the class rows judged by a
classifier trained (and cached) on the fly, untrained tasks refused."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from inference_helpers import (
    NUM_CLASSES,
    SIZE,
    WINDOW,
    export_tiny_models,
    single_thread,
    write_manifest_clips,
)

from videogen.cli import main
from videogen.data.video_dataset import VideoClipDataset
from videogen.evaluation import copy_last_frame, frame_prediction_scores, linear_blend, psnr, region_scores
from videogen.evaluation.evaluate_prediction import evaluate_frame_prediction
from videogen.evaluation.evaluate_transformer import evaluate_transformer
from videogen.inference.sampling import SamplingOptions
from videogen.pipeline import VideoGenPipeline

ROW_KEYS = (
    "psnr",
    "ssim",
    "baseline_psnr",
    "baseline_ssim",
    "baseline_tokenizer_psnr",
    "baseline_tokenizer_ssim",
    "tokenizer_psnr",
    "tokenizer_ssim",
)
CLIP_ROWS = ("frame_prediction", "interpolation", "inpaint_central", "outpaint_central")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    yield from single_thread()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    tokenizer, transformer = export_tiny_models(root / "models")
    manifest = write_manifest_clips(root / "data", count=3, num_frames=12)
    labelled = write_manifest_clips(root / "labelled", count=NUM_CLASSES, num_frames=12)  # labels 0..3
    # a stand-in feature extractor for FVD: TorchScript like the real I3D file
    with warnings.catch_warnings():  # torch.jit is deprecated, but I3D files are TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(FakeI3D()).save(str(root / "i3d.pt"))
    narrow = export_tiny_models(root / "narrow", tasks={"frame_prediction": 1.0})
    return {
        "tokenizer": tokenizer,
        "transformer": transformer,
        "manifest": manifest,
        "labelled": labelled,
        "i3d": root / "i3d.pt",
        "narrow": narrow,
    }


class FakeI3D(torch.nn.Module):
    """(B, 3, T, 224, 224) -> (B, 2): mean and std of each clip (fewer dims than clips: full-rank covariance)."""

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        flat = videos.flatten(1)
        return torch.stack([flat.mean(dim=1), flat.std(dim=1)], dim=1)


def test_eval_transformer_writes_one_row_per_trained_task(setup, tmp_path, capsys) -> None:
    out = tmp_path / "eval" / "metrics.json"
    args = ["eval", "transformer", "--data", setup["labelled"], "--tokenizer", setup["tokenizer"]]
    args += ["--transformer", setup["transformer"], "--steps", "2", "--i3d", setup["i3d"]]
    args += ["--classifier-data", setup["labelled"], "--samples-per-class", "2", "--clips-per-class", "1"]
    assert main([*map(str, args), "--out", str(out)]) == 0
    result = json.loads(out.read_text())["transformer_eval"]
    tasks = result["tasks"]
    assert set(tasks) == {*CLIP_ROWS, "image_generation", "class_generation"} and not result["not_trained"]
    for row in CLIP_ROWS:
        for key in ROW_KEYS:
            assert math.isfinite(tasks[row][key]), (row, key)
        assert tasks[row]["num_clips"] == NUM_CLASSES and tasks[row]["baseline"]
    assert tasks["frame_prediction"]["num_cond_frames"] == 5 and math.isfinite(
        tasks["frame_prediction"]["fvd"]
    )
    images, clips = tasks["image_generation"], tasks["class_generation"]
    assert images["num_samples"] == 2 * NUM_CLASSES and clips["num_samples"] == NUM_CLASSES
    for row in (images, clips):
        assert 0 <= row["accuracy"] <= row["top2_accuracy"] <= 1 and 0 < row["distinct_fraction"] <= 1
        assert row["chance"] == 1 / NUM_CLASSES and row["real_clips"] == NUM_CLASSES
        confusion = np.array(row["confusion"])  # [requested][answer]
        assert (confusion.sum(axis=1) == row["samples_per_class"]).all()
        assert np.trace(confusion) == round(row["accuracy"] * row["num_samples"])
        answers = confusion.sum(axis=0)
        assert row["most_common_answer_share"] == answers.max() / row["num_samples"]
        assert answers[row["most_common_answer"]] == answers.max()
    classifier = result["classifier"]
    assert classifier["num_classes"] == NUM_CLASSES and 0 <= classifier["held_out_accuracy"] <= 1
    assert len(list((out.parent / "classifier").glob("classifier-*.safetensors"))) == 1  # cached beside
    table = capsys.readouterr().out
    for words in (
        "copy last frame",
        "linear blend",
        "mean colour",
        "edge replicate",
        "chance",
        "distinct",
        "most common answer",
    ):
        assert words in table, words
    assert "frame prediction (FP)" in table and "image generation (IG)" in table


def test_baselines_in_the_rows_match_a_direct_computation(setup) -> None:
    pipe = VideoGenPipeline.from_pretrained(setup["tokenizer"], setup["transformer"], device="cpu")
    result = evaluate_transformer(
        pipe.engine,
        setup["manifest"],
        rows=["FP", "FI"],
        limit=2,
        options=SamplingOptions(steps=1),
        progress=False,
    )["transformer_eval"]["tasks"]
    dataset = VideoClipDataset(setup["manifest"], num_frames=WINDOW, resolution=SIZE, train=False)
    truth = torch.stack([dataset[i]["video"] for i in range(2)])
    copy = frame_prediction_scores(copy_last_frame(truth, 5), truth, 5)
    assert result["frame_prediction"]["baseline_psnr"] == pytest.approx(float(copy["psnr"].per_sample.mean()))
    assert result["frame_prediction"]["baseline_ssim"] == pytest.approx(float(copy["ssim"].per_sample.mean()))
    middle = torch.zeros(2, WINDOW, SIZE, SIZE, dtype=torch.bool)
    middle[:, 1:-1] = True
    blend = region_scores(linear_blend(truth), truth, middle)
    assert result["interpolation"]["baseline_psnr"] == pytest.approx(float(blend["psnr"].per_sample.mean()))
    # where COMMIT's frame prediction starts: the copied frame through the tokenizer
    through = pipe.engine.reconstruct(copy_last_frame(truth, 5))
    start = frame_prediction_scores(torch.cat([truth[:, :, :5], through[:, :, 5:]], 2), truth, 5)
    got = result["frame_prediction"]["baseline_tokenizer_psnr"]
    assert got == pytest.approx(float(start["psnr"].per_sample.mean()), rel=1e-5)
    assert got != pytest.approx(result["frame_prediction"]["baseline_psnr"])


def test_eval_of_an_untrained_task_is_refused(setup, tmp_path, capsys) -> None:
    tokenizer, transformer = setup["narrow"]
    args = ["eval", "transformer", "--data", setup["manifest"], "--tokenizer", tokenizer]
    args += ["--transformer", transformer, "--tasks", "FP,interpolation", "--out", tmp_path / "m.json"]
    assert main(list(map(str, args))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "was not trained for interpolation" in err[0] and "frame_prediction (FP)" in err[0]
    )
    assert not (tmp_path / "m.json").exists()


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
