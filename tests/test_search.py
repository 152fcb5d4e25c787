"Many workers on one study, with real processes: a journal file and a PostgreSQL server started here; bad input."
import json, os, shutil, signal, socket, subprocess, sys, tempfile, time
from multiprocessing import get_context
from pathlib import Path
import pytest
import optuna
from optuna.trial import TrialState
import potential.all
from potential.search.core import TrialDiverged
from potential.search.cli import (run_search, prepare_study, open_storage, search_worker, claim_trial, run_trial,
                                  search_table)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

def settings(n_trials, strategy='hyperband', estimator=None):
    return dict(space='recorded', strategy=strategy, estimator=estimator, n_trials=n_trials, max_epochs=24, min_epochs=1,
                eta=3, dataset='mnist1d', n_train=None, prescreen=None, random_epochs=None)

def check_study(study, n_trials, killed=()):
    "Exactly `n_trials` trials ran to an end; numbers 0..M-1 without gaps; each killed trial failed and replaced once"
    ts = study.get_trials(deepcopy=False)
    nums = sorted(t.number for t in ts)
    assert nums == list(range(len(ts))), nums                       # no number lost or repeated
    assert len(ts) == n_trials + len(killed)
    assert sum(t.state in FINISHED for t in ts) == n_trials
    assert not [t for t in ts if not t.state.is_finished()]
    for k in killed:
        assert study.trials[k].state == TrialState.FAIL
        assert [t.number for t in ts if t.user_attrs.get('replaces') == k] != []
        assert len([t for t in ts if t.user_attrs.get('replaces') == k]) == 1

def evaluations(journal:Path)->dict:
    "trial id -> how many times an objective started on it (it sets the user attribute `run` first), from the journal"
    out = {}
    for line in journal.read_text().splitlines():
        op = json.loads(line)
        if 'run' in (op.get('user_attr') or {}): out[op['trial_id']] = out.get(op['trial_id'], 0) + 1
    return out

def start_worker(storage, study, out, epoch_seconds, seed=0, heartbeat=1, grace=3):
    p = get_context('fork').Process(target=search_worker, kwargs=dict(storage=str(storage), study_name=study, out=str(out),
                                    seed=seed, heartbeat=heartbeat, grace=grace, poll=.1, epoch_seconds=epoch_seconds))
    p.start()
    return p

def wait_running(study, timeout=60, exclude=()):
    t0 = time.time()
    while time.time() - t0 < timeout:
        r = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.number not in exclude
             and 'potential_worker' in t.system_attrs and 'run' in t.user_attrs]   # inside its objective
        if r: return r[0]
        time.sleep(.05)
    raise AssertionError("no trial started running")

def finish(procs, timeout=60):
    "Wait for the worker processes; kill any still running after `timeout` s (a hung study); their exit codes"
    t0 = time.time()
    for p in procs: p.join(max(1, timeout - (time.time() - t0)))
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive(): p.kill(); p.join()
    return codes

def kill_mid_trial(study, procs):
    "SIGKILL the worker that runs a trial now; return that trial's number"
    t = wait_running(study)
    pid = t.system_attrs['potential_worker']['pid']
    assert pid in [p.pid for p in procs]
    os.kill(pid, signal.SIGKILL)
    return t.number

# ---------- journal file ----------

@pytest.mark.parametrize('n_workers', [2, 4])
def test_journal_workers_run_exactly_n_trials(tmp_path, n_workers):
    n = 16
    s = run_search('recorded', 'hyperband', None, n_trials=n, max_epochs=24, workers=n_workers, out=tmp_path,
                   epoch_seconds=.005)
    check_study(s, n)
    assert sorted(evaluations(tmp_path/'search.journal').values()) == [1]*n   # every trial ran once, none twice
    assert len({t.system_attrs['potential_worker']['pid'] for t in s.trials}) >= 2   # the work was shared
    assert any(k.startswith('completed_rung') for t in s.trials for k in t.system_attrs)  # each worker's own HyperBand pruner
    assert (tmp_path/'trials.csv').exists() and (tmp_path/'search.png').exists()

