"""VideoGenPipeline on tiny random exported models: lengths, sizes, pasting, sliding, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_helpers import NUM_CLASSES, SIZE, WINDOW, export_tiny_models, single_thread, smooth_frames

from videogen.errors import UserError
from videogen.inference.frames import apply_fit, plan_fit, resample_indices
from videogen.inference.sampling import SamplingOptions
from videogen.inference.showcase import run_showcase
from videogen.pipeline import VideoGenPipeline
from videogen.tokenizer import VideoTokenizer
from videogen.video_io import read_image, read_video, to_float_video, to_uint8_frames

FAST = {"steps": 4}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    yield from single_thread()


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return export_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def pipe(exports):
    messages: list[str] = []
    pipe = VideoGenPipeline.from_pretrained(*exports, device="cpu", log=messages.append)
    pipe.messages = messages
    return pipe


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """12 frames of 40 x 48: not the model's size, so every call resizes and crops."""
    return smooth_frames(12, 40, 48)


def test_geometry_from_the_export(pipe) -> None:
    assert pipe.num_frames == WINDOW
    assert pipe.frame_size == (SIZE, SIZE)
    assert pipe.fps is None
    assert pipe.num_classes == NUM_CLASSES


@pytest.mark.parametrize("num_frames", [5, 9, 17, 21])
def test_predict_sliding_gives_requested_length(pipe, clip, num_frames) -> None:
    out = pipe.predict(clip, 3, num_frames, **FAST)
    assert out.dtype == np.uint8 and out.shape == (num_frames, SIZE, SIZE, 3)


def test_predict_pastes_the_resized_condition_frames(pipe, clip) -> None:
    pipe.messages.clear()
    out = pipe.predict(clip, 5, 17, **FAST)
    fitted = apply_fit(clip, plan_fit((40, 48), (SIZE, SIZE), "crop"))
    np.testing.assert_array_equal(out[:5], fitted[:5])
    assert not np.array_equal(out[5:9], fitted[5:9])  # the rest is the random model's own
    assert len(pipe.messages) == 1 and "40x48 -> 32x32" in pipe.messages[0], pipe.messages


def test_predict_without_paste_returns_the_model_reconstruction(pipe, clip) -> None:
    out = pipe.predict(clip, 5, 9, paste_condition=False, seed=3, **FAST)
    # the same first window, decoded by hand with the same seed
    engine = pipe.engine
    fitted = apply_fit(clip[:5], plan_fit((40, 48), (SIZE, SIZE), "crop"))
    options = SamplingOptions(seed=3, **FAST)
    window_input = to_float_video(np.concatenate([fitted, np.repeat(fitted[-1:], 4, axis=0)]))[None]
    window = engine.sample_window(
        "frame_prediction",
        window_input,
        engine.class_ids(None, 1),
        options,
        options.generator(),
        num_cond_frames=5,
    )
    expected = to_uint8_frames(window.video[0])
    np.testing.assert_array_equal(out, expected)
    assert not np.array_equal(out[:5], fitted)


def test_sliding_windows_are_conditioned_on_the_last_output_frames(pipe, clip, monkeypatch) -> None:
    engine = pipe.engine
    calls = []
    original = engine.sample_window

    def spy(task, video, *args, **kwargs):
        window = original(task, video, *args, **kwargs)
        calls.append((video.clone(), window.video.clone(), kwargs))
        return window

    monkeypatch.setattr(engine, "sample_window", spy)
    out = pipe.predict(clip, 5, 17, paste_condition=False, **FAST)
    assert len(calls) == 3  # 9 frames, then +4, then +4
    expected = to_float_video(out).unsqueeze(0)
    for i, (video, _, kwargs) in enumerate(calls[1:], start=1):
        assert kwargs["num_cond_frames"] == 5
        end = WINDOW + 4 * (i - 1)  # frames in the output before window i
        torch.testing.assert_close(video[:, :, :5], expected[:, :, end - 5 : end], atol=1 / 127.5, rtol=0)


