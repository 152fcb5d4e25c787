"End-to-end tests of the `potential` command, run as a user runs it (in a subprocess)."
import gzip, json, os, re, signal, subprocess, sys, time
from pathlib import Path
import pandas as pd
import pytest
import numpy as np
import potential
from potential.core import Run
from potential.data import asset_path
from potential.workload import load_run, save_run, save_population, load_population, POPULATIONS

MARKER = 0.4242  # an accuracy no run here reaches exactly
# the cheap path: a quick bench (2,000 training samples) with fewer, shorter runs and one estimator without callbacks
SMALL = ['--quick', '--runs', '3', '--epochs', '2', '--estimators', 'last_seen', '--resamples', '100']

def env_with(cache=None): return {**os.environ, **({'POTENTIAL_CACHE': str(cache)} if cache else {})}

def potential_cmd(*args, cache=None, timeout=600):
    return subprocess.run(['potential', *args], capture_output=True, text=True, timeout=timeout, env=env_with(cache))

# --- the command itself ---------------------------------------------------------------------------------------------

def test_help_lists_commands_on_stdout():
    from potential.cli import COMMANDS
    for flag in ('--help', '-h'):
        r = potential_cmd(flag)
        assert r.returncode == 0 and r.stderr == ''
        for name,(_,doc) in COMMANDS.items(): assert re.search(rf'^  {name} +{re.escape(doc)}$', r.stdout, re.M), r.stdout

def test_version():
    r = potential_cmd('--version')
    assert (r.returncode, r.stdout) == (0, f'potential {potential.__version__}\n')

def test_no_command_prints_usage():
    r = potential_cmd()
    assert r.returncode == 2 and 'usage: potential' in r.stderr and r.stdout == ''

def test_unknown_command_is_named():
    r = potential_cmd('frobnicate')
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert r.stderr == "potential: error: unknown command 'frobnicate'; valid commands: bench, search (potential --help lists them)\n"

def test_bench_help_lists_hyphenated_options():
    r = potential_cmd('bench', '--help')
    assert r.returncode == 0
    for opt in ('--quick', '--runs', '--epochs', '--dataset', '--estimators', '--out', '--population', '--resamples',
                '--no-cache', '--list-estimators', '-v, --verbose'):
        assert opt in r.stdout, opt

def test_list_estimators_hyphen_and_underscore():
    r,u = potential_cmd('bench', '--list-estimators'),potential_cmd('bench', '--list_estimators')
    assert r.returncode == 0 and u.returncode == 0 and r.stdout == u.stdout
    for name in ('last_seen', 'best_so_far', 'sotl_e'): assert name in r.stdout

# --- bad input, refused before any training -------------------------------------------------------------------------

# runs `potential` on each argument list in one child process (one import of the package for all), with training made
# impossible: a refusal that came after training started would show up as an AssertionError, not as status 2
DRIVER = """import contextlib, io, json, sys
import potential.workload, potential.bench
def no_training(*a, **k): raise AssertionError('trained')
potential.workload.train_run = potential.bench.run_workload = no_training
from potential.cli import main
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try: main(argv); status = 0
        except SystemExit as e: status = e.code
        except BaseException as e: status = repr(e)
    print(json.dumps([status, err.getvalue()]))"""

