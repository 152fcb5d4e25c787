"Quick checks of the Peephole modules (the notebooks hold the full tests)."
import math, warnings
import numpy as np, pytest, torch
from torch import nn
from potential.core import Run
from potential.peephole.codes import layer_codes, ratio_code, CH_MAX
from potential.peephole.generate import sample_arch, build_from_codes
from potential.peephole.eval import PeepholeEstimator
from potential.peephole.model import Peephole

def test_round_trip_and_forward():
    for s in range(5):
        c = sample_arch(np.random.default_rng(s))
        m = build_from_codes(c)
        assert torch.equal(layer_codes(m, 1), c)
        assert m(torch.randn(2, 1, 40)).shape == (2, 10)

def test_bad_input():
    with pytest.raises(ValueError, match='GELU'): layer_codes(nn.Sequential(nn.Conv1d(1, 4, 3), nn.GELU()), 1)
    with pytest.raises(ValueError, match='no layer'): layer_codes(nn.Sequential(), 1)
    with pytest.warns(UserWarning, match='clipped'): assert ratio_code(10) == CH_MAX

def test_estimator_nan_for_mlp():
    codes = [sample_arch(np.random.default_rng(s)) for s in range(20)]
    est = PeepholeEstimator(Peephole(2).fit(codes, np.tile([.3, .5], (20, 1)), epochs=1))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert math.isnan(est(Run(model=nn.Sequential(nn.Flatten(), nn.Linear(40, 10)), n_epochs=3)))
    assert 0 < est(Run(model=build_from_codes(codes[0]), n_epochs=3)) < 1
    with pytest.raises(ValueError, match='1..2'): est.predictor.predict(codes[:1], epoch=3)
