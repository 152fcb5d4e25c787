"Quick checks of the Peephole modules and of the rules they keep (the notebooks hold the full tests)."
import gzip, hashlib, json, math, random, warnings
from pathlib import Path
import numpy as np, pytest, torch
from torch import nn
from fastai.basics import Learner, CrossEntropyLossFlat, Callback
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GroupKFold, cross_val_score
import potential.peephole.codes, potential.peephole.generate, potential.peephole.model
import potential.peephole.dataset, potential.peephole.eval
import potential.peephole.eval as ppe
from potential.core import Run, get_estimators
from potential.data import get_dls, torch_threads, asset_path
from potential.workload import build_model, save_run, load_run
from potential.peephole.codes import layer_codes, ratio_code, PEEPHOLE_CH_MAX
from potential.peephole.generate import sample_arch, build_from_codes
from potential.peephole.dataset import arch_key, write_asset, load_peephole_data, PEEPHOLE_DATA_ASSET
from potential.peephole.eval import PeepholeEstimator, NuSVRCurve, svr_features, PEEPHOLE_WEIGHTS_ASSET
from potential.peephole.model import Peephole

NBS = Path(__file__).parents[1]/'nbs'
PEEPHOLE_MODULES = [potential.peephole.codes, potential.peephole.generate, potential.peephole.model,
                    potential.peephole.dataset, potential.peephole.eval]
CNN = dict(dataset='mnist1d', family='cnn', depth=2, width=8, kernel=3, pool='max', act='relu', bn=True)

def _sha(p): return hashlib.sha1(Path(p).read_bytes()).hexdigest()
def _synthetic(n=60, E=3):
    codes = [sample_arch(np.random.default_rng(s)) for s in range(n)]
    return codes, np.tile(np.linspace(.3, .6, E), (n, 1))

def test_round_trip_and_forward():
    for s in range(5):
        c = sample_arch(np.random.default_rng(s))
        m = build_from_codes(c)
        assert torch.equal(layer_codes(m, 1), c)
        assert m(torch.randn(2, 1, 40)).shape == (2, 10)

def test_bad_input():
    with pytest.raises(ValueError, match='GELU'): layer_codes(nn.Sequential(nn.Conv1d(1, 4, 3), nn.GELU()), 1)
    with pytest.raises(ValueError, match='no layer'): layer_codes(nn.Sequential(), 1)
    with pytest.warns(UserWarning, match='clipped'): assert ratio_code(10) == PEEPHOLE_CH_MAX
    with pytest.raises(RuntimeError, match='not fitted'): Peephole(3).predict([sample_arch(np.random.default_rng(0))])
    with pytest.raises(ValueError, match='fit_epochs'): Peephole(3).fit(*_synthetic(), fit_epochs=0)

def test_estimator_nan_for_mlp():
    codes, curves = _synthetic(20, 2)
    est = PeepholeEstimator(Peephole(2).fit(codes, curves, fit_epochs=1))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert math.isnan(est(Run(model=nn.Sequential(nn.Flatten(), nn.Linear(40, 10)), n_epochs=3)))
    assert 0 < est(Run(model=build_from_codes(codes[0]), n_epochs=3)) < 1
    with pytest.raises(ValueError, match='1..2'): est.predictor.predict(codes[:1], epoch=3)

# rule: without an epoch, Peephole predicts the final epoch of its schedule (never epoch 1)
def test_default_epoch_is_final():
    shipped = PeepholeEstimator()
    p = shipped.predictor
    codes = [sample_arch(np.random.default_rng(s)) for s in range(200, 220)]
    np.testing.assert_allclose(p.predict(codes), p.predict(codes, epoch=p.n_epochs))
    est = np.array([shipped.estimate_model(build_from_codes(c)) for c in codes])
    np.testing.assert_allclose(est, p.predict(codes, epoch=p.n_epochs), atol=1e-6)
    assert est.mean() - p.predict(codes, epoch=1).mean() > .1

# rule: no global RNG changes (Peephole() and Peephole.fit seed locally and restore the caller's state)
def test_fit_leaves_global_rng_alone():
    codes, curves = _synthetic(40)
    def draws(): return torch.rand(3).tolist(), float(np.random.rand()), random.random()
    torch.manual_seed(7); np.random.seed(7); random.seed(7); expected = draws()
    torch.manual_seed(7); np.random.seed(7); random.seed(7)
    a = Peephole(3).fit(codes, curves, fit_epochs=1, seed=5)
    assert draws() == expected
    b = Peephole(3).fit(codes, curves, fit_epochs=1, seed=5)
    np.testing.assert_allclose(a.predict(codes[:5]), b.predict(codes[:5]))

# rule: scikit-learn conventions for the nu-SVR baseline (clone, cross_val_score, GroupKFold by architecture)
def test_nusvr_is_a_sklearn_regressor():
    cs = [sample_arch(np.random.default_rng(s % 60)) for s in range(120)]
    e1 = np.random.default_rng(0).uniform(.1, .6, 120)
    curves = np.stack([e1, e1 + .1, e1 + .2, e1 + .3], 1)
    X, y, groups = svr_features(cs, curves, seen=1), curves[:, -1], [arch_key(c) for c in cs]
    svr = NuSVRCurve(C=(1, 10))
    assert clone(svr).get_params() == dict(C=(1, 10), nu=(0.25, 0.5, 0.75), cv=3)
    scores = cross_val_score(NuSVRCurve(), X, y, groups=groups, cv=GroupKFold(3), scoring='r2')
    assert len(scores) == 3 and (scores > .8).all(), scores
    fitted = NuSVRCurve().fit(X, y)
    with pytest.raises(NotFittedError): clone(fitted).predict(X)
    assert fitted.score(X, y) > .9   # RegressorMixin's R²

