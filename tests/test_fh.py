"Fast checks of `potential.fh.core` outside the notebooks (the notebook `20_fh.core` has the full tests)."
import re, numpy as np, pytest, torch
from potential.fh.core import FeatureHistory, FeatureStore, HeadHistory, feature_history, fh_memory, fit_head, head_probs
from potential.core import get_estimators
from potential.data import preserve_rng


def _blobs(n=600, d=6, C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 3*torch.randn(C, d, generator=g)
    y = torch.randint(0, C, (n,), generator=g)
    return centres[y] + torch.randn(n, d, generator=g), y


def test_fit_head_learns_and_keeps_global_rng():
    X, Y = _blobs()
    with preserve_rng():
        torch.manual_seed(1); a = torch.rand(1)
        torch.manual_seed(1); W, b = fit_head(X.half(), Y, torch.zeros(3, 6), torch.zeros(3)); c = torch.rand(1)
    assert torch.equal(a, c)
    assert (head_probs(X, W, b).argmax(-1) == Y).float().mean() > .9


def test_feature_history_k1_is_optimised_head():
    X, Y = _blobs()
    heads = [(torch.zeros(3, 6), torch.zeros(3))]*3
    df = feature_history([X]*3, Y, [X[:200]]*3, Y[:200], heads, K=1)
    assert np.allclose(df.ensemble, df.optimised)


def test_bad_input():
    with pytest.raises(ValueError, match='`K` must be a positive integer'): HeadHistory(K=0)
    with pytest.raises(ValueError, match='`K` must be a positive integer'): FeatureHistory(K=0)
    X, Y = _blobs(); X[0, 0] = float('nan')
    with pytest.raises(ValueError, match='contains NaN'): fit_head(X, Y, torch.zeros(3, 6))


def test_memory_and_registration():
    assert fh_memory(N=10, d=4, C=2, K=3, N_val=5) == dict(train=160, valid=120, probs=120, peak=400, kept=120)
    reg = get_estimators('fh_ensemble')[0]
    assert reg.callback is FeatureHistory and type(reg.make().callback()) is FeatureHistory


def test_subsample_is_uniform():
    "Under the memory cap every position of the epoch's stream is kept with the same frequency"
    counts = torch.zeros(40)
    for s in range(800):
        st = FeatureStore(40, max_rows=8, seed=s)
        for i in range(0, 40, 6): st.add(torch.zeros(min(6, 40 - i), 1), torch.arange(i, min(i + 6, 40)))
        counts[st.get()[1]] += 1
    assert int(counts.sum()) == 8*800
    freq = counts/800
    assert torch.allclose(freq, torch.full((40,), 8/40), atol=0.07)
    assert abs(float(freq[:20].mean() - freq[20:].mean())) < 0.02    # the start of the epoch is not favoured


# --- preconditions: checked at `before_fit`, before the first epoch ---------------------------------------------------
import torch.nn.functional as F
from torch import nn
from fastai.basics import Learner, CrossEntropyLossFlat, Callback, DataLoaders
from fastai.torch_core import no_random
import fastai.callback.progress  # noqa: F401  (adds `Learner.no_bar`)
from potential.core import CurveRecorder
from potential.data import BatchDL, TensorDS, digits_arrays


def _mlp(n_out=10): return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, n_out))


def _dls(y_map=lambda y: y, n_valid=None):
    xtr, ytr, xva, yva = map(torch.as_tensor, digits_arrays())
    xva, yva = xva[:n_valid], yva[:n_valid]
    dls = DataLoaders(BatchDL(TensorDS(xtr, y_map(ytr)), bs=64, shuffle=True),
                      BatchDL(TensorDS(xva, y_map(yva)), bs=128), device='cpu')
    dls.c = 10
    return dls


class _Epochs(Callback):
    def before_fit(self): self.n = 0
    def before_epoch(self): self.n += 1


class _Unused(nn.Module):
    def __init__(self): super().__init__(); self.body, self.spare = _mlp(), nn.Linear(32, 10)
    def forward(self, x): return self.body(x)


class _Twice(nn.Module):
    def __init__(self): super().__init__(); self.inp, self.out = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), nn.Linear(10, 10)
    def forward(self, x): return self.out(self.out(self.inp(x)))


def _nan_mlp():
    m = _mlp(); m[1].weight.data[0, 0] = float('nan'); return m


CASES = {  # name: (FeatureHistory kwargs, model, dls, expected message)
    'no_linear': ({}, lambda: nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten()), None, 'pass `layer=`'),
    'unknown_layer': (dict(layer='fc'), _mlp, None, "`layer='fc'` is not a module of the model; its linear layers: ['1', '3']"),
    'not_linear': (dict(layer='2'), _mlp, None, "the head must be an `nn.Linear`: one of ['1', '3']"),
    'n_classes': ({}, lambda: _mlp(7), None, 'has 7 outputs but the data has 10 classes'),
    'not_called': ({}, _Unused, None, "the head `spare` is not called when the model runs"),
    'called_twice': ({}, _Twice, None, 'is called 2 times in one forward pass'),
    'not_flat': ({}, lambda: nn.Sequential(nn.Flatten(2), nn.Linear(64, 10), nn.Flatten()), None,
                 'not (batch, features)'),
    'inner_layer': (dict(layer='1'), lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU(), nn.Linear(10, 10)),
                    None, "are not the model's predictions"),
    'nan_features': ({}, _nan_mlp, None, 'contain NaN or infinite values before training'),
    'no_valid': ({}, _mlp, lambda: _dls(n_valid=0), '`dls.valid` is empty'),
    'one_hot_targets': ({}, _mlp, lambda: _dls(lambda y: F.one_hot(y, 10).float()), 'needs class-index targets'),
    'targets_out_of_range': ({}, _mlp, lambda: _dls(lambda y: y + 5), 'class indices in [0, 10)'),
}


@pytest.mark.parametrize('case', list(CASES))
def test_refuses_before_first_epoch(case):
    kwargs, model, dls, msg = CASES[case]
    ep = _Epochs()
    with no_random(0):
        learn = Learner(dls() if dls else _dls(), model(), loss_func=CrossEntropyLossFlat(),
                        cbs=[CurveRecorder(), FeatureHistory(**kwargs), ep])
    with learn.no_bar(), learn.no_logging(), pytest.raises(ValueError, match=re.escape(msg)): learn.fit(1)
    assert ep.n == 0


def test_check_leaves_training_unchanged():
    "The check's forward pass changes neither the model, its modes nor the random streams"
    def fit(cbs):
        with no_random(0): learn = Learner(_dls(), _mlp(), loss_func=CrossEntropyLossFlat(), cbs=[CurveRecorder(), *cbs])
        with learn.no_bar(), learn.no_logging(): learn.fit(2, 1e-3)
        return learn.curve_recorder.curves['valid_acc'], learn.curve_recorder.curves['train_loss']
    assert fit([]) == fit([FeatureHistory(K=2)])