def test_the_tasks_given_part_of_the_video_decode_with_their_own_defaults(
    clip, tmp_path, monkeypatch
) -> None:
    greedy = {"steps": 1, "temperature": 0.0}
    sampling = {"steps": 3, "temperature": 1.0, "choice_temperature": 4.5, "conditioned": greedy}
    pipe = VideoGenPipeline.from_pretrained(*export_tiny_models(tmp_path, sampling=sampling), device="cpu")
    used: list[tuple[str, SamplingOptions]] = []
    original = pipe.engine.sample_window

    def spy(task, video, class_ids, options, *args, **kwargs):
        used.append((task, options))
        return original(task, video, class_ids, options, *args, **kwargs)

    monkeypatch.setattr(pipe.engine, "sample_window", spy)

    def decoding(call) -> list[tuple[str, int, float]]:
        used.clear()
        call()
        return [(task, options.steps, options.temperature) for task, options in used]

    assert decoding(lambda: pipe.predict(clip, 5, WINDOW)) == [("frame_prediction", 1, 0.0)]
    assert decoding(lambda: pipe.interpolate(clip[0], clip[-1])) == [("interpolation", 1, 0.0)]
    assert decoding(lambda: pipe.inpaint(clip[:WINDOW], (8, 8, 24, 24))) == [("inpaint", 1, 0.0)]
    assert decoding(lambda: pipe.outpaint(clip[:WINDOW], "central")) == [("outpaint_central", 1, 0.0)]
    assert decoding(lambda: pipe.generate(0, 1)) == [("image_generation", 3, 1.0)]  # generation samples
    assert decoding(lambda: pipe.predict(clip, 5, WINDOW, steps=2)) == [("frame_prediction", 2, 0.0)]
    assert decoding(lambda: pipe.generate(0, 1, temperature=0.5)) == [("image_generation", 3, 0.5)]
    # an export without them decodes every task alike
    plain = VideoGenPipeline.from_pretrained(*export_tiny_models(tmp_path / "plain"), device="cpu")
    assert plain.sampling_options(conditioned=True) == plain.sampling_options() == SamplingOptions(steps=12)


def test_seed_makes_outputs_reproducible(pipe, clip) -> None:
    a = pipe.predict(clip, 1, 9, seed=7, **FAST)
    b = pipe.predict(clip, 1, 9, seed=7, **FAST)
    c = pipe.predict(clip, 1, 9, seed=8, **FAST)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("num_frames", [3, 5, 9])
def test_interpolate_keeps_both_ends(pipe, clip, num_frames) -> None:
    out = pipe.interpolate(clip[0], clip[-1], num_frames, **FAST)
    fitted = apply_fit(clip[[0, -1]], plan_fit((40, 48), (SIZE, SIZE), "crop"))
    assert out.shape == (num_frames, SIZE, SIZE, 3)
    np.testing.assert_array_equal(out[0], fitted[0])
    np.testing.assert_array_equal(out[-1], fitted[1])


def test_inpaint_keeps_pixels_outside_the_box_in_every_window(pipe) -> None:
    video = smooth_frames(12, SIZE, SIZE, seed=2)  # 12 frames: two windows, the second padded
    result = pipe.inpaint(video, (8, 4, 20, 28), output="result", **FAST)
    out = result.frames
    assert out.shape == video.shape
    outside = np.ones(video.shape[:3], dtype=bool)
    outside[:, 8:20, 4:28] = False
    np.testing.assert_array_equal(out[outside], video[outside])
    assert not np.array_equal(out[:, 8:20, 4:28], video[:, 8:20, 4:28])
    assert result.truth is not None and result.side_by_side().shape == (12, SIZE, 3 * SIZE + 4, 3)


def test_inpaint_box_in_input_pixels_is_mapped_through_the_crop(pipe, clip) -> None:
    # 40x48 -> scaled to 32x38, 3 columns cropped on the left: x 20..40 -> 12.8..28.7 -> 12..29
    result = pipe.inpaint(clip, (0, 20, 40, 40), output="result", **FAST)
    known = (result.condition != 128).any(-1)
    assert known[:, :, :12].all() and known[:, :, 29:].all()
    assert not known[:, :, 12:29].any()


@pytest.mark.parametrize(
    "mode, region",
    [("central", (8, 8, 24, 24)), ("vertical", (0, 8, 32, 24)), ("horizontal", (8, 0, 24, 32))],
)
def test_outpaint_extend_places_the_input_in_the_region(pipe, mode, region) -> None:
    y0, x0, y1, x1 = region
    video = smooth_frames(9, y1 - y0, x1 - x0, seed=4)  # already the region's size: no resize
    out = pipe.outpaint(video, mode, **FAST)
    assert out.shape == (9, SIZE, SIZE, 3)
    np.testing.assert_array_equal(out[:, y0:y1, x0:x1], video)


