"Smoke tests of the stacked estimator and the conformal intervals as installed (the notebooks hold the full tests)"
import math, warnings
import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from potential.core import Run, Estimator, get_estimators, check_level
from potential.baselines import LastSeen
from potential.stacked import Stacked, FlatTrees, STACKED_ASSET, prefix_features
from potential.conformal import Conformal, calibrate, coverage_table, cross_fit

CURVE = 0.9 - 0.7*np.exp(-np.arange(1, 41)/6)

def toy_runs(n=40, n_epochs=12, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        top,t = rng.uniform(.5, .95),rng.uniform(1.5, 5)
        v = top - (top - .1)*np.exp(-np.arange(1, n_epochs+1)/t) + rng.normal(0, .005, n_epochs)
        out.append(Run({'valid_acc': v}, config={'k': i // 2}, name=f'toy{i}'))
    return out

def test_shipped_default_ready_and_calibrated():
    assert STACKED_ASSET.exists() and STACKED_ASSET.stat().st_size < 300_000
    (reg,) = get_estimators('stacked')
    est = reg.make()
    est.check_ready()
    assert est.cv_fit and est.predicts_accuracy and est.calibration is not None
    run = Run({'valid_acc': CURVE[:10]}, n_epochs=40)          # only a valid-accuracy curve and its planned length
    v = est(run)
    lo,hi = est.interval(run)
    assert 0 < v < 1 and lo < v < hi and math.isfinite(hi - lo)

def test_prediction_is_best_so_far_plus_gain():
    st = Stacked(max_iter=20, min_samples_leaf=5).fit(toy_runs())
    X,y,w,idx = st.table(toy_runs()[:2])
    r = toy_runs()[0]
    assert y[0] == pytest.approx(r.final() - r['valid_acc'][:1].max())
    run = r.upto(4)
    gain = st.trees_.predict(st.features(run)[st.used_])[0]
    assert st(run) == pytest.approx(run['valid_acc'].max() + gain)

def test_flat_trees_match_sklearn():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4)); X[rng.random(X.shape) < .2] = np.nan
    y = np.nansum(X, 1)
    m = HistGradientBoostingRegressor(max_iter=15, early_stopping=False).fit(X, y)
    np.testing.assert_allclose(FlatTrees(m).predict(X[:30]), m.predict(X[:30]), atol=1e-10)

def test_bad_input():
    st = Stacked(max_iter=10, min_samples_leaf=5).fit(toy_runs())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        assert math.isnan(st(Run({'valid_acc': [.2, np.nan, .4]}, n_epochs=10)))
    assert len(w) == 1 and 'non-finite' in str(w[0].message)
    assert math.isnan(st(Run({'valid_acc': []}, n_epochs=10)))               # no epoch yet: NaN
    with pytest.raises(ValueError, match='`n_epochs`=2 is smaller'): Run({'valid_acc': [.1, .2, .3]}, n_epochs=2)
    with pytest.raises(RuntimeError, match='has no model'): Stacked()(toy_runs()[0])
    st.calibration = Conformal({.25: np.linspace(0, .1, 20)})
    for bad in (0, 1, -0.5, 2, float('nan')):
        with pytest.raises(ValueError, match='`level` must be a coverage strictly between 0 and 1'): st.interval(toy_runs()[0], bad)
    with pytest.raises(ValueError, match='`level`'): check_level(1.0)

def test_refit_drops_calibration():
    st = Stacked.default()
    assert st.calibration is not None
    st.fit(toy_runs())
    assert st.calibration is None
    with pytest.raises(RuntimeError, match='not calibrated'): st.interval(toy_runs()[0].upto(4))

def test_prefix_features_short_prefix():
    f = prefix_features(np.array([.4]), 10)
    assert f['last'] == .4 and math.isnan(f['slope']) and math.isnan(f['fc_pow'])

def test_conformal_rank_rule_and_unbounded_warning():
    cal = Conformal({.5: np.arange(1, 20)/100})          # 19 residuals: level .9 -> the ceil(20·.9) = 18th
    assert cal.halfwidth(.5, .9) == pytest.approx(.18)
    with pytest.warns(UserWarning, match='unbounded'): assert cal.halfwidth(.5, .99) == math.inf

def test_coverage_table_near_nominal():
    runs = toy_runs(80)
    tab = coverage_table(LastSeen(), runs, budgets=(.25, .5), level=.8)
    assert list(tab.columns[:6]) == ['estimator', 'budget', 'level', 'coverage', 'coverage_gap', 'median_width']
    assert (tab.coverage_gap.abs() < .12).all()
    est,fold = cross_fit(LastSeen(), runs, budgets=(.5,))
    assert est.shape == (80, 1) and len(set(fold)) == 5

def test_calibrate_sets_interval():
    est = calibrate(LastSeen(), toy_runs(), budgets=(.25,))
    lo,hi = est.interval(toy_runs()[0].upto(3))
    assert hi - lo == pytest.approx(2*est.calibration.halfwidth(.25, .9))

def test_conformal_importable_from_the_bench():
    "The bench can import `potential.conformal` at module level: it must not import `potential.bench` itself"
    import subprocess, sys
    r = subprocess.run([sys.executable, '-c', 'import sys, potential.conformal; print("potential.bench" in sys.modules)'],
                       capture_output=True, text=True)
    assert r.stdout.strip() == 'False', r.stderr
