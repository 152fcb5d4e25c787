"Hand-checked architectural attributes, the models' scikit-learn conventions and the estimator's contract (the notebooks hold the full tests)."
import contextlib, io
from functools import partial
import numpy as np, pandas as pd, pytest, torch
from torch import nn
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.model_selection import GroupKFold, KFold, cross_val_score, cross_val_predict
from potential.core import Run, CurveRecorder, get_estimators
from potential.attributes.extract import ATTR_NAMES, arch_attributes
from potential.attributes.models import HealthClassifier, AttributeOLS, ArchitectureEstimator, health_labels

class TinyRes(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem,self.a,self.b = nn.Conv1d(1, 4, 3, padding=1),nn.Conv1d(4, 4, 3, padding=1),nn.Conv1d(4, 4, 1)
        self.pool,self.fc = nn.AvgPool1d(2),nn.Linear(32, 10)
    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(x + self.b(torch.relu(self.a(x))))
        return self.fc(self.pool(x).flatten(1))

def test_residual_by_hand():
    a = arch_attributes(TinyRes(), (1, 16))
    assert list(a) == ATTR_NAMES
    assert a['net_depth_avg'] == 4          # paths of depth 5 (through the block) and 3 (skip)
    assert (a['avg_split_width'], a['avg_concat_width'], a['num_relu']) == (2, 2, 2)
    assert a['prop_conv_into_pool'] == 0 and a['prop_1x1_conv'] == pytest.approx(1/3)
    assert a['avg_ratio_features_to_depth'] == pytest.approx((4 + 2 + 4/3 + 5)/4)

def test_bad_shape_says_so_without_a_traceback():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(ValueError, match='does not fit'): arch_attributes(TinyRes(), (1, 15))
    assert err.getvalue() == ''             # torch's ShapeProp would print a traceback with machine paths

def _synthetic(n_configs=200, seed=0):
    "Attribute rows, each configuration twice (two seeds of one architecture), with a known broken/healthy rule"
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n_configs, 32)), columns=ATTR_NAMES)
    acc = np.where(X.net_depth_avg + X.avg_IP_neurons > -.5, .5 + .1*rng.random(n_configs), .05)
    X,acc = pd.concat([X, X]).reset_index(drop=True),np.tile(acc, 2)
    return X, acc, np.tile(np.arange(n_configs), 2), rng

@pytest.mark.parametrize('model', [HealthClassifier(forest='ERT', n_estimators=20), AttributeOLS(interactions=False)])
def test_sklearn_conventions(model):
    X,acc,_,_ = _synthetic(60)
    y = health_labels(acc) if isinstance(model, HealthClassifier) else acc
    fresh = type(model)()
    assert set(vars(fresh)) == set(fresh.get_params())           # the constructor stores its arguments, nothing else
    c = clone(model)
    assert c.get_params() == model.get_params() and c is not model
    fitted = c.fit(X, y)
    assert fitted is c
    learnt = set(vars(c)) - set(c.get_params())
    assert learnt and all(a.endswith('_') for a in learnt), learnt   # fitted state: trailing underscores
    assert not any(a.endswith('_') for a in vars(clone(c)))          # a clone of a fitted model is unfitted
    assert c.predict(X).shape == (len(X),)

