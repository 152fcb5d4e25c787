"End-to-end tests of the `potential` command, run as a user runs it (in a subprocess)."
import os, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest
import numpy as np
from potential.core import Run
from potential.data import asset_path
from potential.workload import load_run, save_run, save_population, load_population, POPULATIONS

MARKER = 0.4242  # an accuracy no run here reaches exactly

def potential(*args, cache=None, timeout=600):
    env = {**os.environ, **({'POTENTIAL_CACHE': str(cache)} if cache else {})}
    return subprocess.run(['potential', *args], capture_output=True, text=True, timeout=timeout, env=env)

def test_no_command_prints_usage():
    r = potential()
    assert r.returncode == 2 and 'usage: potential' in r.stderr

def test_bench_help_lists_options():
    r = potential('bench', '--help')
    assert r.returncode == 0
    for opt in ('--quick', '--runs', '--epochs', '--dataset', '--estimators', '--out', '--population', '--resamples'):
        assert opt in r.stdout

@pytest.mark.parametrize('args,msg', [
    (['--runs', '0'], '`n_runs` must be at least 3'),
    (['--epochs', '0'], '`n_epochs` must be at least 2'),
    (['--dataset', 'cifar10'], "valid names: ['digits', 'mnist1d']"),
    (['--estimators', 'last_seen,nope'], "unknown estimator(s) ['nope']; valid names:"),
    (['--population', 'nope'], "`population` must be one of ['fresh', 'recorded'"),
])
def test_bench_bad_input(args, msg, tmp_path):
    r = potential('bench', *args, '--out', str(tmp_path/'out'), cache=tmp_path/'cache')
    assert r.returncode == 2, r.stderr
    assert msg in r.stderr and 'Traceback' not in r.stderr
    assert not (tmp_path/'out').exists() and not (tmp_path/'cache').exists()   # refused before any work

def test_list_estimators_shows_baselines():
    r = potential('bench', '--list_estimators')
    assert r.returncode == 0
    for name in ('last_seen', 'best_so_far', 'sotl_e'): assert name in r.stdout

def test_quick_bench_end_to_end(tmp_path):
    out = tmp_path/'out'
    r = potential('bench', '--quick', '--out', str(out), '--estimators', 'last_seen,best_so_far,sotl_e', cache=tmp_path/'cache')
    assert r.returncode == 0, r.stderr
    assert 'tau@10%' in r.stdout and 'rank-only' in r.stdout
    tab = pd.read_csv(out/'bench.csv')
    assert set(tab.estimator) == {'last_seen', 'best_so_far', 'sotl_e'}
    assert set(tab.budget) == {0.1, 0.25, 0.5}
    assert tab['tau'].between(-1, 1).all()
    runs = pd.read_csv(out/'runs.csv')
    assert len(runs) == 8 and runs['final_valid_acc'].between(0, 1).all()
    assert (out/'bench_tau.png').stat().st_size > 1000
    tab = tab.set_index(['estimator', 'budget'])
    for m in ('tau', 'rho', 'mae'):    # every score has its interval
        ok = tab[m].notna()
        assert (tab.loc[ok, f'{m}_low'] <= tab.loc[ok, m] + 1e-9).all() and (tab.loc[ok, m] <= tab.loc[ok, f'{m}_high'] + 1e-9).all()
    assert tab.loc[('sotl_e', 0.5), 'baseline'] in {'last_seen', 'best_so_far', 'sotl_e'}
    assert set(tab['status']) == {'ok'} and tab.groupby('budget')['best'].sum().eq(1).all()
    # the second call reads every run from the cache: a marker written into each cached run shows up in its output
    cached = sorted((tmp_path/'cache'/'runs').glob('*.json'))
    assert len(cached) == 8
    for f in cached:
        run = load_run(f)
        run.curves['valid_acc'][-1] = MARKER
        save_run(run, f)
    r2 = potential('bench', '--quick', '--out', str(out), '--estimators', 'last_seen', cache=tmp_path/'cache')
    assert r2.returncode == 0, r2.stderr
    assert (pd.read_csv(out/'runs.csv')['final_valid_acc'] == MARKER).all(), "the second call retrained instead of reading the cache"
    assert f'final valid acc {MARKER:.3f}..{MARKER:.3f}' in r2.stdout

