"Smoke tests of the curve forecasters as installed (the notebooks hold the full tests)"
import warnings
import numpy as np
import pytest
from potential.core import Run, get_estimators
from potential.curves.core import (LastSeenForecaster, PolyForecaster, ParametricForecaster, forecast_final,
                                   fill_nonfinite)
from potential.curves.lstm import LSTMForecaster, DEFAULT_WEIGHTS

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
    assert DEFAULT_WEIGHTS.exists() and DEFAULT_WEIGHTS.stat().st_size < 300_000
    f = LSTMForecaster.default()
    one = f.predict(CURVE[:8], 12).mean
    batch = f.predict_batch([CURVE[:5], CURVE[:8]], [20, 12])
    np.testing.assert_allclose(batch[1].mean, one, atol=1e-5)

def test_registered_estimators():
    run = Run({'valid_acc': CURVE}, n_epochs=40)
    for reg in get_estimators('curve_poly,curve_parametric,curve_lstm'):
        est = reg.make()
        assert reg.kind == 'curve' and est.predicts_accuracy
        v = est(run.upto(10))
        assert 0 <= v <= 1

def test_bad_input():
    with pytest.raises(ValueError, match='needs at least 3'): PolyForecaster(2).predict([.1, .2], 3)
    with pytest.raises(ValueError, match='non-finite'): PolyForecaster(1).predict([.1, np.nan, .2], 3)
    with pytest.raises(ValueError, match='is empty'): LSTMForecaster().fit([])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert np.isnan(forecast_final(PolyForecaster(1), [np.nan, np.nan], 10))
    np.testing.assert_allclose(fill_nonfinite([np.nan, .3, np.inf]), [.3, .3, .3])
