"Tests of potential.control outside the notebooks: function-preserving growth, policies, and the controller in learn.fit"
import types, warnings
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from fastai.torch_core import no_random
from potential.core import CurveRecorder
from potential.data import torch_threads
from potential.workload import classification_learner
from potential.lal.gates import PeepholeLSTM
from potential.lal.dsarnn import toy_anticipation_learner, APCallback
from potential.control.grow import net2wider, widenable_layers, find_consumers
from potential.control.policy import Decision, RulePolicy, ask_policy, sen_mlp_config, SEN_ACTIONS
from potential.control.sen import SENController, snapshot_state


class Seq(nn.Module):
    def __init__(self, batch_first=True, peephole=False):
        super().__init__()
        self.bf = batch_first or peephole
        self.lstm = PeepholeLSTM(3, 5) if peephole else nn.LSTM(3, 5, num_layers=2, batch_first=batch_first)
        self.lstm2 = PeepholeLSTM(5, 4) if peephole else nn.LSTM(5, 4, batch_first=batch_first)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        o = torch.tanh(self.lstm(x)[0])
        o = self.lstm2(o)[0]
        return self.head(o[:, -1] if self.bf else o[-1])


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def cnn(d):
    C, B, P = (nn.Conv1d, nn.BatchNorm1d, nn.AdaptiveAvgPool1d) if d == 1 else (nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d)
    return nn.Sequential(C(2, 4, 3, padding=1), B(4), nn.ReLU(), C(4, 5, 3, padding=1), B(5), nn.ReLU(), P(1), nn.Flatten(), nn.Linear(5, 3))


def perturbed(m, x):
    m.train()
    with torch.no_grad():
        for _ in range(3): m(x)
        for p in m.parameters(): p.add_(torch.randn_like(p) * .3)
    return m.eval()


CASES = {
    'mlp_bn': (mlp, (7, 12), ['1', '4']),
    'conv1d_bn': (lambda: cnn(1), (7, 2, 9), ['0', '3']),
    'conv2d_bn': (lambda: cnn(2), (7, 2, 6, 6), ['0', '3']),
    'lstm2_batch_first': (lambda: Seq(True), (4, 6, 3), ['lstm', 'lstm2']),
    'lstm2_time_first': (lambda: Seq(False), (6, 4, 3), ['lstm', 'lstm2']),
    'peephole': (lambda: Seq(peephole=True), (4, 6, 3), ['lstm', 'lstm2']),
}


@pytest.mark.parametrize('kind', list(CASES))
@pytest.mark.parametrize('init', ['net2net', 'zero'])
def test_net2wider_preserves_function(kind, init):
    make, shape, layers = CASES[kind]
    with no_random(0):
        x = torch.randn(*shape)
        m = perturbed(make(), x)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with torch.no_grad(): y = m(x)
    for layer in layers:
        for noise in (0., .1):
            w = net2wider(m, layer, widenable_layers(m)[layer] + 3, noise=noise, init=init).eval()
            assert widenable_layers(w)[layer] == widenable_layers(m)[layer] + 3
            with torch.no_grad(): torch.testing.assert_close(w(x), y, atol=1e-5, rtol=0)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())     # the old model is untouched


def test_noise_breaks_symmetry():
    def grads(noise):
        with no_random(0):
            m = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
            x = torch.randn(16, 4)
        w = net2wider(m, '0', 6, noise=noise, seed=1)
        w(x).pow(2).sum().backward()
        src = int(torch.where((w[0].weight[:3] == w[0].weight[3]).all(1))[0][0])
        return w[0].weight.grad[3], w[0].weight.grad[src]
    a, b = grads(0.)
    torch.testing.assert_close(a, b)
    a, b = grads(.2)
    assert not torch.allclose(a, b, rtol=1e-3)


def test_zero_init_units():
    with no_random(0):
        m, x = mlp().eval(), torch.randn(5, 12)
    z = net2wider(m, '1', 9, init='zero')
    assert z[4].weight[:, 6:].abs().sum() == 0
    torch.testing.assert_close(z(x), m(x), atol=1e-5, rtol=0)


