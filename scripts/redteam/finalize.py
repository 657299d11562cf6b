"""Final results: the last record per case id, the judgment calls below applied (each says why in its note), and
machine paths replaced (SCRATCH, PROJECT, VENV, PYTHON)."""
import json, re, sys
from pathlib import Path

ROOT = Path("SCRATCH")
raw = [json.loads(l) for l in (ROOT / "results.jsonl").read_text().splitlines()]
last, order = {}, []
for r in raw:
    if r["id"] not in last:
        order.append(r["id"])
    last[r["id"]] = r

OVERRIDES = {
    "C102": ("ok", "", "judgment: ENOSPC while tokenizing gives one line and exit 2; the cache keeps its finished shards and a "
             "consistent index (README: an interrupted prepare keeps its finished work), no scratch file left. The line "
             "('error: No space left on device') does not name the file."),
    "C131": ("ok", "", "judgment: a one-line refusal with exit 2 (the cache's .lock cannot be opened on a read-only "
             "filesystem); nothing promises that a read-only cache is usable."),
    "N315": ("ok", "", "test design: `where` applies to every split and the shared valid/test files have no 'lang' field, "
             "so the one-line refusal is correct."),
    "N323": ("ok", "", "judgment: an SFT domain in stages.pretrain is accepted; no documented rule forbids it."),
    "N813": ("ok", "", "the output ('0.5 pa', '0.5 pc') is a correct blend: the prefixes were given explicitly, and a "
             "name with whitespace is refused when it would become a prefix (megatron_blend checks)."),
    "NS05": ("ok", "", "judgment: a planted symlink at OUT/checkpoint.prev makes the resume stop with one line and exit 2 "
             "('Cannot call rmtree on a symbolic link'); the folder it pointed to was not touched."),
    "N226": ("ok", "", "judgment: a DatasetDict whose only split is 'validation', given as `train`, is read as training "
             "data (readers._load_hf_split: 'a lone split is the training data'); silent, but the documented rule."),
    "NB04": ("ok", "", "the builder floors every split at 10 rows (manifest: 10 rows per split), so scale 1e-9 still "
             "writes usable data."),
    "N257": ("ok", "", "one-line refusal; note the file t[1].jsonl exists under that literal name, but '[' makes the "
             "path a glob and the message says 'no files match'."),
    "N121": ("ok", "", "judgment: the cache would write <cache>/code/train.bin, which is the source itself; it is "
             "refused in one line before anything is written (README Reliability: inputs are read-only), the source "
             "unchanged."),
    "N241": ("ok", "", "judgment: a jsonl with a UTF-8 byte-order mark is read (utf-8-sig), as the case's own note "
             "allows ('refused or read; either is fine if one line')."),
    "N265": ("ok", "", "judgment: where compares values of the same JSON type (README), so `true` matches no integer "
             "row; a where that keeps no row is refused in one line naming the field."),
}
PROMISES = {
    "N212": "csv is a supported format (README, Bring your own data): a valid csv is refused as 'invalid csv'",
    "N214": "csv is a supported format: a csv with a UTF-8 BOM (as Excel writes) is refused with a misleading 'missing field'",
    "N101": "the config is YAML: a valid YAML merge key is refused as 'invalid YAML'",
    "N110": "README: a wrong config key or type is bad input (numeric string coerced; judgment)",
    "C52": "README: a wrong config key or type is bad input (numeric strings coerced; judgment)",
    "N904": "bad weights are refused (report renders a NaN weight; judgment: report reads tandem's own files)",
}
EXTRA_NOTES = {
    "C95": "same settings as the source run: only run.json/config.yaml mtimes changed (content identical).",
    "C95b": "not quiet: a progress bar and the fallback warning precede the one error line.",
    "NX09": "refused, but the message blames the value 'a' instead of its mapped name '../evil'.",
    "NX13": "the group's value scan wrote <cache>/domain_values.json before the refusal (a cache memo).",
    "N108": "message reads 'cfg.yaml:: invalid YAML: invalid YAML'.",
    "NR02": "README documents the sampled fingerprint ('any edit that keeps size, time and every sampled chunk is "
            "vanishingly rare'; data.source_hash: full rules it out), but run.json's identity rests on it too.",
    "N101": "valid YAML merge keys (<<:) are refused: the duplicate-key loader constructs the '<<' key itself.",
    "C79": "not a deadlock: 100000 held windows per domain (each domain holds ~1000) are evaluated by both twins every "
           "episode.",
    "N104": "memory exhaustion under ulimit -v 4 GiB (pyo3 panic 'memory allocation failed'), then no exit before 180 s; "
            "methods.* is free-form and is dumped into config.yaml/run.json.",
    "N246": "binary detection reads only the first 8 KiB.",
    "NB10": "argparse's own usage line + error line.",
    "K10": "SIGINT test re-run with SIGINT reset to its default in the child (a background job inherits it ignored).",
    "K12": "SIGINT test re-run with SIGINT reset to its default in the child (a background job inherits it ignored).",
}
LOG_PARENT = "traceback written to OUT's parent folder (README: OUT/tandem-error.log, or the temporary folder's)"
REPORT_TMP = "an empty tandem-report-* folder is left in $TMPDIR"

