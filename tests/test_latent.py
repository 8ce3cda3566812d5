"""The latent model's maths against independent computations on small tensors (CPU, seconds)."""

import io
import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from slac.config import ModelConfig
from slac.errors import InputError
from slac.latent import LatentModel, to_float
from slac.networks import gaussian_kl, gaussian_log_prob

TINY = ModelConfig(feature_dim=8, z1_dim=3, z2_dim=5, hidden_units=[8], sequence_length=3, batch_size=2)
B, S, A = 2, 3, 2
SHAPE = (3, 32, 32)  # the smallest practical size keeps the convolutions cheap


def tiny_model(seed=0, image_shape=SHAPE) -> LatentModel:
    torch.manual_seed(seed)
    return LatentModel(TINY, A, image_shape)


def batch(seed=1, image_shape=SHAPE):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(B, S + 1, *image_shape, generator=g)
    actions = torch.rand(B, S, A, generator=g) * 2 - 1
    rewards = torch.randn(B, S, generator=g)
    costs = torch.tensor([[0.0, 2.0, 0.0], [0.5, 0.0, 0.0]])
    return images, actions, rewards, costs


class Constant(nn.Module):
    """A stand-in head: maps (..., d) to fixed outputs with the same leading dims."""

    def __init__(self, *values, shape=(1,)):
        super().__init__()
        self.values, self.shape = values, shape

    def forward(self, *x):
        lead = x[0].shape[:-1]
        outs = [torch.full((*lead, *self.shape), float(v)) for v in self.values]
        return outs[0] if len(outs) == 1 else tuple(outs)


def test_to_float_scale():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    torch.testing.assert_close(to_float(x), torch.tensor([0.0, 0.2, 1.0]))
    assert to_float(x).dtype == torch.float32


def test_gaussian_helpers_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mq, mp, x = (torch.randn(4, 3, generator=g) for _ in range(3))
    sq, sp = (torch.rand(4, 3, generator=g) + 0.1 for _ in range(2))
    torch.testing.assert_close(gaussian_kl(mq, sq, mp, sp), kl_divergence(Normal(mq, sq), Normal(mp, sp)))
    torch.testing.assert_close(gaussian_log_prob(x, mq, sq), Normal(mq, sq).log_prob(x))
    torch.testing.assert_close(gaussian_log_prob(x, mq, 0.4), Normal(mq, 0.4).log_prob(x))


def test_kl_term_matches_torch_distributions():
    model, data = tiny_model(), batch()
    torch.manual_seed(5)
    _, metrics = model.loss(*data)
    torch.manual_seed(5)  # the same posterior draws
    post = model.filter_sequence(model.encode(data[0]), data[1])
    q = Normal(post["z1_mean"], post["z1_std"])
    # the prior rebuilt by hand: N(0, I) at t = 0, then p(z1_{t+1} | z2_t, a_t) along the posterior z2
    mean, std = model.z1_prior(torch.cat([post["z2"][:, :-1], data[1]], -1))
    p = Normal(torch.cat([torch.zeros(B, 1, 3), mean], 1), torch.cat([torch.ones(B, 1, 3), std], 1))
    expected = kl_divergence(q, p).sum() / B  # summed over dims and time, mean over the batch
    assert metrics["loss/kl"] == pytest.approx(expected.item(), rel=1e-5)


def test_likelihood_terms_on_hand_made_tensors():
    """Decoder, reward and cost heads replaced by constants: every term has a closed form."""
    model = tiny_model()
    model.decoder = Constant(0.5, shape=SHAPE)
    model.reward = Constant(1.0, 2.0)  # mean 1, std 2
    model.cost = Constant(math.log(3.0))  # p(c > 0) = 0.75
    images = torch.full((B, S + 1, *SHAPE), 0.7)
    rewards = torch.full((B, S), 3.0)
    costs = torch.tensor([[0.0, 2.0, 0.0], [0.5, 0.0, 0.0]])  # 2 positive labels of 6
    _, m = model.loss(images, torch.zeros(B, S, A), rewards, costs)
    sigma, half_log_2pi = math.sqrt(TINY.image_noise), 0.5 * math.log(2 * math.pi)  # image_noise: a variance
    pixels = (S + 1) * math.prod(SHAPE)
    image_nll = pixels * (0.5 * (0.2 / sigma) ** 2 + math.log(sigma) + half_log_2pi)  # per sequence
    assert m["loss/image"] == pytest.approx(image_nll, rel=1e-5)
    reward_nll = S * (0.5 * ((3.0 - 1.0) / 2.0) ** 2 + math.log(2.0) + half_log_2pi)
    assert m["loss/reward"] == pytest.approx(reward_nll, rel=1e-5)
    # Safe SLAC's weighting: scale 30, positives (c > 0) weighted 100
    assert m["loss/cost"] == pytest.approx(30 * (100 * 2 * -math.log(0.75) + 4 * -math.log(0.25)) / B, rel=1e-5)
    total = m["loss/kl"] + m["loss/image"] + m["loss/reward"] + m["loss/cost"]
    assert m["loss/model"] == pytest.approx(total, rel=1e-5)


