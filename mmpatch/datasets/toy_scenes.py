"""Toy scenes for fast patch-size experiments on CPU: fine detail, shapes, large regions.

Two datasets, both deterministic from ``seed`` (image ``i`` of a split depends
only on ``(seed, split, i)`` and the knobs, so 100 images are the first 100 of 200):

``write_toy_seg(root, ...)``: ADE20K layout, for semantic segmentation::

    root/images/{training,validation}/toy_00000.png        RGB (or .jpg: image_format='jpg')
    root/annotations/{training,validation}/toy_00000.png   uint8 labels
    root/meta.json                                         knobs, classes, palette

  Labels follow ADE20K's ``reduce_zero_label`` convention: file value 0 is
  "unlabelled" (a little grey clutter in strokes scenes, ignored in training
  and evaluation) and file values 1..num_classes are the classes, which mmseg
  shifts to 0..K-1 when the dataset has ``reduce_zero_label=True``
  (``ToySegDataset`` does).

``write_toy_coco(root, ...)``: COCO instance segmentation::

    root/{train,val}/toy_00000.png
    root/annotations/instances_{train,val}.json   polygons, bbox, area, iscrowd=0
    root/meta.json

What the scenes hold: the segmentation set comes in three families
(``family`` knob, ``SEG_FAMILIES``), each a different question for the patch
size; every family keeps the ``reduce_zero_label`` convention above.

``strokes`` (the default) holds deliberate fine detail (a linear head on p8
tokens cannot draw a 1 px line, a p1 model can):

* Segmentation classes come in three roles, assigned round robin over the
  class ids 1..K: ``region`` (large areas: a warped Voronoi partition, so
  many-class junctions), ``stroke`` (lines and curves 1-3 px wide) and
  ``object`` (discs, squares, triangles, diamonds of 3-8 px). Class names
  say the role (``region_1``, ``stroke_2``, ``object_3``, ...).
* Looks (``seg_class_looks``, fixed per class id, independent of ``seed``):
  a region is stripes of two paints at its own angle and period (3-7 px, so
  stripes look like strokes at a glance); the region paints are shared, each
  by two regions, so a region pixel's colour does not name its class (a
  per-pixel colour classifier stays far from perfect) but the stripe pattern
  does, which a model can learn. Strokes and objects have a paint each:
  their difficulty is their size, which is what the patch size changes.
  Per image the paints and brightness jitter; per pixel there is noise.

``shape`` holds thin line figures whose class only their shape names:
class 1 is ``background`` (warped Voronoi cells, each low-contrast stripes
of two muted paints), classes 2..K are figures (``SHAPE_FIGURES``: ring,
cross, corner, zigzag, spiral, triangle, tee, box, arrow; names
``background_1``, ``ring_2``, ``cross_3``, ...). Every figure is 1-3 px wide
lines over a 10-30 px extent, randomly rotated, fully inside the image and
apart from the others, painted with one of ``SHAPE_PAINTS`` drawn per figure
at random: colour, line width, size and noise are independent of the class,
so a pixel's class is decided by the figure around it, which a receptive
field smaller than the figure cannot see whole.

``control`` holds large regions only (a warped Voronoi partition, class
``region_c`` per cell, no strokes, no small objects), each class with its own
look (its own paint in stripes at its own angle and period,
``control_class_looks``): little depends on the patch size there.

COCO categories are shapes (disc, box, triangle, stick, diamond, star); two
categories share each paint, so the shape names the category, on a striped
background that is no category; instances do not overlap, and each mask is
exactly the rasterised polygon (``pycocotools``), so image, mask, area and
bbox agree. Sizes: by default a mix of 3-8 px specks (about two thirds),
larger shapes up to a third of the image and 8 px to half-image sticks 2-3 px
wide, cut by the image border; with ``min_object_size`` and
``max_object_size`` every object's size (its bounding box's longer side) is
drawn log-uniformly in that range, so each octave holds as many objects (small
ones are many), and objects lie wholly inside the image.

Knobs (same names in ``tools/data/make_toy.py``):
    img_size      int or (h, w), default 64
    num_train     images in the training split, default 200
    num_val       images in the validation split, default 50
    num_classes   seg (default 8): 3..150 for strokes, 3..10 for shape (the
                  background and 2..9 figures), 2..150 for control; COCO 1..80
                  (default 6)
    detail_scale  strokes: multiplies stroke widths and small-object sizes;
                  shape: multiplies line widths (at most a sixth of the figure's
                  extent); control: must stay 1.0 (nothing fine to scale).
                  Default 1.0 (2.0 gives 2-6 px strokes: a coarser, easier set)
    seed          default 0
    family        seg only: 'strokes' (default), 'shape' or 'control'; a
                  meta.json without it is a strokes set
    min_object_size, max_object_size
                  COCO only, px, both or neither: object sizes log-uniform in
                  [min, max], 2 <= min <= max <= half the shorter image side;
                  detail_scale must then stay 1.0. Default None (the default
                  size mix above); a meta.json without them has the default mix

``fine_detail_mask(label)`` marks the pixels that belong to structures at most
3 px thick (what a morphological opening with a 4x4 square removes).
"""
import json
import os
import os.path as osp
import shutil
from dataclasses import asdict, dataclass

