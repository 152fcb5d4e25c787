"Fast checks of `potential.fh.core` outside the notebooks (the notebook `20_fh.core` has the full tests)."
import numpy as np, pytest, torch
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
