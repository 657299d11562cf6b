"""New cases: tandem recommend, run --check-seeds, export, report, and the Python API."""
import os, sys, json
sys.path.insert(0, "SCRATCH")
from h import *

ONLY = set(sys.argv[1:])
def want(cid): return not ONLY or cid in ONLY

OKOPT = ROOT / "ok-opt"
W = OKOPT / "weights.json"

def cli(cid, title, argv_fn, expect="bad", note="", judge=None, out_name="out", mods=None, skip=("cache",)):
    if not want(cid): return
    d = case_dir(cid); p = write_cfg(d, mods)
    argv, out = argv_fn(d, p)
    return run_case(cid, title, argv, d=d, out=out, expect=expect, note=note, judge=judge, skip=skip)

# recommend
cli("N501", "recommend --candidates uniform --seeds 2 --steps 2 (only uniform)", lambda d, p: (["recommend", p, "--candidates", "uniform", "--seeds", "2", "--steps", "2", "--out", d / "out", "-q"], d / "out"), expect="good")
cli("N502", "recommend --seeds 1", lambda d, p: (["recommend", p, "--candidates", "uniform,natural", "--seeds", "1", "--out", d / "out", "-q"], d / "out"))
cli("N503", "recommend LABEL=FILE with a missing file", lambda d, p: (["recommend", p, "--candidates", f"mine={d}/nope.json,uniform", "--out", d / "out", "-q"], d / "out"))
def bad_w(d, obj, name="w.json"):
    f = d / name; f.write_text(json.dumps(obj)); return f
cli("N504", "recommend candidate naming an unknown domain", lambda d, p: (["recommend", p, "--candidates", str(bad_w(d, {"domain_weights": {"code": 0.5, "prose": 0.25, "nosuch": 0.25}})), "--out", d / "out", "-q"], d / "out"))
cli("N505", "recommend two candidates with the same label (a=uniform via files in folders named a)", lambda d, p: (
    ["recommend", p, "--candidates", f"x={bad_w(d, {'domain_weights': {'code': 0.5, 'prose': 0.25, 'math': 0.25}})},x={W}", "--steps", "1", "--seeds", "2", "--out", d / "out", "-q"], d / "out"))
if want("N506"):
    d = case_dir("N506"); p = write_cfg(d); shutil.copytree(ROOT / "ok-train", d / "out")
    run_case("N506", "recommend --out a folder holding a train run (no --force)", ["recommend", p, "--candidates", "uniform,natural", "--steps", "1", "--seeds", "2", "--out", d / "out", "-q"], d=d, out=d / "out")
cli("N507", "recommend --steps 0", lambda d, p: (["recommend", p, "--candidates", "uniform", "--steps", "0", "--out", d / "out", "-q"], d / "out"))
cli("N508", "recommend --candidates ',,,'", lambda d, p: (["recommend", p, "--candidates", ",,,", "--out", d / "out", "-q"], d / "out"))
cli("N509", "recommend candidate whose weights sum to 1.5", lambda d, p: (["recommend", p, "--candidates", str(bad_w(d, {"domain_weights": {"code": 0.5, "prose": 0.5, "math": 0.5}})), "--out", d / "out", "-q"], d / "out"))
cli("N510", "recommend on a two-stage config", lambda d, p: (["recommend", p, "--candidates", "uniform", "--out", d / "out", "-q"], d / "out"),
    mods={"stages": {"pretrain": ["code", "prose"], "sft": ["math"]}})
cli("N511", "recommend with a candidate file path containing '=' that exists (runs/lr=1e-3/weights.json)", lambda d, p: (
    (d / "lr=1e-3").mkdir(), ["recommend", p, "--candidates", f"{bad_w(d / 'lr=1e-3', {'domain_weights': {'code': 0.6, 'prose': 0.2, 'math': 0.2}}, 'weights.json')},uniform", "--steps", "1", "--seeds", "2", "--out", d / "out", "-q"], d / "out")[1:],
    expect="good")