def test_first_prior_is_standard_normal_and_shapes():
    model = tiny_model()
    post = model.filter_sequence(torch.randn(B, S + 1, 8), torch.randn(B, S, A))
    torch.testing.assert_close(post["prior_mean"][:, 0], torch.zeros(B, 3))
    torch.testing.assert_close(post["prior_std"][:, 0], torch.ones(B, 3))
    for key, dim in (("z1", 3), ("z2", 5), ("z1_mean", 3), ("z1_std", 3), ("z2_std", 5), ("prior_mean", 3),
                     ("prior_std", 3)):
        assert post[key].shape == (B, S + 1, dim), key
    z = model.latents(torch.rand(B, S + 1, *SHAPE), torch.randn(B, S, A))
    assert z.shape == (B, S + 1, model.latent_dim) and not z.requires_grad


@pytest.mark.parametrize("sample", [False, True])
def test_online_filter_equals_sequence_filter(sample):
    """Step-by-step filtering = filtering the whole sequence (means; and draws, given the same seed)."""
    model, (images, actions, *_) = tiny_model(), batch()
    with torch.no_grad():
        torch.manual_seed(7)
        post = model.filter_sequence(model.encode(images), actions, sample=sample)
        torch.manual_seed(7)
        state = model.init_filter(images[:, 0], sample=sample)
        zs = [state["z"]]
        for t in range(S):
            state = model.filter_step(state, images[:, t + 1], actions[:, t], sample=sample)
            zs.append(state["z"])
    expected = torch.cat([post["z1"], post["z2"]], -1)
    torch.testing.assert_close(torch.stack(zs, 1), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state["z1_std"], post["z1_std"][:, -1], rtol=1e-5, atol=1e-5)


def test_update_lowers_the_loss_and_reports_metrics():
    model, data = tiny_model(), batch()
    torch.manual_seed(1)
    before = model.loss(*data)[1]["loss/model"]
    for _ in range(15):
        metrics = model.update(*data)
    keys = {"loss/kl", "loss/image", "loss/reward", "loss/cost", "loss/model", "loss/model_grad_norm"}
    assert keys <= set(metrics)
    torch.manual_seed(1)
    assert model.loss(*data)[1]["loss/model"] < before


def test_update_clips_the_gradient_norm():
    model = tiny_model()
    model.cfg = ModelConfig(**{**TINY.__dict__, "grad_clip_norm": 1e-3})
    model.update(*batch())
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert norm.item() == pytest.approx(1e-3, rel=1e-3)


@pytest.mark.parametrize("image_shape", [(3, 64, 64), (3, 16, 16), (1, 48, 80), (3, 128, 128)])
def test_supported_image_sizes(image_shape):
    model = tiny_model(image_shape=image_shape)
    images = torch.rand(1, 2, *image_shape)
    features = model.encode(images)
    assert features.shape == (1, 2, TINY.feature_dim)
    post = model.filter_sequence(features, torch.zeros(1, 1, A))
    assert model.decode(post["z1"], post["z2"]).shape == (1, 2, *image_shape)


@pytest.mark.parametrize("image_shape", [(3, 60, 60), (3, 64, 40), (64, 64)])
def test_unsupported_image_sizes_raise_a_clear_error(image_shape):
    with pytest.raises(InputError, match="multiples of 16"):
        LatentModel(TINY, A, image_shape)


