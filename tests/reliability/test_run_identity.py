"""An output folder holds one run: a resume that is not the same run is refused before anything changes, a finished
folder is not overwritten without --force, two processes do not share a folder, OUT/config.yaml reruns the run,
outputs get the umask's mode, and domain names cannot leave the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from conftest import tiny_config

MIXER = {"episodes": 2, "probe_steps": 1, "free_steps": 1, "eval_sequences": 2}
FAST = ["--set", "mixer.episodes=2", "--set", "mixer.probe_steps=1", "--set", "mixer.free_steps=1",
        "--set", "mixer.eval_sequences=2", "-q"]


@pytest.fixture
def finished(tmp_path, cli):
    path = tiny_config(tmp_path, mixer=MIXER)
    out = tmp_path / "opt"
    rc, _, err = cli("optimize", path, "--out", out, *FAST)
    assert rc == 0, err
    return path, out


def _snapshot(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
            and p.name != ".lock"}


@pytest.mark.parametrize("change", [
    ["--set", "seed=1"],
    ["--set", "mixer.proxy.n_embd=48"],
    ["--set", "train.lr=0.01"],
    ["--set", "mixer.episodes=3"],
])
def test_resume_of_a_different_run_is_refused_and_changes_nothing(finished, cli, change):
    path, out = finished
    before = _snapshot(out)
    rc, _, err = cli("optimize", path, "--out", out, *FAST, "--resume", *change)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "holds a different run" in err, err
    key = change[1].split("=")[0]
    assert key in err
    assert _snapshot(out) == before  # config.yaml, weights, checkpoints: byte for byte


def test_resume_with_a_domain_removed_is_refused(finished, cli, tmp_path):
    path, out = finished
    cfg = yaml.safe_load(path.read_text())
    del cfg["data"]["domains"]["prose"]
    fewer = tmp_path / "fewer.yaml"
    fewer.write_text(yaml.safe_dump(cfg))
    before = _snapshot(out)
    rc, _, err = cli("optimize", fewer, "--out", out, *FAST, "--resume")
    assert rc == 2 and "data.domains" in err, err
    assert _snapshot(out) == before


def test_resume_of_the_same_run_and_rerun_refusal(finished, cli):
    path, out = finished
    rc, _, err = cli("optimize", path, "--out", out, *FAST, "--resume")
    assert rc == 0, err
    rc, _, err = cli("optimize", path, "--out", out, *FAST)
    assert rc == 2 and "already holds" in err and "--force" in err, err
    rc, _, err = cli("optimize", path, "--out", out, *FAST, "--force")
    assert rc == 0, err
    rc, _, err = cli("train", path, "--out", out, "--resume", "-q")
    assert rc == 2 and "tandem optimize" in err, err


def test_config_yaml_reruns_the_same_run(finished, cli, tmp_path):
    _, out = finished
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert "base_dir" not in saved and saved["mixer"]["update"] == "standardized"  # method defaults written out
    assert all(os.path.isabs(p) for spec in saved["data"]["domains"].values() for p in (spec["train"], spec["valid"]))
    again = tmp_path / "again"
    rc, _, err = cli("optimize", out / "config.yaml", "--out", again, "-q")
    assert rc == 0, err
    a, b = (json.loads((d / "weights.json").read_text()) for d in (out, again))
    assert a["domain_weights"] == b["domain_weights"] and a["final"] == b["final"]
    assert json.loads((out / "run.json").read_text())["identity"] == json.loads((again / "run.json").read_text())["identity"]


def test_outputs_follow_the_umask(tmp_path, cli):
    path = tiny_config(tmp_path, mixer=MIXER)
    old = os.umask(0o022)
    try:
        rc, _, err = cli("optimize", path, "--out", tmp_path / "o", *FAST)
    finally:
        os.umask(old)
    assert rc == 0, err
    for name in ("weights.json", "trajectory.csv", "config.yaml", "run.json"):
        assert (tmp_path / "o" / name).stat().st_mode & 0o777 == 0o644, name


def test_two_processes_on_one_folder(tmp_path):
    path = tiny_config(tmp_path, mixer={**MIXER, "episodes": 40})
    out = tmp_path / "o"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "tandem", "optimize", str(path), "--out", str(out), "-q"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "run.json").exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.1)
        assert first.poll() is None, first.communicate()
        second = subprocess.run([sys.executable, "-m", "tandem", "optimize", str(path), "--out", str(out), "-q",
                                 "--resume"], env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "another tandem process" in lines[0], second.stderr
    finally:
        first.kill()
        first.wait()


@pytest.mark.parametrize("name", ["..", ".", "...", "index.json", "tokenizer.json", "a/b", ""])
def test_domain_names_cannot_leave_or_collide_with_the_cache(tmp_path, cli, name):
    path = tiny_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["data"]["domains"][name] = cfg["data"]["domains"].pop("prose")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    listing = sorted(p.name for p in tmp_path.iterdir())
    rc, _, err = cli("prepare", bad)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "domain name" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == listing


def test_two_processes_preparing_one_cache_take_turns(tmp_path):
    path = tiny_config(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "tandem", "prepare", str(path), "-q"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0] == outs[1][0]  # the same token counts
    index = json.loads((tmp_path / ".tandem_cache" / "index.json").read_text())
    assert len(index["entries"]) == 9


def test_a_failed_resume_leaves_the_run_as_it_was(finished, cli):
    path, out = finished
    for f in (out / "checkpoint").glob("*.safetensors"):
        f.write_bytes(b"damaged")
    before = _snapshot(out)
    rc, _, err = cli("optimize", path, "--out", out, *FAST, "--resume")
    assert rc == 2 and "no loadable checkpoint" in err and len(err.strip().splitlines()) == 1, err
    assert _snapshot(out) == before  # config.yaml, run.json, weights: byte for byte


def test_bad_input_in_an_existing_empty_folder_leaves_no_claim(tmp_path, cli):
    path = tiny_config(tmp_path, mixer=MIXER)
    out = tmp_path / "o"
    out.mkdir()
    rc, _, err = cli("optimize", path, "--out", out, *FAST, "--set", "train.seq_len=100000")
    assert rc == 2 and "train.seq_len" in err and len(err.strip().splitlines()) == 1, err
    assert not (out / "run.json").exists() and not (out / "config.yaml").exists()
    rc, _, err = cli("optimize", path, "--out", out, *FAST)  # the corrected rerun is not refused
    assert rc == 0, err


def test_the_methods_own_section_is_part_of_a_train_runs_identity(tmp_path, cli):
    """`train --online` runs the method with its `methods.<name>` section applied: a resume with that section changed
    is another run (refused); a section for another method, or an empty one, changes nothing."""
    path = tiny_config(tmp_path, mixer=MIXER)
    out = tmp_path / "online"
    base = ["train", path, "--out", out, "--online", "-q", "--set", "train.steps=4", "--set", "mixer.method=odm"]
    rc, _, err = cli(*base, "--set", "methods.odm={odm: {smoothing: 0.5}}")
    assert rc == 0, err
    before = _snapshot(out)
    rc, _, err = cli(*base, "--set", "methods.odm={odm: {smoothing: 0.1}}", "--resume")
    assert rc == 2 and "holds a different run" in err and "mixer.odm.smoothing" in err, err
    assert _snapshot(out) == before
    rc, _, err = cli(*base, "--set", "methods.odm={odm: {smoothing: 0.5}}", "--set", "methods.doge={eta_alpha: 3.0}",
                     "--resume")
    assert rc == 0, err
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["mixer"]["odm"]["smoothing"] == 0.5  # config.yaml reruns the run: the section's value in mixer


def test_a_section_for_another_method_is_not_another_run(finished, cli):
    path, out = finished  # run without a methods section
    rc, _, err = cli("optimize", path, "--out", out, *FAST, "--set", "methods.doge={eta_alpha: 3.0}", "--resume")
    assert rc == 0, err


@pytest.mark.parametrize("command", ["optimize", "train", "recommend"])
def test_an_output_folder_holding_the_config_is_refused_even_with_force(tmp_path, cli, command):
    """The config file is an input like the sources: no command writes beside it into its folder, --force included
    (which would delete the folder's files); through the Python API too."""
    import tandem
    from tandem.errors import InputError

    path = tiny_config(tmp_path, mixer=MIXER)
    extra = {"optimize": FAST, "train": ["-q", "--set", "train.steps=2"],
             "recommend": ["--candidates", "uniform,natural", "--seeds", "2", "--steps", "1", "-q"]}[command]
    rc, _, err = cli(command, path, "--out", path.parent, *extra, "--force")
    assert rc == 2 and "holds the input" in err and str(path) in err, err
    assert path.is_file() and not (path.parent / "run.json").exists()
    call = {"optimize": lambda: tandem.optimize(path, path.parent, force=True),
            "train": lambda: tandem.train(path, path.parent, force=True),
            "recommend": lambda: tandem.recommend(path, path.parent, {"u": "uniform", "n": "natural"}, seeds=2,
                                                  steps=1, force=True)}[command]
    with pytest.raises(InputError, match="holds the input"):
        call()
    assert path.is_file()