def test_cross_val_score_with_groups():
    X,acc,groups,rng = _synthetic()
    lab = health_labels(acc)
    s = cross_val_score(HealthClassifier(n_estimators=50), X, lab, groups=groups, cv=GroupKFold(5), scoring='balanced_accuracy')
    assert s.mean() > .8
    assert HealthClassifier(n_estimators=20).fit(X, lab).predict_proba(X.iloc[:4]).shape == (4, 2)
    # labels that carry no signal: shuffled folds reward memorising the copies, grouped folds do not
    noise = health_labels(np.tile(rng.random(len(X)//2), 2), .5)
    memo = HealthClassifier(balance=False, max_depth=None, min_samples_split=2, n_estimators=50)
    leaky = cross_val_score(memo, X, noise, cv=KFold(5, shuffle=True, random_state=0)).mean()
    grouped = cross_val_score(memo, X, noise, groups=groups, cv=GroupKFold(5)).mean()
    assert leaky > .7 and grouped < .6, (leaky, grouped)
    oof = cross_val_predict(AttributeOLS(interactions=False), X, acc, groups=groups, cv=GroupKFold(5))
    assert oof.shape == (len(X),) and np.isfinite(oof).all()

def test_bad_input():
    X,acc,_,_ = _synthetic(60)
    with pytest.raises(ValueError, match='health labels'): HealthClassifier().fit(X, acc)
    with pytest.raises(ValueError, match="'RF', 'ERT'"): HealthClassifier(forest='svm').fit(X, health_labels(acc))
    with pytest.raises(ValueError, match='too few networks'): AttributeOLS().fit(X.iloc[:8], acc[:8])
    with pytest.raises(KeyError, match='num_relu'): 
        AttributeOLS(interactions=False).fit(X, acc).predict(X.drop(columns=['num_relu']))

def _mlp(depth): return nn.Sequential(nn.Flatten(), *[m for _ in range(depth) for m in (nn.Linear(40, 40), nn.ReLU())], nn.Linear(40, 10))

def _learner():
    from fastai.basics import Learner, CrossEntropyLossFlat
    import fastai.callback.progress  # patches `Learner.no_bar`
    from potential.data import get_dls
    dls = get_dls('mnist1d', bs=64, device='cpu', n_train=64)
    return Learner(dls, _mlp(2), loss_func=CrossEntropyLossFlat(), cbs=[CurveRecorder()])

def test_unfitted_callback_refuses_before_fit():
    learn = _learner()
    with learn.no_bar(), learn.no_logging(), pytest.raises(RuntimeError, match=r'call `fit\(runs\)` with finished runs'):
        learn.fit(1, cbs=[get_estimators('arch_attributes')[0].make().callback()])
    assert learn.curve_recorder.curves['valid_acc'] == []          # no epoch was spent

def test_fitted_callback_estimates():
    runs = [Run({'valid_acc': [.2 + .1*d]}, model=partial(_mlp, d), config={'depth': d, 'dataset': 'mnist1d'}) for d in range(1, 5)]
    est = ArchitectureEstimator().fit(runs)
    learn,cb = _learner(),est.callback()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=[cb])
    assert cb.df['arch_attributes'].tolist() == pytest.approx([est(runs[1].upto(0))])   # depth 2, as the learner's model

def test_attributes_space_uses_the_one_stack():
    import potential.attributes.population as pop
    from potential.workload import SPACES, ResBlock, build_model, sample_configs
    assert SPACES['attributes'].build is pop.build_net and SPACES['attributes'].sample is pop.sample_attr_config
    cfgs = sample_configs(40, seed=0, space='attributes')
    assert {(c['space'], c['dataset'], c['sched'], c['bs']) for c in cfgs} == {('attributes', 'mnist1d', 'const', 128)}
    res = [c for c in cfgs if c['family'] == 'rescnn'][0]
    assert any(isinstance(m, ResBlock) for m in build_model(res).modules())
    for dup in ('ACTS', 'ResBlock1d', 'train_config'): assert not hasattr(pop, dup), dup   # the stack's own are used
    import potential.workload as wl
    assert pop.train_population is wl.train_population and pop.ResBlock is wl.ResBlock and pop.ACTIVATIONS is wl.ACTIVATIONS
    assert pop.__all__ == ['sample_attr_config', 'build_net', 'attr_population']

def test_population_cache_key_holds_n_train(tmp_path, monkeypatch):
    from potential.attributes.population import attr_population
    from potential.workload import load_run, save_run
    monkeypatch.setenv('POTENTIAL_CACHE', str(tmp_path))
    threads,rng = torch.get_num_threads(),torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    small = attr_population(1, n_epochs=1, n_train=128, seed=2, progress=False)[0]
    assert torch.get_num_threads() == threads                                   # no hidden global state
    assert torch.equal(torch.random.get_rng_state(), rng) and (np.random.get_state()[1] == np_state).all()
    f = tmp_path/'runs'/f"{small.meta['key']}.json"
    marked = load_run(f); marked.meta['marker'] = 1; save_run(marked, f)
    assert attr_population(1, n_epochs=1, n_train=128, seed=2, progress=False)[0].meta.get('marker') == 1   # reused
    full = attr_population(1, n_epochs=1, seed=2, progress=False)[0]      # asked for the full training set
    assert full.meta.get('marker') is None and full.meta['n_train'] is None and full.config == small.config

def test_no_generic_constants():
    import potential.attributes.extract as ex, potential.attributes.models as mo, potential.attributes.population as po
    consts = [n for m in (ex, mo, po) for n in m.__all__ if n.isupper()]
    assert consts and all(n.startswith('ATTR_') for n in consts), consts   # family-prefixed: ATTR_NAMES, ATTR_THRESHOLD