import cv2
import numpy as np

ROLES = ('region', 'stroke', 'object')
SHAPE_FIGURES = ('ring', 'cross', 'corner', 'zigzag', 'spiral', 'triangle', 'tee', 'box', 'arrow')
COCO_SHAPES = ('disc', 'box', 'triangle', 'stick', 'diamond', 'star')
SEG_SPLITS = {'train': 'training', 'val': 'validation'}
STYLE_SEED = 20250205  # class looks are fixed across data seeds
GENERATOR_VERSION = 1
MAX_SEG_CLASSES = 150
MAX_COCO_CLASSES = 80
# seg family -> (fewest classes, most classes, what sets the range)
SEG_FAMILY_CLASSES = {
    'strokes': (3, MAX_SEG_CLASSES, f'one class per role {ROLES}'),
    'shape': (3, 1 + len(SHAPE_FIGURES), f'the background and 2..{len(SHAPE_FIGURES)} of the figures '
                                         f'{SHAPE_FIGURES}'),
    'control': (2, MAX_SEG_CLASSES, 'two regions or more'),
}
SEG_FAMILIES = tuple(SEG_FAMILY_CLASSES)


# ----------------------------------------------------------------------------- knobs
@dataclass(frozen=True)
class ToyKnobs:
    img_size: tuple
    num_train: int
    num_val: int
    num_classes: int
    detail_scale: float
    seed: int


@dataclass(frozen=True)
class ToySegKnobs(ToyKnobs):
    family: str


@dataclass(frozen=True)
class ToyCocoKnobs(ToyKnobs):
    min_object_size: float = None
    max_object_size: float = None


def check_family(family):
    """``family`` if it is a seg scene family, else a ValueError listing the valid ones."""
    if family not in SEG_FAMILIES:
        raise ValueError(f'unknown toy seg family {family!r}: valid families are {", ".join(SEG_FAMILIES)}')
    return family


def check_object_sizes(min_object_size, max_object_size, hw, detail_scale=1.0):
    """``(min, max)`` as floats (or ``(None, None)``: the default size mix) for an ``hw`` image.

    Raises ValueError naming the problem: only one of them given, min < 2 px (a
    smaller object rasterises to under 4 pixels), max < min, max above half the
    shorter image side (objects must fit wholly inside, with room to place
    them), or a ``detail_scale`` other than 1.0 (it scales the default mix only).
    """
    if min_object_size is None and max_object_size is None:
        return None, None
    if min_object_size is None or max_object_size is None:
        raise ValueError(f'give both min_object_size and max_object_size (--min-object-size, '
                         f'--max-object-size) or neither (the default size mix), got '
                         f'min={min_object_size}, max={max_object_size}')
    lo, hi = float(min_object_size), float(max_object_size)
    if lo < 2:
        raise ValueError(f'min_object_size must be >= 2 px, got {min_object_size}')
    if hi < lo:
        raise ValueError(f'max_object_size ({max_object_size}) must be >= min_object_size '
                         f'({min_object_size})')
    if hi > min(hw) / 2:
        raise ValueError(f'max_object_size must be at most half the shorter image side '
                         f'({min(hw) / 2:g} px for img_size {hw[0]}x{hw[1]}), got {max_object_size}; '
                         'use a larger img_size or smaller objects')
    if detail_scale != 1.0:
        raise ValueError(f'detail_scale scales the default size mix only; with min/max_object_size '
                         f'give the sizes directly (detail_scale=1.0), got {detail_scale}')
    return lo, hi


def make_knobs(kind, img_size=64, num_train=200, num_val=50, num_classes=None,
               detail_scale=1.0, seed=0, family=None, min_object_size=None, max_object_size=None):
    """Validated knobs for ``kind`` 'seg' or 'coco'; raises ValueError naming the bad one.

    ``family`` (seg only, default 'strokes') picks the scene family; the COCO set has none.
    ``min_object_size`` / ``max_object_size`` (COCO only): see ``check_object_sizes``.
    """
    if kind not in ('seg', 'coco'):
        raise ValueError(f"toy dataset kind must be 'seg' or 'coco', got {kind!r}")
    if kind == 'seg':
        family = check_family('strokes' if family is None else family)
        lo, hi, why = SEG_FAMILY_CLASSES[family]
        why = f' (the {family} family needs {why})'
        if min_object_size is not None or max_object_size is not None:
            raise ValueError('min_object_size and max_object_size apply to the toy coco set only')
    elif family is not None:
        raise ValueError(f'family applies to the toy seg set only, got family={family!r} for coco')
    else:
        lo, hi, why = 1, MAX_COCO_CLASSES, ''
    if num_classes is None:
        num_classes = 8 if kind == 'seg' else 6
    if not lo <= int(num_classes) <= hi:
        raise ValueError(f'num_classes for the toy {kind} set must be in {lo}..{hi}{why}, got {num_classes}')
    if family == 'control' and detail_scale != 1.0:
        raise ValueError(f'detail_scale must be 1.0 for the control family (it has no fine detail '
                         f'to scale), got {detail_scale}')
    hw = (img_size, img_size) if np.isscalar(img_size) else tuple(img_size)
    if len(hw) != 2 or min(hw) < 16:
        raise ValueError(f'img_size must be an int or (h, w) with both >= 16, got {img_size}')
    if num_train < 1 or num_val < 1:
        raise ValueError(f'num_train and num_val must be >= 1, got {num_train} and {num_val}')
    if not 0.25 <= detail_scale <= 8:
        raise ValueError(f'detail_scale must be in 0.25..8, got {detail_scale}')
    values = ((int(hw[0]), int(hw[1])), int(num_train), int(num_val), int(num_classes),
              float(detail_scale), int(seed))
    if kind == 'seg':
        return ToySegKnobs(*values, family)
    return ToyCocoKnobs(*values, *check_object_sizes(min_object_size, max_object_size, hw,
                                                     detail_scale))