# run --check-seeds
cli("N512", "run --check-seeds 1", lambda d, p: (["run", p, "--check-seeds", "1", "--out", d / "out", "-q"], d / "out"))
cli("N513", "run --check-seeds -5", lambda d, p: (["run", p, "--check-seeds", "-5", "--out", d / "out", "-q"], d / "out"))
cli("N514", "run --check-seeds 2 --check-steps 0", lambda d, p: (["run", p, "--check-seeds", "2", "--check-steps", "0", "--out", d / "out", "-q"], d / "out"))
cli("N515", "run --check-seeds 2 on a two-stage config", lambda d, p: (["run", p, "--check-seeds", "2", "--out", d / "out", "-q"], d / "out"),
    mods={"stages": {"pretrain": ["code", "prose"], "sft": ["math"]}})
def j516(rec, so, se):
    d = CASES / "N516" / "out"
    if rec["rc"] == 0:
        c = json.loads((d / "check.json").read_text()) if (d / "check.json").exists() else None
        w = json.loads((d / "weights.json").read_text())
        ev = json.loads((d / "eval.json").read_text())
        rec["note"] += f" check.json={'yes' if c else 'no'} recommended={c and c.get('recommended')} weights.json.check={w.get('check')} eval.weights={ {k: round(v, 4) for k, v in ev['weights'].items()} }"
        if c and {k: round(v, 9) for k, v in ev["weights"].items()} != {k: round(v, 9) for k, v in c["candidates"][c["recommended"]]["weights"].items()}:
            rec["verdict"], rec["promise"] = "wrong", "stage two trains on the check's recommended mixture"
cli("N516", "run --check-seeds 2 --check-steps 2 --baseline '' (valid)", lambda d, p: (["run", p, "--check-seeds", "2", "--check-steps", "2", "--baseline", "", "--out", d / "out", "-q"], d / "out"),
    expect="good", judge=j516, mods={"mixer": {"max_epochs": 0.05}})
cli("N517", "run --baseline uniform,bogus", lambda d, p: (["run", p, "--baseline", "uniform,bogus", "--out", d / "out", "-q"], d / "out"))
# export
def exp(cid, title, wobj, *extra, expect="bad", note="", judge=None, name="weights.json", raw=None):
    if not want(cid): return
    d = case_dir(cid); f = d / name
    (d / "afile").write_text("x")
    if raw is not None: f.write_text(raw)
    elif wobj is not None: f.write_text(json.dumps(wobj))
    else: f = W
    extra = [str(x).replace("@D", str(d)) for x in extra]
    return run_case(cid, title, ["export", f, *extra, "-q"], d=d, expect=expect, note=note, judge=judge)
exp("N801", "export megatron --prefix-template '{nosuch}'", None, "--format", "megatron", "--prefix-template", "{nosuch}")
exp("N802", "export megatron --prefix-template 'data/{domain' (unbalanced brace)", None, "--format", "megatron", "--prefix-template", "data/{domain")
exp("N803", "export --order with an unknown domain", None, "--format", "yaml", "--order", "code,prose,nosuch")
exp("N804", "export --order missing a domain", None, "--format", "yaml", "--order", "code,prose")
exp("N805", "export --format datasets on a weights file without rows_per_document", {"domain_weights": {"a": 0.5, "b": 0.5}}, "--format", "datasets")
exp("N806", "export --method nosuch on a weights.json", None, "--format", "yaml", "--method", "nosuch")
if want("N807"):
    d = case_dir("N807"); (d / "empty").mkdir()
    run_case("N807", "export WEIGHTS = a folder with neither file", ["export", d / "empty", "--format", "yaml", "-q"], d=d)
exp("N808", "export --prefix code (no =)", None, "--format", "megatron", "--prefix", "code")
exp("N809", "export --prefix nosuch=x (unknown domain)", None, "--format", "megatron", "--prefix", "nosuch=x")
exp("N810", "export --out /proc/tandem.txt (unwritable)", None, "--format", "yaml", "--out", "/proc/tandem.txt")
exp("N811", "export --format MEGATRON (upper case)", None, "--format", "MEGATRON")
exp("N812", "export weights.json with NaN (JSON literal)", None, "--format", "yaml", raw='{"domain_weights": {"a": NaN, "b": 1.0}}')
def j813(rec, so, se):
    rec["note"] += f" stdout={so[:200]!r}"
    if rec["rc"] == 0:
        rec["verdict"], rec["promise"] = "wrong", "megatron blend of a domain name holding whitespace/newline"
exp("N813", "export megatron: domain names with a space and a newline, --prefix for both", {"domain_weights": {"a b": 0.5, "c\nd": 0.5}},
    "--format", "megatron", "--prefix", "a b=pa", "--prefix", "c\nd=pc", expect="good", judge=j813,
    note="names come from the file, prefixes are given")
