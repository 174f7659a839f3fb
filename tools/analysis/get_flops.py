"""Forward FLOPs of a config's model or of one backbone, attention and the SSD scan included.

mmengine's ``get_model_complexity_info`` walks modules and misses
``F.scaled_dot_product_attention`` and the SSD scan; this counts aten ops
(``mmpatch.utils.flops.count_flops_by_op``: fake tensors, so 262k-token inputs
cost seconds), FLOPs = 2 x multiply-adds of matmuls, convolutions and
attention. Mamba-2 mixers are counted with the chunked SSD algorithm at the
kernel's chunk length.

    python tools/analysis/get_flops.py CONFIG [--shape 512 512]
    python tools/analysis/get_flops.py --backbone PatchViT --arch base --patch-size 4 --shape 512 512
"""
import argparse

from mmpatch.utils.flops import count_flops_by_op, split_attention_flops


def build_model(args):
    """The model to count and the forward keyword arguments it needs."""
    if args.config:
        from mmengine.config import Config
        from mmengine.registry import MODELS, init_default_scope
        cfg = Config.fromfile(args.config)
        init_default_scope(cfg.get('default_scope', 'mmseg'))
        return MODELS.build(cfg.model), dict(mode='tensor')
    if not args.backbone:
        raise ValueError('give a CONFIG or --backbone NAME (e.g. PatchViT, PatchMamba)')
    import mmpatch.models  # noqa: F401  (registers the backbones)
    from mmseg.registry import MODELS
    return MODELS.build(dict(type=args.backbone, arch=args.arch, patch_size=args.patch_size,
                             img_size=tuple(args.shape))), {}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', nargs='?', help='mmseg / mmdet config file')
    parser.add_argument('--backbone', help='registry name of a backbone, instead of a config')
    parser.add_argument('--arch', default='base')
    parser.add_argument('--patch-size', type=int, default=16)
    parser.add_argument('--shape', type=int, nargs=2, default=(512, 512), metavar=('H', 'W'))
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model, forward_kwargs = build_model(args)
    counts = count_flops_by_op(model, (1, 3, *args.shape), **forward_kwargs)
    attention, other = split_attention_flops(counts)
    total = attention + other
    params = sum(p.numel() for p in model.parameters())
    print(f'input 1x3x{args.shape[0]}x{args.shape[1]}: {total / 1e9:.2f} GFLOPs forward '
          f'({100 * attention / max(total, 1):.1f}% attention), {params / 1e6:.2f} M parameters')
    for op, flops in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f'  {op:55s} {flops / 1e9:14.3f} GFLOPs')
    return dict(total_flops=total, attention_flops=attention, by_op=counts, params=params)


if __name__ == '__main__':
    main()
