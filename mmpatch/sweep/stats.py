"""Statistics behind the sweep's verdicts: pure numpy, no scipy.

Every score here (mIoU; COCO AP) is in percent points (0-100): mmseg reports mIoU so, and
the sweep multiplies mmdet's COCO AP (0-1) by 100.

Building blocks
---------------
* :func:`t_quantile` - Student t quantiles (regularized incomplete beta by
  continued fraction, inverted by bisection).
* :func:`mean_ci`, :func:`paired_diff_ci` - mean and Student-t confidence
  interval over seeds (``n - 1`` degrees of freedom), as a :class:`CI` record.
* :func:`slope_log2` - least-squares slope of a value over ``log2(p)``.
* :func:`bootstrap_miou_ci` - percentile bootstrap of mIoU over validation
  images, from the per-image areas that
  :class:`mmpatch.evaluation.PerImageIoUMetric` saves.
* :func:`converged` - did a training curve still climb over its last quarter?
* :func:`verdict`, :func:`format_verdict` - a CI turned into a word and a line.

The two claims, per backbone
----------------------------
Rows are per-(backbone, patch size p, decoder role, seed) records (see
:func:`verdicts`). A :class:`Task` names the two decoder roles and the score:
segmentation (:data:`SEG`, the default) compares the linear head ('linear',
the plain decoder) with UperNet ('upernet', the multi-level decoder) on mIoU;
detection (:data:`DET`) the simple pyramid from the last block ('simple') with
a pyramid from several depths ('multidepth') on bbox AP. For one backbone:

(a) **The plain decoder improves as p shrinks.** For every seed, fit the
    least-squares slope ``s`` of the plain decoder's score over ``log2(p)``
    across the backbone's plain-decoder patch sizes. ``-s`` is the score
    gained per halving of p. Estimate = mean over seeds of ``-s``; 95% CI =
    Student t over seeds (``n_seeds - 1`` dof). *holds* when the CI lies above
    0, *reversed* when below 0, *inconclusive* when it contains 0.
    Seeds used: those with a plain-decoder score at every plain-decoder patch
    size seen for the backbone (at least 2 sizes are needed).

(b) **The decoder gap shrinks as p shrinks.** For every seed,
    ``gap(p) = score(multi-level, p) - score(plain, p)`` (paired by seed) and
    the per-seed change ``gap(p_min) - gap(p_max)``, with ``p_min`` / ``p_max``
    the smallest / largest patch size seen for the backbone. Estimate = mean
    over seeds of that change; CI over seeds as in (a). *holds* when the CI
    lies below 0 (the gap got smaller at the small p), *reversed* when above
    0, *inconclusive* when it contains 0. Seeds used: those with both roles at
    both ``p_min`` and ``p_max``.

The CI is over seeds only (training noise): it does not include the
validation-set sampling noise, which :func:`bootstrap_miou_ci` measures per
segmentation cell.
"""
import math
from collections import namedtuple
from dataclasses import dataclass, field
from typing import Tuple

import numpy as np

#: Largest gain (mIoU points) over the last quarter of training that still counts
#: as converged. One point is chosen to sit above the jitter between neighbouring
#: validations of a run that has flattened out (typically a few tenths of a point),
#: and below the differences the claims are about (several points per halving of
#: p). Decaying learning-rate schedules (poly, cosine) still add a little in the
#: last quarter of a converged run, so a threshold near 0 would flag most cells.
#: Tune it from the sweep's own curves.
CONVERGENCE_THRESHOLD = 1.0

CI = namedtuple('CI', ['mean', 'std', 'n', 'lo', 'hi', 'half', 'level'])
CI.__doc__ = """Mean and Student-t confidence interval of a sample.

mean: sample mean; std: sample standard deviation (ddof=1); n: sample size;
lo, hi: interval ends; half: half width (``hi - mean``); level: e.g. 0.95.
With n == 1, std, lo, hi and half are nan (no spread can be estimated)."""