# ----------------------------------------------------------------------------- classes
def seg_class_roles(num_classes, family='strokes'):
    """Role of each class of a ``family`` set, in class order (file label 1 first).

    strokes: region/stroke/object round robin; shape: ``background`` then the
    first K-1 of ``SHAPE_FIGURES``; control: ``region`` for all.
    """
    if check_family(family) == 'strokes':
        return [ROLES[c % len(ROLES)] for c in range(num_classes)]
    if family == 'shape':
        return ['background', *SHAPE_FIGURES[:num_classes - 1]]
    return ['region'] * num_classes


def seg_class_names(num_classes, family='strokes'):
    return tuple(f'{role}_{c + 1}' for c, role in enumerate(seg_class_roles(num_classes, family)))


def coco_class_names(num_classes):
    return tuple(f'{COCO_SHAPES[c % len(COCO_SHAPES)]}_{c + 1}' for c in range(num_classes))


def class_colours(num_classes):
    """Display palette (visualisation only): distinct golden-ratio hues, fixed per class id."""
    colours = []
    for c in range(num_classes):
        rng = np.random.default_rng([STYLE_SEED, c])
        hue = int(((c * 0.618034) % 1.0) * 180)
        sat, val = int(rng.uniform(120, 230)), int(rng.uniform(130, 240))
        hsv = np.uint8([[[hue, sat, val]]])
        colours.append([int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]])
    return colours


def toy_seg_metainfo(num_classes=8, family='strokes'):
    """``dict(classes, palette)`` of a toy segmentation set of ``family`` (palette = class colours)."""
    return dict(classes=seg_class_names(num_classes, family), palette=class_colours(num_classes))


def paint_colours(num_paints):
    """Paints: evenly spaced hues, alternating brightness."""
    out = []
    for i in range(num_paints):
        hsv = np.uint8([[[int(180 * i / num_paints), 200, 230 if i % 2 == 0 else 150]]])
        out.append([int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]])
    return out


SHAPE_PAINTS = paint_colours(6)  # a shape figure's paint is one of these, drawn per figure


def seg_class_looks(num_classes):
    """How each class of a strokes set is painted (fixed per class id, independent of the data seed).

    Regions share paints: region j is stripes of paints j and j+1 of a ring of
    max(3, #regions) paints, so every region paint belongs to two regions and a
    region pixel's colour is ambiguous; the stripes' angle and period tell the
    regions apart. Strokes and objects each have a paint of their own, spread
    between the region paints on the hue circle: what makes them hard is their
    size, not their recognition.

    Returns ``(paints, looks)``: ``looks[c]`` is ``(paint_a, paint_b, angle,
    period)`` for a region and ``(paint,)`` for a stroke or an object.
    """
    roles = seg_class_roles(num_classes)
    n_ring = max(3, roles.count('region'))
    n_paints = n_ring + num_classes - roles.count('region')
    ring = [int(round(i * n_paints / n_ring)) for i in range(n_ring)]
    own = iter(i for i in range(n_paints) if i not in ring)
    looks, j = [], 0
    for c, role in enumerate(roles):
        if role == 'region':
            rng = np.random.default_rng([STYLE_SEED, c])
            looks.append((ring[j % n_ring], ring[(j + 1) % n_ring], rng.uniform(0, np.pi), rng.uniform(3, 7)))
            j += 1
        else:
            looks.append((next(own),))
    return paint_colours(n_paints), looks


def control_class_looks(num_classes):
    """How each class of a control set is painted: a look of its own (fixed per class id).

    Class c is stripes of paint c (evenly spaced hues) and a darker shade of it,
    at its own angle and period (4-10 px), so colour and texture both name it.
    Returns ``(paints, looks)`` in ``_render``'s format.
    """
    paints, looks = [], []
    for c, paint in enumerate(paint_colours(num_classes)):
        rng = np.random.default_rng([STYLE_SEED, c])
        paints += [paint, [int(0.6 * v) for v in paint]]
        looks.append((2 * c, 2 * c + 1, rng.uniform(0, np.pi), rng.uniform(4, 10)))
    return paints, looks