def refusals(tmp_path):
    f = tmp_path/'a_file'; f.write_text('x')
    out = ['--out', str(tmp_path/'out')]
    cases = [(['--runs', '2', *out], "--runs: must be at least 3 to rank runs, got 2"),
             (['--epochs', '1', *out], "--epochs: must be at least 2 so that every budget stops before the last epoch, got 1"),
             (['--resamples', '5', *out], "--resamples: must be at least 100 for a 95% interval, got 5"),
             (['--interval-level', '0', *out], "--interval-level: must be a coverage strictly between 0 and 1 (e.g. 0.9), got 0.0"),
             (['--seed', '-1', *out], "--seed: must be at least 0"),
             (['--estimators', '', *out], "--estimators: no estimator named; valid names: ['arch_attributes', 'best_so_far'"),
             (['--estimators', 'last_seen,nope', *out], "--estimators: unknown estimator(s) ['nope']; valid names: ['"),
             (['--estimators', 'last_seen,lal', *out], "--estimators: ['lal'] are for another task"),
             (['--dataset', 'cifar10', *out], "--dataset: unknown dataset 'cifar10'; valid names: ['digits', 'mnist1d']"),
             (['--population', 'nope', *out], "--population: must be one of ['fresh', 'recorded'], got 'nope'"),
             (['--population', 'recorded', '--runs', '50', *out], "--runs: describes a fresh population"),
             (['--population', 'recorded', '--quick', *out], "--quick: describes a fresh population"),
             (['--out', str(f)], f"--out: '{f}' is a file, not a folder"),
             (['--out', str(f/'sub')], f"--out: '{f/'sub'}' is inside '{f}', which is a file"),
             (['--no-cache', '--runs', '0', *out], "--runs: must be at least 3")]   # --no-cache is accepted
    if Path('/proc').is_dir():   # files cannot be created in /proc, even by root (who ignores permission bits)
        cases.append((['--out', '/proc/potential-out'], "--out: '/proc/potential-out' cannot be written"))
    return cases

def test_bench_bad_input_refused_before_training(tmp_path):
    cases = refusals(tmp_path)
    r = subprocess.run([sys.executable, '-c', DRIVER, json.dumps([['bench', *a] for a,_ in cases])],
                       capture_output=True, text=True, timeout=600, env=env_with(tmp_path/'cache'))
    assert r.returncode == 0, r.stderr
    results = [json.loads(l) for l in r.stdout.splitlines()]
    assert len(results) == len(cases)
    for (args,msg),(status,err) in zip(cases, results):
        assert status == 2, (args, status, err)
        assert err.startswith(f'potential bench: error: {msg}') and err.count('\n') == 1, (args, err)   # one line
        assert not re.search(r'n_runs|n_epochs|n_resamples|interval_level|Traceback', err), err    # the flag, never the parameter
    assert not (tmp_path/'cache').exists() and not (tmp_path/'out').exists()       # nothing trained, nothing written

def test_bench_refusal_from_the_installed_command(tmp_path):
    r = potential_cmd('bench', '--no-cache', '--runs', '2', '--out', str(tmp_path/'out'), cache=tmp_path/'cache')
    assert (r.returncode, r.stderr) == (2, 'potential bench: error: --runs: must be at least 3 to rank runs, got 2\n')
    assert not (tmp_path/'cache').exists() and not (tmp_path/'out').exists()
    r = potential_cmd('bench', '--runs', 'many')    # argparse's own check of the type names the flag too
    assert r.returncode == 2 and "argument --runs: invalid int value: 'many'" in r.stderr

# --- a real (small) bench -------------------------------------------------------------------------------------------

