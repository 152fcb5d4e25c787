"End-to-end tests of the `potential` command, run as a user runs it (in a subprocess)."
import os, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest

def potential(*args, cache=None, timeout=600):
    env = {**os.environ, **({'POTENTIAL_CACHE': str(cache)} if cache else {})}
    return subprocess.run(['potential', *args], capture_output=True, text=True, timeout=timeout, env=env)

def test_no_command_prints_usage():
    r = potential()
    assert r.returncode == 2 and 'usage: potential' in r.stderr

def test_bench_help_lists_options():
    r = potential('bench', '--help')
    assert r.returncode == 0
    for opt in ('--quick', '--runs', '--epochs', '--dataset', '--estimators', '--out'): assert opt in r.stdout

@pytest.mark.parametrize('args,msg', [
    (['--runs', '0'], '`n_runs` must be at least 3'),
    (['--epochs', '0'], '`n_epochs` must be at least 2'),
    (['--dataset', 'cifar10'], "valid names: ['digits', 'mnist1d']"),
    (['--estimators', 'last_seen,nope'], "unknown estimator(s) ['nope']; valid names:"),
])
def test_bench_bad_input(args, msg):
    r = potential('bench', *args)
    assert r.returncode == 2, r.stderr
    assert msg in r.stderr and 'Traceback' not in r.stderr

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
    # the second call reads every run from the cache
    r2 = potential('bench', '--quick', '--out', str(out), '--estimators', 'last_seen', cache=tmp_path/'cache')
    assert r2.returncode == 0
    assert len(list((tmp_path/'cache'/'runs').glob('*.json'))) == 8