def shape_looks(rng, num_cells):
    """Paints and looks of a shape scene: ``SHAPE_PAINTS`` figure paints, then background cells.

    Looks 1..len(SHAPE_PAINTS) are the figure paints (solid); the next
    ``num_cells`` are background cells, each low-contrast stripes of two
    muted paints (the figure paints mixed with grey) at a random angle and
    period, drawn per image. Nothing here depends on a class.
    """
    muted = [[int(0.3 * v + 0.7 * 110) for v in p] for p in SHAPE_PAINTS]
    n = len(SHAPE_PAINTS)
    looks = [(i,) for i in range(n)]
    for _ in range(num_cells):
        a, b = rng.choice(n, size=2, replace=False)
        looks.append((n + a, n + b, rng.uniform(0, np.pi), rng.uniform(4, 8)))
    return SHAPE_PAINTS + muted, looks


# ----------------------------------------------------------------------------- drawing
def _smooth_noise(rng, hw, cells=5):
    """Smooth random field in [-1, 1] (bicubic upsampling of a coarse grid)."""
    grid = rng.uniform(-1, 1, size=(cells, cells)).astype(np.float32)
    return cv2.resize(grid, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC)


def _stripes(hw, angle, period, phase):
    yy, xx = np.mgrid[0:hw[0], 0:hw[1]].astype(np.float32)
    t = xx * np.cos(angle) + yy * np.sin(angle)
    return np.sign(np.sin(2 * np.pi * t / period + phase)).astype(np.float32)