exp("N814", "export datasets: rows_per_document 0 for a weighted domain", {"domain_weights": {"a": 0.5, "b": 0.5}, "rows_per_document": {"a": 0, "b": 1.0}}, "--format", "datasets")
exp("N815", "export datasets: rows_per_document negative", {"domain_weights": {"a": 0.5, "b": 0.5}, "rows_per_document": {"a": -1.0, "b": 1.0}}, "--format", "datasets",
    note="negative probabilities would reach interleave_datasets")
exp("N816", "export: weights.json with a domain named twice (duplicate JSON key)", None, "--format", "yaml", raw='{"domain_weights": {"a": 0.5, "a": 0.5}}',
    note="json keeps the last: a:0.5 alone sums to 0.5 -> refused anyway?")
exp("N817", "export compare results.json whose weights are booleans", {"runs": [{"method": "m", "weights": {"a": True, "b": False}}]}, "--format", "yaml",
    name="results.json", note="check_weights refuses booleans in weights.json; results.json path converts with float()")
exp("N818", "export compare results.json with a 400-digit weight", None, "--format", "yaml", name="results.json",
    raw='{"runs": [{"method": "m", "weights": {"a": 1' + "0" * 400 + ', "b": 1}}]}')
exp("N819", "export --out a path whose parent is a file", None, "--format", "yaml", "--out", "@D/afile/x.yaml")
# report
def rep(cid, title, src, mutate=None, *extra, expect="bad", note=""):
    if not want(cid): return
    d = case_dir(cid); f = d / "run"
    if src is not None:
        shutil.copytree(src, f)
    else:
        f.mkdir()
    if mutate: mutate(f)
    extra = [str(x).replace("@D", str(d)) for x in extra]
    return run_case(cid, title, ["report", f, *extra, "-q"], d=d, out=(d / extra[1]) if extra[:1] == ["--out"] else f / "report.html",
                    expect=expect, note=note, skip=("cache", "run") if expect == "bad" else ("cache",))
rep("N901", "report on a train folder (valid)", ROOT / "ok-train", None, expect="good")
rep("N902", "report --out an existing folder", ROOT / "ok-opt", lambda f: (f.parent / "odir").mkdir(), "--out", "@D/odir")
rep("N903", "report: metrics.jsonl of binary garbage", ROOT / "ok-opt", lambda f: (f / "metrics.jsonl").write_bytes(os.urandom(4000)),
    expect="good", note="a log: unreadable lines skipped, or one error line")
rep("N904", "report: weights.json holding NaN", ROOT / "ok-opt",
    lambda f: (f / "weights.json").write_text(__import__("re").sub(r'("domain_weights": \{\n    "code": )[-0-9.eE]+', r'\1NaN', (f / "weights.json").read_text(), count=1)))
rep("N905", "report on an empty folder", None)
rep("N906", "report: run.json/config.yaml only (a claimed folder, nothing finished)", ROOT / "ok-opt",
    lambda f: [x.unlink() if x.is_file() else shutil.rmtree(x) for x in list(f.iterdir()) if x.name not in ("run.json", "config.yaml")])
