"Smoke tests of the LAL modules outside the notebooks (the notebooks hold the full tests)"
import math, re, warnings
import numpy as np
import pytest
import torch
from torch import nn
from potential.lal.gates import PeepholeLSTM, lstm_forget_gates, record_forget_gates
from fastai.callback.core import Callback
from fastai.torch_core import no_random
from potential.core import ESTIMATORS, CurveRecorder
from potential.lal.core import lcal, lal, model_lal, LALCallback, LAL
from potential.lal.dad import make_synthetic_dad, load_dad
from potential.lal.dsarnn import DSARNN, anticipation_metrics, toy_anticipation_learner


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


class _Alarm(nn.Module):
    "Forget gates from a peephole LSTM; the alarm from the input's first channel, so the TrueP clips are known"
    def __init__(self):
        super().__init__()
        self.rnn = PeepholeLSTM(3, 6)

    def forward(self, x):
        self.rnn(x)
        return torch.stack([torch.zeros_like(x[..., 0]), 10 * x[..., 0]], -1)


def test_lal_uses_only_truep_clips():
    "Clips that raise the alarm have still gates, the others react: LAL over the TrueP clips is 0, over all clips not"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 100, 3, generator=g)
    alarm = torch.arange(8) % 2 == 0
    x[:, :, 0] = torch.where(alarm[:, None], 1., -1.)
    x[alarm, :, 1:] = 0.
    with no_random(0):
        m = _Alarm()
    for bs in (3, 8):                      # batches that mix TrueP and other clips
        r = model_lal(m, x, bs=bs)
        assert (r['n_truep'], r['n_clips']) == (4, 8)
        assert r['lal'] == 0.
    _, f = record_forget_gates(m, x)
    assert lal(lcal(f[alarm])) == 0. and lal(lcal(f)) > .25   # LAL over every accident clip would differ


def test_lal_registered_and_fits_as_callback():
    reg = ESTIMATORS['lal']
    assert reg.kind == 'internal' and reg.callback is LALCallback
    est = reg.make()
    assert isinstance(est, LAL) and not est.predicts_accuracy
    learn = toy_anticipation_learner(cbs=[CurveRecorder(), est.callback()])
    n_threads = torch.get_num_threads()
    with learn.no_logging():
        learn.fit(2)
    assert torch.get_num_threads() == n_threads
    run = learn.curve_recorder.as_run()
    v = est(run)
    assert math.isnan(v) or 0 <= v <= 1
    assert run['lal_truep'][-1] >= 0       # LAL was computed at the last epoch


@pytest.mark.parametrize('model, cb, msg', [
    (lambda: nn.Sequential(nn.Linear(3, 2)), lambda: LALCallback(), 'holds no PeepholeLSTM or nn.LSTM'),
    (lambda: nn.LSTM(3, 4, num_layers=2, batch_first=True), lambda: LALCallback(), 'num_layers=2'),
    (lambda: nn.LSTM(3, 4, bidirectional=True, batch_first=True), lambda: LALCallback(), 'bidirectional=True'),
    (None, lambda: LALCallback(toa=120), 'fewer than `toa`=120'),
    (None, lambda: LALCallback(span=(10, 105)), 'shorter than the LCAL `span`=(10, 105)'),
])
def test_lal_callback_refuses_at_before_fit(model, cb, msg):
    learn = toy_anticipation_learner(cbs=[cb()])
    if model is not None:
        learn.model = model()
    epochs = []
    learn.add_cb(type('Count', (Callback,), {'before_epoch': lambda self: epochs.append(1)})())
    with pytest.raises(Exception, match=re.escape(msg)):
        learn.fit(1)
    assert epochs == []


def test_lal_experiment_key_holds_every_argument():
    "The experiment's runs are keyed by train_run on a config that holds the setting, and on the callbacks' parameters"
    from potential.workload import run_key
    from potential.lal.experiment import lal_config, lal_callbacks, LAL_EXPERIMENT_VERSION
    from potential.lal.dsarnn import LAL_EXPERIMENT as S
    key = lambda h=4, s=S, every=5, seed=0, epochs=30, **kw: run_key({**lal_config(h, s), **kw}, seed, epochs, None,
                                                                     lal_callbacks(every, s))
    keys = [key(), key(s={**S, 'data': {**S['data'], 'noise': .5}}), key(s={**S, 'n_train': (10, 10)}),
            key(s={**S, 'bs': 8}), key(h=8), key(every=2), key(seed=1), key(epochs=10),
            key(version=LAL_EXPERIMENT_VERSION + 1)]
    assert len(set(keys)) == len(keys)
    assert key() == key(s={**S, 'span': list(S['span'])})   # a setting read back from JSON keeps its key


