"""The pure-PyTorch chunked SSD scan and Mamba2Mixer against a step-by-step recurrence (fp64)."""
import warnings

import pytest
import torch
import torch.nn.functional as F

from mmpatch.models.layers.mamba2_mixer import Mamba2Mixer, mamba_ssm_kernels, set_mamba_impl
from mmpatch.models.layers.rms_norm import GatedRMSNorm
from mmpatch.models.layers.ssd_scan import decay_scan, segsum, ssd_chunked


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def sequential_ssd(x, dt, A, B, C, D):
    """s_t = exp(dt_t A) s_{t-1} + dt_t x_t B_t^T;  y_t = s_t C_t + D x_t, one step at a time."""
    b, l, h, p = x.shape
    r = h // B.shape[2]
    B, C = B.repeat_interleave(r, dim=2), C.repeat_interleave(r, dim=2)
    s = x.new_zeros(b, h, p, B.shape[-1])
    ys = []
    for t in range(l):
        decay = torch.exp(dt[:, t] * A)[..., None, None]
        s = decay * s + dt[:, t, :, None, None] * x[:, t, :, :, None] * B[:, t, :, None, :]
        ys.append(torch.einsum('bhpn,bhn->bhp', s, C[:, t]) + D[:, None] * x[:, t])
    return torch.stack(ys, dim=1)


