"""Feature pyramid from the single-stride map(s) of a plain backbone at any patch size."""
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.model import BaseModule

from ...registry import register_seg_det_model
from ..layers.layer_norm_2d import LayerNorm2d  # noqa: F401  (registers 'LN2d')

UP, DOWN, RESIZE = 'up2', 'down2', 'resize'


def plan_resampling(in_stride, out_stride):
    """Ops that take a map at ``in_stride`` to ``out_stride``.

    Every power-of-two factor of the ratio is a learned 2x step ('up2' or
    'down2'); a ratio that is not a power of two is finished by one exact-size
    bilinear 'resize' (by a factor in (1/2, 2)). Equal strides need no op.

    >>> plan_resampling(16, 4), plan_resampling(1, 8), plan_resampling(12, 4)
    (('up2', 'up2'), ('down2', 'down2', 'down2'), ('up2', 'resize'))
    """
    for name, value in (('in_stride', in_stride), ('out_stride', out_stride)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f'{name} must be a positive integer, got {value!r}')
    big, small = max(in_stride, out_stride), min(in_stride, out_stride)
    num_steps = 0  # largest k with small * 2^k <= big
    while small * 2 ** (num_steps + 1) <= big:
        num_steps += 1
    exact = small * 2 ** num_steps == big
    step = UP if in_stride > out_stride else DOWN
    return (step,) * num_steps + (() if exact else (RESIZE,))


