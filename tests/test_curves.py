"Smoke tests of the curve forecasters as installed (the notebooks hold the full tests)"
import warnings
import numpy as np
import pytest
from potential.core import Run, get_estimators
from potential.curves.core import (LastSeenForecaster, PolyForecaster, ParametricForecaster, forecast_final,
                                   fill_nonfinite)
from potential.curves.core import CurveEstimator
from potential.curves.lstm import LSTMForecaster, CURVE_LSTM_ASSET

CURVE = 0.9 - 0.7*np.exp(-np.arange(1, 41)/6)

@pytest.mark.parametrize('f', [LastSeenForecaster(), PolyForecaster(2), ParametricForecaster()])
def test_forecasts_finite_and_clipped(f):
    fc = f.predict(CURVE[:10], 30)
    assert len(fc) == 30 and np.isfinite(fc.mean).all() and (fc.mean >= 0).all() and (fc.mean <= 1).all()

def test_parametric_beats_last_seen():
    e_par = abs(ParametricForecaster().predict(CURVE[:10], 30).final - CURVE[-1])
    e_last = abs(CURVE[9] - CURVE[-1])
    assert e_par < e_last/3

def test_default_lstm_shipped_and_batched():
    assert CURVE_LSTM_ASSET.exists() and CURVE_LSTM_ASSET.stat().st_size < 300_000
    f = LSTMForecaster.default()
    one = f.predict(CURVE[:8], 12).mean
    batch = f.predict_batch([CURVE[:5], CURVE[:8]], [20, 12])
    np.testing.assert_allclose(batch[1].mean, one, atol=1e-5)

def test_default_lstm_is_a_fresh_copy():
    a = LSTMForecaster.default()
    one = a.predict(CURVE[:8], 12).mean
    for p in a.model.parameters(): p.data.zero_()
    a.info['sources'] = None
    b = LSTMForecaster.default()
    assert b is not a and b.info['sources'] is not None
    np.testing.assert_allclose(b.predict(CURVE[:8], 12).mean, one)

def test_registered_estimators():
    run = Run({'valid_acc': CURVE}, n_epochs=40)
    for reg in get_estimators('curve_poly,curve_parametric,curve_lstm'):
        est = reg.make()
        assert reg.kind == 'curve' and est.predicts_accuracy
        est.check_ready()
        v = est(run.upto(10))
        assert 0 <= v <= 1
    assert [r.make().cv_fit for r in get_estimators('curve_poly,curve_parametric,curve_lstm')] == [False, False, True]

def test_unfitted_learned_estimator_refuses():
    with pytest.raises(RuntimeError, match=r'is not fitted; call `fit\(runs\)`'): CurveEstimator(LSTMForecaster()).check_ready()

def test_poly_prediction_interval():
    "The interval is the prediction interval of a new value, t·s·sqrt(1 + 1/n + (x0-x̄)²/Sxx), not the mean's"
    from scipy import stats
    x,x0 = np.arange(1, 13),np.arange(13, 16)
    y = 0.3 + 0.02*x + np.random.default_rng(0).normal(0, 0.01, len(x))
    fc = PolyForecaster(1, level=0.9, clip=None).predict(y, len(x0))
    b,a = np.polyfit(x, y, 1)
    s = np.sqrt(np.sum((y - (a + b*x))**2)/(len(x) - 2))
    half = stats.t.ppf(0.95, len(x) - 2)*s*np.sqrt(1 + 1/len(x) + (x0 - x.mean())**2/np.sum((x - x.mean())**2))
    np.testing.assert_allclose(fc.hi - fc.mean, half, rtol=1e-9)

def test_bad_input():
    with pytest.raises(ValueError, match='needs at least 3'): PolyForecaster(2).predict([.1, .2], 3)
    with pytest.raises(ValueError, match='non-finite'): PolyForecaster(1).predict([.1, np.nan, .2], 3)
    with pytest.raises(ValueError, match='is empty'): LSTMForecaster().fit([])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert np.isnan(forecast_final(PolyForecaster(1), [np.nan, np.nan], 10))
    np.testing.assert_allclose(fill_nonfinite([np.nan, .3, np.inf]), [.3, .3, .3])

def test_deepobs_location_is_explicit(tmp_path, monkeypatch):
    "The DeepOBS folder is an argument or POTENTIAL_DEEPOBS, never searched for"
    from potential.curves.core import deepobs_path
    monkeypatch.delenv('POTENTIAL_DEEPOBS', raising=False)   # monkeypatch restores it after the test
    with pytest.raises(FileNotFoundError, match='pass `path=` or set the environment variable POTENTIAL_DEEPOBS'): deepobs_path()
    with pytest.raises(FileNotFoundError, match='is not a DeepOBS folder'): deepobs_path(tmp_path)
    monkeypatch.setenv('POTENTIAL_DEEPOBS', str(tmp_path))
    with pytest.raises(FileNotFoundError, match='POTENTIAL_DEEPOBS=.*is not a DeepOBS folder'): deepobs_path()
