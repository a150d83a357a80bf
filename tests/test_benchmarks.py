"""The prepared GPU check runs where no GPU is: its ``--smoke`` mode, the same code with tiny models on
the CPU, so the script a GPU session depends on cannot rot unnoticed. (No timing is asserted.)"""

from __future__ import annotations

import subprocess
import sys

import pytest
from fault_helpers import ROOT, child_env


@pytest.mark.slow
def test_the_gpu_check_passes_its_smoke_run():
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--smoke", "--steps", "1"]
    env = {**child_env(), "CUDA_VISIBLE_DEVICES": ""}  # the CPU path, even on a machine with a GPU
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout
    for check in (
        "tokenizer train step",
        "tokenizer GAN step",
        "transformer train step",
        "12-step sampling",
        "exports",
    ):
        assert f"| {check} |" in table, table
    assert "FAILED" not in table
    assert "not run: attention 'xformers' needs a CUDA device" in table  # said, not a failure


def test_the_gpu_check_without_a_gpu_is_one_line():
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py")]
    env = {**child_env(), "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine that has one
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: no CUDA GPU here; `./run.sh bench gpu --smoke` runs the same checks on the CPU"
    ]


def test_the_token_diagnostic_prints_its_three_tables(tmp_path):
    """``bench tokens`` on a tiny random export and 2 generated clips: the tables a study reads."""
    from fault_helpers import make_sample
    from inference_helpers import export_tiny_models

    tokenizer, _ = export_tiny_models(tmp_path)
    sample = make_sample(tmp_path)
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_tokens.py"),
        *("--tokenizer", str(tokenizer), "--data", str(sample.val), "--resolution", "32"),
        *("--num-frames", "5", "--start", "4", "--offsets", "0,4", "--bits"),
    ]
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "| 0 | " in out and "| 4 | " in out  # one row per window start
    assert "| latent frame | same id as the previous latent frame | where nothing moved" in out
    assert "| a still video |" in out
    assert out.count("\n| ") >= 2 + 2 + 6  # 2 windows, 2 latent frames, 6 sign bits (+ headers)
    assert "all bits kept:" in out


