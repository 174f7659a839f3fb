"""Generate the toy datasets (deterministic, three seg scene families; see mmpatch/datasets/toy_scenes.py).

    python tools/data/make_toy.py seg  --out data/toy_seg    # ADE20K layout, reduce_zero_label
    python tools/data/make_toy.py coco --out data/toy_coco   # COCO instances (polygons)
    python tools/data/make_toy.py coco --out data/toy_coco_128 --img-size 128 --num-train 400 \
        --num-val 100 --min-object-size 3 --max-object-size 40   # the toy detection grid's set
    python tools/data/make_toy.py seg --img-size 128 --num-train 1000 --num-classes 16 --detail-scale 2
    python tools/data/make_toy.py seg --family shape   --out data/toy_seg_shape     # figures named by shape
    python tools/data/make_toy.py seg --family control --out data/toy_seg_control   # large regions only

Seg scene families (--family): strokes (default: 1-3 px strokes, 3-8 px objects, striped
regions), shape (1-3 px line figures of 10-30 px whose class only their shape names, one
shared colour distribution), control (large regions, each class its own look).
"""
import argparse
import time

from mmpatch.datasets.toy_scenes import SEG_FAMILIES, write_toy_coco, write_toy_seg
from mmpatch.apis.errors import fail  # the tools' one exit path: one line, exit code 2


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('kind', choices=['seg', 'coco'], help='seg: semantic segmentation; coco: instances')
    ap.add_argument('--out', help='output folder (default data/toy_seg or data/toy_coco)')
    ap.add_argument('--img-size', type=int, nargs='+', default=[64], metavar='PX',
                    help='image size: one value (square) or H W (default 64)')
    ap.add_argument('--num-train', type=int, default=200, help='training images (default 200)')
    ap.add_argument('--num-val', type=int, default=50, help='validation images (default 50)')
    ap.add_argument('--family', choices=SEG_FAMILIES, help='seg scene family (default strokes): strokes, '
                    'shape (line figures named by their shape) or control (large regions only)')
    ap.add_argument('--num-classes', type=int, help='classes: seg (default 8) 3..150 for strokes (roles '
                    'region/stroke/object round robin), 3..10 for shape (background + figures), 2..150 '
                    'for control; coco 1..80 (default 6 shapes)')
    ap.add_argument('--detail-scale', type=float, default=1.0, help='strokes: multiplies stroke widths '
                    '(1-3 px) and small-object sizes (3-8 px); shape: line widths; control: 1.0 only. '
                    'Default 1.0, larger = coarser/easier')
    ap.add_argument('--min-object-size', type=float, metavar='PX',
                    help='coco: smallest object size in px (its box\'s longer side, >= 2); with '
                    '--max-object-size, sizes are drawn log-uniformly in [min, max] and objects lie '
                    'wholly inside the image. Default: the default size mix (3-8 px specks, larger '
                    'shapes up to a third of the image)')
    ap.add_argument('--max-object-size', type=float, metavar='PX',
                    help='coco: largest object size in px (at most half the shorter image side)')
    ap.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    ap.add_argument('--image-format', choices=['png', 'jpg'], default='png',
                    help='seg images as PNG (default) or JPEG like ADE20K (for data-pipeline timing)')
    ap.add_argument('--overwrite', action='store_true', help='replace a toy set made with other knobs')
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if len(args.img_size) not in (1, 2):
        fail('make_toy.py', '--img-size takes one value or two (H W)', 2)
    out = args.out or f'data/toy_{args.kind}'
    if args.kind == 'coco' and args.image_format != 'png':
        fail('make_toy.py', '--image-format applies to the seg set only', 2)
    writer = write_toy_seg if args.kind == 'seg' else write_toy_coco
    if args.kind == 'seg' and (args.min_object_size is not None or args.max_object_size is not None):
        fail('make_toy.py', '--min-object-size and --max-object-size apply to the coco set only', 2)
    extra = dict(image_format=args.image_format) if args.kind == 'seg' else dict(
        min_object_size=args.min_object_size, max_object_size=args.max_object_size)
    t0 = time.time()
    try:
        meta = writer(out, overwrite=args.overwrite, **extra,
                      img_size=args.img_size[0] if len(args.img_size) == 1 else tuple(args.img_size),
                      num_train=args.num_train, num_val=args.num_val, num_classes=args.num_classes,
                      detail_scale=args.detail_scale, seed=args.seed, family=args.family)
    except (ValueError, OSError) as e:  # bad knobs, an existing other set, an unwritable --out
        fail('make_toy.py', str(e), 2)
    print(f"toy {args.kind}: {meta['num_train']} train + {meta['num_val']} val images of "
          f"{meta['img_size'][0]}x{meta['img_size'][1]}, {meta['num_classes']} classes -> {out} "
          f'({time.time() - t0:.1f} s)')


if __name__ == '__main__':
    main()