# `potential bench` reading its recorded population from another folder: a stand-in written in the shipped format
WITH_ASSETS = """import sys, functools
import potential.bench, potential.workload
potential.bench.load_population = functools.partial(potential.workload.load_population, assets=sys.argv.pop(1))
from potential.cli import main; main()"""

def potential_with_assets(assets, *args, cache):
    env = {**os.environ, 'POTENTIAL_CACHE': str(cache)}
    return subprocess.run([sys.executable, '-c', WITH_ASSETS, str(assets), *args], capture_output=True, text=True,
                          timeout=600, env=env)

def stand_in(n=12, n_epochs=10, seed=0):
    "Hand-made runs climbing to different final accuracies: a recorded population that needs no training"
    rng = np.random.default_rng(seed)
    runs = []
    for i in range(n):
        top = rng.uniform(.2, .95)
        acc = top*(1 - np.exp(-np.arange(1, n_epochs+1)/rng.uniform(1, 4))) + rng.normal(0, .01, n_epochs)
        runs.append(Run({'train_loss': 2.5 - 2*acc, 'valid_loss': 2.4 - 2*acc, 'valid_acc': acc},
                        config={'i': i}, name=f'run{i:03d}', meta={'diverged': False}))
    return runs

def test_recorded_population_scores_without_training(tmp_path):
    out,cache = tmp_path/'out',tmp_path/'cache'
    save_population(stand_in(), tmp_path/POPULATIONS['recorded'])
    r = potential_with_assets(tmp_path, 'bench', '--population', 'recorded', '--out', str(out), '--resamples', '200',
                              '--estimators', 'last_seen,best_so_far,sotl_e', cache=cache)
    assert r.returncode == 0, r.stderr
    assert "recorded population 'recorded': 12 runs x 10 epochs" in r.stdout and 'tau@10%' in r.stdout
    tab = pd.read_csv(out/'bench.csv')
    assert (tab['n'] == 12).all() and tab['tau_low'].notna().all() and set(tab['status']) == {'ok'}
    row = tab[(tab.estimator == 'last_seen') & (tab.budget == 0.5)].iloc[0]
    assert f"{row.tau:.2f} [{row.tau_low:.2f},{row.tau_high:.2f}]" in r.stdout      # τ printed with its interval
    assert len(pd.read_csv(out/'runs.csv')) == 12
    assert not cache.exists() or not list(cache.rglob('*.json'))      # nothing was trained, so nothing was cached

def test_recorded_population_missing_or_corrupt(tmp_path):
    path = tmp_path/POPULATIONS['recorded']
    r = potential_with_assets(tmp_path, 'bench', '--population', 'recorded', '--out', str(tmp_path/'out'), cache=tmp_path/'c')
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr
    assert f'population file {path} does not exist' in r.stderr
    path.write_bytes(b'not a gzipped population')
    r = potential_with_assets(tmp_path, 'bench', '--population', 'recorded', '--out', str(tmp_path/'out'), cache=tmp_path/'c')
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr
    assert f'population file {path} is unreadable' in r.stderr

@pytest.mark.skipif(not asset_path(POPULATIONS['recorded']).is_file(), reason='the recorded population is not shipped yet')
def test_shipped_recorded_population(tmp_path):
    r = potential('bench', '--population', 'recorded', '--out', str(tmp_path/'out'), '--estimators', 'last_seen,sotl_e',
                  cache=tmp_path/'cache')
    assert r.returncode == 0, r.stderr
    tab = pd.read_csv(tmp_path/'out'/'bench.csv')
    pop = load_population('recorded')   # every run is scored, bar the diverged ones that have no training loss for SoTL-E
    assert (tab['n'] >= len(pop) - sum(r.meta['diverged'] for r in pop)).all() and tab['tau_low'].notna().all()