def test_quick_bench_end_to_end(tmp_path):
    out,cache = tmp_path/'out',tmp_path/'cache'
    r = potential_cmd('bench', '--quick', '--runs', '4', '--out', str(out), '--resamples', '200',
                      '--estimators', 'last_seen,best_so_far,sotl_e,peephole', cache=cache)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert 'note: quick bench with 4 runs (given) x 6 epochs on 2,000 training samples' in lines
    assert [l.split(':')[0] for l in lines if l.startswith('run ')] == [f'run {i}/4 done' for i in range(1, 5)]  # a pipe: lines, no bar
    table = lines[lines.index('Ranking: Kendall τ [95% interval] and Spearman ρ'):]
    assert max(len(l) for l in table if not l.startswith('written:')) <= 100
    assert 'rank-only' in r.stdout and 'τ    Kendall' in r.stdout
    heads = [l for l in table if l and not l.startswith((' ', 'Ranking', 'Error'))][:2]
    assert heads[0].startswith('before training') and heads[1].startswith('baselines')   # grouped by kind
    peep = [l for l in lines if l.startswith("estimator 'peephole':")]
    assert len(peep) == 1 and re.match(r"estimator 'peephole': \d+ warnings?, e\.g\. ", peep[0])  # one line per estimator
    assert '.py:' not in r.stderr and 'warnings.warn' not in r.stderr and 'Traceback' not in r.stderr
    tab = pd.read_csv(out/'bench.csv')
    assert set(tab.estimator) == {'last_seen', 'best_so_far', 'sotl_e', 'peephole'}
    assert set(tab.budget) == {0, 0.1, 0.25, 0.5}
    assert tab['tau'].dropna().between(-1, 1).all()
    runs = pd.read_csv(out/'runs.csv')
    assert len(runs) == 4 and runs['final_valid_acc'].between(0, 1).all()
    assert 1000 < (out/'bench_tau.png').stat().st_size <= 100_000
    tab = tab.set_index(['estimator', 'budget'])
    for m in ('tau', 'rho', 'mae'):    # every score has its interval
        ok = tab[m].notna()
        assert (tab.loc[ok, f'{m}_low'] <= tab.loc[ok, m] + 1e-9).all() and (tab.loc[ok, m] <= tab.loc[ok, f'{m}_high'] + 1e-9).all()
    assert tab.loc[('sotl_e', 0.5), 'baseline'] in {'last_seen', 'best_so_far', 'sotl_e'}
    assert set(tab['status']) == {'ok'} and tab.groupby('budget')['best'].sum().eq(1).all()
    # the second call reads every run from the cache: a marker written into each cached run shows up in its output;
    # it says that it replaces the first call's results, and -v prints every distinct warning
    cached = sorted((cache/'runs').glob('*.json'))
    assert len(cached) == 4
    for f in cached:
        run = load_run(f)
        run.curves['valid_acc'][-1] = MARKER
        save_run(run, f)
    r2 = potential_cmd('bench', '--quick', '--runs', '4', '--out', str(out), '--estimators', 'last_seen,peephole', '-v',
                       '--resamples', '100', cache=cache)
    assert r2.returncode == 0, r2.stderr
    assert f'note: {out} holds bench.csv, runs.csv, bench_tau.png from an earlier bench: they will be replaced' in r2.stdout
    assert (pd.read_csv(out/'runs.csv')['final_valid_acc'] == MARKER).all(), "the second call retrained instead of reading the cache"
    assert f'final valid acc {MARKER:.3f}..{MARKER:.3f}' in r2.stdout
    every = [l for l in r2.stdout.splitlines() if l.startswith("estimator 'peephole':")]
    assert every and all(re.match(r"estimator 'peephole': \d+x ", l) for l in every)