# rule: the registered `peephole` works as a callback inside `learn.fit` and on saved runs (`make()(run.upto(e))`)
def test_peephole_contract_both_ways(tmp_path):
    est = get_estimators('peephole')[0].make()
    learn = Learner(get_dls('mnist1d', n_train=256, device='cpu'), build_model(CNN), loss_func=CrossEntropyLossFlat(),
                    cbs=est.callback())
    with learn.no_bar(), learn.no_logging(), torch_threads(1): learn.fit(2, 1e-3)
    run = learn.curve_recorder.as_run(config=CNN)
    col = run['peephole']
    assert len(col) == 2 and 0 < col[0] < 1 and col[0] == col[1]
    save_run(run, tmp_path/'run.json'); saved = load_run(tmp_path/'run.json')
    np.testing.assert_allclose([est(saved.upto(e)) for e in range(3)], [col[0]] * 3)

def test_refuses_before_fit_without_weights(monkeypatch, tmp_path):
    monkeypatch.setattr(ppe, 'PEEPHOLE_WEIGHTS_ASSET', tmp_path/'missing.pt')
    epochs = []
    class Count(Callback):
        def before_epoch(self): epochs.append(self.epoch)
    learn = Learner(get_dls('mnist1d', n_train=64, device='cpu'), build_model(CNN), loss_func=CrossEntropyLossFlat(),
                    cbs=[PeepholeEstimator().callback(), Count()])
    with pytest.raises(FileNotFoundError, match='predictor='), learn.no_bar(), learn.no_logging(): learn.fit(1)
    assert epochs == []   # refused before any epoch

# rule: slow cells never rewrite shipped files; promotion is an explicit `promote_asset` in an `eval: false` cell
def test_writers_keep_off_the_shipped_assets(monkeypatch, tmp_path):
    monkeypatch.setenv('POTENTIAL_CACHE', str(tmp_path))
    before = _sha(PEEPHOLE_DATA_ASSET), _sha(PEEPHOLE_WEIGHTS_ASSET)
    with gzip.open(PEEPHOLE_DATA_ASSET, 'rt') as f: d = json.load(f)
    recs = [dict(r, schedule=d['schedule']) for r in d['networks'][:3]]
    out = write_asset(recs)
    assert tmp_path in out.parents and len(load_peephole_data(out)) == 3
    with pytest.raises(ValueError, match='promote_asset'): write_asset(recs, PEEPHOLE_DATA_ASSET)
    with pytest.raises(ValueError, match='promote_asset'): PeepholeEstimator().predictor.save(PEEPHOLE_WEIGHTS_ASSET)
    assert (_sha(PEEPHOLE_DATA_ASSET), _sha(PEEPHOLE_WEIGHTS_ASSET)) == before

def _code_cells(nb):
    return [''.join(c['source']) for c in json.loads((NBS/nb).read_text())['cells'] if c['cell_type'] == 'code']

def test_promotion_only_in_eval_false_cells():
    for nb in ('43_peephole.dataset.ipynb', '44_peephole.eval.ipynb'):
        cells = _code_cells(nb)
        promoting = [s for s in cells if 'promote_asset(' in s and not s.startswith('from ')]
        assert promoting and all('#| eval: false' in s for s in promoting), nb
        for s in cells:   # no other cell hands a shipped path to a writer
            assert not any(f'{w}(PEEPHOLE_' in s for w in ('save', 'write_asset')), (nb, s)

# rule: names (no generic exported constants; shipped paths are `PEEPHOLE_*_ASSET`)
def test_no_generic_constants():
    names = [n for m in PEEPHOLE_MODULES for n in m.__all__ if n.isupper()]
    assert names and all(n.startswith('PEEPHOLE_') for n in names), names
    assert PEEPHOLE_DATA_ASSET == asset_path('peephole_mnist1d.json.gz') and PEEPHOLE_WEIGHTS_ASSET == asset_path('peephole_mnist1d.pt')
    assert 'n_epochs' in load_peephole_data().schedule

# rule: one population stack (the 'codes' design space; records come from `train_population`'s runs and cache)
def test_codes_space_and_generation(monkeypatch, tmp_path):
    from potential.workload import SPACES
    from potential.peephole.dataset import codes_config, generate_dataset, peephole_configs
    assert SPACES['codes'].build(codes_config(sample_arch(np.random.default_rng(0)))) is not None
    cfg = peephole_configs(1)[0]
    assert cfg['space'] == 'codes' and cfg['sched'] == 'one_cycle'
    assert layer_codes(build_model(cfg), 1).tolist() == cfg['codes']
    assert [c['codes'] for c in peephole_configs(3)] == [c.tolist() for c in load_peephole_data().codes[:3]]
    monkeypatch.setenv('POTENTIAL_CACHE', str(tmp_path))
    threads = torch.get_num_threads()
    recs = generate_dataset(2, schedule=dict(n_train=128, n_epochs=1), progress=False)
    assert torch.get_num_threads() == threads    # no thread count left changed
    files = sorted((tmp_path/'runs').glob('*.json'))
    assert len(files) == 2 and not list(tmp_path.glob('peephole/*.jsonl'))   # the run cache, no cache of its own
    for f in files:
        j = json.loads(f.read_text()); j['meta']['seconds'] = -1.; f.write_text(json.dumps(j))
    again = generate_dataset(2, schedule=dict(n_train=128, n_epochs=1), progress=False)
    assert [r['secs'] for r in again] == [-1., -1.] and [r['codes'] for r in again] == [r['codes'] for r in recs]

def test_no_thread_setting_in_peephole_modules():
    for m in PEEPHOLE_MODULES: assert 'set_num_threads' not in Path(m.__file__).read_text(), m.__name__
