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

def test_parametric_never_predicts_the_ceiling_from_a_short_prefix():
    "Issue 11 part 7: epochs 3 and 4 of a steep fit that ends at 0.93 used to be forecast at exactly 1.000"
    steep = 0.93 - 0.6*np.exp(-np.arange(1, 21)/1.2)
    pf = ParametricForecaster()
    for k in (3, 4):
        fc = pf.predict(steep[:k], 20 - k)
        assert fc.final < 0.999
        admissible = pf.fits_[pf.fits_.weight > 0]
        assert len(admissible) and (admissible.final < 1).all()

def test_parametric_constraints_increasing():
    pf = ParametricForecaster()
    noisy = CURVE[:12] + np.random.default_rng(0).normal(0, .01, 12)
    fc = pf.predict(noisy, 28)
    assert np.all(np.diff(fc.mean) >= -1e-9) and fc.final < 1
    assert pf.fits_.loc[pf.fits_.error != '', 'weight'].eq(0).all()   # rejected families weigh nothing

def test_parametric_weights_from_held_out_points():
    "On an exact pow3 curve the held-out weights go to the families that forecast it (AIC spread them over all)"
    x = np.arange(1, 61); true = 0.85 - 0.6*x**-0.7
    pf = ParametricForecaster()
    fc = pf.predict(true[:15], 45)
    assert abs(fc.final - true[-1]) < 0.01
    assert pf.fits_.loc[['pow3', 'pow4'], 'weight'].sum() > 0.5
    assert 'holdout_mse' in pf.fits_

def test_poly_default_stays_inside_unit_interval():
    "The registered curve_poly (a line in log-epoch) forecasts inside [0, 1] before any clip for most curves"
    (reg,) = get_estimators('curve_poly')
    f = reg.make().forecaster
    assert f.degree == 1 and f.log_epoch
    rng = np.random.default_rng(3)
    curves = [top - (top - .1)*np.exp(-np.arange(1, 41)/t) + rng.normal(0, .005, 40)
              for top,t in zip(rng.uniform(.5, .97, 40), rng.uniform(2, 15, 40))]
    for k in (4, 10, 20):
        raw = np.array([PolyForecaster(1, log_epoch=True, clip=None).predict(c[:k], 40 - k).final for c in curves])
        assert np.mean((raw >= 0) & (raw <= 1)) >= 0.8
        seed2 = np.array([PolyForecaster(2, clip=None).predict(c[:k], 40 - k).final for c in curves])
        assert np.mean((seed2 >= 0) & (seed2 <= 1)) < np.mean((raw >= 0) & (raw <= 1))   # the seed's degree 2 is worse

def test_curve_forecast_checks_forecaster_at_before_fit():
    from fastai.basics import Learner, CrossEntropyLossFlat, Callback
    from fastai.callback.progress import ProgressCallback  # adds `Learner.no_bar`
    from torch import nn
    from potential.data import get_dls
    from potential.curves.lstm import CurveForecast
    epochs = []
    class Count(Callback):
        def before_epoch(self): epochs.append(self.epoch)
    learn = Learner(get_dls('digits', bs=64), nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), loss_func=CrossEntropyLossFlat(),
                    cbs=[CurveForecast(LSTMForecaster(), 'unfitted'), Count()])
    with learn.no_bar(), learn.no_logging(), pytest.raises(RuntimeError, match='is not fitted'): learn.fit(2)
    assert epochs == []

def test_deepobs_runs_or_skip():
    import os
    from potential.curves.core import deepobs_runs
    if not os.environ.get('POTENTIAL_DEEPOBS'): pytest.skip("POTENTIAL_DEEPOBS is not set: no DeepOBS runs to check")
    runs = deepobs_runs()
    assert len(runs) == 675 and all('valid_acc' in r for r in runs)
    assert {r.config['problem'] for r in runs} == {'cifar100_allcnnc', 'cifar10_3c3d', 'fmnist_2c2d', 'svhn_wrn164', 'tolstoi_char_rnn'}