def test_journal_sigkilled_worker_others_go_on(tmp_path):
    st = open_storage(None, tmp_path)
    study = prepare_study(st, 's', settings(6))
    procs = [start_worker(tmp_path/'search.journal', 's', tmp_path, .05, seed=i) for i in range(2)]
    k = kill_mid_trial(study, procs)
    codes = finish(procs)
    assert codes.count(-signal.SIGKILL) == 1 and codes.count(0) == 1
    check_study(study, 6, killed=[k])                                 # the survivor failed it, replaced it, finished

def test_journal_restarted_worker_completes_study(tmp_path):
    st = open_storage(None, tmp_path)
    study = prepare_study(st, 's', settings(4))
    p = start_worker(tmp_path/'search.journal', 's', tmp_path, .1)
    k = kill_mid_trial(study, [p]); p.join(30)
    assert study.trials[k].state == TrialState.RUNNING                # nobody noticed yet
    assert finish([start_worker(tmp_path/'search.journal', 's', tmp_path, 0., seed=1)]) == [0]   # the restarted worker
    check_study(study, 4, killed=[k])

def test_nan_loss_trial_fails_and_study_goes_on(tmp_path):
    study = optuna.create_study(direction='maximize')
    for _ in range(3): study.enqueue_trial({})
    def objective(trial):
        if trial.number == 1: raise TrialDiverged("training loss turned NaN after 2 epoch(s)")
        return .5
    while (t := claim_trial(study)) is not None: run_trial(study, t, objective, heartbeat=1)
    test = [t.state for t in study.trials]
    assert test == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert 'NaN' in study.trials[1].user_attrs['fail_reason']

def test_resume_trains_nothing_twice(tmp_path):
    s = run_search('recorded', 'sha', None, n_trials=5, max_epochs=9, out=tmp_path)
    before = {t.number: t.datetime_complete for t in s.trials}
    s = run_search('recorded', 'sha', None, n_trials=5, max_epochs=9, out=tmp_path)
    assert {t.number: t.datetime_complete for t in s.trials} == before
    with pytest.raises(ValueError, match="--trials 5 .given 6."):
        run_search('recorded', 'sha', None, n_trials=6, max_epochs=9, out=tmp_path)

def test_sqlite_storage_runs_and_resumes(tmp_path):
    "`--storage sqlite:///...`: the same RDB code path as PostgreSQL, on one machine; a second call trains nothing"
    url = f"sqlite:///{tmp_path/'study.db'}"
    s = run_search('recorded', 'hyperband', 'best_so_far', n_trials=6, max_epochs=9, workers=2, storage=url,
                   study='lite', out=tmp_path)
    check_study(s, 6)
    before = {t.number: t.datetime_complete for t in s.trials}
    s = run_search('recorded', 'hyperband', 'best_so_far', n_trials=6, max_epochs=9, storage=url, study='lite', out=tmp_path)
    assert {t.number: t.datetime_complete for t in s.trials} == before

# ---------- bad input ----------

@pytest.mark.parametrize('kw,msg', [
    (dict(space='cifar'), "valid: ['workload', 'recorded']"),
    (dict(strategy='grid'), "valid: ['random', 'sha', 'hyperband', 'bohb']"),
    (dict(estimator='oracle'), "valid: ['none', "),
    (dict(prescreen='curve_lstm'), "valid: ['none', 'arch_attributes', 'peephole']"),
    (dict(n_trials=0), '`--trials` must be at least 1'),
    (dict(n_trials=2, workers=3), '`--workers` (3) must not exceed `--trials` (2)'),
    (dict(min_epochs=5, max_epochs=3), '`--max_epochs` (3) must not be below `--min_epochs` (5)'),
])
def test_bad_input_is_refused(tmp_path, kw, msg):
    with pytest.raises(ValueError) as e: run_search(**{'space': 'recorded', 'out': tmp_path, **kw})
    assert msg in str(e.value)
    assert not (tmp_path/'search.journal').exists()                   # refused before opening anything