def test_learners_leave_global_state_alone():
    "Building the DSA-RNN learners seeds their models locally; timing and fitting restore the thread count"
    from potential.lal.dsarnn import dsarnn_learner, experiment_learner, dad_dls, LAL_EXPERIMENT
    from potential.lal.gates import bench_peephole
    learn = toy_anticipation_learner()
    rng, n_threads = torch.get_rng_state(), torch.get_num_threads()
    m1 = dsarnn_learner(learn.dls, n_hidden=4, n_emb=8, seed=3).model
    setting = {**LAL_EXPERIMENT, 'data': {**LAL_EXPERIMENT['data'], 'n_feat': 8}}
    m2 = experiment_learner(learn.dls, 4, seed=3, setting=setting).model
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(m1.out.weight, dsarnn_learner(learn.dls, n_hidden=4, n_emb=8, seed=3).model.out.weight)
    assert torch.equal(m2.out.weight, experiment_learner(learn.dls, 4, seed=3, setting=setting).model.out.weight)
    bench_peephole(B=2, T=5, M=3, hidden=(2,), reps=1)
    assert torch.get_num_threads() == n_threads


def test_peephole_backward_matches_numerical():
    from potential.lal.gates import _PeepholeSeq
    import torch.nn.functional as F
    with no_random(1):
        args = [torch.randn(s, dtype=torch.double, requires_grad=True) for s in ((12, 2), (12, 3), (2, 3), (2, 3), (3,), (3,), (3,))]
        x = torch.randn(2, 5, 2, dtype=torch.double)

    def seq(W, R, h0, c0, p_i, p_f, p_o):
        H, C, _ = _PeepholeSeq.apply(F.linear(x, W), h0, c0, R, p_i, p_f, p_o)
        return H, C
    assert torch.autograd.gradcheck(seq, args)


def test_dsarnn_default_is_nn_lstm_with_recovered_gates():
    with no_random(0):
        m = DSARNN(n_feat=6, n_hidden=5, n_emb=4).eval()
        x = torch.randn(2, 20, 3, 6)
    assert isinstance(m.lstm, nn.LSTM)
    out, f = record_forget_gates(m, x)
    torch.testing.assert_close(out, m(x))
    assert f.shape == (2, 20, 5) and not m.lstm.record
    # the recovered forget gates equal those of an nn.LSTMCell loop over the same attention inputs
    with torch.no_grad():
        E, N = m.n_emb, 5
        mask = (x[:, :, 1:].sum(-1) != 0).float()
        frame, obj = m.em_img(x[:, :, 0]), m.em_obj(x[:, :, 1:]) * mask[..., None]
        cell = nn.LSTMCell(2 * E, N)
        cell.load_state_dict({k[:-3]: v for k, v in m.lstm.state_dict().items()})
        h = c = torch.zeros(2, N)
        fs = []
        for t in range(20):
            a = m.att_v(torch.tanh(m.att_u(obj[:, t]) + m.att_w(h)[:, None]))[..., 0].softmax(-1) * mask[:, t]
            xt = torch.cat([frame[:, t], (a[..., None] * obj[:, t]).sum(1)], -1)
            fs.append(torch.sigmoid((xt @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh)[:, N:2 * N]))
            h, c = cell(xt, (h, c))
    torch.testing.assert_close(f, torch.stack(fs, 1), atol=1e-5, rtol=0)
    with no_random(0):
        mp = DSARNN(n_feat=6, n_hidden=5, n_emb=4, peephole=True).eval()
    assert isinstance(mp.lstm, PeepholeLSTM) and record_forget_gates(mp, x)[1].shape == (2, 20, 5)


def test_calibrated_lal_variants():
    from potential.lal.core import calibrate_tau

    class Tagger(nn.Module):
        def __init__(self): super().__init__(); self.rnn, self.head = PeepholeLSTM(3, 6), nn.Linear(6, 2)
        def forward(self, x): return self.head(self.rnn(x)[0])
    with no_random(0):
        m, x = Tagger(), torch.randn(8, 100, 3)
    with torch.no_grad(): m.head.bias.copy_(torch.tensor([-5., 5.]))
    L = lcal(record_forget_gates(m, x)[1])
    tau = calibrate_tau(m, x)
    r = model_lal(m, x, tau_cal=tau)
    assert abs(r['mean_lcal'] - float(L.mean())) < 1e-6
    assert abs(r['lal_cal'] - lal(L, tau)) < 1e-9
    assert math.isnan(model_lal(m, x)['lal_cal'])
    with pytest.raises(ValueError, match='`q` must be a quantile'): calibrate_tau(m, x, q=0)