def test_net2wider_bad_input():
    m = mlp()
    with pytest.raises(ValueError, match=r"`layer`='nope' is not a module of `model`; widenable layers"): net2wider(m, 'nope', 9)
    with pytest.raises(ValueError, match=r"`layer`='2' is a BatchNorm1d, which net2wider cannot widen"): net2wider(m, '2', 9)
    with pytest.raises(ValueError, match=r"`width`=6 must be larger than the current width 6 of layer '1'"): net2wider(m, '1', 6)
    with pytest.raises(ValueError, match=r"cannot widen layer '6': its output reaches `return"): net2wider(m, '6', 9)

    class Res(nn.Module):
        def __init__(self): super().__init__(); self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)
        def forward(self, x): return self.b(self.a(x) + x)
    with pytest.raises(ValueError, match=r"cannot widen layer 'a'"): net2wider(Res(), 'a', 6)


def test_policy_bad_action():
    with pytest.raises(ValueError, match=r"unknown action 'shrink' in a Decision; valid actions"): Decision('shrink')
    with pytest.raises(TypeError, match=r"a policy must return a `Decision\(action, reason\)`, got str"): ask_policy(lambda h: 'grow', pd.DataFrame())
    assert RulePolicy().decide(pd.DataFrame()).action == 'continue'


def mlp_learner(cbs, n_train=256):
    return classification_learner(sen_mlp_config(8), n_train, [CurveRecorder(), *cbs])


class Script:
    def __init__(self, actions): self.actions = actions
    def decide(self, h):
        a = self.actions[len(h) - 1] if 0 < len(h) <= len(self.actions) else 'continue'
        return Decision(a, 'scripted', .5 if a == 'retrain' else 1.)


def fit(learn, n, lr=1e-2):
    with no_random(0), torch_threads(1), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with learn.no_bar(), learn.no_logging(): learn.fit(n, lr)


@pytest.mark.parametrize('ctl, match', [
    (lambda: SENController(Script([]), layers=['nope']), r"`layers` \['nope'\] are not widenable layers"),
    (lambda: SENController(Script([]), layers=['3']), r"cannot widen layer '3'"),
    (lambda: SENController(lambda h: types.SimpleNamespace(action='shrink')), r"a policy must return a `Decision"),
    (lambda: SENController(Script([]), budget=100), r"`budget`=100 parameter-epochs is already spent"),
])
def test_controller_refuses_before_training(ctl, match):
    learn = mlp_learner([ctl()])
    with pytest.raises(Exception, match=match): fit(learn, 1)
    assert len(learn.curve_recorder.curves['valid_acc']) == 0


def test_rollback_restores_exactly():
    class Probe(CurveRecorder.__mro__[1]):   # a plain fastai Callback
        order = 60
        def before_fit(self): self.states = []
        def before_epoch(self): self.states.append(snapshot_state(self.learn.model, self.learn.opt))
    probe = Probe()
    learn = mlp_learner([SENController(Script(['continue', 'retrain'])), probe])
    fit(learn, 3)
    a, b = probe.states[1], probe.states[2]
    assert all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])
    for x, y in zip(a['opt']['state'], b['opt']['state']):
        for k in x: assert torch.equal(x[k], y[k]) if isinstance(x[k], torch.Tensor) else x[k] == y[k]
    assert list(learn.sen_log.action) == ['continue', 'retrain', 'continue']


def test_controller_grows_mlp_end_to_end():
    ctl = SENController(Script(['grow', 'continue', 'grow']), max_width=32)
    learn = mlp_learner([ctl])
    fit(learn, 4)
    run = learn.curve_recorder.as_run()
    assert widenable_layers(learn.model)['1'] == 32
    assert run['sen_n_params'][1] > run['sen_n_params'][0]
    assert len(run['valid_acc']) == 4 and len(learn.recorder.values) == 4
    assert ctl.spent == sum(run['sen_n_params'])
    assert learn.opt.hypers[0]['lr'] == 1e-2


def test_controller_budget_stops():
    ctl = SENController(Script([]), budget=2.5 * 418)
    learn = mlp_learner([ctl])
    fit(learn, 5)
    assert len(learn.curve_recorder.curves['valid_acc']) == 2
    assert learn.sen_log.action.iloc[-1] == 'stop'


def test_controller_on_dsarnn():
    with no_random(0):
        tl = toy_anticipation_learner(cbs=[CurveRecorder(), APCallback(every=1), SENController(RulePolicy(metric='ap', patience=1), max_width=8)])
        with tl.no_bar(), tl.no_logging(): tl.fit(3)
    assert len(tl.sen_log) == 3 and set(tl.sen_log.action) <= set(SEN_ACTIONS)
    with no_random(0):
        tl = toy_anticipation_learner(cbs=[CurveRecorder(), SENController(Script(['grow']))])
        with tl.no_bar(), tl.no_logging(): tl.fit(2)
    assert tl.model.lstm.hidden_size == 8 and tl.model.out.in_features == 8