def _auto(r):
    """The verdicts the red team gave by reading a note, decided from the note the harness records now."""
    i, note = r["id"], r.get("note", "")
    if i in ("N434", "N440"):
        m = re.search(r"caps_binding=(\[[^\]]*\])", note)
        binding = m and m.group(1) != "[]"
        r["verdict"], r["promise"] = ("ok", "") if binding else ("wrong", "weights.json says which caps bind")
    if i == "N267":
        m = re.search(r"documents kept: (\d+) of \d+ .*would keep (\d+)", note)
        same = m and m.group(1) == m.group(2)
        r["verdict"], r["promise"] = ("ok", "") if same else ("wrong", "where keeps rows whose field equals the value")
    if i == "NA06":
        import hashlib
        def tree(d):
            return {str(p.relative_to(d)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}
        a, b = ROOT / "cases" / "NA06" / "out", ROOT / "ok-train"
        if "RESULT InputError" in note and a.is_dir() and tree(a) == tree(b):
            r["verdict"], r["promise"] = "ok", ""
            r["note"] = note + " | the OUT that exists is the train run the probe copied there, unchanged file by file"
    return r


out = []
for i in order:
    r = _auto(dict(last[i]))
    if i in OVERRIDES:
        v, p, n = OVERRIDES[i]
        r["verdict"], r["promise"] = v, p
        r["note"] = (r.get("note", "") + " | " + n).strip(" |")
        r["judgment"] = True
    if i in PROMISES:
        r["promise"] = PROMISES[i]
    if i in EXTRA_NOTES:
        r["note"] = (r.get("note", "") + " | " + EXTRA_NOTES[i]).strip(" |")
    s0 = " ".join(r.get("stderr_first") or [])
    if "internal error" in s0 and "tandem-error.log" in json.dumps(r.get("outside_out", {})):
        r["note"] = (r.get("note", "") + " | " + LOG_PARENT).strip(" |")
    if any("tandem-report-" in x for w in (r.get("watch") or {}).values() if isinstance(w, dict) for x in w.get("new", [])):
        r["note"] = (r.get("note", "") + " | " + REPORT_TMP).strip(" |")
    out.append(r)

def scrub(s: str) -> str:
    s = s.replace("SCRATCH", "SCRATCH").replace("PROJECT", "PROJECT").replace("VENV", "VENV")
    s = re.sub(r"/[^\s\"']*/\.pyenv/versions/[0-9.]+", "PYTHON", s)
    s = re.sub(r"/[^\s\"']*/\.cargo/registry/src/[^/]+/", "CARGO/", s)
    return s

text = "\n".join(scrub(json.dumps(r, ensure_ascii=False)) for r in out) + "\n"
(ROOT / "results.final.jsonl").write_text(text)
left = re.findall(r"(/(?:tmp|root|home|work)/[^\s\"']+)", text)
print("records", len(out), "machine paths left:", sorted(set(left))[:10])