def test_outpaint_keep_redraws_outside_the_region(pipe) -> None:
    video = smooth_frames(9, SIZE, SIZE, seed=5)
    result = pipe.outpaint(video, "central", placement="keep", output="result", **FAST)
    np.testing.assert_array_equal(result.frames[:, 8:24, 8:24], video[:, 8:24, 8:24])
    assert not np.array_equal(result.frames[:, :8], video[:, :8])
    np.testing.assert_array_equal(result.truth, video)


@pytest.mark.parametrize("num_frames", [1, 9, 13])
def test_generate_lengths(pipe, num_frames) -> None:
    out = pipe.generate(class_id=2, num_frames=num_frames, **FAST)
    assert out.shape == (num_frames, SIZE, SIZE, 3) and out.dtype == np.uint8
    assert pipe.generate(num_frames=1, **FAST).shape == (1, SIZE, SIZE, 3)


def test_showcase_writes_every_use(pipe, clip, tmp_path) -> None:
    paths = run_showcase(pipe, clip, tmp_path, steps=2, class_id=1)
    frames = {name: read_video(path) for name, path in paths.items() if path.suffix == ".gif"}
    for name, count in {
        "predict": 9,
        "interpolate": 9,
        "inpaint": 12,
        "outpaint": 12,
        "generate.gif": 9,
    }.items():
        assert frames[name].shape == (count, SIZE, SIZE, 3), name
    for name in ("predict", "interpolate", "inpaint", "outpaint"):  # given | output | truth
        assert frames[f"{name}.sbs"].shape[1:] == (SIZE, 3 * SIZE + 4, 3), name
    assert read_image(paths["generate.png"]).shape == (SIZE, SIZE, 3)


def test_bad_inputs_raise_user_errors(pipe, clip, exports) -> None:
    cases = {
        "0 condition frames": lambda: pipe.predict(clip, 0, 9),
        "condition frames >= window": lambda: pipe.predict(clip, WINDOW, 17),
        "output not longer than condition": lambda: pipe.predict(clip, 5, 5),
        "input shorter than condition": lambda: pipe.predict(clip[:2], 5, 9),
        "box outside the frame": lambda: pipe.inpaint(clip, (0, 0, 50, 10)),
        "box in the cropped-away border": lambda: pipe.inpaint(clip, (0, 0, 40, 2)),
        "empty box": lambda: pipe.inpaint(clip, (5, 5, 5, 9)),
        "bad outpaint mode": lambda: pipe.outpaint(clip, "diagonal"),
        "dynamic with extend": lambda: pipe.outpaint(clip, "dynamic"),
        "class out of range": lambda: pipe.generate(class_id=NUM_CLASSES),
        "negative class": lambda: pipe.generate(class_id=-1),
        "interpolate too long": lambda: pipe.interpolate(clip[0], clip[1], WINDOW + 1),
        "unknown sampling option": lambda: pipe.generate(stepz=3),
        "bad steps": lambda: pipe.generate(steps=0),
        "not uint8": lambda: pipe.predict(clip.astype(np.float32), 1, 9),
        "tokenizer as transformer": lambda: VideoGenPipeline.from_pretrained(exports[0], exports[0]),
        "transformer as tokenizer": lambda: VideoGenPipeline.from_pretrained(exports[1], exports[1]),
    }
    for name, call in cases.items():
        with pytest.raises(UserError):
            call()
            pytest.fail(f"no UserError for: {name}")


def test_tokenizer_with_another_codebook_size_is_refused(exports, tmp_path) -> None:
    VideoTokenizer.from_preset("tiny", base_channels=8, num_groups=4, lfq={"bits": 5}).save_pretrained(
        tmp_path
    )
    with pytest.raises(UserError, match="32 codes"):
        VideoGenPipeline.from_pretrained(tmp_path, exports[1])


def test_fit_and_resample_helpers() -> None:
    fit = plan_fit((40, 80), (32, 32), "crop")
    assert fit.resized == (32, 64) and (fit.top, fit.left) == (0, 16)
    assert fit.map_box((0, 40, 40, 60)) == (0, 16, 32, 32)
    assert apply_fit(np.zeros((2, 40, 80, 3), np.uint8), fit).shape == (2, 32, 32, 3)
    assert plan_fit((40, 80), (32, 32), "stretch").resized == (32, 32)
    np.testing.assert_array_equal(resample_indices(10, 30.0, 10.0), [0, 3, 6, 9])
    np.testing.assert_array_equal(resample_indices(4, None, 10.0), [0, 1, 2, 3])
    with pytest.raises(UserError):
        plan_fit((40, 80), (32, 32), "squash")