def random_ssd_inputs(l, b=2, h=4, p=3, g=2, n=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    f64 = dict(dtype=torch.float64, generator=gen)
    return dict(x=torch.randn(b, l, h, p, **f64), dt=torch.rand(b, l, h, **f64) * 0.6,
                A=-torch.rand(h, **f64) * 3 - 0.1, B=torch.randn(b, l, g, n, **f64),
                C=torch.randn(b, l, g, n, **f64), D=torch.randn(h, **f64))


@pytest.mark.parametrize('l,chunk', [(13, 1), (13, 4), (13, 13), (13, 20), (50, 2), (37, 8)])
def test_ssd_chunked_matches_sequential_forward_and_grads(l, chunk):
    inputs = random_ssd_inputs(l)
    for t in inputs.values():
        t.requires_grad_(True)
    y = ssd_chunked(**inputs, chunk_size=chunk)
    y_ref = sequential_ssd(**inputs)
    assert y.shape == y_ref.shape and y.dtype == torch.float64
    assert rel_err(y, y_ref) < 1e-10
    weight = torch.randn_like(y_ref)
    grads = torch.autograd.grad((y * weight).sum(), list(inputs.values()))
    grads_ref = torch.autograd.grad((y_ref * weight).sum(), list(inputs.values()))
    for name, g, g_ref in zip(inputs, grads, grads_ref):
        assert rel_err(g, g_ref) < 1e-10, name


def test_ssd_chunked_float32_and_chunk_invariance():
    inputs = random_ssd_inputs(40)
    y_ref = sequential_ssd(**inputs)
    y32 = ssd_chunked(**{k: v.float() for k, v in inputs.items()}, chunk_size=8)
    assert y32.dtype == torch.float32 and rel_err(y32.double(), y_ref) < 1e-5
    assert rel_err(ssd_chunked(**inputs, chunk_size=3), ssd_chunked(**inputs, chunk_size=16)) < 1e-12


def test_ssd_chunked_strong_decay_has_no_nan():
    inputs = random_ssd_inputs(30)
    inputs['dt'] = inputs['dt'] * 200  # exp(dt * A) underflows to 0
    inputs['dt'].requires_grad_(True)
    y = ssd_chunked(**inputs, chunk_size=4)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(inputs['dt'].grad).all()
    assert rel_err(y, sequential_ssd(**inputs)) < 1e-10


def test_segsum_and_decay_scan():
    a = -torch.rand(2, 7, dtype=torch.float64)
    seg = segsum(a)
    assert torch.allclose(seg[:, 5, 2], a[:, 3:6].sum(-1))
    assert torch.isinf(seg[:, 2, 5]).all() and (seg.diagonal(dim1=-2, dim2=-1) == 0).all()
    log_decay = -torch.rand(2, 23, 3, dtype=torch.float64)
    u = torch.randn(2, 23, 3, 4, dtype=torch.float64)
    s, expected = torch.zeros(2, 3, 4, dtype=torch.float64), []
    for t in range(23):
        s = torch.exp(log_decay[:, t])[..., None] * s + u[:, t]
        expected.append(s)
    assert rel_err(decay_scan(log_decay, u, block=2), torch.stack(expected, 1)) < 1e-12
    with pytest.raises(ValueError, match='block'):
        decay_scan(log_decay, u, block=1)


def test_gated_rms_norm_matches_formula():
    norm = GatedRMSNorm(8, group_size=4).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x, z = torch.randn(3, 8, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    gated = (x * F.silu(z)).reshape(3, 2, 4)
    expected = gated / gated.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt()
    assert torch.allclose(norm(x, z), expected.reshape(3, 8) * norm.weight)


def sequential_mixer(mixer, u):
    """The mixer written out as mamba_ssm's Mamba2 decoding steps (one token at a time)."""
    zxbcdt = mixer.in_proj(u)
    z, xBC, dt = mixer._split(zxbcdt)
    width = mixer.d_conv
    padded = F.pad(xBC, (0, 0, width - 1, 0))
    conv = torch.stack([(padded[:, t:t + width].transpose(1, 2) * mixer.conv1d.weight.squeeze(1)).sum(-1)
                        for t in range(u.shape[1])], dim=1) + mixer.conv1d.bias
    x, B, C = mixer._heads(F.silu(conv))
    dt = F.softplus(dt + mixer.dt_bias)
    y = sequential_ssd(x, dt, -torch.exp(mixer.A_log), B, C, mixer.D)
    return mixer.out_proj(mixer.norm(y.flatten(2), z))


def small_mixer(**kwargs):
    torch.manual_seed(0)
    mixer = Mamba2Mixer(16, d_state=8, headdim=8, **kwargs).double()
    with torch.no_grad():  # move every vector away from its init so each one matters
        for p in (mixer.conv1d.bias, mixer.D, mixer.norm.weight, mixer.A_log, mixer.dt_bias):
            p.add_(torch.randn_like(p) * 0.2)
    return mixer


def test_mixer_torch_path_matches_sequential_and_keys():
    mixer = small_mixer(ngroups=2)
    u = torch.randn(2, 19, 16, dtype=torch.float64)
    assert rel_err(mixer(u), sequential_mixer(mixer, u)) < 1e-10
    assert sorted(mixer.state_dict()) == sorted([
        'in_proj.weight', 'conv1d.weight', 'conv1d.bias', 'dt_bias', 'A_log', 'D',
        'norm.weight', 'out_proj.weight'])
    # [z, x, B, C, dt]: 2 * d_inner + 2 * ngroups * d_state + nheads
    assert mixer.in_proj.weight.shape == (2 * 32 + 2 * 2 * 8 + 4, 16)


def test_mixer_impl_selection_on_cpu():
    mixer = small_mixer()
    u = torch.randn(1, 5, 16, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # CPU input: PyTorch path, no warning
        assert mixer.resolved_impl(u) == 'torch'
    set_mamba_impl(mixer, 'mamba_ssm')
    if isinstance(mamba_ssm_kernels(), str):
        with pytest.raises(RuntimeError, match='mamba_ssm'):
            mixer(u)
    else:
        with pytest.raises(RuntimeError, match='CUDA'):
            mixer(u)
    with pytest.raises(ValueError, match='impl'):
        set_mamba_impl(mixer, 'triton')
    with pytest.raises(ValueError, match='headdim'):
        Mamba2Mixer(10, headdim=8)


def test_ssd_runs_on_devices_without_autocast(monkeypatch):
    # torch 2.11 raises for torch.autocast('meta'); the FLOP counter runs the model on 'meta'
    real_autocast = torch.autocast

    def autocast(device_type, *args, **kwargs):
        if device_type == 'meta':
            raise RuntimeError('unsupported scalarType')
        return real_autocast(device_type, *args, **kwargs)
    monkeypatch.setattr(torch, 'autocast', autocast)
    monkeypatch.setattr(torch.amp, 'is_autocast_available', lambda device_type: device_type != 'meta')
    b, l, h, p, g, n = 1, 8, 2, 4, 1, 3
    x = torch.zeros(b, l, h, p, device='meta')
    dt = torch.zeros(b, l, h, device='meta')
    B = C = torch.zeros(b, l, g, n, device='meta')
    y = ssd_chunked(x, dt, -torch.ones(h, device='meta'), B, C, chunk_size=4)
    assert y.shape == x.shape and y.device.type == 'meta'
    args = (torch.randn(b, l, h, p), torch.rand(b, l, h), -torch.ones(h), torch.randn(b, l, g, n),
            torch.randn(b, l, g, n))
    with real_autocast('cpu', dtype=torch.bfloat16):  # still switched off where autocast exists
        in_autocast = ssd_chunked(*args, chunk_size=4)
    assert torch.equal(in_autocast, ssd_chunked(*args, chunk_size=4))
