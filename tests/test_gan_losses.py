"""Tokenizer GAN losses, LeCam, R1, the detached-discriminator pattern, discriminators and the perceptual loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from videogen.errors import UserError
from videogen.tokenizer.discriminator import (
    BatchNorm3dFP32,
    DiscriminatorConfig,
    PatchDiscriminator3D,
    build_discriminator,
)
from videogen.tokenizer.losses import (
    LeCam,
    discriminator_logits_detached,
    discriminator_loss,
    generator_loss,
    r1_penalty,
    reconstruction_loss,
)
from videogen.tokenizer.perceptual import PerceptualLoss, VGG16Features, build_perceptual_loss

# ----------------------------------------------------------------------------- losses


def test_reconstruction_l1_and_l2():
    x, y = torch.tensor([0.0, 1.0, -1.0]), torch.tensor([0.5, 1.0, 1.0])
    assert reconstruction_loss(x, y, "l1").item() == pytest.approx((0.5 + 0 + 2) / 3)
    assert reconstruction_loss(x, y, "l2").item() == pytest.approx((0.25 + 0 + 4) / 3)
    with pytest.raises(ValueError, match="l1 or l2"):
        reconstruction_loss(x, y, "l3")


def test_hinge_and_non_saturating_values_on_known_logits():
    real = torch.tensor([[2.0, 0.5], [-1.0, 0.0]])  # (B=2, 2 patches)
    fake = torch.tensor([[-2.0, 0.5], [1.0, -0.5]])
    # hinge: 0.5 * (mean relu(1 - real) + mean relu(1 + fake))
    expected_d = 0.5 * ((0 + 0.5 + 2 + 1) / 4 + (0 + 1.5 + 2 + 0.5) / 4)
    assert discriminator_loss(real, fake, "hinge").item() == pytest.approx(expected_d)
    sp = F.softplus
    expected_ns = 0.5 * (sp(-real).mean() + sp(fake).mean())
    assert discriminator_loss(real, fake, "non_saturating").item() == pytest.approx(expected_ns.item())
    # G: on the per-sample mean logit (-0.75 and 0.25)
    assert generator_loss(fake, "non_saturating").item() == pytest.approx(
        (math.log1p(math.exp(0.75)) + math.log1p(math.exp(-0.25))) / 2
    )
    assert generator_loss(fake, "hinge").item() == pytest.approx(0.25)
    # perfect discriminator margins give zero hinge loss
    assert discriminator_loss(torch.full((2, 3), 1.5), torch.full((2, 3), -1.5)).item() == 0.0


def test_lecam_matches_its_formula_and_round_trips_state():
    lecam = LeCam(decay=0.9)
    real1, fake1 = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0])
    reg1 = lecam(real1, fake1)
    ema_real, ema_fake = 0.1 * 2.0, 0.1 * -1.0  # from 0: 0.9 * 0 + 0.1 * mean
    assert lecam.ema_real.item() == pytest.approx(ema_real) and lecam.ema_fake.item() == pytest.approx(
        ema_fake
    )
    expected = (F.relu(real1 - ema_fake) ** 2).mean() + (F.relu(ema_real - fake1) ** 2).mean()
    assert reg1.item() == pytest.approx(expected.item())
    real2, fake2 = torch.tensor([0.5]), torch.tensor([0.25])
    lecam(real2, fake2)
    assert lecam.ema_real.item() == pytest.approx(0.9 * ema_real + 0.1 * 0.5)
    assert lecam.ema_fake.item() == pytest.approx(0.9 * ema_fake + 0.1 * 0.25)
    restored = LeCam(decay=0.9)
    restored.load_state_dict(lecam.state_dict())
    assert torch.equal(restored.ema_real, lecam.ema_real) and torch.equal(restored.ema_fake, lecam.ema_fake)
    real3, fake3 = torch.randn(4), torch.randn(4)
    assert torch.equal(restored.regularizer(real3, fake3), lecam.regularizer(real3, fake3))


def test_r1_is_zero_for_a_constant_discriminator_and_exact_for_a_linear_one():
    constant = PatchDiscriminator3D(DiscriminatorConfig(base_channels=4, norm="none"))
    for module in constant.modules():
        if isinstance(module, nn.Conv3d):
            nn.init.zeros_(module.weight)
            nn.init.constant_(module.bias, 0.3)
    real = torch.rand(2, 3, 5, 16, 16).requires_grad_(True)
    assert r1_penalty(constant(real), real).item() == 0.0

    weight = torch.randn(3 * 16, requires_grad=True)
    real = torch.rand(2, 3 * 16).requires_grad_(True)
    penalty = r1_penalty(real @ weight, real)  # d/dx (w . x) = w for each sample
    assert penalty.item() == pytest.approx(weight.detach().pow(2).sum().item(), rel=1e-6)
    penalty.backward()  # the penalty trains D: d ||w||^2 / dw = 2w
    assert torch.allclose(weight.grad, 2 * weight.detach())


def test_generator_term_through_detached_discriminator_params():
    disc = build_discriminator(DiscriminatorConfig(base_channels=4, norm="group"))
    fake = torch.rand(2, 3, 5, 16, 16).requires_grad_(True)
    logits = discriminator_logits_detached(disc, fake)
    assert torch.equal(logits, disc(fake))
    generator_loss(logits).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0  # reaches the generator
    assert all(p.grad is None for p in disc.parameters())  # never the discriminator


# ----------------------------------------------------------------------------- discriminators


@pytest.mark.parametrize("kind", ["patchgan", "stylegan"])
@pytest.mark.parametrize("frames", [17, 1])
def test_discriminators_accept_videos_and_images(kind, frames):
    cfg = DiscriminatorConfig(kind=kind, base_channels=4, norm="group", channel_multipliers=(2, 2))
    logits = build_discriminator(cfg)(torch.rand(2, 3, frames, 64, 64) * 2 - 1)
    expected = {"patchgan": (2, 1, 5 if frames == 17 else 1, 8, 8), "stylegan": (2, 1)}[kind]
    assert logits.shape == expected and torch.isfinite(logits).all()


def test_patchgan_layout_and_init():
    disc = PatchDiscriminator3D(DiscriminatorConfig())  # base 64, batch norm, strides (2, 2, 1)
    assert disc(torch.zeros(1, 3, 17, 128, 128)).shape == (1, 1, 5, 16, 16)
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv3d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert [c.stride for c in convs] == [(2, 2, 2), (2, 2, 2), (1, 2, 2), (1, 1, 1), (1, 1, 1)]
    weights = torch.cat([c.weight.flatten() for c in convs])
    assert weights.std().item() == pytest.approx(0.02, rel=0.05) and abs(weights.mean().item()) < 1e-3
    with pytest.raises(UserError, match="temporal_strides"):
        from videogen.config_loader import from_dict

        from_dict(DiscriminatorConfig, {"num_layers": 2, "temporal_strides": [2, 2, 1]})


def test_batchnorm_fp32_matches_batchnorm_and_takes_bf16():
    reference, fp32 = nn.BatchNorm3d(4), BatchNorm3dFP32(4)
    x = torch.randn(2, 4, 3, 5, 5)
    assert torch.allclose(fp32(x), reference(x), atol=1e-6)
    assert torch.allclose(fp32.running_mean, reference.running_mean)
    fp32.to(torch.bfloat16)
    fp32.running_mean.data = fp32.running_mean.float()  # DeepSpeed's bf16 mode: params bf16, buffers fp32
    fp32.running_var.data = fp32.running_var.float()
    out = fp32(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.allclose(out.float(), reference(x), atol=0.05)
    assert list(fp32.state_dict()) == list(reference.state_dict())


# ----------------------------------------------------------------------------- perceptual loss


@pytest.fixture(scope="module")
def vgg_files(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("vgg")
    features = VGG16Features().features.state_dict()  # torchvision's vgg16().features layout: "0.weight", ...
    torch.save(features, root / "vgg16_features.pth")
    lins = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate((64, 128, 256, 512, 512))}
    save_file(lins, str(root / "lpips_lins.safetensors"))
    taming = {f"net.slice1.{k}": v for k, v in features.items()} | lins  # one file, LPIPS/taming names
    torch.save(taming, root / "vgg_lpips.pth")
    return root


def test_perceptual_loss_is_zero_for_identical_inputs_and_positive_otherwise(vgg_files):
    loss = PerceptualLoss.from_files(vgg_files / "vgg16_features.pth")
    assert loss.lins is None and not any(p.requires_grad for p in loss.parameters())
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(loss(x, x), torch.zeros(2))
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    distance = loss(x, y)
    assert distance.shape == (2,) and (distance > 0).all()
    video = torch.rand(2, 3, 2, 16, 16) * 2 - 1
    per_frame = loss(video.transpose(1, 2).flatten(0, 1), (video * 0.5).transpose(1, 2).flatten(0, 1))
    assert torch.allclose(loss(video, video * 0.5), per_frame.view(2, 2).mean(1), atol=1e-6)
    moving = video.clone().requires_grad_(True)
    loss(moving, video * 0.5).sum().backward()
    assert moving.grad.abs().sum() > 0


def test_perceptual_loss_reads_lpips_layers_from_either_layout(vgg_files):
    separate = PerceptualLoss.from_files(
        vgg_files / "vgg16_features.pth", vgg_files / "lpips_lins.safetensors"
    )
    combined = PerceptualLoss.from_files(vgg_files / "vgg_lpips.pth")
    assert separate.lins is not None and combined.lins is not None
    x, y = torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.equal(separate(x, y), combined(x, y))
    assert not torch.equal(separate(x, y), PerceptualLoss.from_files(vgg_files / "vgg16_features.pth")(x, y))


def test_perceptual_loss_off_without_weights_and_clear_errors(tmp_path, vgg_files):
    said = []
    assert build_perceptual_loss(None, log=said.append) is None
    assert len(said) == 1 and "perceptual loss: off" in said[0]
    with pytest.raises(UserError, match="does not exist"):
        build_perceptual_loss(str(tmp_path / "missing.pth"))
    torch.save({"0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "partial.pth")
    with pytest.raises(UserError, match="lack 25 tensors"):
        PerceptualLoss.from_files(tmp_path / "partial.pth")
    assert build_perceptual_loss(str(vgg_files / "vgg16_features.pth"), log=said.append) is not None