def resampled_size(size, in_stride, out_stride):
    """Map side at ``out_stride`` for a side ``size`` at ``in_stride``: ``ceil(size * in / out)``.

    The learned steps give exactly this (2x up doubles; 2x down rounds up, as a
    padded stride-2 conv), so the 'resize' op targets it too.
    """
    return -(-size * in_stride // out_stride)


class Down2(nn.Module):
    """2x down-sampling that keeps odd sides: ``ceil(h / 2)`` (pads bottom/right)."""

    def __init__(self, channels, learned):
        super().__init__()
        self.op = (nn.Conv2d(channels, channels, 2, 2) if learned
                   else nn.MaxPool2d(2, 2))

    def forward(self, x):
        pad_h, pad_w = x.shape[-2] % 2, x.shape[-1] % 2
        if pad_h or pad_w:  # replicate: neutral for max pool, no fake zeros for the conv
            x = F.pad(x, (0, pad_w, 0, pad_h), mode='replicate')
        return self.op(x)


class StepChain(nn.Module):
    """``num_steps`` 2x steps in one direction, tapped after any number of them.

    Up: 2x2 stride-2 transposed convs (halving the channels if ``halve``);
    down: ``Down2`` (conv or max pool). Norm + GELU sit between learned steps
    (ViTDet); max pools need none.
    """

    def __init__(self, channels, step, num_steps, norm_cfg, learned_down, halve):
        super().__init__()
        self.channels = [channels]  # channels after 0, 1, ... steps
        self.stages = nn.ModuleList()
        for i in range(num_steps):
            layers = []
            if i > 0 and (step == UP or learned_down):
                layers += [build_norm_layer(norm_cfg, channels)[1], nn.GELU()]
            if step == UP:
                out = channels // 2 if halve else channels
                layers.append(nn.ConvTranspose2d(channels, out, 2, 2))
                channels = out
            else:
                layers.append(Down2(channels, learned_down))
            self.stages.append(nn.Sequential(*layers))
            self.channels.append(channels)

    def forward(self, x, depths):
        """Maps after each of ``depths`` steps (each step runs once, however many taps)."""
        taps = {0: x}
        for i, stage in enumerate(self.stages[:max(depths)]):
            x = stage(x)
            taps[i + 1] = x
        return [taps[d] for d in depths]


@register_seg_det_model
class PatchPyramidNeck(BaseModule):
    """Maps at ``out_strides`` from the stride-``in_stride`` map(s) of a plain backbone.

    ViTDet's simple feature pyramid generalised to any patch size ``p =
    in_stride`` (1..32 and beyond): per output level, ``plan_resampling`` gives
    2x2 stride-2 transposed convs (norm + GELU between) where the stride must
    shrink, nothing where it is equal, 2x2 stride-2 convs or max pools
    (``downsample``) where it must grow, and a final bilinear resize to the
    exact size ``ceil(h * p / s)`` when ``p / s`` is not a power of two.

    Inputs: with one input map (``in_channels`` an int or a 1-list) it feeds
    every level, through one chain of up steps and one chain of down steps that
    each level taps after its number of steps (so at p=1 the costly first
    down-sampling of the full-resolution map runs once, not once per level);
    with several (``in_channels`` a list, one per backbone ``out_indices``
    entry) input ``i`` feeds output level ``i`` through its own steps, so their
    number must equal ``len(out_strides)``.

    Args:
        in_channels: channels of the input map(s), int or list.
        in_stride: stride (patch size) of the input map(s).
        out_strides: strides of the output maps, e.g. (4, 8, 16, 32) for
            UperNet, (4, 8, 16, 32, 64) for detection (= anchor strides).
        out_channels: if set, each level ends with a 1x1 conv to
            ``out_channels`` and a 3x3 conv, each followed by a norm
            (ViTDet); ``None`` returns the resampled maps at the input width
            (as mmseg's MultiLevelNeck with UperNet).
        downsample: 'conv' (learned 2x2 stride-2) or 'pool' (2x2 max pool).
        halve_up_channels: halve the channels at each transposed conv
            (ViTDet). ``None``: halve only when ``out_channels`` is set, since
            without output convs every level must keep the input width.
        norm_cfg: norm between learned steps and after the output convs;
            default ``dict(type='LN2d')`` (LayerNorm over channels, as ViTDet).
    """

    def __init__(self, in_channels, in_stride, out_strides=(4, 8, 16, 32), out_channels=None,
                 downsample='conv', halve_up_channels=None, norm_cfg=dict(type='LN2d'),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        in_channels = [in_channels] if isinstance(in_channels, int) else list(in_channels)
        out_strides = tuple(out_strides)
        if not in_channels or not all(isinstance(c, int) and c > 0 for c in in_channels):
            raise ValueError(f'in_channels must be a positive int or a list of them, '
                             f'got {in_channels!r}')
        if len(in_channels) not in (1, len(out_strides)):
            raise ValueError(f'{len(in_channels)} inputs for {len(out_strides)} output levels: '
                             f'give one input (it feeds every level) or one per level')
        if not out_strides:
            raise ValueError('out_strides is empty; give at least one output stride')
        if downsample not in ('conv', 'pool'):
            raise ValueError(f"downsample must be 'conv' or 'pool', got {downsample!r}")
        if halve_up_channels is None:
            halve_up_channels = out_channels is not None
        if halve_up_channels and out_channels is None and any(s < in_stride for s in out_strides):
            raise ValueError('halve_up_channels=True needs out_channels (the output convs '
                             'restore a common width); set out_channels or halve_up_channels=False')
        plan_resampling(in_stride, out_strides[0])  # validates in_stride before building
        self.in_channels = in_channels
        self.in_stride = in_stride
        self.out_strides = out_strides
        self.out_channels = out_channels

        # level -> (input, step, depth, resize); (input, step) -> chain of the deepest depth
        self.levels = []
        depth_needed = {}
        for level, stride in enumerate(out_strides):
            plan = plan_resampling(in_stride, stride)
            source = level if len(in_channels) > 1 else 0
            step = UP if UP in plan else DOWN
            depth = len(plan) - plan.count(RESIZE)
            self.levels.append((source, step, depth, RESIZE in plan))
            if depth:
                key = (source, step)
                depth_needed[key] = max(depth, depth_needed.get(key, 0))
        self.chain_index = {}
        self.chains = nn.ModuleList()
        for (source, step), depth in sorted(depth_needed.items()):
            self.chain_index[(source, step)] = len(self.chains)
            self.chains.append(StepChain(in_channels[source], step, depth, norm_cfg,
                                         learned_down=downsample == 'conv',
                                         halve=halve_up_channels))

        self.out_convs = nn.ModuleList()
        for source, step, depth, _ in self.levels:
            chain = self.chains[self.chain_index[(source, step)]] if depth else None
            channels = chain.channels[depth] if depth else in_channels[source]
            if out_channels is None:
                self.out_convs.append(nn.Identity())
            else:
                self.out_convs.append(nn.Sequential(
                    ConvModule(channels, out_channels, 1, bias=False,
                               norm_cfg=norm_cfg, act_cfg=None),
                    ConvModule(out_channels, out_channels, 3, padding=1, bias=False,
                               norm_cfg=norm_cfg, act_cfg=None)))

    def forward(self, inputs):
        inputs = list(inputs)
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'PatchPyramidNeck was built for {len(self.in_channels)} input '
                             f'map(s) (in_channels={self.in_channels}) but got {len(inputs)}; '
                             f"match in_channels to the backbone's out_indices")
        taps = {}  # (input, step, depth) -> map
        for (source, step), index in self.chain_index.items():
            depths = sorted({d for src, stp, d, _ in self.levels if (src, stp) == (source, step)})
            for depth, x in zip(depths, self.chains[index](inputs[source], depths)):
                taps[(source, step, depth)] = x
        outs = []
        for (source, step, depth, resize), stride, out_conv in zip(
                self.levels, self.out_strides, self.out_convs):
            x = taps[(source, step, depth)] if depth else inputs[source]
            if resize:
                size = [resampled_size(n, self.in_stride, stride) for n in inputs[source].shape[-2:]]
                x = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
            outs.append(out_conv(x))
        return tuple(outs)