def test_prune_on_upper_refusals_and_a_live_search(tmp_path):
    "`--prune-on upper`: refused before anything is opened without a usable calibration; live, rungs report the upper end"
    for est,msg in [('sotl_e', 'rank-only'), ('curve_lstm', 'would cross-fit it 5 times'), (None, 'needs an `--estimator`')]:
        with pytest.raises(ValueError, match=msg): run_search('workload', 'sha', est, out=tmp_path, prune_on='upper')
    with pytest.raises(ValueError, match='needs a strategy that prunes'):
        run_search('workload', 'random', 'best_so_far', out=tmp_path, prune_on='upper')
    assert not (tmp_path/'search.journal').exists()
    s = run_search('workload', 'hyperband', 'best_so_far', n_trials=4, max_epochs=3, n_train=500, out=tmp_path,
                   prune_on='upper')
    check_study(s, 4)
    for t in s.trials:   # the first rung reports the upper end of the interval, above the estimate
        assert t.intermediate_values[1] == pytest.approx(t.user_attrs['high']) and t.user_attrs['high'] > t.user_attrs['estimate']
    r = subprocess.run([sys.executable, '-c', 'from potential.cli import main; main()', 'search', '--prune-on', 'upper',
                        '--out', str(tmp_path/'cli')], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (2, 'potential search: error: `--prune-on upper` needs an `--estimator`: the raw '
                                           'accuracy has no interval\n'), r.stderr

@pytest.mark.parametrize('storage', ['{tmp}/no/such/folder/x.journal', 'postgresql://nobody@127.0.0.1:{port}/none',
                                     'nosuchdialect://x/y'])
def test_unopenable_storage_names_the_option(tmp_path, storage):
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]   # nothing listens there
    with pytest.raises(ValueError, match='--storage'):
        run_search('workload', n_trials=2, storage=storage.format(tmp=tmp_path, port=port), out=tmp_path)