def test_still_positions_mark_the_tokens_nothing_moved_near():
    """A 4x4 square steps right one pixel per frame in the top-left corner of a 32x32 clip (latent grid
    8x8, 4x time): every position within one token of the squares it covers is moving, the rest still;
    a latent frame whose frames do not move the square is still everywhere."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("bench_tokens", ROOT / "benchmarks" / "bench_tokens.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    clip = torch.zeros(1, 3, 13, 32, 32)  # latents: frame 0 | 1-4 | 5-8 | 9-12
    for frame in range(9):  # moves over frames 0..8, then stays (frames 9-12 equal frame 8)
        x = min(frame, 8)
        clip[:, :, frame, 0:4, x : x + 4] = 1.0
    clip[:, :, 9:] = clip[:, :, 8:9]
    still = bench.still_positions(clip, temporal=4, spatial=4)
    assert still.shape == (1, 4, 8, 8) and not still[:, 0].any()  # latent 0 has no previous frame
    touched = torch.zeros(8, 8, dtype=torch.bool)
    touched[0, 0:4] = True  # the square's columns 0..11 cover token columns 0-2 (3 by frame 8)
    near = torch.nn.functional.max_pool2d(touched.float()[None, None], 3, 1, 1)[0, 0] > 0
    for t in (1, 2):  # the square moves within latent 1 and within latent 2
        assert not still[0, t, 0, 0] and still[0, t, 7, 7] and still[0, t, 3:, :].all()
    assert not still[0, 1, 1, 0] and still[0, 1, 2, 0]  # one token of margin around the moving rows, no more
    assert still[0, 2][~near].all()
    assert not still[0, 3, :2, :4].all()  # latent 3's frames are still, but latent 2's moved (frame 5 -> 8)


def test_the_copy_probe_counts_returned_ids_by_how_common_their_code_is():
    """``bench copy``'s counting on hand-made models: one that returns its input is right everywhere, one
    that always says code 0 only where the input is 0; positions fall in the bucket of their code's count."""
    import importlib.util

    import numpy as np
    import torch

    from videogen.transformer.logits import TokenLogits

    spec = importlib.util.spec_from_file_location("bench_copy", ROOT / "benchmarks" / "bench_copy.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    codes = 8
    tokens = torch.tensor([[[0, 0, 1], [2, 3, 3]]])  # (T'=1, H'=2, W'=3)
    items = [{"tokens": tokens, "task_id": torch.tensor(0), "label": torch.tensor(0)}]
    counts = np.array([5000, 500, 50, 0, 0, 0, 0, 0])  # code 0 common, 1 in 100-999, 2 in 10-99, 3 unseen

    def identity(grid, task, label):
        return TokenLogits((torch.nn.functional.one_hot(grid.reshape(1, -1), codes).float(),), (codes,))

    def always_zero(grid, task, label):
        logits = torch.zeros(1, grid.numel(), codes)
        logits[..., 0] = 1.0
        return TokenLogits((logits,), (codes,))

    by_bucket = {bucket: (n, k) for bucket, n, k in bench.copy_rates(identity, items, counts)}
    assert by_bucket == {
        (0, 0): (2, 2),
        (1, 9): (0, 0),
        (10, 99): (1, 1),
        (100, 999): (1, 1),
        (1000, None): (2, 2),
    }
    by_bucket = {bucket: (n, k) for bucket, n, k in bench.copy_rates(always_zero, items, counts)}
    assert by_bucket == {
        (0, 0): (2, 0),
        (1, 9): (0, 0),
        (10, 99): (1, 0),
        (100, 999): (1, 0),
        (1000, None): (2, 2),
    }


def _bench(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"bench_{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bounds_of_not_predicting_motion_on_a_hand_made_clip():
    """``bench fp_bounds``' oracles: a square crossing a grey frame leaves the median background grey;
    the fade starts at the last frame and ends at the background."""
    import torch

    bench = _bench("fp_bounds")
    clip = torch.full((1, 3, 7, 8, 8), -0.5)
    for t in range(7):
        clip[:, :, t, 2:4, t : t + 2] = 1.0  # a 2x2 square, one pixel right per frame
    background = bench.clip_background(clip)
    assert background.shape == (1, 3, 1, 8, 8)
    torch.testing.assert_close(background, torch.full_like(background, -0.5))
    last = clip[:, :, 3:4]
    fade = bench.fade_into(last, background, 3)
    torch.testing.assert_close(fade[:, :, 0], last[:, :, 0])
    torch.testing.assert_close(fade[:, :, 1], 0.5 * last[:, :, 0] + 0.5 * background[:, :, 0])
    torch.testing.assert_close(fade[:, :, 2], background[:, :, 0])


def test_the_expected_code_averages_each_binary_digit_whatever_the_heads():
    """One head over 4 codes, or one 2-way head per digit, with the same beliefs (code 0 or code 3, half
    each; then surely code 2) give the same digit probabilities, and an LFQ code of 2 channels (+-1)
    averages to 0 where the beliefs are split; ids kept or changed are counted per latent frame."""
    import torch

    from videogen.tokenizer.model import VideoTokenizer
    from videogen.transformer.logits import TokenLogits

    bench = _bench("fp_bounds")
    one_head = torch.log(torch.tensor([[[0.5, 0.0, 0.0, 0.5], [0.0, 0.0, 1.0, 0.0]]]).clamp_min(1e-12))
    low_digit = torch.log(torch.tensor([[[0.5, 0.5], [1.0, 0.0]]]).clamp_min(1e-12))
    high_digit = torch.log(torch.tensor([[[0.5, 0.5], [0.0, 1.0]]]).clamp_min(1e-12))
    expected = torch.tensor([[[0.5, 0.5], [0.0, 1.0]]])  # (B, N, digits), lowest digit first
    torch.testing.assert_close(
        bench.bit_marginals(TokenLogits((one_head,), (4,))), expected, atol=1e-6, rtol=0
    )
    per_digit = TokenLogits((low_digit, high_digit), (2, 2))
    torch.testing.assert_close(bench.bit_marginals(per_digit), expected, atol=1e-6, rtol=0)
    tokenizer = VideoTokenizer.from_preset("tiny", base_channels=8, num_groups=4, lfq={"bits": 2})
    scale = tokenizer.quantizer.code_scale
    codes = bench.expected_codes(per_digit, tokenizer)  # (B, C, N)
    torch.testing.assert_close(codes, torch.tensor([[[0.0, -scale], [0.0, scale]]]), atol=1e-6, rtol=0)
    truth = torch.tensor([[[[1, 2]], [[1, 3]], [[0, 3]]]])  # (B, T'=3, H'=1, W'=2)
    argmax = torch.tensor([[[[1, 2]], [[1, 0]], [[0, 3]]]])
    counts = bench.kept_and_changed(argmax, truth, torch.tensor([False, True, True]))
    assert counts == {
        (1, "kept"): (1, 1),
        (1, "changed"): (1, 0),
        (2, "kept"): (1, 1),
        (2, "changed"): (1, 1),
    }


def test_the_bounds_benchmark_prints_both_tables_for_a_transformer(tmp_path):
    """``bench fp_bounds`` end to end on tiny random exports and 2 generated 9-frame clips."""
    from fault_helpers import make_sample
    from inference_helpers import export_tiny_models

    tokenizer, transformer = export_tiny_models(tmp_path)
    sample = make_sample(tmp_path)
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_fp_bounds.py"),
        *("--tokenizer", str(tokenizer), "--transformer", str(transformer), "--data", str(sample.val)),
        *("--clip-frames", "9", "--cond-frames", "5"),
    ]
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for row in (
        "| copy last frame |",
        "| true background (oracle) |",
        "one pass: expected code |",
        "(ceiling) |",
    ):
        assert row in out, out
    assert "| 2 | changed |" in out and "| 2 | kept |" in out


def test_the_token_motion_grids_move_whole_objects_by_their_velocity():
    """``bench token_motion``: positions reflect at the walls; in a grid with one object, every latent
    frame is the previous one with the object's codes moved by one velocity step (the background stays),
    and frame prediction's condition is latent frames 0-1."""
    import torch

    bench = _bench("token_motion")
    assert bench.positions(0, 1, 5, 2) == [0, 1, 2, 1, 0]
    assert bench.positions(1, -1, 4, 3) == [1, 0, 1, 2]
    grids = bench.make_grids(8, torch.Generator().manual_seed(0), background_codes=4)
    assert grids.shape == (8, 5, 16, 16)
    background = grids < 4
    for b in range(8):
        still = background[b].all(0)  # never covered by an object: the same code in every latent frame
        assert (grids[b][:, still] == grids[b, 0][still]).all()
        moved = [not torch.equal(grids[b, t], grids[b, t - 1]) for t in range(1, 5)]
        assert all(moved)  # a velocity is never (0, 0)
        objects = (~background[b]).sum((1, 2))
        assert objects.min() > 0 and objects.max() <= 2 * 7 * 4
    sideways = bench.make_grids(4, torch.Generator().manual_seed(1), background_codes=4, velocity=(0, 1))
    rows = (sideways >= 4).any(-1)  # (B, T', H'): the rows that hold object codes
    assert (rows == rows[:, :1]).all()  # a velocity of (0, 1) never moves an object up or down
    cond, mask = bench.condition(grids)
    assert mask[:, :2].all() and not mask[:, 2:].any()
    assert torch.equal(cond[:, :2], grids[:, :2]) and (cond[:, 2:] == 0).all()


def test_token_motion_scores_the_previous_frame_as_right_only_where_nothing_moved():
    """``bench token_motion``'s accuracy: a model that answers each predicted latent frame's true predecessor
    is right on every kept id and on no moved object id; one that answers the truth is right everywhere."""
    import torch

    from videogen.transformer.logits import TokenLogits

    bench = _bench("token_motion")
    grids = bench.make_grids(4, torch.Generator().manual_seed(2), codebook=64, background_codes=4)

    class Answers:
        uncond_class_id = 0

        def __init__(self, answer: torch.Tensor) -> None:
            self.answer = answer

        def eval(self) -> None: ...

        def train(self) -> None: ...

        def __call__(self, tokens, task_ids, class_ids) -> TokenLogits:
            picked = self.answer[: len(tokens)].flatten(1)  # (B, N)
            self.answer = self.answer[len(tokens) :]
            return TokenLogits((torch.nn.functional.one_hot(picked, 64).float(),), (64,))

    previous = grids.clone()
    previous[:, 2:] = grids[:, 1:-1]
    scores = bench.kept_changed_accuracy(Answers(previous), grids, background_codes=4)
    assert scores["kept"] == 1.0 and scores["moved"] == 0.0 and scores["changed"] < 0.2
    assert bench.kept_changed_accuracy(Answers(grids), grids, background_codes=4) == {
        "kept": 1.0,
        "changed": 1.0,
        "moved": 1.0,
    }


def test_the_transformer_speed_benchmark_measures_each_attention_layout():
    """``bench transformer --set ... --layouts joint divided``: one row per layout, the fields applied."""
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_transformer.py"),
        *("--preset", "tiny", "--grids", "2x4x4", "--dtypes", "fp32", "--batch", "1", "--bits", "6"),
        *("--repeats", "1", "--no-sample", "--set", "hidden_size=32", "grid_conv=3"),
        *("--layouts", "joint", "divided"),
    ]
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| tiny (4/32/")]
    assert [row.split(" | ")[1] for row in rows] == ["joint", "divided"], done.stdout
    bad = subprocess.run(
        [*command[:-3], "--set", "hidden_size"], env=child_env(), capture_output=True, text=True
    )
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr
