"""mmpatch.sweep.stats on synthetic numbers with known answers."""
import math
import time

import numpy as np
import pytest
import torch

from mmpatch.sweep import stats as S


# ----------------------------------------------------------------------------- t quantiles
@pytest.mark.parametrize('df,table', [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622),
                                      (29, 2.0452), (1e6, 1.9600), (math.inf, 1.9600)])
def test_t_quantile_table(df, table):
    assert S.t_quantile(0.975, df) == pytest.approx(table, abs=6e-5)


@pytest.mark.parametrize('q', [0.51, 0.6, 0.8, 0.9, 0.95, 0.99, 0.999, 0.3, 0.025])
def test_t_quantile_closed_forms(q):
    # df 1 (Cauchy): tan(pi (q - 1/2)); df 2: (2q - 1) / sqrt(2 q (1 - q))
    assert S.t_quantile(q, 1) == pytest.approx(math.tan(math.pi * (q - 0.5)), rel=1e-9)
    assert S.t_quantile(q, 2) == pytest.approx((2 * q - 1) / math.sqrt(2 * q * (1 - q)), rel=1e-9)
    assert S.t_quantile(1 - q, 7) == pytest.approx(-S.t_quantile(q, 7), rel=1e-12)


def test_t_quantile_vs_scipy():
    sst = pytest.importorskip('scipy.stats')
    for df in (0.5, 1.5, 3, 3.7, 12, 100, 1e4, 5e6, 2e7):
        for q in (0.5001, 0.6, 0.9, 0.975, 0.995, 0.99999):
            assert S.t_quantile(q, df) == pytest.approx(sst.t.ppf(q, df), rel=1e-8)


def test_t_quantile_rejects_bad_arguments():
    for q, df in ((0.0, 3), (1.0, 3), (0.9, 0), (0.9, -1)):
        with pytest.raises(ValueError):
            S.t_quantile(q, df)


# ----------------------------------------------------------------------------- mean CI
def test_mean_ci_known_sample():
    ci = S.mean_ci([1, 2, 3, 4, 5])
    assert ci.mean == 3 and ci.n == 5
    assert ci.std == pytest.approx(math.sqrt(2.5), rel=1e-12)  # 1.5811
    assert ci.half == pytest.approx(2.776445 * 1.5811388 / math.sqrt(5), rel=1e-6)  # 1.963
    assert (ci.lo, ci.hi) == pytest.approx((3 - ci.half, 3 + ci.half))
    ci90 = S.mean_ci([1, 2, 3, 4, 5], level=0.90)
    assert ci90.half == pytest.approx(2.131847 * 1.5811388 / math.sqrt(5), rel=1e-6)


def test_mean_ci_single_value_and_bad_input():
    ci = S.mean_ci([42.0])
    assert ci.mean == 42.0 and ci.n == 1
    assert all(math.isnan(v) for v in (ci.std, ci.lo, ci.hi, ci.half))
    for bad in ([], [1.0, float('nan')], [1.0, float('inf')]):
        with pytest.raises(ValueError):
            S.mean_ci(bad)


def test_paired_ci_uses_pairing():
    # seeds differ by tens of points, but b - a is 2.0 +- 0.1 on every seed
    base = {0: 20.0, 1: 45.0, 2: 70.0, 3: 33.0, 4: 58.0}
    noise = {0: 0.1, 1: -0.1, 2: 0.0, 3: 0.05, 4: -0.05}
    a = dict(base)
    b = {s: base[s] + 2.0 + noise[s] for s in base}
    paired = S.paired_diff_ci(a, b)
    assert paired.mean == pytest.approx(2.0, abs=1e-12) and paired.n == 5
    assert paired.half < 0.15 and paired.lo > 1.8
    # the unpaired view (each sample's own CI) is two orders of magnitude wider
    assert S.mean_ci(list(b.values())).half > 20


def test_paired_ci_matches_seeds_not_order():
    a = {3: 10.0, 1: 20.0, 2: 30.0, 9: 99.0}         # seed 9 has no partner
    b = {1: 21.0, 2: 33.0, 3: 12.0, 7: -5.0}         # seed 7 has no partner
    ci = S.paired_diff_ci(a, b)
    assert ci.n == 3
    assert ci.mean == pytest.approx(2.0)             # diffs 1, 3, 2
    assert ci.std == pytest.approx(1.0)
    arr = S.paired_diff_ci([1.0, 2.0], [4.0, 4.0])   # aligned arrays: b - a = 3, 2
    assert arr.mean == pytest.approx(2.5) and arr.n == 2
    with pytest.raises(ValueError):
        S.paired_diff_ci({1: 1.0}, {2: 1.0})


# ----------------------------------------------------------------------------- slope
def test_slope_log2_sign_and_value():
    ps = [4, 8, 16]
    # 3 points gained per halving of p: value falls with log2 p, slope -3
    assert S.slope_log2(ps, [50 - 3 * math.log2(p) for p in ps]) == pytest.approx(-3.0)
    assert S.slope_log2([16, 4, 8], [38.0, 44.0, 41.0]) == pytest.approx(-3.0)  # any order
    # least squares through non-collinear points: x = 1, 2, 3, y = 0, 1, 5 -> 2.5
    assert S.slope_log2([2, 4, 8], [0.0, 1.0, 5.0]) == pytest.approx(2.5)
    with pytest.raises(ValueError):
        S.slope_log2([8, 8], [1.0, 2.0])


# ----------------------------------------------------------------------------- bootstrap
def _synthetic_areas(rng, n, lam, mean_r, conc=8.0, scale_shape=2.0):
    """Per-image areas from a model whose population mIoU is 100 * mean(mean_r):
    union ~ Poisson(lam_c * s_i), intersect ~ Binomial(union, r_ic), r_ic ~ Beta(mean_r_c)."""
    lam, mean_r = np.asarray(lam, float), np.asarray(mean_r, float)
    s = rng.gamma(scale_shape, 1.0 / scale_shape, size=(n, 1))
    union = rng.poisson(lam * s)
    r = rng.beta(mean_r * conc, (1 - mean_r) * conc, size=(n, lam.size))
    inter = rng.binomial(union, r)
    return dict(intersect=inter, union=union)


def _mmseg_miou(inter, union, pred, label, nan_to_num=None):
    from mmseg.evaluation.metrics import IoUMetric
    metric = IoUMetric(nan_to_num=nan_to_num)
    metric.dataset_meta = dict(classes=[f'c{i}' for i in range(inter.shape[1])])
    results = [tuple(torch.tensor(x[i], dtype=torch.float32) for x in (inter, union, pred, label))
               for i in range(inter.shape[0])]
    return metric.compute_metrics(results)['mIoU']


def _areas_with_empty_classes(seed=0, n=50, c=6):
    """Consistent areas; class 4 is predicted but never labelled (IoU 0, counts), class 5
    is neither (union 0: NaN, skipped)."""
    rng = np.random.default_rng(seed)
    label = rng.poisson(rng.uniform(50, 2000, size=c), size=(n, c))
    label[:, 4:] = 0
    inter = rng.binomial(label, rng.uniform(0.2, 0.9, size=c))
    pred = inter + rng.poisson(80, size=(n, c))
    pred[:, 5] = 0
    return inter, pred + label - inter, pred, label


@pytest.mark.parametrize('nan_to_num', [None, 0])
def test_bootstrap_point_equals_mmseg_iou_metric(nan_to_num):
    inter, union, pred, label = _areas_with_empty_classes()
    boot = S.bootstrap_miou_ci(dict(intersect=inter, union=union, pred_label=pred, label=label),
                               n_boot=200, nan_to_num=nan_to_num)
    expected = _mmseg_miou(inter, union, pred, label, nan_to_num)
    assert abs(boot.point - expected) <= 0.005 + 1e-9  # mmseg rounds to 2 decimals
    assert boot.lo < boot.point < boot.hi


def test_bootstrap_identical_images_give_zero_width():
    row_i, row_u = np.array([10, 0, 30]), np.array([20, 5, 40])
    d = dict(intersect=np.tile(row_i, (40, 1)), union=np.tile(row_u, (40, 1)))
    point, lo, hi = S.bootstrap_miou_ci(d, n_boot=300)
    assert point == pytest.approx(100 * (0.5 + 0 + 0.75) / 3)
    assert lo == pytest.approx(point) and hi == pytest.approx(point)


def test_bootstrap_is_seeded_and_narrows_with_more_images():
    rng = np.random.default_rng(1)
    small = _synthetic_areas(rng, 20, [300, 800, 100], [0.4, 0.6, 0.3])
    big = _synthetic_areas(rng, 500, [300, 800, 100], [0.4, 0.6, 0.3])
    assert S.bootstrap_miou_ci(small, 500, seed=3) == S.bootstrap_miou_ci(small, 500, seed=3)
    w_small = np.subtract(*S.bootstrap_miou_ci(small, 500)[2:0:-1])
    w_big = np.subtract(*S.bootstrap_miou_ci(big, 500)[2:0:-1])
    assert w_big < w_small / 2  # ~ sqrt(25) = 5 times narrower


def test_bootstrap_coverage():
    """The 95% interval covers the population mIoU in ~95% of simulated validation sets of 100
    images (the percentile bootstrap undercovers on smaller sets: docs/segmentation.md)."""
    lam, mean_r = [200, 600, 1500, 60], [0.3, 0.5, 0.7, 0.2]
    truth = 100 * np.mean(mean_r)
    rng = np.random.default_rng(12345)
    covered, widths = 0, []
    reps = 300
    for rep in range(reps):
        d = _synthetic_areas(rng, 100, lam, mean_r)
        point, lo, hi = S.bootstrap_miou_ci(d, n_boot=1000, seed=rep)
        covered += lo <= truth <= hi
        widths.append(hi - lo)
    assert 0.90 <= covered / reps <= 0.99, covered
    assert np.mean(widths) > 1.0  # a real interval, not a point (~3.6)


def test_bootstrap_full_size_is_fast():
    rng = np.random.default_rng(0)
    n, c = 2000, 150
    lab = rng.poisson(rng.gamma(0.3, 2000, (n, c)))
    inter = rng.binomial(lab, 0.7)
    union = lab + rng.poisson(20, (n, c))
    t0 = time.perf_counter()
    point, lo, hi = S.bootstrap_miou_ci(dict(intersect=inter, union=union), n_boot=2000)
    elapsed = time.perf_counter() - t0
    assert lo < point < hi
    assert elapsed < 10, elapsed


# ----------------------------------------------------------------------------- convergence
def test_converged():
    curve = [(1000, 30.0), (2000, 40.0), (3000, 44.0), (4000, 44.5)]
    assert S.converged(curve) == (pytest.approx(0.5), True)
    gain, ok = S.converged(list(reversed(curve[:3])) + [(4000, 46.0)])  # any order
    assert gain == pytest.approx(2.0) and ok is False
    # 3/4 of 2500 = 1875 falls between validations: the one just before (1000) is used
    assert S.converged([(1000, 10.0), (2000, 12.0), (2500, 12.5)], threshold=3.0) == (
        pytest.approx(2.5), True)
    assert S.converged([(4000, 44.0)]) == (None, None)
    assert S.converged([]) == (None, None)
    assert S.converged([(1900, 40.0), (2000, 41.0)]) == (None, None)  # nothing at <= 1500
    assert S.CONVERGENCE_THRESHOLD == 1.0


# ----------------------------------------------------------------------------- verdicts
def test_verdict_words():
    assert S.verdict(0.5, 2.0) == 'holds'
    assert S.verdict(-2.0, -0.5) == 'reversed'
    assert S.verdict(-0.5, 2.0) == 'inconclusive'
    assert S.verdict(0.0, 2.0) == 'inconclusive'  # touching zero decides nothing
    assert S.verdict(-2.0, -0.5, sign=-1) == 'holds'
    assert S.verdict(0.5, 2.0, sign=-1) == 'reversed'
    assert S.verdict(float('nan'), float('nan')) == 'inconclusive'


def _rows():
    """Linear head gains g_s per halving (slope -g_s exactly); the UperNet gap is 10 at p=16
    and 10 + d_s at p=4 (it grows: claim (b) reversed). Seed 3 lacks UperNet at p=4, seed 4
    lacks linear at p=8."""
    gains = {0: 3.5, 1: 4.0, 2: 4.5, 3: 4.2, 4: 9.0}
    d = {0: 2.0, 1: 3.0, 2: 4.0, 3: 50.0, 4: 2.5}
    base = {0: 30.0, 1: 36.0, 2: 27.0, 3: 33.0, 4: 31.0}
    rows = []
    for s in gains:
        for p in (4, 8, 16):
            lin = base[s] + gains[s] * (4 - math.log2(p))
            gap = 10 + d[s] * (16 - p) / 12
            if not (s == 4 and p == 8):
                rows.append(dict(backbone='PatchViT (toy)', patch_size=p, head='linear', seed=s,
                                 mIoU=lin, converged=not (s == 1 and p == 4)))
            if not (s == 3 and p == 4):
                rows.append(dict(backbone='PatchViT (toy)', patch_size=p, head='upernet', seed=s,
                                 mIoU=lin + gap))
    return rows


def test_verdicts_a_holds_b_reversed_with_missing_seeds():
    res = S.verdicts(_rows())
    a, b = res['PatchViT (toy)']['a'], res['PatchViT (toy)']['b']
    # (a): seeds 0-3 (seed 4 lacks p=8), gains 3.5, 4.0, 4.5, 4.2
    assert a.seeds == (0, 1, 2, 3) and a.n_seeds == 4 and a.seeds_dropped == (4,)
    ref = S.mean_ci([3.5, 4.0, 4.5, 4.2])
    assert a.estimate == pytest.approx(ref.mean) and a.lo == pytest.approx(ref.lo)
    assert a.per_seed[2] == pytest.approx(4.5)
    assert a.word == 'holds' and a.ps == (4, 8, 16)
    assert a.n_not_converged == 1  # seed 1, p=4 linear
    assert a.n_convergence_unknown == 0
    # (b): seeds 0, 1, 2, 4 (seed 3 lacks UperNet at p=4); change = +d_s
    assert b.seeds == (0, 1, 2, 4) and b.seeds_dropped == (3,) and b.ps == (4, 16)
    ref = S.mean_ci([2.0, 3.0, 4.0, 2.5])
    assert b.estimate == pytest.approx(ref.mean) and b.hi == pytest.approx(ref.hi)
    assert b.lo > 0 and b.word == 'reversed'
    assert b.n_not_converged == 1
    assert b.n_convergence_unknown == 8  # UperNet rows carry no 'converged'


def test_verdicts_b_holds_when_gap_shrinks_and_single_seed():
    rows = [dict(backbone='B', patch_size=p, head=h, seed=s, mIoU=m)
            for s, off in ((0, 0.0), (1, 5.0), (2, -3.0))
            for p, h, m in ((16, 'linear', 30 + off), (16, 'upernet', 40 + off + 0.1 * s),
                            (4, 'linear', 42 + off), (4, 'upernet', 45 + off))]
    b = S.verdicts(rows)['B']['b']
    # gap 10 + 0.1 s at p=16, 3 at p=4: change -7 - 0.1 s
    assert b.estimate == pytest.approx(-7.1) and b.hi < 0 and b.word == 'holds'
    one = S.verdicts([r for r in rows if r['seed'] == 0])['B']
    assert one['a'].n_seeds == 1 and math.isnan(one['a'].lo) and one['a'].word == 'inconclusive'
    assert one['a'].estimate == pytest.approx(6.0)  # 12 points over two halvings


def test_verdicts_not_computable_and_bad_rows():
    rows = [dict(backbone='B', patch_size=16, head='linear', seed=0, mIoU=30.0)]
    res = S.verdicts(rows)['B']
    assert res['a'].n_seeds == 0 and math.isnan(res['a'].estimate)
    assert res['a'].word == 'inconclusive' and res['a'].note
    assert S.verdicts(rows + [dict(rows[0], patch_size=8, mIoU=None)])['B']['a'].n_seeds == 0
    with pytest.raises(ValueError):
        S.verdicts(rows + rows)
    with pytest.raises(ValueError):
        S.verdicts([dict(rows[0], mIoU=float('nan'))])


def test_summarise():
    out = S.summarise(_rows())
    cell = next(c for c in out['cells'] if (c['patch_size'], c['head']) == (16, 'linear'))
    # linear at p=16 equals base_s for every seed
    ref = S.mean_ci([30.0, 36.0, 27.0, 33.0, 31.0])
    assert cell['mean'] == pytest.approx(ref.mean) and cell['half'] == pytest.approx(ref.half)
    assert cell['seeds'] == (0, 1, 2, 3, 4) and cell['n'] == 5
    assert len(out['cells']) == 6
    gap4 = next(g for g in out['gaps'] if g['patch_size'] == 4)
    assert gap4['seeds'] == (0, 1, 2, 4)  # seed 3 has no UperNet at p=4
    assert gap4['mean'] == pytest.approx(10 + np.mean([2.0, 3.0, 4.0, 2.5]))
    gap8 = next(g for g in out['gaps'] if g['patch_size'] == 8)
    assert gap8['seeds'] == (0, 1, 2, 3)  # seed 4 has no linear at p=8
    nc = next(c for c in out['cells'] if (c['patch_size'], c['head']) == (4, 'linear'))
    assert nc['n_not_converged'] == 1


def test_format_verdict():
    a = S.Claim('a', 12.345, 9.81, 14.84, 2.5, 1.0, 0.95, 'holds', 3, seeds=(0, 1, 2),
                ps=(4, 8, 16))
    assert S.format_verdict('PatchViT (toy)', a) == (
        'PatchViT (toy): (a) linear head gains +12.3 mIoU per halving of p '
        '[95% CI +9.8, +14.8], 3 seeds: holds')
    b = S.Claim('b', -3.14, -5.0, -1.23, 1.9, 1.0, 0.95, 'holds', 4, seeds=(0, 1, 2, 4),
                seeds_dropped=(3,), ps=(4, 16), n_not_converged=1)
    assert S.format_verdict('PatchViT (toy)', b) == (
        'PatchViT (toy): (b) UperNet - linear gap changes by -3.1 mIoU from p=16 to p=4 '
        '[95% CI -5.0, -1.2], 4 seeds: holds (1 incomplete seed left out; 1 cell not converged)')
    line = S.format_verdict('B', S.verdicts([dict(backbone='B', patch_size=p, head='linear',
                                                   seed=0, mIoU=m)
                                              for p, m in ((8, 30.0), (4, 33.0))])['B']['a'])
    assert line == 'B: (a) linear head gains +3.0 mIoU per halving of p [95% CI: none], 1 seed: ' \
        'inconclusive'


def test_seeds_sorted_numerically():
    rows = [dict(backbone='B', patch_size=p, head='linear', seed=s, mIoU=30 + 0.1 * s + 16 // p)
            for s in (10, 2, 1) for p in (4, 16)]
    assert S.verdicts(rows)['B']['a'].seeds == (1, 2, 10)
    assert S.summarise(rows)['cells'][0]['seeds'] == (1, 2, 10)