def saved(state: dict) -> dict:
    """A state dict through torch.save / torch.load(weights_only=True), as a checkpoint holds it.
    (Loading a live optimizer's state dict directly would share its tensors with the original.)"""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_state_dict_round_trip_restores_everything_bitwise():
    """Model and optimiser state restored into a differently initialised model: the next update and
    the outputs after it are bitwise the same."""
    model, data = tiny_model(seed=0), batch()
    for _ in range(2):
        model.update(*data)
    clone = tiny_model(seed=123)
    clone.load_state_dict(saved(model.state_dict()))
    clone.optimizer.load_state_dict(saved(model.optimizer.state_dict()))
    for m in (model, clone):
        torch.manual_seed(9)
        m.update(*data)
    for (name, p), q in zip(model.state_dict().items(), clone.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    with torch.no_grad():
        a = model.filter_sequence(model.encode(data[0]), data[1], sample=False)["z2"]
        b = clone.filter_sequence(clone.encode(data[0]), data[1], sample=False)["z2"]
    assert torch.equal(a, b)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_convs_run_in_bf16_only_where_native(monkeypatch, native):
    from slac import networks
    monkeypatch.setattr(networks, "native_bf16", lambda device_type: native)
    networks._warn_bf16_not_native.cache_clear()  # it warns once per process
    torch.manual_seed(0)
    fp32, bf16 = networks.Encoder(SHAPE, 8, bf16=False), networks.Encoder(SHAPE, 8, bf16=True)
    bf16.load_state_dict(fp32.state_dict())
    x = torch.rand(4, *SHAPE)
    if native:
        out = bf16(x)
        assert out.dtype == torch.float32
        assert not torch.equal(out, fp32(x))  # bf16 rounding changed the numbers
        torch.testing.assert_close(out, fp32(x), atol=0.05, rtol=0.05)
    else:
        with pytest.warns(UserWarning, match="no native bfloat16"):
            out = bf16(x)
        torch.testing.assert_close(out, fp32(x), atol=0, rtol=0)


@pytest.mark.parametrize("bf16_acting", [False, True])
def test_online_filter_encodes_in_float32_unless_bf16_acting(monkeypatch, bf16_acting):
    """With bf16 convolutions the online filter's single frames still run in float32 unless model.bf16_acting;
    the training batches keep bf16. Checked against the same model's float32 and bf16 encoders."""
    from slac import networks
    monkeypatch.setattr(networks, "native_bf16", lambda device_type: True)
    torch.manual_seed(0)
    cfg = ModelConfig(feature_dim=16, z1_dim=4, z2_dim=8, hidden_units=[16], bf16_convs=True, bf16_acting=bf16_acting)
    model = LatentModel(cfg, 1, SHAPE)
    image = torch.rand(1, *SHAPE)
    float32, bf16 = model.encoder(image, allow_bf16=False), model.encoder(image)
    assert not torch.equal(float32, bf16)
    seen = []
    model.z1_posterior_init.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    model.init_filter(image, sample=False)
    assert torch.equal(seen[0], bf16 if bf16_acting else float32)
    assert torch.equal(model.encode(image[None])[0], bf16)  # training batches: bf16 either way


def test_old_checkpoint_configs_keep_their_bf16_online_filter():
    from slac.config import upgrade_saved
    assert upgrade_saved({"model": {"bf16_convs": True}})["model"]["bf16_acting"] is True
    assert upgrade_saved({"model": {"bf16_convs": False}})["model"]["bf16_acting"] is False
    assert upgrade_saved({"model": {"bf16_convs": True, "bf16_acting": False}})["model"]["bf16_acting"] is False


def test_decoder_width_scales_its_channels_and_keeps_the_image_shape():
    from slac.networks import Decoder
    half = Decoder(12, SHAPE, width=0.5)
    channels = [m.out_channels for m in half.net if isinstance(m, nn.ConvTranspose2d)]
    assert channels == [128, 64, 32, 16, 3]
    assert half(torch.zeros(2, 12)).shape == (2, *SHAPE)
    full = [m.out_channels for m in Decoder(12, SHAPE).net if isinstance(m, nn.ConvTranspose2d)]
    assert full == [256, 128, 64, 32, 3]  # SLAC's