def test_ctrl_c_keeps_the_runs_and_running_again_resumes(tmp_path):
    cache,out = tmp_path/'cache',tmp_path/'out'
    args = ['bench', '--quick', '--runs', '5', '--epochs', '2', '--estimators', 'last_seen', '--resamples', '100',
            '--out', str(out)]
    p = subprocess.Popen(['potential', *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env_with(cache),   # SIGINT as in a terminal, even if this test runs in the background
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.monotonic()
    while not list((cache/'runs').glob('*.json')):   # wait until the first run is in the cache
        assert p.poll() is None, p.communicate()
        assert time.monotonic() - t0 < 300, 'no run was cached'
        time.sleep(.05)
    p.send_signal(signal.SIGINT)
    _,err = p.communicate(timeout=300)
    assert p.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in err, err             # one line...
    assert str(cache/'runs') in lines[0] and 'run again to resume' in lines[0]   # ...where, and what to do
    kept = {f: f.stat().st_mtime_ns for f in (cache/'runs').glob('*.json')}
    m = re.search(r'(\d+) of 5 runs are in the cache', lines[0])
    assert (int(m.group(1)) if m else 5) == len(kept) >= 1               # what was kept, counted right
    r = potential_cmd(*args, cache=cache)
    assert r.returncode == 0, r.stderr
    assert len(list((cache/'runs').glob('*.json'))) == 5
    for f,t in kept.items(): assert f.stat().st_mtime_ns == t, f"{f.name} was trained again"   # resumed, not retrained

def test_corrupt_cache_entries_are_named_and_rebuilt(tmp_path):
    cache = tmp_path/'cache'
    r = potential_cmd('bench', *SMALL, '--out', str(tmp_path/'out'), cache=cache)
    assert r.returncode == 0, r.stderr
    files = sorted((cache/'runs').glob('*.json'))
    assert len(files) == 3
    good = files[0].read_text()
    for f,bad in zip(files, [good[:len(good)//2], '', '{}']):   # truncated, empty, not a run
        f.write_text(bad)
    r = potential_cmd('bench', *SMALL, '--out', str(tmp_path/'out'), cache=cache)
    assert r.returncode == 0, r.stderr
    assert 'Traceback' not in r.stderr
    for f in files:
        named = [l for l in r.stderr.splitlines() if str(f) in l]
        assert len(named) == 1 and named[0].startswith(f'warning: cache entry {f} is unreadable') \
               and named[0].endswith('training the run again'), r.stderr   # one line, naming the file
        assert load_run(f).n_epochs == 2                                         # rebuilt

# --- the recorded population ----------------------------------------------------------------------------------------

# `potential bench` reading its recorded population from another folder: a stand-in written in the shipped format
WITH_ASSETS = """import sys, functools
import potential.bench, potential.workload
potential.bench.load_population = functools.partial(potential.workload.load_population, assets=sys.argv.pop(1))
from potential.cli import main; main()"""

def potential_with_assets(assets, *args, cache):
    return subprocess.run([sys.executable, '-c', WITH_ASSETS, str(assets), *args], capture_output=True, text=True,
                          timeout=600, env=env_with(cache))

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
    assert "recorded population 'recorded': 12 runs x 10 epochs" in r.stdout and 'Ranking: Kendall τ' in r.stdout
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
    assert r.stderr == f'potential bench: error: population file {path} does not exist\n'
    path.write_bytes(b'not a gzipped population')
    r = potential_with_assets(tmp_path, 'bench', '--population', 'recorded', '--out', str(tmp_path/'out'), cache=tmp_path/'c')
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr
    assert r.stderr.startswith(f'potential bench: error: population file {path} is unreadable') and r.stderr.count('\n') == 1
    save_population(stand_in(), path)   # a good file, then cut short, emptied, or a JSON object without runs
    whole = path.read_bytes()
    for bad in [whole[:len(whole)//2], b'', gzip.compress(b'{}'), gzip.compress(b'{"format": "potential.population/1"}')]:
        path.write_bytes(bad)
        with pytest.raises(ValueError, match=f'population file {re.escape(str(path))} is unreadable'):
            load_population('recorded', assets=tmp_path)

@pytest.mark.skipif(not asset_path(POPULATIONS['recorded']).is_file(), reason='the recorded population is not shipped yet')
def test_shipped_recorded_population(tmp_path):
    r = potential_cmd('bench', '--population', 'recorded', '--out', str(tmp_path/'out'), '--estimators', 'last_seen,sotl_e',
                      cache=tmp_path/'cache')
    assert r.returncode == 0, r.stderr
    tab = pd.read_csv(tmp_path/'out'/'bench.csv')
    pop = load_population('recorded')   # every run is scored, bar the diverged ones that have no training loss for SoTL-E
    assert (tab['n'] >= len(pop) - sum(r.meta['diverged'] for r in pop)).all() and tab['tau_low'].notna().all()