rep("N907", "report: eval.json truncated (train folder)", ROOT / "ok-train", lambda f: (f / "eval.json").write_text((f / "eval.json").read_text()[:100]))
# Python API: bad inputs must raise tandem.errors.InputError with a one-line message
API = CASES / "_api"
def api_case(cid, title, body, expect="inputerror", note="", timeout=TIMEOUT):
    if not want(cid): return
    d = case_dir(cid); p = write_cfg(d)
    script = d / "probe.py"
    script.write_text(f"""
import json, sys, traceback
import tandem
from tandem.errors import InputError
CFG = {str(p)!r}; D = {str(d)!r}
import yaml; RAW = yaml.safe_load(open(CFG))
try:
    r = None
{chr(10).join('    ' + l for l in body.strip().splitlines())}
    print("RESULT ok", json.dumps(r, default=str)[:300])
except InputError as e:
    print("RESULT InputError", str(e).replace(chr(10), '\\\\n')[:400])
except Exception as e:
    print("RESULT", type(e).__name__, str(e).splitlines()[0][:300] if str(e) else "")
""")
    def j(rec, so, se):
        res = [l for l in so.splitlines() if l.startswith("RESULT")]
        got = res[-1] if res else "no result"
        rec["note"] = (note + " " + got).strip()
        rec["stderr_first"] = [got[:300]]
        kind = got.split()[1] if len(got.split()) > 1 else "?"
        if rec["verdict"] in ("hang", "traceback") and not res:
            return
        if expect == "inputerror":
            if kind == "InputError" and "\\n" not in got:
                rec["verdict"], rec["promise"] = "ok", ""
            else:
                rec["verdict"], rec["promise"] = "violate", "Python API: bad input raises tandem.errors.InputError with the one-line message"
        else:
            rec["verdict"], rec["promise"] = ("ok", "") if kind == "ok" else ("violate", f"Python API: valid call failed ({kind})")
        # nothing written for bad input
        if expect == "inputerror" and (d / "out").exists():
            rec["verdict"], rec["promise"] = "violate", (rec["promise"] + "; " if rec["promise"] else "") + "bad input -> nothing written (OUT exists)"
    run_case(cid, title, [script], d=d, out=d / "out", expect="good", judge=j, cmd0=[PY], note=note, timeout=timeout,
             skip=("cache", "out"))
api_case("NA01", "tandem.train(weights={code: 'x', ...}) (a string weight)", "r = tandem.train(CFG, D + '/out', weights={'code': 'x', 'prose': 0.5, 'math': 0.5})")
api_case("NA02", "tandem.train(weights={...NaN...})", "r = tandem.train(CFG, D + '/out', weights={'code': float('nan'), 'prose': 0.5, 'math': 0.5})")
api_case("NA03", "tandem.optimize(dict with an unknown key)", "RAW['train']['stpes'] = 3\nr = tandem.optimize(RAW, D + '/out')")
api_case("NA04", "tandem.compare(a dict config) (README: each takes a path, a dict or a Config)", "r = tandem.compare(RAW, D + '/out', methods=['uniform'], seeds=1)",
         expect="works", note="valid call per README")
api_case("NA05", "tandem.recommend(seeds=1) (the CLI refuses < 2)", "r = tandem.recommend(CFG, D + '/out', {'u': 'uniform', 'n': 'natural'}, seeds=1, steps=1)")
api_case("NA06", "tandem.recommend into a folder holding a train run (CLI refuses without --force)",
         f"import shutil; shutil.copytree({str(ROOT / 'ok-train')!r}, D + '/out')\nr = tandem.recommend(CFG, D + '/out', {{'n': 'natural'}}, seeds=2, steps=1)",
         note="README: a used folder needs resume=True or force=True")
api_case("NA07", "tandem.recommend(steps=0)", "r = tandem.recommend(CFG, D + '/out', {'n': 'natural'}, seeds=2, steps=0)")
api_case("NA08", "tandem.recommend(candidates={}) (no candidate)", "r = tandem.recommend(CFG, D + '/out', {}, seeds=2, steps=1)")
api_case("NA09", "tandem.compare(methods=[]) ", "r = tandem.compare(CFG, D + '/out', methods=[], seeds=1)")
api_case("NA10", "tandem.compare(seeds=0)", "r = tandem.compare(CFG, D + '/out', methods=['uniform'], seeds=0)")
api_case("NA11", "tandem.optimize(overrides='train.steps=5') (a str, not a list)", "r = tandem.optimize(CFG, D + '/out', overrides='train.steps=5')")
api_case("NA12", "tandem.train(weights='natural ') (trailing space)", "r = tandem.train(CFG, D + '/out', weights='natural ')")
api_case("NA13", "tandem.recommend on a two-stage config dict (the CLI refuses)", "RAW['stages'] = {'pretrain': ['code', 'prose'], 'sft': ['math']}\nr = tandem.recommend(RAW, D + '/out', {'n': 'natural'}, seeds=2, steps=1)")
api_case("NA14", "tandem.train(weights={code: 1}) (missing domains)", "r = tandem.train(CFG, D + '/out', weights={'code': 1.0})")
api_case("NA16", "tandem.recommend(candidates={'x': {'code': 1e400...}}) weight inf", "r = tandem.recommend(CFG, D + '/out', {'x': {'code': float('inf'), 'prose': 0.0, 'math': 0.0}}, seeds=2, steps=1)")
