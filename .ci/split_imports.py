"""Move top-level imports out of mixed notebook cells into their own cell, just before.

nbdev's docs processor (`nbdev_proc_nbs`, `nbdev_docs`) executes every cell that contains an import, and only those
(plus exported cells); a cell that mixes imports with code that needs earlier, non-executed cells then fails there.
Usage: `python .ci/split_imports.py nbs/*.ipynb` (rewrites in place; run `nbdev_clean` afterwards), or `--check`.
"""
import ast, json, sys, uuid

def split_cell(cell):
    src = ''.join(cell['source'])
    lines = src.splitlines()
    dirs = [l for l in lines if l.startswith('#|')]
    if any(w in d for d in dirs for w in ('export', 'default_exp')): return [cell]   # exported cells run anyway
    if 'nbdev_export()' in src: return [cell]   # nbdev skips this cell
    try: tree = ast.parse(src)
    except SyntaxError: return [cell]
    imps = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    if not imps or len(imps) == len(tree.body): return [cell]
    keep = set()
    for n in imps: keep.update(range(n.lineno - 1, n.end_lineno))
    keep -= {i for i,l in enumerate(lines) if l.startswith('#|')}
    head = '\n'.join(dirs) + '\n' if dirs else ''   # both halves keep the directives (e.g. `#| slow`)
    imp_src = head + '\n'.join(lines[i] for i in sorted(keep))
    rest = head + '\n'.join(l for i,l in enumerate(lines) if i not in keep and not l.startswith('#|')).strip('\n')
    mk = lambda s: {**cell, 'id': uuid.uuid4().hex[:8], 'source': s.splitlines(keepends=True), 'outputs': []}
    return [mk(imp_src), {**cell, 'source': rest.splitlines(keepends=True)}]

def main(paths, check=False):
    bad = []
    for p in paths:
        nb = json.load(open(p))
        cells = [c2 for c in nb['cells'] for c2 in (split_cell(c) if c['cell_type'] == 'code' else [c])]
        if len(cells) != len(nb['cells']):
            bad.append(p)
            if not check:
                nb['cells'] = cells
                with open(p, 'w') as f: json.dump(nb, f, indent=1, ensure_ascii=False); f.write('\n')
    if bad: print(('cells mixing imports and code in: ' if check else 'split imports in: ') + ', '.join(bad))
    if check and bad: sys.exit(1)

if __name__ == '__main__': main([a for a in sys.argv[1:] if a != '--check'], '--check' in sys.argv)
