"""`tandem report`: one self-contained page per folder, rendered by a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile

import pytest


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no chromium on PATH: run scripts/install_browser.sh (scripts/test.sh does)")


def rendered_dom(page) -> str:
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def assert_self_contained(text: str) -> int:
    srcs = re.findall(r'src="([^"]*)"', text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in text and "http://" not in text and "https://" not in text
    return len(srcs)


@pytest.fixture(scope="module")
def run_dir(shared_cfg, tmp_path_factory):
    from tandem.cli.main import main

    out = tmp_path_factory.mktemp("report") / "run"
    rc = main(["run", str(shared_cfg), "--out", str(out), "-q", "--set", "train.steps=4", "--set", "eval.max_tokens=512",
               "--set", "mixer.episodes=3", "--set", "mixer.probe_steps=1", "--set", "mixer.free_steps=1"])
    assert rc == 0
    return out


def test_run_and_optimize_reports_render_in_chromium(run_dir, cli):
    rc, out, err = cli("report", run_dir)
    assert rc == 0, err
    page = run_dir / "report.html"
    text = page.read_text()
    n = assert_self_contained(text)
    assert n >= 4  # weights, test losses, weight and Delta trajectories (+ proxy losses)
    for needle in ("Weights", "Trajectories", "Per-domain test losses", "<th>uniform</th>", "Config", "Versions", "torch"):
        assert needle in text, needle
    dom = rendered_dom(page)
    assert f'data-plots="rendered {n}/{n}"' in dom, re.findall(r'data-plots="[^"]*"', dom)

    rc, _, err = cli("report", run_dir / "optimize", "--out", run_dir / "opt.html")
    assert rc == 0, err
    text = (run_dir / "opt.html").read_text()
    n = assert_self_contained(text)
    assert "Per-domain losses during optimization" in text and "mixer:" in text  # the run's config, one folder up
    assert f'data-plots="rendered {n}/{n}"' in rendered_dom(run_dir / "opt.html")


def test_compare_report_renders_in_chromium(run_dir, tmp_path, cli):
    # A compare folder as `tandem compare` lays it out, from the run's two trained mixtures.
    runs = []
    for method, folder in (("tandem", run_dir), ("uniform", run_dir / "baseline-uniform")):
        ev = json.loads((folder / "eval.json").read_text())
        runs.append({"method": method, "seed": 0, "weights": ev["weights"], "test_loss": ev["test_loss"],
                     "valid_loss": ev["valid_loss"], "epochs": ev["epochs"], "stage1_wall_s": 1.0,
                     "stage1_tokens": 100, "stage1_proxy_steps": 6})
    cmp = tmp_path / "cmp"
    (cmp / "runs" / "tandem-seed0" / "optimize").mkdir(parents=True)
    shutil.copy(run_dir / "optimize" / "trajectory.csv", cmp / "runs" / "tandem-seed0" / "optimize")
    shutil.copy(run_dir / "config.yaml", cmp)
    (cmp / "results.json").write_text(json.dumps({"methods": ["uniform", "tandem"], "seeds": 1, "runs": runs}))
    rc, _, err = cli("report", cmp)
    assert rc == 0, err
    text = (cmp / "report.html").read_text()
    n = assert_self_contained(text)
    assert n == 3 and "Trajectories (every seed)" in text and "mean ± std" in text
    assert f'data-plots="rendered {n}/{n}"' in rendered_dom(cmp / "report.html")


def test_report_of_a_folder_without_outputs_is_an_input_error(tmp_path, cli):
    rc, _, err = cli("report", tmp_path)
    assert rc == 2 and "not an output folder" in err
    assert not (tmp_path / "report.html").exists()
    (tmp_path / "run.json").write_text('{"command": "optimize", "identity": {}}')  # claimed, stopped before results
    rc, _, err = cli("report", tmp_path)
    assert rc == 2 and "holds a `tandem optimize` run that has not finished" in err and "--resume" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "report.html").exists()


def test_report_of_an_online_method_has_no_twins_distance_panel(shared_cfg, tmp_path, cli):
    """An online method has no reference: its trajectory's distance column is nan, which the report shows as no
    distance panel rather than refusing the folder."""
    out = tmp_path / "odm"
    rc, _, err = cli("optimize", shared_cfg, "--out", out, "-q", "--set", "mixer.method=odm", "--set", "train.steps=4",
                     "--set", "mixer.episodes=3", "--set", "mixer.probe_steps=1", "--set", "mixer.free_steps=1")
    assert rc == 0, err
    assert "nan" in (out / "trajectory.csv").read_text().splitlines()[1]
    rc, _, err = cli("report", out)
    assert rc == 0, err
    text = (out / "report.html").read_text()
    assert "Trajectories" in text and assert_self_contained(text) >= 2
