"""Config machinery with DataConfig: overrides, validation messages, close-name hints, presets, YAML round trip."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal

import pytest

from videogen.config_loader import ConfigError, apply_overrides, check, from_dict, load_config, save_config
from videogen.data.config import DataConfig
from videogen.errors import UserError
from videogen.tokenizer_training.training_config import load_training_config


@dataclass
class ModelSection:
    PRESETS: ClassVar[dict[str, dict]] = {
        "tiny": {"width": 32, "depth": 2},
        "big": {"width": 512, "depth": 12},
    }
    preset: str | None = None  # videogen.config_loader keeps the key after expanding it, so it is a field
    width: int = 64
    depth: int = 4
    norm: Literal["group", "layer"] = "group"

    def validate(self) -> None:
        check(self.width % 8 == 0, "width", self.width, "must be a multiple of 8")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    steps: int = 10


def test_defaults_are_valid_and_point_at_the_sample_data():
    cfg = from_dict(RunConfig, {})
    assert cfg.data.num_frames == 17 and cfg.data.train == "data/sample/train.jsonl"
    assert cfg.data.backend == "decord" and cfg.data.too_short == "skip"


def test_dotted_overrides(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("data:\n  train: clips.jsonl\n  resolution: 128\nsteps: 5\n")
    cfg = load_config(RunConfig, yaml_file, ["data.num_frames=9", "data.target_fps=7.5", "model.norm=layer"])
    assert cfg.data.num_frames == 9 and cfg.data.resolution == 128 and cfg.data.train == "clips.jsonl"
    assert cfg.data.target_fps == 7.5 and cfg.model.norm == "layer" and cfg.steps == 5
    assert apply_overrides({"a": {"b": 1}}, ["a.c=[1, 2]"]) == {"a": {"b": 1, "c": [1, 2]}}


@pytest.mark.parametrize(
    ("override", "key", "shown"),
    [
        ("data.num_frames=0", "data.num_frames", "0"),
        ("data.resolution=100", "data.resolution", "100"),
        ("data.frame_stride=0", "data.frame_stride", "0"),
        ("data.max_failure_fraction=1.5", "data.max_failure_fraction", "1.5"),
        ("data.image_ratio=0.3", "data.image_ratio", "0.3"),  # no image_data given
        ("data.backend=ffmpeg", "data.backend", "'ffmpeg'"),
        ("data.too_short=pad", "data.too_short", "'pad'"),
        ("data.num_workers=two", "data.num_workers", "'two'"),
        ("model.width=30", "model.width", "30"),
    ],
)
def test_validation_errors_name_key_and_value(override, key, shown):
    with pytest.raises(ConfigError) as info:
        load_config(RunConfig, None, [override])
    message = str(info.value)
    assert f"'{key}'" in message and shown in message
    assert isinstance(info.value, UserError) and "\n" not in message


def test_the_frame_rule_comes_from_the_tokenizer_not_the_data_layer():
    assert from_dict(DataConfig, {"num_frames": 12}).num_frames == 12  # the data layer takes any T >= 1
    with pytest.raises(ConfigError, match=r"'data.num_frames'.*1 \+ 4k \(1, 5, 9, 13, \.\.\.\)"):
        load_training_config(None, ["data.num_frames=12"])
    factor_2 = ["model.temporal_downsample=[true,false]"]  # a tokenizer of temporal factor 2
    assert load_training_config(None, [*factor_2, "data.num_frames=7"]).data.num_frames == 7
    with pytest.raises(ConfigError, match=r"1 \+ 2k"):
        load_training_config(None, [*factor_2, "data.num_frames=8"])


def test_unknown_key_suggests_the_close_name():
    with pytest.raises(
        ConfigError, match=r"unknown config key 'data.num_frame'; did you mean 'data.num_frames'\?"
    ):
        load_config(RunConfig, None, ["data.num_frame=9"])
    with pytest.raises(ConfigError, match="did you mean 'data.image_ratio'"):
        load_config(RunConfig, None, ["data.image_raito=0.5"])


def test_preset_expansion_with_deltas():
    cfg = load_config(RunConfig, None, ["model.preset=tiny", "model.depth=3"])
    assert (cfg.model.width, cfg.model.depth, cfg.model.preset) == (32, 3, "tiny")  # preset, then deltas
    with pytest.raises(
        ConfigError, match="'model.preset' = 'huge' is not a known preset; choose from tiny, big"
    ):
        load_config(RunConfig, None, ["model.preset=huge"])


def test_yaml_round_trip(tmp_path):
    cfg = load_config(RunConfig, None, ["data.val=null", "data.image_data=imgs", "data.image_ratio=0.25"])
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(RunConfig, tmp_path / "saved.yaml") == cfg


# ----------------------------------------------------------------------------- defaults and deltas


@dataclass
class Inner:
    lr: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Outer:
    inner: Inner = field(default_factory=lambda: Inner(lr=0.5, betas=(0.9, 0.96)))  # not Inner's own defaults
    weights: dict[str, float] = field(default_factory=lambda: {"a": 1.0, "b": 1.0})
    model: ModelSection = field(default_factory=lambda: from_dict(ModelSection, {"preset": "tiny"}))


def test_a_section_is_a_delta_over_the_fields_default_not_the_classs():
    cfg = from_dict(Outer, {"inner": {"lr": 2.0}})
    assert cfg.inner == Inner(lr=2.0, betas=(0.9, 0.96))  # the field's default betas stay
    assert from_dict(Outer, {}).inner == Inner(lr=0.5, betas=(0.9, 0.96))


def test_a_mapping_replaces_the_default_mapping_and_a_preset_starts_over():
    assert from_dict(Outer, {"weights": {"a": 2.0}}).weights == {"a": 2.0}  # not merged with "b"
    tiny = from_dict(Outer, {}).model
    assert from_dict(Outer, {"model": {"depth": 3}}).model == replace(tiny, depth=3)  # delta over tiny
    big = from_dict(Outer, {"model": {"preset": "big"}}).model
    assert big == from_dict(ModelSection, {"preset": "big"})  # a named preset, not a delta over tiny