BootCI = namedtuple('BootCI', ['point', 'lo', 'hi'])
BootCI.__doc__ = """Bootstrap mIoU interval in percent: point (from all images), lo, hi."""


# ----------------------------------------------------------------------------
# Student t quantiles
# ----------------------------------------------------------------------------
def _betacf(a, b, x, maxit=100000, eps=1e-15):
    """Continued fraction of the incomplete beta function (Numerical Recipes, modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, maxit + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            return h
    raise ArithmeticError(f'incomplete beta: no convergence for a={a}, b={b}, x={x}')


def _betai(a, b, x, y=None):
    """Regularized incomplete beta function I_x(a, b); ``y = 1 - x`` may be passed
    when it is known more precisely than ``1 - x``."""
    y = 1.0 - x if y is None else y
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_bt = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
              + a * math.log(x) + b * math.log(y))
    bt = math.exp(log_bt)
    if x < (a + 1.0) / (a + b + 2.0):
        return bt * _betacf(a, b, x) / a
    return 1.0 - bt * _betacf(b, a, y) / b


def _normal_cdf(z):
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def t_cdf(t, df):
    """P(T <= t) for Student's t with ``df`` degrees of freedom (``df = inf``: normal)."""
    if math.isinf(df):
        return _normal_cdf(t)
    t2 = t * t
    tail = 0.5 * _betai(0.5 * df, 0.5, df / (df + t2), t2 / (df + t2))  # P(T > |t|)
    return 1.0 - tail if t > 0 else tail


def t_quantile(q, df):
    """Quantile ``t`` with ``P(T <= t) = q`` of Student's t with ``df`` (> 0, may be
    fractional or ``inf``) degrees of freedom; ``0 < q < 1``. Accurate to ~1e-10.

    E.g. ``t_quantile(0.975, 4) = 2.776``; ``t_quantile(0.975, inf) = 1.960``.
    """
    q, df = float(q), float(df)
    if not 0.0 < q < 1.0:
        raise ValueError(f't_quantile: q must be in (0, 1), got {q}')
    if not df > 0:
        raise ValueError(f't_quantile: df must be > 0, got {df}')
    if q == 0.5:
        return 0.0
    if q < 0.5:
        return -t_quantile(1.0 - q, df)
    if 1e7 <= df < math.inf:  # the continued fraction is slow here: Cornish-Fisher, O(df^-2)
        z = t_quantile(q, math.inf)
        return z + (z ** 3 + z) / (4.0 * df)
    hi = 1.0
    while t_cdf(hi, df) < q:
        hi *= 2.0
        if hi > 1e300:
            raise ArithmeticError(f't_quantile: q={q} too close to 1 for df={df}')
    lo = 0.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


# ----------------------------------------------------------------------------
# Means and paired differences over seeds
# ----------------------------------------------------------------------------
def mean_ci(values, level=0.95):
    """Mean with a two-sided Student-t CI (``n - 1`` dof) of a 1-D sample.

    Returns a :class:`CI` ``(mean, std, n, lo, hi, half, level)``; ``std`` has
    ddof=1. With ``n == 1`` the spread is unknown: ``std``, ``lo``, ``hi`` and
    ``half`` are ``nan`` (not None, so the record stays numeric).
    Raises ValueError for an empty sample or one holding NaN / inf (drop those
    values first: a silent nanmean would hide a broken cell).
    """
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError('mean_ci: empty sample')
    if not np.all(np.isfinite(x)):
        raise ValueError(f'mean_ci: sample holds NaN or inf: {x.tolist()}')
    if not 0.0 < level < 1.0:
        raise ValueError(f'mean_ci: level must be in (0, 1), got {level}')
    n = int(x.size)
    mean = float(x.mean())
    if n == 1:
        nan = float('nan')
        return CI(mean, nan, 1, nan, nan, nan, level)
    std = float(x.std(ddof=1))
    half = t_quantile(0.5 + level / 2.0, n - 1) * std / math.sqrt(n)
    return CI(mean, std, n, mean - half, mean + half, half, level)


def _pair(a, b):
    """Aligned arrays (a, b) and their keys: dicts are matched on common keys (sorted)."""
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)):
            raise TypeError('paired_diff_ci: pass two dicts (seed -> value) or two arrays')
        keys = sorted(set(a) & set(b))
        return (np.array([a[k] for k in keys], dtype=float),
                np.array([b[k] for k in keys], dtype=float), keys)
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f'paired_diff_ci: arrays differ in length ({a.size} vs {b.size})')
    return a, b, list(range(a.size))


def paired_diff_ci(a, b, level=0.95):
    """CI of the paired differences ``b - a`` (see :func:`mean_ci`).

    ``a`` and ``b`` are dicts ``seed -> value`` (only seeds present in both
    count; ``.n`` says how many) or two aligned arrays (same order of seeds).
    Pairing removes the between-seed variance shared by ``a`` and ``b``.
    Raises ValueError when no seed is common.
    """
    a, b, _ = _pair(a, b)
    if a.size == 0:
        raise ValueError('paired_diff_ci: no seed present in both samples')
    return mean_ci(b - a, level)


def slope_log2(ps, values):
    """Least-squares slope of ``values`` over ``log2(ps)`` (one seed).

    In value units per doubling of p: a value that grows as p shrinks has a
    negative slope (``-slope`` is the gain per halving of p). Needs at least
    two distinct p.
    """
    x = np.log2(np.asarray(ps, dtype=float).ravel())
    y = np.asarray(values, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f'slope_log2: {x.size} patch sizes but {y.size} values')
    if np.unique(x).size < 2:
        raise ValueError('slope_log2: needs at least two distinct patch sizes')
    if not np.all(np.isfinite(y)):
        raise ValueError(f'slope_log2: values hold NaN or inf: {y.tolist()}')
    xc = x - x.mean()
    return float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))


# ----------------------------------------------------------------------------
# Bootstrap over validation images
# ----------------------------------------------------------------------------
def _miou_from_areas(intersect, union, nan_to_num=None):
    """mIoU in percent from summed areas (..., C), as mmseg's IoUMetric: per-class
    IoU = intersect / union; a class with union 0 (neither predicted nor labelled)
    is NaN and left out of the mean (a class predicted but never labelled has IoU 0
    and counts); ``nan_to_num`` replaces NaN first, as IoUMetric's argument does."""
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = intersect / union
    if nan_to_num is not None:
        iou = np.nan_to_num(iou, nan=nan_to_num)
    with np.errstate(invalid='ignore'):
        valid = ~np.isnan(iou)
        count = valid.sum(-1)
        total = np.where(valid, iou, 0.0).sum(-1)
        return 100.0 * total / count  # nan where no class is valid


def load_per_image(per_image):
    """(intersect, union) float64 arrays of shape (N, C) from a mapping or an .npz path."""
    if isinstance(per_image, (str, bytes)) or hasattr(per_image, '__fspath__'):
        with np.load(per_image, allow_pickle=False) as f:
            return (np.asarray(f['intersect'], dtype=np.float64),
                    np.asarray(f['union'], dtype=np.float64))
    return (np.asarray(per_image['intersect'], dtype=np.float64),
            np.asarray(per_image['union'], dtype=np.float64))


