"""FastGenNetwork base: output conventions, pred-type conversion, reset/meta init, FSDP2 sharding, sampling."""

import copy
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from fastgen.networks import samplers
from fastgen.networks.network import CausalFastGenNetwork, FastGenNetwork
from fastgen.networks.toy import GMMDenoiser, ToyMLP
from fastgen.utils.distributed.launch import free_port

F64 = torch.float64


class LinearX0(FastGenNetwork):
    """A tiny concrete network: x0 = w * x_t (native pred configurable)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.w = nn.Parameter(torch.tensor(0.5))
        self.blocks = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])

    def forward(self, x_t, t, condition=None, r=None, feature_indices=None, return_features_early=False,
                return_logvar=False, fwd_pred_type=None, **kw):
        out = self.convert_output(x_t, self.w * x_t, t, fwd_pred_type)
        feats = [x_t * (i + 1) for i in (feature_indices or [])]
        if return_features_early:
            return feats
        return self.pack_outputs(out, feats, torch.zeros(x_t.shape[0], 1), feature_indices, return_logvar)


def test_pred_type_validation_and_schedule_kwargs():
    with pytest.raises(ValueError, match="x0"):
        LinearX0(net_pred_type="score")
    net = LinearX0(schedule_type="edm", max_t=40.0, rho=5.0)
    assert net.noise_scheduler.max_t == 40.0 and net.noise_scheduler.rho == 5.0 and net.net_pred_type == "x0"
    with pytest.raises(TypeError):
        FastGenNetwork()  # abstract


def test_output_conventions():
    net = LinearX0()
    x, t = torch.ones(3, 2), torch.full((3,), 2.0, dtype=F64)
    out = net(x, t)
    assert isinstance(out, torch.Tensor) and torch.equal(out, 0.5 * x)
    out, feats = net(x, t, feature_indices=[0, 1])
    assert torch.equal(feats[1], 2 * x)
    out, logvar = net(x, t, return_logvar=True)
    assert logvar.shape == (3, 1)
    out, feats, logvar = net(x, t, feature_indices=[1], return_logvar=True)
    assert torch.equal(feats[0], 2 * x)
    assert net(x, t, feature_indices=[1], return_features_early=True)[0].sum() == 12


def test_fwd_pred_type_conversion_goes_through_the_schedule():
    net = LinearX0(schedule_type="rf")
    x, t = torch.randn(4, 2), torch.tensor([0.1, 0.3, 0.5, 0.7], dtype=F64)
    x0 = 0.5 * x
    eps = (x.double() - (1 - t[:, None]) * x0.double()) / t[:, None]
    expected_flow = eps - x0.double()  # rf flow = eps - x0
    torch.testing.assert_close(net(x, t, fwd_pred_type="flow").double(), expected_flow, atol=1e-5, rtol=1e-5)
    assert net(x, t, fwd_pred_type="flow").dtype == torch.float32
    assert torch.equal(net(x, t, fwd_pred_type="x0"), x0)


def test_reset_parameters_recreates_schedule_and_meta_init():
    net = ToyMLP(schedule_type="rf", max_t=0.99)
    sched = net.noise_scheduler
    net.reset_parameters()
    assert net.noise_scheduler is not sched and net.noise_scheduler.max_t == 0.99
    assert not FastGenNetwork._is_in_meta_context()
    with torch.device("meta"):
        assert FastGenNetwork._is_in_meta_context()
        meta = ToyMLP(label_dim=3)
    assert meta.in_proj.weight.is_meta
    meta.to_empty(device="cpu")
    torch.manual_seed(0)
    meta.reset_parameters()
    fresh = ToyMLP(label_dim=3)
    torch.manual_seed(0)
    fresh.reset_parameters()
    for (k, a), b in zip(meta.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(meta.time_embed.freqs, fresh.time_embed.freqs)  # non-persistent buffer rebuilt too


def test_fsdp_units_default_and_causal_base():
    net = LinearX0()
    assert net.fsdp_units() == list(net.blocks)
    mlp = ToyMLP(num_layers=4)
    assert len(mlp.fsdp_units()) == 4 and all(u is b for u, b in zip(mlp.fsdp_units(), mlp.blocks))

    class NoCache(CausalFastGenNetwork):
        def forward(self, x_t, t, **kw):
            return x_t

    with pytest.raises(TypeError):
        NoCache()

    class Causal(NoCache):
        def clear_caches(self):
            self.cleared = True

    c = Causal(chunk_size=3, total_num_frames=6, schedule_type="rf", net_pred_type="flow")
    assert c.num_chunks == 2 and c.chunk_size == 3 and c.noise_scheduler.name == "rf"
    c.check_chunked(9)
    for bad in (7, 0):
        with pytest.raises(ValueError, match="not a multiple of chunk_size=3"):
            c.check_chunked(bad)
    for size, frames in ((8, 7), (3, 7)):
        with pytest.raises(ValueError, match="chunk_size must divide"):
            Causal(chunk_size=size, total_num_frames=frames)


def test_default_sample_uses_samplers_with_cfg():
    net = GMMDenoiser("ring8", label_dim=8)
    noise = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    cond = torch.nn.functional.one_hot(torch.arange(16) % 8, 8).float()
    x = net.sample(noise, cond, guidance_scale=1.5, num_steps=11)
    x0_fn = samplers.guided_x0_fn(net, cond, torch.zeros_like(cond), 1.5)
    expected = samplers.heun_sample(x0_fn, noise, samplers.edm_t_list(6), net.noise_scheduler)
    assert torch.equal(x, expected)
    assert torch.equal(net.sample(noise, cond, sampler_type="euler", num_steps=5),
                       samplers.euler_sample(samplers.guided_x0_fn(net, cond), noise, samplers.edm_t_list(5),
                                             net.noise_scheduler))


def _fsdp_worker(rank, world_size, port, state, x, t, expected, expected_grad, result_q):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)
        net = ToyMLP(hidden_dim=16, num_layers=2)
        net.load_state_dict(state)
        net.fully_shard()
        from torch.distributed.tensor import DTensor

        sharded = all(isinstance(p, DTensor) for p in net.parameters())
        out = net(x, t)
        out.sum().backward()
        grad = net.blocks[0][1].weight.grad.full_tensor()
        grads_ok = torch.allclose(grad, expected_grad, atol=1e-6)
        result_q.put((rank, sharded, grads_ok, float((out.detach() - expected).abs().max())))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_fully_shard_two_gloo_ranks_matches_unsharded():
    torch.manual_seed(0)
    net = ToyMLP(hidden_dim=16, num_layers=2)
    for p in net.parameters():
        nn.init.normal_(p, std=0.2)
    x, t = torch.randn(4, 2), torch.tensor([0.1, 1.0, 5.0, 20.0], dtype=F64)
    out = net(x, t)
    out.sum().backward()
    expected, expected_grad = out.detach(), net.blocks[0][1].weight.grad.clone()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    state = copy.deepcopy(net.state_dict())
    mp.start_processes(_fsdp_worker, args=(2, free_port(), state, x, t, expected, expected_grad, q), nprocs=2,
                       start_method="spawn")
    results = sorted(q.get(timeout=60) for _ in range(2))
    for rank, sharded, grads_ok, err in results:
        assert sharded and grads_ok and err < 1e-6, (rank, sharded, grads_ok, err)


def _tiny_networks():
    from fastgen.networks.DiT.network import DiT
    from fastgen.networks.EDM.network import EDMPrecond
    from fastgen.networks.EDM2.network import EDM2Precond

    image = torch.randn(2, 3, 8, 8)
    return [
        ("ToyMLP", ToyMLP(dim=2, hidden_dim=8, num_layers=2), torch.randn(2, 2), 1.0),
        ("GMMDenoiser", GMMDenoiser(gmm_name="ring8"), torch.randn(2, 2), 1.0),
        ("EDM", EDMPrecond(img_resolution=8, img_channels=3, label_dim=0, model_type="SongUNet", model_channels=8,
                           channel_mult=[1], num_blocks=1, attn_resolutions=[]), image, 1.0),
        ("EDM2", EDM2Precond(img_resolution=8, img_channels=3, label_dim=0, model_channels=8, channel_mult=[1],
                             num_blocks=1, attn_resolutions=[]), image, 1.0),
        ("DiT", DiT(input_size=8, patch_size=4, in_channels=3, hidden_size=16, depth=1, num_heads=2, num_classes=0),
         image, 0.5),
    ]


def test_return_features_early_with_no_features_is_an_empty_list():
    for name, net, x, t in _tiny_networks():
        t_vec = torch.full((x.shape[0],), t, dtype=torch.float64)
        for empty in (set(), [], None):
            assert net(x, t_vec, feature_indices=empty, return_features_early=True) == [], name
        out = net(x, t_vec, feature_indices=set())  # and the plain forward is unaffected
        assert isinstance(out, torch.Tensor) and out.shape == x.shape and bool(torch.isfinite(out).all()), name
