"Smoke tests of the LAL modules outside the notebooks (the notebooks hold the full tests)"
import math, warnings
import numpy as np
import pytest
import torch
from torch import nn
from potential.lal.peephole import PeepholeLSTM, lstm_forget_gates, record_forget_gates
from potential.lal.core import lcal, lal
from potential.lal.dad import make_synthetic_dad, load_dad
from potential.lal.dsarnn import DSARNN, anticipation_metrics


def _lcal_loop(f, w=5, span=(10, 90)):
    "Direct transcription of Eq. 10-12 with loops, for comparison"
    T, N = f.shape
    out = np.zeros(N)
    for k in range(N):
        best = 0.
        for t in range(span[0] - 1, span[1] - w + 1):
            win = f[t:t+w, k]
            cv = win.std() / win.mean() if win.mean() > 0 else 0.
            best = max(best, cv)
        out[k] = best
    return out


def test_lcal_matches_loop():
    rng = np.random.default_rng(0)
    f = rng.uniform(.2, 1, (100, 6))
    np.testing.assert_allclose(lcal(f), _lcal_loop(f), rtol=1e-5)
    np.testing.assert_allclose(lcal(f, w=3, span=(5, 40)), _lcal_loop(f, 3, (5, 40)), rtol=1e-5)


def test_lal_no_scenes_is_nan():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert math.isnan(lal(np.empty((0, 4))))


def test_nn_lstm_forget_gates_match_cell():
    torch.manual_seed(0)
    m = nn.LSTM(4, 5, batch_first=True)
    x = torch.randn(2, 15, 4)
    with torch.no_grad():
        out, _ = m(x)
        f = lstm_forget_gates(m, x, out)
        cell = nn.LSTMCell(4, 5)
        cell.load_state_dict({k[:-3]: v for k, v in m.state_dict().items()})
        h = c = torch.zeros(2, 5)
        for t in range(15):
            g = x[:, t] @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
            torch.testing.assert_close(f[:, t], torch.sigmoid(g[:, 5:10]), atol=1e-6, rtol=0)
            h, c = cell(x[:, t], (h, c))


def test_dsarnn_on_generated_files(tmp_path):
    ds = make_synthetic_dad(tmp_path, n_pos=4, n_neg=4, seed=0)
    x, y = ds.arrays()
    m = DSARNN(n_feat=ds.n_feat, n_hidden=6, n_emb=8).eval()
    out, f = record_forget_gates(m, x)
    assert out.shape == (8, 100, 2) and f.shape == (8, 100, 6)
    r = anticipation_metrics(out.softmax(-1)[..., 1].detach().numpy(), y.numpy())
    assert 0 <= r['ap'] <= 1
    with pytest.raises(FileNotFoundError, match='holds no'):
        load_dad(tmp_path / 'empty' if (tmp_path / 'empty').mkdir() is None else tmp_path)