def bootstrap_miou_ci(per_image, n_boot=2000, level=0.95, seed=0, nan_to_num=None,
                      chunk=None):
    """Percentile-bootstrap CI of mIoU over validation images.

    Args:
        per_image: mapping (or path of an .npz saved by PerImageIoUMetric) with
            per-image, per-class areas ``intersect`` and ``union`` of shape (N, C)
            (``pred_label`` / ``label`` may be present and are not needed).
        n_boot: resamples; level: two-sided coverage; seed: RNG seed.
        nan_to_num: as IoUMetric's argument of that name (None: NaN classes skipped).
        chunk: resamples per matrix product (memory bound); default keeps the
            (chunk, N) count matrix near 32 MB.

    Each resample draws N images with replacement (a multinomial count vector),
    sums their areas and computes mIoU exactly as mmseg's IoUMetric does from its
    summed areas (see :func:`_miou_from_areas`), so ``point`` - from all images -
    equals IoUMetric's mIoU (which mmseg rounds to 2 decimals).

    Returns :class:`BootCI` ``(point, lo, hi)`` in percent.
    """
    intersect, union = load_per_image(per_image)
    if intersect.ndim != 2 or intersect.shape != union.shape:
        raise ValueError(f'bootstrap_miou_ci: intersect {intersect.shape} and union '
                         f'{union.shape} must both be (N, C)')
    n = intersect.shape[0]
    if n == 0:
        raise ValueError('bootstrap_miou_ci: no images')
    if not (np.all(np.isfinite(intersect)) and np.all(np.isfinite(union))):
        raise ValueError('bootstrap_miou_ci: areas hold NaN or inf')
    point = float(_miou_from_areas(intersect.sum(0), union.sum(0), nan_to_num))
    if math.isnan(point):
        raise ValueError('bootstrap_miou_ci: every class has union 0; mIoU is undefined')
    rng = np.random.default_rng(seed)
    areas = np.concatenate([intersect, union], axis=1)  # (N, 2C): one product
    c = intersect.shape[1]
    chunk = chunk or max(1, (4 << 20) // n)
    boots = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        # counts[r, i]: how often resample r drew image i (bincount of uniform draws,
        # i.e. a multinomial(N, 1/N) row; much faster than rng.multinomial for large N)
        idx = rng.integers(0, n, size=(m, n)) + (np.arange(m) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=m * n).reshape(m, n).astype(np.float64)
        summed = counts @ areas
        boots[start:start + m] = _miou_from_areas(summed[:, :c], summed[:, c:], nan_to_num)
    alpha = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.nanpercentile(boots, [alpha, 100.0 - alpha])
    return BootCI(point, float(lo), float(hi))


# ----------------------------------------------------------------------------
# Convergence
# ----------------------------------------------------------------------------
def converged(curve, threshold=CONVERGENCE_THRESHOLD):
    """Gain over the last quarter of training and whether that counts as converged.

    ``curve``: validations during training as ``(iteration, mIoU)`` pairs (any
    order; pairs with a None mIoU are skipped). The gain is the mIoU at the last
    validation minus the mIoU at the last validation at or before 3/4 of the
    final iteration. Returns ``(gain, gain <= threshold)``, or ``(None, None)``
    (unknown) with fewer than 2 validations or none at or before 3/4 of the final
    iteration.
    """
    pts = sorted((float(it), float(v)) for it, v in curve if v is not None)
    if len(pts) < 2:
        return None, None
    final_it, final_v = pts[-1]
    ref = [v for it, v in pts[:-1] if it <= 0.75 * final_it]
    if not ref:
        return None, None
    gain = final_v - ref[-1]
    return gain, bool(gain <= threshold)


# ----------------------------------------------------------------------------
# Verdicts
# ----------------------------------------------------------------------------
def verdict(lo, hi, sign=+1):
    """'holds' / 'reversed' / 'inconclusive' for a CI [lo, hi] of an effect.

    ``sign``: the direction the claim predicts (+1: effect > 0, -1: effect < 0).
    The CI must exclude 0 (strictly) to decide; a CI touching or containing 0, or
    a missing one (NaN, e.g. a single seed), is 'inconclusive'.
    """
    if sign not in (1, -1):
        raise ValueError(f'verdict: sign must be +1 or -1, got {sign}')
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return 'inconclusive'
    if lo > 0:
        direction = 1
    elif hi < 0:
        direction = -1
    else:
        return 'inconclusive'
    return 'holds' if direction == sign else 'reversed'


@dataclass(frozen=True)
class Task:
    """What a task's sweep compares (see the module docstring): the rows' key of the decoder
    role (``axis``), the plain and the multi-level role, the score's row key and the words.

    name: 'seg' / 'det'; axis: row key of the role ('head' / 'neck'); plain, decoder: the
    roles compared (claim (a) is about ``plain``; the gap is ``decoder - plain``); metric:
    row key of the score, percent points; plain_label, decoder_label, metric_label: their
    names in the report; claim_a, claim_b: the claims' lines, ``{}`` the estimate, ``{p_max}``
    and ``{p_min}`` the patch sizes of (b).
    """
    name: str
    axis: str
    plain: str
    decoder: str
    metric: str
    plain_label: str
    decoder_label: str
    metric_label: str
    claim_a: str
    claim_b: str


#: Segmentation: linear head (plain) vs UperNet (multi-level) on mIoU.
SEG = Task('seg', 'head', 'linear', 'upernet', 'mIoU', 'linear', 'UperNet', 'mIoU',
           'linear head gains {} mIoU per halving of p',
           'UperNet - linear gap changes by {} mIoU from p={p_max} to p={p_min}')
#: Detection: ViTDet's simple pyramid from the last block (plain) vs a pyramid from several
#: depths (multi-level) on COCO bbox AP.
DET = Task('det', 'neck', 'simple', 'multidepth', 'bbox_AP', 'simple', 'multidepth', 'bbox AP',
           'simple-pyramid bbox AP gains {} per halving of p',
           'multidepth - simple gap in bbox AP changes by {} from p={p_max} to p={p_min}')
TASKS = {t.name: t for t in (SEG, DET)}


@dataclass
class Claim:
    """One claim's result for one backbone (see the module docstring).

    claim: 'a' or 'b'; estimate, lo, hi, half, std: score points (nan when not
    computable, or lo/hi/half/std nan with one seed); level: CI level; word:
    'holds' / 'reversed' / 'inconclusive'; n_seeds / seeds: the complete seeds
    used; seeds_dropped: seeds with some of the needed cells missing; ps: the
    patch sizes used ((a): all plain-decoder sizes; (b): (p_min, p_max));
    per_seed: seed -> that seed's value ((a): -slope, (b): change of the gap);
    n_not_converged / n_convergence_unknown: among the cells used, how many have
    ``converged`` False / missing or None; note: why it is not computable, or '';
    task: the :class:`Task` whose roles and score the claim is about.
    """
    claim: str
    estimate: float
    lo: float
    hi: float
    half: float
    std: float
    level: float
    word: str
    n_seeds: int
    seeds: Tuple = ()
    seeds_dropped: Tuple = ()
    ps: Tuple = ()
    per_seed: dict = field(default_factory=dict)
    n_not_converged: int = 0
    n_convergence_unknown: int = 0
    note: str = ''
    task: Task = SEG


_CLAIM_SIGN = {'a': +1, 'b': -1}


def _seed_key(seed):
    """Sort key: numbers numerically (2 before 10), anything else after, by repr."""
    if isinstance(seed, (int, float, np.integer, np.floating)) and not isinstance(seed, bool):
        return (0, float(seed), '')
    return (1, 0.0, repr(seed))


def _index_rows(rows, task=SEG):
    """{backbone: {(p, role, seed): row}}; rows without a score are skipped (cell missing)."""
    out = {}
    for r in rows:
        if r.get('task', task.name) != task.name:
            raise ValueError(f"sweep stats: a {r['task']!r} row ({r.get('config', r)}) among the "
                             f'{task.name!r} rows; split the rows by task')
        if r.get(task.metric) is None:
            continue
        v = float(r[task.metric])
        if not math.isfinite(v):
            raise ValueError(f'sweep stats: non-finite {task.metric} in row {r}; pass None for a '
                             'missing cell')
        key = (int(r['patch_size']), str(r[task.axis]), r['seed'])
        cells = out.setdefault(str(r['backbone']), {})
        if key in cells:
            raise ValueError(f'sweep stats: two rows for backbone {r["backbone"]!r}, '
                             f'p={key[0]}, {task.axis}={key[1]!r}, seed={key[2]!r}')
        cells[key] = r
    return out


def _convergence_counts(cells_used):
    not_conv = sum(1 for r in cells_used if r.get('converged') is False)
    unknown = sum(1 for r in cells_used if r.get('converged') is None)
    return not_conv, unknown


def _claim(name, per_seed, dropped, ps, cells_used, level, task, note=''):
    nan = float('nan')
    seeds = tuple(sorted(per_seed, key=_seed_key))
    nc, unk = _convergence_counts(cells_used)
    if not per_seed:
        return Claim(name, nan, nan, nan, nan, nan, level, 'inconclusive', 0, (),
                     tuple(sorted(dropped, key=_seed_key)), tuple(ps), {}, nc, unk,
                     note or 'no seed has all the cells needed', task)
    ci = mean_ci([per_seed[s] for s in seeds], level)
    word = verdict(ci.lo, ci.hi, _CLAIM_SIGN[name])
    if ci.n == 1 and not note:
        note = 'one seed: no CI'
    return Claim(name, ci.mean, ci.lo, ci.hi, ci.half, ci.std, level, word, ci.n, seeds,
                 tuple(sorted(dropped, key=_seed_key)), tuple(ps),
                 {s: per_seed[s] for s in seeds}, nc, unk, note, task)


def _claims_for(cells, level, task):
    nan = float('nan')
    plain, decoder, metric = task.plain, task.decoder, task.metric
    all_seeds = {k[2] for k in cells}
    # (a) plain decoder, slope over log2 p, all its patch sizes
    ps_plain = sorted({p for p, h, _ in cells if h == plain})
    if len(ps_plain) < 2:
        a = Claim('a', nan, nan, nan, nan, nan, level, 'inconclusive', 0, ps=tuple(ps_plain),
                  note=f'needs {task.plain_label}-{task.axis} results at >= 2 patch sizes',
                  task=task)
    else:
        per_seed, dropped, used = {}, [], []
        for s in all_seeds:
            rows = [cells.get((p, plain, s)) for p in ps_plain]
            if any(r is None for r in rows):
                dropped.append(s)
                continue
            per_seed[s] = -slope_log2(ps_plain, [r[metric] for r in rows])
            used += rows
        a = _claim('a', per_seed, dropped, ps_plain, used, level, task)
    # (b) gap (decoder - plain) at p_min minus gap at p_max
    ps_all = sorted({p for p, _, _ in cells})
    if len(ps_all) < 2:
        b = Claim('b', nan, nan, nan, nan, nan, level, 'inconclusive', 0, ps=tuple(ps_all),
                  note='needs results at >= 2 patch sizes', task=task)
    else:
        p_min, p_max = ps_all[0], ps_all[-1]
        per_seed, dropped, used = {}, [], []
        for s in all_seeds:
            rows = [cells.get((p, h, s)) for p in (p_min, p_max) for h in (plain, decoder)]
            if any(r is None for r in rows):
                dropped.append(s)
                continue
            plain_s, dec_s, plain_l, dec_l = (r[metric] for r in rows)
            per_seed[s] = (dec_s - plain_s) - (dec_l - plain_l)
            used += rows
        b = _claim('b', per_seed, dropped, (p_min, p_max), used, level, task)
    return {'a': a, 'b': b}


def verdicts(rows, level=0.95, task=SEG):
    """The two claims (module docstring) for every backbone in ``rows``.

    ``rows``: iterable of dicts with keys ``backbone``, ``patch_size``, the
    task's role key (``task.axis``: 'head' for :data:`SEG`, 'neck' for
    :data:`DET`; values ``task.plain`` / ``task.decoder``), ``seed``, the
    task's score (``task.metric``: 'mIoU' / 'bbox_AP', percent; None = cell
    missing) and optionally ``converged`` (bool, or None = unknown) and
    ``task`` (a row of another task raises ValueError). Only complete seeds
    count (see the module docstring); two rows for one cell raise ValueError.

    Returns ``{backbone: {'a': Claim, 'b': Claim}}`` (see :class:`Claim`).
    """
    return {bb: _claims_for(cells, level, task)
            for bb, cells in sorted(_index_rows(rows, task).items())}


def summarise(rows, level=0.95, task=SEG):
    """Per-cell and per-gap summaries over seeds of the task's score.

    Returns ``{'cells': [...], 'gaps': [...]}``, sorted by backbone, patch size, role:

    * cells: one dict per (backbone, patch_size, role; the role under the key
      ``task.axis``) with ``mean, std, n, lo, hi, half, level`` (:func:`mean_ci`
      over seeds), ``seeds`` and ``n_not_converged``;
    * gaps: one dict per (backbone, patch_size) that has both roles for at least
      one seed, with the paired CI of ``decoder - plain`` (:func:`paired_diff_ci`,
      same fields) and the ``seeds`` paired.
    """
    cells_out, gaps_out = [], []
    for bb, cells in sorted(_index_rows(rows, task).items()):
        groups = {}
        for (p, h, s), r in cells.items():
            groups.setdefault((p, h), {})[s] = r
        for (p, h), by_seed in sorted(groups.items()):
            seeds = sorted(by_seed, key=_seed_key)
            ci = mean_ci([by_seed[s][task.metric] for s in seeds], level)
            nc, unk = _convergence_counts(by_seed.values())
            cells_out.append(dict(backbone=bb, patch_size=p, **{task.axis: h}, **ci._asdict(),
                                  seeds=tuple(seeds), n_not_converged=nc,
                                  n_convergence_unknown=unk))
        for p in sorted({p for p, _ in groups}):
            plain = {s: r[task.metric] for s, r in groups.get((p, task.plain), {}).items()}
            dec = {s: r[task.metric] for s, r in groups.get((p, task.decoder), {}).items()}
            seeds = sorted(set(plain) & set(dec), key=_seed_key)
            if not seeds:
                continue
            ci = paired_diff_ci(plain, dec, level)
            gaps_out.append(dict(backbone=bb, patch_size=p, **ci._asdict(), seeds=tuple(seeds)))
    return {'cells': cells_out, 'gaps': gaps_out}


def _fmt(x):
    return f'{x:+.1f}'


def format_verdict(backbone, claim: Claim):
    """One line for a claim, in the words of its task (``claim.task``), e.g.::

        PatchViT (toy): (a) linear head gains +12.3 mIoU per halving of p
        [95% CI +9.8, +14.8], 3 seeds: holds
        PatchViT (toy): (b) UperNet - linear gap changes by -3.1 mIoU from p=16
        to p=4 [95% CI -5.0, -1.2], 3 seeds: holds (1 cell not converged)
        PatchViT (64d x 4 blocks): (a) simple-pyramid bbox AP gains +2.1 per halving
        of p [95% CI +0.4, +3.8], 2 seeds: holds

    (each on one line). Numbers have one decimal.
    """
    lvl = f'{100 * claim.level:g}% CI'
    if claim.claim == 'a':
        what = claim.task.claim_a
    else:
        p_min, p_max = claim.ps if len(claim.ps) == 2 else ('?', '?')
        what = claim.task.claim_b.replace('{p_max}', str(p_max)).replace('{p_min}', str(p_min))
    if math.isnan(claim.estimate):
        body = what.format('?') + f' [{claim.note}]'
    elif math.isnan(claim.lo):
        body = what.format(_fmt(claim.estimate)) + f' [{lvl}: none]'
    else:
        body = what.format(_fmt(claim.estimate)) + f' [{lvl} {_fmt(claim.lo)}, {_fmt(claim.hi)}]'
    seeds = f'{claim.n_seeds} seed' + ('' if claim.n_seeds == 1 else 's')
    extra = []
    if claim.seeds_dropped:
        extra.append(f'{len(claim.seeds_dropped)} incomplete seed'
                     + ('' if len(claim.seeds_dropped) == 1 else 's') + ' left out')
    if claim.n_not_converged:
        extra.append(f'{claim.n_not_converged} cell' + ('' if claim.n_not_converged == 1 else 's')
                     + ' not converged')
    tail = f' ({"; ".join(extra)})' if extra else ''
    return f'{backbone}: ({claim.claim}) {body}, {seeds}: {claim.word}{tail}'