def test_cli_reports_errors_and_runs(tmp_path, capsys):
    from potential.search.cli import search_main
    with pytest.raises(SystemExit) as e: search_main(['--storage', str(tmp_path/'no'/'x.journal'), '--out', str(tmp_path)])
    assert e.value.code == 2 and '--storage' in capsys.readouterr().err
    r = subprocess.run([sys.executable, '-c', 'from potential.search.cli import search_main; search_main()', '--space',
                        'recorded', '--strategy', 'bohb', '--estimator', 'best_so_far', '--trials', '8', '--max_epochs', '9',
                        '--workers', '2', '--out', str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert '8 trials' in r.stdout and (tmp_path/'trials.csv').exists()

def test_cli_out_that_is_a_file_is_named(tmp_path):
    f = tmp_path/'a_file'; f.write_text('')
    r = subprocess.run([sys.executable, '-c', 'from potential.cli import main; main()', 'search', '--space', 'recorded',
                        '--out', str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and '--out' in r.stderr and 'Traceback' not in r.stderr, r.stderr

def test_cli_ctrl_c_one_line_exit_130_then_resumes(tmp_path):
    "SIGINT to a child `potential search`: one line naming the study and its storage, status 130; running again resumes"
    N_TRIALS = 1000   # far more than the child can finish before the signal, whatever the machine's load
    cmd = [sys.executable, '-c', 'from potential.cli import main; main()', 'search', '--space', 'recorded',
           '--trials', str(N_TRIALS), '--max-epochs', '24', '--out', str(tmp_path)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))   # a background shell ignores SIGINT
    journal = tmp_path/'search.journal'
    def n_finished():
        try: return sum(t.state.is_finished() for t in optuna.load_study(
                 study_name='search', storage=open_storage(str(journal), tmp_path)).trials)
        except Exception: return 0   # not created yet
    for _ in range(1200):   # until some trials have finished
        if journal.exists() and n_finished() >= 3: break
        time.sleep(.1)
    assert p.poll() is None, "the search ended before it could be interrupted"
    p.send_signal(signal.SIGINT)
    out,err = p.communicate(timeout=120)
    assert p.returncode == 130, (p.returncode, err[-2000:])
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and 'interrupted' in lines[0] and 'search.journal' in lines[0] and 'again to resume' in lines[0], err
    study = optuna.load_study(study_name='search', storage=open_storage(str(journal), tmp_path))
    n_before = sum(t.state.is_finished() for t in study.trials)
    assert 0 < n_before < N_TRIALS
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    study = optuna.load_study(study_name='search', storage=open_storage(str(journal), tmp_path))
    assert sum(t.state.is_finished() for t in study.trials) >= N_TRIALS

# ---------- PostgreSQL ----------

def _pg_bin(name):
    found = shutil.which(name)
    if found: return found
    for d in sorted(Path('/usr/lib/postgresql').glob('*/bin'), reverse=True):
        if (d/name).exists(): return str(d/name)

def _pg_skip(msg):
    "Skip, unless the environment requires the PostgreSQL tests (CI installs PostgreSQL and sets POTENTIAL_REQUIRE_POSTGRES)"
    if os.environ.get('POTENTIAL_REQUIRE_POSTGRES'): pytest.fail(f"POTENTIAL_REQUIRE_POSTGRES is set but {msg}")
    pytest.skip(msg)

@pytest.fixture(scope='module')
def postgres():
    "A PostgreSQL server in a temporary folder on 127.0.0.1 and a free port, stopped afterwards"
    try: import psycopg2  # noqa: F401
    except ImportError: _pg_skip("PostgreSQL tests need psycopg2 (pip install psycopg2-binary)")
    initdb,pg_ctl = _pg_bin('initdb'),_pg_bin('pg_ctl')
    if not initdb or not pg_ctl: _pg_skip("PostgreSQL tests need `initdb` and `pg_ctl` (Debian: apt-get install postgresql)")
    d = Path(tempfile.mkdtemp(prefix='potential-pg-'))
    as_user = []
    if os.geteuid() == 0:   # the server refuses to run as root
        runuser = shutil.which('runuser')
        if not runuser: _pg_skip("running as root needs `runuser` to start PostgreSQL as user postgres")
        shutil.chown(d, 'postgres'); as_user = [runuser, '-u', 'postgres', '--']
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    data,log = d/'data',d/'server.log'
    r = subprocess.run([*as_user, initdb, '-D', str(data), '-A', 'trust', '-U', 'postgres'], capture_output=True, text=True)
    if r.returncode: shutil.rmtree(d, ignore_errors=True); _pg_skip(f"initdb failed: {r.stderr[-300:]}")
    r = subprocess.run([*as_user, pg_ctl, '-D', str(data), '-l', str(log), '-w', '-t', '30', '-o',
                        f'-p {port} -h 127.0.0.1 -k {d}', 'start'], capture_output=True, text=True)
    if r.returncode:
        msg = log.read_text()[-300:] if log.exists() else r.stderr[-300:]
        shutil.rmtree(d, ignore_errors=True); _pg_skip(f"the PostgreSQL server could not start: {msg}")
    try: yield f'postgresql://postgres@127.0.0.1:{port}/postgres'
    finally:
        subprocess.run([*as_user, pg_ctl, '-D', str(data), '-m', 'immediate', 'stop'], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)

def test_postgres_workers_run_exactly_n_trials(postgres, tmp_path):
    n = 12
    s = run_search('recorded', 'bohb', 'best_so_far', n_trials=n, max_epochs=24, workers=3, storage=postgres,
                   study='pg-many', out=tmp_path, epoch_seconds=.005, heartbeat=1, grace=3)
    check_study(s, n)
    assert len({t.system_attrs['potential_worker']['pid'] for t in s.trials}) >= 2

def test_postgres_sigkilled_worker_failed_by_heartbeat_and_replaced(postgres, tmp_path):
    st = open_storage(postgres, tmp_path, heartbeat=1, grace=2)
    study = prepare_study(st, 'pg-kill', settings(4))
    p = start_worker(postgres, 'pg-kill', tmp_path, .1, heartbeat=1, grace=2)
    k = kill_mid_trial(study, [p]); p.join(30)
    assert finish([start_worker(postgres, 'pg-kill', tmp_path, .01, seed=1, heartbeat=1, grace=2)]) == [0]   # restarted
    check_study(study, 4, killed=[k])