def _warped_voronoi(rng, hw, num_cells):
    """Label map 0..num_cells-1 of a Voronoi partition with wavy borders."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    amp = 0.12 * min(h, w)
    xx = xx + amp * _smooth_noise(rng, hw)
    yy = yy + amp * _smooth_noise(rng, hw)
    seeds = rng.uniform([0, 0], [h, w], size=(num_cells, 2)).astype(np.float32)
    dist = (yy[None] - seeds[:, 0, None, None]) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2
    return dist.argmin(0)


def _stroke_mask(rng, hw, width):
    """A line, a zigzag or a curve, exactly ``width`` px thick (per segment)."""
    h, w = hw
    kind = rng.integers(3)
    if kind == 0:  # straight line, long
        pts = rng.uniform([0, 0], [w, h], size=(2, 2))
    elif kind == 1:  # zigzag
        pts = rng.uniform([0, 0], [w, h], size=(rng.integers(3, 5), 2))
    else:  # quadratic Bezier curve
        p0, p1, p2 = rng.uniform([0, 0], [w, h], size=(3, 2))
        t = np.linspace(0, 1, 16)[:, None]
        pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
    return _polyline_mask(np.round(pts).astype(np.int32), hw, width)


def _polyline_mask(pts, hw, width):
    """Mask of the polyline through integer points ``pts`` (x, y), each segment ``width`` px thick.

    Each segment is thickened across its main direction (down or right), so a
    segment is exactly ``width`` px thick wherever it runs. Mostly horizontal and
    mostly vertical segments are drawn on one canvas each and thickened once
    (a dilation of a union is the union of the dilations).
    """
    segments = np.stack([pts[:-1], pts[1:]], 1).astype(np.int32)  # (n, 2 ends, x y)
    d = np.abs(segments[:, 1] - segments[:, 0])
    vertical = d[:, 0] < d[:, 1]
    canvases = np.zeros((2,) + tuple(hw), np.uint8)  # mostly horizontal, mostly vertical
    for canvas, group in zip(canvases, (segments[~vertical], segments[vertical])):
        cv2.polylines(canvas, list(group), False, 1, 1, cv2.LINE_8)
    if width > 1:
        canvases = [cv2.dilate(canvas, np.ones(kernel, np.uint8), anchor=(0, 0))
                    for canvas, kernel in zip(canvases, ((width, 1), (1, width)))]
    return (canvases[0] | canvases[1]).astype(bool)


def _small_object_mask(rng, hw, size):
    """A disc, square, triangle or diamond of about ``size`` px, anywhere."""
    h, w = hw
    cy, cx = rng.integers(0, h), rng.integers(0, w)
    r = size / 2
    mask = np.zeros(hw, np.uint8)
    kind = rng.integers(4)
    if kind == 0:
        cv2.circle(mask, (int(cx), int(cy)), max(1, int(round(r))), 1, -1)
    elif kind == 1:
        cv2.rectangle(mask, (int(cx - r), int(cy - r)), (int(cx - r) + size - 1, int(cy - r) + size - 1), 1, -1)
    else:
        n = 3 if kind == 2 else 4
        ang = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(n) / n
        poly = np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], 1)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return mask.astype(bool)


def _scaled_count(rng, lo, hi, hw):
    """Random count in [lo, hi) per 64x64 area."""
    return max(1, int(round(rng.integers(lo, hi) * hw[0] * hw[1] / 4096)))


def _render(look_map, paints, looks, rng):
    """RGB image of a look map: grey clutter where 0, ``looks[v - 1]`` where v; jitter, noise.

    A look is ``(paint,)`` (solid) or ``(paint_a, paint_b, angle, period)``
    (stripes); paints are RGB triples, jittered per image. The look map is the
    label map where looks are per class.
    """
    hw = look_map.shape
    paints = np.float32(paints) + rng.normal(0, 10, size=(len(paints), 3)).astype(np.float32)
    img = np.zeros(hw + (3,), np.float32)
    clutter = 128 + 40 * rng.standard_normal(hw).astype(np.float32)  # label 0
    img[look_map == 0] = clutter[look_map == 0, None]
    for c in np.unique(look_map):
        if c == 0:
            continue
        m = look_map == c
        look = looks[c - 1]
        if len(look) == 4:  # region: stripes of two paints
            a, b, angle, period = look
            on = _stripes(hw, angle + rng.normal(0, 0.1), period, rng.uniform(0, 2 * np.pi)) > 0
            img[m & on] = paints[a]
            img[m & ~on] = paints[b]
        else:
            img[m] = paints[look[0]]
    img *= rng.uniform(0.85, 1.15)  # brightness
    img += rng.normal(0, 7, size=img.shape).astype(np.float32)  # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)


def make_seg_scene(rng, img_size=(64, 64), num_classes=8, detail_scale=1.0, family='strokes'):
    """One scene of ``family``: (RGB uint8 HxWx3, label uint8 HxW with 0 = unlabelled, 1..K classes)."""
    scene = {'strokes': _strokes_scene, 'shape': _shape_scene, 'control': _control_scene}
    return scene[check_family(family)](rng, tuple(img_size), num_classes, detail_scale)


def _strokes_scene(rng, hw, num_classes, detail_scale):
    """Regions, strokes and small objects (see the module docstring)."""
    roles = seg_class_roles(num_classes)
    by_role = {r: [c + 1 for c, rr in enumerate(roles) if rr == r] for r in ROLES}

    cells = _warped_voronoi(rng, hw, int(rng.integers(3, 7)))
    cell_class = rng.choice(by_role['region'], size=cells.max() + 1)
    label = cell_class[cells].astype(np.uint8)

    if rng.random() < 0.5:  # a blob of unlabelled clutter (ADE20K's "other", ignored)
        blob = np.zeros(hw, np.uint8)
        axes = tuple(int(v) for v in rng.integers(3, 9, size=2))
        centre = (int(rng.integers(0, hw[1])), int(rng.integers(0, hw[0])))
        cv2.ellipse(blob, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        label[blob.astype(bool)] = 0

    for _ in range(_scaled_count(rng, 3, 7, hw)):
        width = max(1, int(round(rng.integers(1, 4) * detail_scale)))
        label[_stroke_mask(rng, hw, width)] = rng.choice(by_role['stroke'])

    for _ in range(_scaled_count(rng, 4, 10, hw)):
        size = max(2, int(round(rng.integers(3, 9) * detail_scale)))
        label[_small_object_mask(rng, hw, size)] = rng.choice(by_role['object'])

    return _render(label, *seg_class_looks(num_classes), rng), label


def _figure_polylines(figure):
    """Polylines (arrays of x, y in [-1, 1]) that draw ``figure``; closed ones end where they start."""
    if figure == 'ring':
        t = np.linspace(0, 2 * np.pi, 25)[:, None]
        return [np.hstack([np.cos(t), np.sin(t)])]
    if figure == 'spiral':  # 1.15 turns, the radius growing from 0.3 to 1
        t = np.linspace(0, 1.15 * 2 * np.pi, 29)[:, None]
        return [(0.3 + 0.7 * t / t[-1]) * np.hstack([np.cos(t), np.sin(t)])]
    lines = {
        'cross': [[(-1, 0), (1, 0)], [(0, -1), (0, 1)]],
        'corner': [[(-1, -1), (-1, 1), (1, 1)]],
        'zigzag': [[(-1, 1), (-0.33, -1), (0.33, 1), (1, -1)]],
        'triangle': [[(0, -1), (0.87, 0.5), (-0.87, 0.5), (0, -1)]],
        'tee': [[(-1, -1), (1, -1)], [(0, -1), (0, 1)]],
        'box': [[(-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1)]],
        'arrow': [[(-1, 0), (1, 0)], [(0.3, -0.6), (1, 0), (0.3, 0.6)]],
    }[figure]
    return [np.float64(line) for line in lines]


def _figure_patch(rng, figure, max_extent, detail_scale):
    """Mask of a randomly rotated ``figure``, 1-3 px lines over 10-30 px, cropped to its box.

    The extent (the box's longer side) is drawn in 11..29 px (at most
    ``max_extent``; rounding moves it by 1 px at most); the line width (times
    ``detail_scale``) is at most a sixth of it, so small figures stay open line
    drawings rather than blobs.
    """
    extent = rng.uniform(11, min(29, max_extent))
    width = int(min(max(1, round(rng.integers(1, 4) * detail_scale)), max(1, extent // 6)))
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    lines = [line @ rot.T for line in _figure_polylines(figure)]
    points = np.concatenate(lines)
    lo, hi = points.min(0), points.max(0)
    scale = (extent - width) / (hi - lo).max()  # the thickening adds width - 1 px down/right
    w, h = np.round((hi - lo) * scale).astype(int) + width
    mask = np.zeros((h, w), bool)
    for line in lines:
        mask |= _polyline_mask(np.round((line - lo) * scale).astype(np.int32), (h, w), width)
    return mask


def _shape_scene(rng, hw, num_classes, detail_scale, max_tries=20):
    """Line figures on a textured background; a figure's class is its shape, nothing else.

    Figures lie wholly inside the image, at least 2 px apart (a figure that
    finds no free place in ``max_tries`` offsets is left out).
    """
    cells = _warped_voronoi(rng, hw, int(rng.integers(2, 5)))
    paints, looks = shape_looks(rng, cells.max() + 1)
    look_map = (len(SHAPE_PAINTS) + 1 + cells).astype(np.int32)
    label = np.ones(hw, np.uint8)  # class 1: background
    occupied = np.zeros(hw, bool)
    figures = seg_class_roles(num_classes, 'shape')[1:]
    for _ in range(_scaled_count(rng, 4, 8, hw)):
        c = int(rng.integers(len(figures)))
        patch = _figure_patch(rng, figures[c], min(hw) - 2, detail_scale)
        ph, pw = patch.shape
        for _ in range(max_tries):
            y, x = int(rng.integers(0, hw[0] - ph + 1)), int(rng.integers(0, hw[1] - pw + 1))
            if not (occupied[y:y + ph, x:x + pw] & patch).any():
                mask = np.zeros(hw, bool)
                mask[y:y + ph, x:x + pw] = patch
                occupied |= cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
                label[mask] = c + 2
                look_map[mask] = 1 + rng.integers(len(SHAPE_PAINTS))
                break
    return _render(look_map, paints, looks, rng), label


def _control_scene(rng, hw, num_classes, detail_scale):
    """Large regions only, each class with a look of its own."""
    cells = _warped_voronoi(rng, hw, int(rng.integers(3, 7)))
    label = rng.integers(1, num_classes + 1, size=cells.max() + 1)[cells].astype(np.uint8)
    return _render(label, *control_class_looks(num_classes), rng), label


def fine_detail_mask(label, max_width=3):
    """Pixels of structures at most ``max_width`` px thick, per label value.

    A pixel is fine detail when a morphological opening of its class mask with
    a (max_width+1)^2 square removes it.
    """
    kernel = np.ones((max_width + 1, max_width + 1), np.uint8)
    out = np.zeros(label.shape, bool)
    for c in np.unique(label):
        m = (label == c).astype(np.uint8)
        opened = cv2.morphologyEx(m, cv2.MORPH_OPEN, kernel, borderType=cv2.BORDER_REPLICATE)
        out |= m.astype(bool) & ~opened.astype(bool)
    return out


# ----------------------------------------------------------------------------- COCO scenes
def _shape_polygon(rng, shape, size, centre):
    """Float polygon (N, 2) as x, y of a ``shape`` about ``size`` px across."""
    cx, cy = centre
    r = size / 2
    rot = rng.uniform(0, 2 * np.pi)
    if shape == 'disc':
        n = max(8, min(24, int(size * 2)))
        ang = 2 * np.pi * np.arange(n) / n
        rad = np.full(n, r)
    elif shape == 'box':  # axis-aligned rectangle
        hw_ = r * rng.uniform(0.6, 1.0, size=2)
        return np.array([[cx - hw_[0], cy - hw_[1]], [cx + hw_[0], cy - hw_[1]],
                         [cx + hw_[0], cy + hw_[1]], [cx - hw_[0], cy + hw_[1]]])
    elif shape == 'diamond':  # upright rhombus, long diagonal vertical
        return np.array([[cx, cy - r], [cx + 0.6 * r, cy], [cx, cy + r], [cx - 0.6 * r, cy]])
    elif shape == 'triangle':
        ang = rot + 2 * np.pi * np.arange(3) / 3
        rad = np.full(3, r)
    elif shape == 'star':
        ang = rot + np.pi * np.arange(10) / 5
        rad = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    elif shape == 'stick':  # long thin bar, 2-3 px wide
        half_w = rng.uniform(1.0, 1.5)
        d, n = np.array([np.cos(rot), np.sin(rot)]), np.array([-np.sin(rot), np.cos(rot)])
        c = np.array([cx, cy])
        return np.stack([c - r * d - half_w * n, c + r * d - half_w * n,
                         c + r * d + half_w * n, c - r * d + half_w * n])
    else:
        raise ValueError(f'unknown toy shape {shape!r}')
    return np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)


def _poly_to_mask(poly, hw):
    from pycocotools import mask as mask_utils
    rle = mask_utils.frPyObjects([poly.ravel().tolist()], hw[0], hw[1])
    return mask_utils.decode(rle)[:, :, 0].astype(bool)


def _sized_polygon(rng, shape, size):
    """Polygon of a randomly rotated ``shape`` whose bounding box's longer side is ``size`` px.

    A stick keeps a width of 2-3 px (at most half its size) and takes the
    length that gives the box that side; other shapes are drawn and scaled.
    Coordinates are relative: the box starts at (0, 0).
    """
    if shape == 'stick':
        half_w = min(rng.uniform(1.0, 1.5), size / 4)
        rot = rng.uniform(0, 2 * np.pi)
        d, n = np.array([np.cos(rot), np.sin(rot)]), np.array([-np.sin(rot), np.cos(rot)])
        big, small = np.abs(d).max(), np.abs(d).min()
        half_len = (size / 2 - half_w * small) / big  # >= half_w since half_w <= size / 4
        poly = np.stack([-half_len * d - half_w * n, half_len * d - half_w * n,
                         half_len * d + half_w * n, -half_len * d + half_w * n])
    else:
        poly = _shape_polygon(rng, shape, size, (0.0, 0.0))
        poly = poly * (size / np.ptp(poly, 0).max())
    return poly - poly.min(0)


def _background(rng, hw):
    """Textured regions that are no category: a warped Voronoi partition, each cell striped."""
    cells = _warped_voronoi(rng, hw, int(rng.integers(2, 5)))
    bg = np.zeros(hw + (3,), np.float32)
    for k in range(cells.max() + 1):
        base = rng.uniform(40, 215, size=3)
        shade = rng.uniform(20, 45) * _stripes(hw, rng.uniform(0, np.pi), rng.uniform(3, 8), 0)
        m = cells == k
        bg[m] = base + shade[m, None]
    return bg


def _default_mix_instance(rng, shape, hw, detail_scale, occupied, max_tries):
    """(polygon, mask) of one object of the default size mix, or None when none fits.

    Each try draws a size (a 3-8 px speck, or with probability 0.35 a larger
    shape up to a third of the image; sticks 8 px to half the image) and a
    centre anywhere; the polygon is cut by the image border.
    """
    h, w = hw
    small = max(2.0, 3 * detail_scale), max(3.0, 8 * detail_scale)
    for _ in range(max_tries):
        big = rng.random() < 0.35
        size = rng.uniform(small[1], max(small[1] + 1, min(h, w) / 3)) if big else rng.uniform(*small)
        if shape == 'stick':
            size = rng.uniform(8, max(9, min(h, w) / 2))
        centre = rng.uniform([0, 0], [w, h])
        poly = _shape_polygon(rng, shape, size, centre)
        poly = np.round(np.clip(poly, 0, [w, h]), 2)  # as stored in the json
        mask = _poly_to_mask(poly, hw)
        if mask.sum() >= 4 and not (occupied & mask).any():
            return poly, mask
    return None


def _sized_instance(rng, shape, hw, object_sizes, occupied, max_tries):
    """(polygon, mask) of one object of a log-uniform size in ``object_sizes``, or None.

    The size and shape are drawn once; each try places the polygon wholly
    inside the image.
    """
    h, w = hw
    lo, hi = object_sizes
    size = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    rel = _sized_polygon(rng, shape, size)
    extent = rel.max(0)  # (width, height) of the box
    for _ in range(max_tries):
        poly = np.round(rel + rng.uniform([0, 0], [w - extent[0], h - extent[1]]), 2)
        mask = _poly_to_mask(poly, hw)
        if mask.sum() >= 4 and not (occupied & mask).any():
            return poly, mask
    return None


def make_coco_scene(rng, img_size=(64, 64), num_classes=6, detail_scale=1.0, max_tries=60,
                    min_object_size=None, max_object_size=None):
    """One scene: (RGB uint8 image, list of (category index 0..K-1, polygon (N,2), mask)).

    Object sizes: the default mix, or, with ``min_object_size`` and
    ``max_object_size`` (px, see ``check_object_sizes``), log-uniform in that
    range (size = the bounding box's longer side), wholly inside the image.
    Objects that find no free place in ``max_tries`` tries are left out.
    """
    hw = tuple(img_size)
    object_sizes = check_object_sizes(min_object_size, max_object_size, hw, detail_scale)
    # categories share paints (two per paint), so the shape, not the colour, names a category
    paints = paint_colours(max(2, (num_classes + 1) // 2))
    bg = _background(rng, hw)

    occupied = np.zeros(hw, bool)
    instances = []
    for _ in range(_scaled_count(rng, 4, 9, hw)):
        cat = int(rng.integers(num_classes))
        shape = COCO_SHAPES[cat % len(COCO_SHAPES)]
        if object_sizes[0] is None:
            found = _default_mix_instance(rng, shape, hw, detail_scale, occupied, max_tries)
        else:
            found = _sized_instance(rng, shape, hw, object_sizes, occupied, max_tries)
        if found is not None:
            poly, mask = found
            occupied |= cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            instances.append((cat, poly, mask))

    img = bg
    for cat, _, mask in instances:
        img[mask] = np.float32(paints[cat % len(paints)])
    img *= rng.uniform(0.85, 1.15)
    img += rng.normal(0, 7, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), instances


# ----------------------------------------------------------------------------- writers
def _rng(seed, split, index):
    return np.random.default_rng([seed, {'train': 0, 'val': 1}[split], index])


def _imwrite_rgb(path, img):
    if not cv2.imwrite(path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise OSError(f'could not write {path}')


def _meta(kind, knobs, classes, palette=None):
    meta = dict(kind=f'toy_{kind}', generator_version=GENERATOR_VERSION, **asdict(knobs),
                classes=list(classes))
    meta['img_size'] = list(knobs.img_size)
    if palette is not None:
        meta['palette'] = palette
    return meta


def read_meta(root):
    """``meta.json`` of a generated toy set, or None when there is none.

    A seg set's meta without ``family`` is a strokes set (the images are the
    same), so it reads as one and its knobs compare equal to family='strokes';
    likewise a COCO set's meta without object sizes has the default size mix.
    """
    path = osp.join(root, 'meta.json')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        meta = json.load(f)
    if meta.get('kind') == 'toy_seg':
        meta.setdefault('family', 'strokes')
    if meta.get('kind') == 'toy_coco':  # made before the size knobs: the default mix
        meta.setdefault('min_object_size', None)
        meta.setdefault('max_object_size', None)
    return meta


def _prepare_root(root, meta, subdirs, overwrite):
    """Create ``root``; refuse to mix with a different set unless ``overwrite``."""
    old = read_meta(root)
    if old is not None and old != meta:
        if not overwrite:
            raise FileExistsError(f'{root} holds a toy set made with other knobs '
                                  f'(see {root}/meta.json); pass overwrite=True (--overwrite) '
                                  'or choose another folder')
        for d in subdirs:  # only the folders this generator writes
            shutil.rmtree(osp.join(root, d), ignore_errors=True)
    elif old is None and osp.isdir(root) and os.listdir(root):
        raise FileExistsError(f'{root} is not empty and holds no toy meta.json; choose an empty folder')
    os.makedirs(root, exist_ok=True)


def write_toy_seg(root, overwrite=False, image_format='png', **knobs):
    """Write the ADE20K-layout toy segmentation set to ``root``; returns its meta dict.

    ``image_format='jpg'``: the images as JPEG (OpenCV's quality 95), as ADE20K ships its
    photos, for timing a data pipeline (decoding costs what it will); recorded in the meta.
    """
    if image_format not in ('png', 'jpg'):
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    k = make_knobs('seg', **knobs)
    meta = _meta('seg', k, seg_class_names(k.num_classes, k.family), class_colours(k.num_classes))
    if image_format != 'png':  # PNG sets keep the meta they had before the option
        meta['image_format'] = image_format
    _prepare_root(root, meta, ('images', 'annotations'), overwrite)
    for split, n in (('train', k.num_train), ('val', k.num_val)):
        img_dir = osp.join(root, 'images', SEG_SPLITS[split])
        ann_dir = osp.join(root, 'annotations', SEG_SPLITS[split])
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for i in range(n):
            img, label = make_seg_scene(_rng(k.seed, split, i), k.img_size, k.num_classes, k.detail_scale,
                                        k.family)
            _imwrite_rgb(osp.join(img_dir, f'toy_{i:05d}.{image_format}'), img)
            if not cv2.imwrite(osp.join(ann_dir, f'toy_{i:05d}.png'), label):
                raise OSError(f'could not write {ann_dir}/toy_{i:05d}.png')
    with open(osp.join(root, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=1)
    return meta


def _coco_annotation(ann_id, image_id, cat, poly, mask):
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    x, y, bw, bh = mask_utils.toBbox(rle).tolist()
    return dict(id=ann_id, image_id=image_id, category_id=cat + 1,
                segmentation=[[float(v) for v in poly.ravel()]],
                area=float(mask_utils.area(rle)), bbox=[x, y, bw, bh], iscrowd=0)


def write_toy_coco(root, overwrite=False, **knobs):
    """Write the COCO-format toy instance set to ``root``; returns its meta dict."""
    k = make_knobs('coco', **knobs)
    names = coco_class_names(k.num_classes)
    meta = _meta('coco', k, names)
    _prepare_root(root, meta, ('train', 'val', 'annotations'), overwrite)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    categories = [dict(id=c + 1, name=n, supercategory='shape') for c, n in enumerate(names)]
    for split, n in (('train', k.num_train), ('val', k.num_val)):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for i in range(n):
            img, instances = make_coco_scene(_rng(k.seed, split, i), k.img_size, k.num_classes,
                                             k.detail_scale, min_object_size=k.min_object_size,
                                             max_object_size=k.max_object_size)
            name = f'toy_{i:05d}.png'
            _imwrite_rgb(osp.join(root, split, name), img)
            images.append(dict(id=i + 1, file_name=name, height=k.img_size[0], width=k.img_size[1]))
            for cat, poly, mask in instances:
                annotations.append(_coco_annotation(len(annotations) + 1, i + 1, cat, poly, mask))
        with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    with open(osp.join(root, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=1)
    return meta


def _ensure(kind, writer, root, knobs):
    k = make_knobs(kind, **knobs)
    meta = read_meta(root)
    if meta is not None and meta.get('generator_version') == GENERATOR_VERSION and \
            {key: meta.get(key) for key in asdict(k)} == {**asdict(k), 'img_size': list(k.img_size)}:
        return meta
    return writer(root, **knobs)


def ensure_toy_seg(root='data/toy_seg', **knobs):
    """Generate the toy segmentation set in ``root`` unless it is already there with these knobs."""
    return _ensure('seg', write_toy_seg, root, knobs)


def ensure_toy_coco(root='data/toy_coco', **knobs):
    """Generate the toy COCO set in ``root`` unless it is already there with these knobs."""
    return _ensure('coco', write_toy_coco, root, knobs)
