"""`r1lab report`: a self-contained HTML page per run or comparison, checked as text and in headless Chromium.

`python tests/test_report.py` redraws docs/report.png from runs/zero_smollm2 (or the synthetic run below).
"""
from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest
import typer
from chromium_support import Browser, chromium_binary
from typer.testing import CliRunner

from r1lab.cli.report import report
from r1lab.config import to_yaml
from r1lab.eval.metrics import wilson_interval
from r1lab.report import load_run, render_report, write_report
from r1lab.report.samples import segments
from r1lab.rl.config import ZeroConfig
from r1lab.runs import RunDir

HOSTILE = '<script>window.__pwned = 1</script><img src="http://example.invalid/x.png">'
AHA_SAMPLE = "<think>4 + 8 = 11. Wait, 4 + 8 = 12.</think> <answer>12</answer>"
STEPS = 6


def _sample(step: int, right: bool) -> dict:
    if right:
        text = AHA_SAMPLE if step == 4 else f"<think>{step} + 8 = {step + 8}.</think> <answer>{step + 8}</answer>"
    else:
        text = f"<think>I guess. {HOSTILE if step == 2 else ''}</think> <answer>0</answer>"
    score = 1.0 if right else 0.0
    return {"id": f"q{step}-{int(right)}", "question": f"What is {step} + 8?", "answer": str(step + 8),
            "completion": text, "reward": 2 * score, "advantage": score - 0.5,
            "rewards": {"accuracy": score, "accuracy_lenient": score, "format": 1.0}}


def make_run(root: Path, lr: float = 1e-5, samples: bool = True) -> Path:
    """A run directory with the trainer's files and metric vocabulary: 6 steps, evals at 0, 3 and 6."""
    run = RunDir(root)
    cfg = ZeroConfig()
    cfg.grpo.lr, cfg.run.output_dir = lr, str(root)
    run.write_text("config.yaml", to_yaml(cfg))
    run.log_metrics(0, {"eval/accuracy": 0.05, "eval/accuracy_lenient": 0.1, "eval/format": 0.0, "eval/n": 100.0})
    for s in range(1, STEPS + 1):
        metrics = {
            "reward/total": 0.2 + 0.1 * s, "reward/total_std": 0.3, "reward/accuracy": 0.05 * s,
            "reward/format": 0.1 * s,
            "train/accuracy": 0.05 * s, "train/accuracy_lenient": 0.06 * s, "train/format": 0.1 * s,
            "reward/failures": 0.0, "completion/length_mean": 20.0 + s, "completion/length_max": 48.0,
            "completion/truncated_rate": 0.1, "groups/uniform_fraction": 0.25, "loss": 0.01 * s, "kl": 0.001 * s,
            "clip_fraction": 0.0, "entropy": 1.0, "grad_norm": 2.0, "lr": lr,
            "time/generate": 2.0, "time/score": 0.1, "time/train": 1.0, "time/step": 3.1, "tokens_per_s": 30.0,
            "aha/reflection_rate": 0.05 * s, "aha/reflections_per_completion": 0.1 * s,
            "aha/accuracy_with_reflection": 0.5, "aha/accuracy_with_reflection_n": 4.0,
            "aha/accuracy_without_reflection": 0.25, "aha/accuracy_without_reflection_n": 12.0,
            "aha/candidates": float(s == 4),
        }
        if s % 3 == 0:
            metrics.update({"eval/accuracy": 0.17 if s == 3 else 0.33, "eval/accuracy_lenient": 0.2,
                            "eval/format": 0.5, "eval/n": 100.0})
        run.log_metrics(s, metrics)
        if samples:
            run.log_samples(s, [_sample(s, True), _sample(s, False)])
    aha = "The answer is 12. Hmm, let me verify: 5 + 8 = 13. The answer is 13."
    run.log_records("aha.jsonl", 5, [{"id": "q5-aha", "question": "What is 5 + 8?", "answer": "13", "reward": 2.0,
                                      "completion": aha}])
    return root


DRAWN = {"reward/total", "reward/total_std", "reward/accuracy", "reward/format", "reward/failures", "train/accuracy",
         "train/accuracy_lenient", "train/format", "eval/accuracy", "eval/accuracy_lenient", "eval/format",
         "completion/length_mean", "completion/length_max", "completion/truncated_rate", "groups/uniform_fraction",
         "loss", "kl", "clip_fraction", "entropy", "grad_norm", "lr", "time/generate", "time/score", "time/train",
         "time/step", "tokens_per_s", "aha/reflection_rate", "aha/reflections_per_completion",
         "aha/accuracy_with_reflection", "aha/accuracy_without_reflection", "aha/candidates", "time/split"}


def _page_data(html: str) -> dict:
    raw = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.DOTALL).group(1)
    return json.loads(raw)


# ---------------------------------------------------------------------------- the page as text
def test_default_output_paths(tmp_path, monkeypatch):
    one = make_run(tmp_path / "a")
    assert write_report([one]) == one / "report.html"
    monkeypatch.chdir(tmp_path)
    two = write_report([one, make_run(tmp_path / "b", lr=2e-5)])
    assert two == Path("report.html") and (tmp_path / "report.html").is_file()
    out = write_report(one, tmp_path / "x" / "mine.html")
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_page_references_nothing_outside_itself(tmp_path):
    page = render_report([load_run(make_run(tmp_path / "a"))])
    data = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.DOTALL).group(1)
    assert "<" not in data  # completions' markup (HOSTILE) stays data: escaped, it can neither close the script
    html = page.replace(data, "")  # nor be parsed as tags
    assert not re.search(r"<(?:link|img|iframe|object|embed)\b", html)
    assert not re.search(r"<script\b[^>]*\bsrc=", html)
    assert not re.search(r"\b(?:href|src)\s*=\s*[\"'](?!#)", html)  # only in-page anchors
    assert not re.search(r"url\(|@import|@font-face", html)
    # the only URL is the SVG namespace, which is a name, not a fetch
    assert set(re.findall(r"https?://[^\s\"'<]+", html)) == {"http://www.w3.org/2000/svg"}


def test_every_logged_metric_has_a_curve_and_counts_are_tables_not_curves(tmp_path):
    html = render_report([load_run(make_run(tmp_path / "a"))])
    drawn = set(re.findall(r'<figure class="plot(?: wide)?" data-metric="([^"]+)"><svg', html))
    assert drawn == DRAWN
    for group in ("g-reward", "g-train", "g-eval", "g-completion", "g-aha", "g-optimization", "g-groups", "g-time"):
        assert f'id="{group}"' in html


def test_accuracies_carry_n_and_a_wilson_interval(tmp_path):
    html = render_report([load_run(make_run(tmp_path / "a"))])
    low, high = wilson_interval(17, 100)
    assert f"<td>17/100</td><td>[{100 * low:.1f}%, {100 * high:.1f}%]</td>" in html
    assert "[10.9%, 25.5%]" in html  # the same, computed by hand
    # per-step aha accuracies pool their n over steps: 0.5 x 4 per step for 6 steps -> 12/24
    low, high = wilson_interval(12, 24)
    assert f"<td>aha/accuracy_with_reflection</td><td>1–6</td><td>50.0%</td><td>12/24</td>" \
           f"<td>[{100 * low:.1f}%, {100 * high:.1f}%]</td>" in html
    assert "<code>train/accuracy</code>" in html  # listed as lacking an n, not given a false interval
    assert 'class="band"' in html  # the eval accuracy curve is drawn with its interval


def test_sample_browser_data_by_step_with_highlights_and_breakdown(tmp_path):
    data = _page_data(render_report([load_run(make_run(tmp_path / "a"))]))
    run = data["runs"][0]
    assert run["steps"] == list(range(1, STEPS + 1))
    aha = run["samples"]["4"][0]
    assert aha["aha"] is True and aha["correct"] is True and aha["reflections"] == 1
    assert aha["rewards"] == {"accuracy": 1.0, "accuracy_lenient": 1.0, "format": 1.0} and aha["reward"] == 2.0
    assert "".join(text for _, text in aha["segments"]) == AHA_SAMPLE
    assert ["think reflect", "Wait"] in aha["segments"] and ["answer", "12"] in aha["segments"]
    assert aha["trajectory"] == ["11", "12", "12"]
    listed = data["aha"][0]["candidates"]
    assert [(c["step"], c["source"]) for c in listed] == [(4, "samples.jsonl"), (5, "aha.jsonl")]


def test_segments_mark_think_answer_tags_reflection_and_stated_answers():
    parts = segments("So 2 + 2 = 5. Hmm.</think><answer>4</answer>")  # <think> was prefilled
    assert parts == [["think", "So 2 + 2 "], ["think stated", "= 5"], ["think", ". "], ["think reflect", "Hmm"],
                     ["think", "."], ["tag", "</think><answer>"], ["answer", "4"], ["tag", "</answer>"]]
    assert segments("just \\boxed{7}") == [["plain", "just \\boxed{"], ["answer", "7"], ["plain", "}"]]
    assert segments("") == []


def test_several_runs_overlay_on_the_same_axes_with_a_legend_and_a_config_diff(tmp_path):
    runs = [load_run(make_run(tmp_path / "base")), load_run(make_run(tmp_path / "fast", lr=3e-5))]
    html = render_report(runs)
    chart = re.search(r'data-metric="reward/total"><svg.*?</svg>', html, re.DOTALL).group(0)
    assert chart.count('class="line"') == 2 and ">base</text>" in chart and ">fast</text>" in chart
    diff = html.split("<h3>What differs</h3>", 1)[1].split("</table>", 1)[0]
    assert "grpo.lr" in diff and "run.output_dir" in diff and "grpo.steps" not in diff
    assert [r["name"] for r in _page_data(html)["runs"]] == ["base", "fast"]


def test_partial_and_sft_runs_render(tmp_path):
    sft = RunDir(tmp_path / "sft")  # an SFT run: its own metrics, no samples, no config
    for s in range(1, 4):
        sft.log_metrics(s, {"loss": 2.0 / s, "lr": 1e-5, "tokens_per_s": 900.0, "pack_fill": 0.9, "time/step": 1.5,
                            "epoch": s / 3, "note": "text is ignored", "bad": float("nan")})
    html = render_report([load_run(tmp_path / "sft")])
    assert set(re.findall(r'data-metric="([^"]+)"', html)) == {"loss", "lr", "tokens_per_s", "pack_fill", "time/step",
                                                                "epoch"}
    assert _page_data(html)["runs"][0]["steps"] == []
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.yaml").write_text("a: [unclosed\n")  # shown as text even when it does not parse
    html = render_report([load_run(tmp_path / "cfg")])
    assert "No metrics logged" in html and "a: [unclosed" in html
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        write_report([tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        write_report([tmp_path / "missing"])


def test_cli_command(tmp_path):
    app = typer.Typer()
    app.command()(report)
    app.command("other")(lambda: None)  # two commands, so typer keeps `report` as a subcommand
    run = make_run(tmp_path / "a")
    result = CliRunner().invoke(app, ["report", str(run), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.html").is_file() and "r.html" in result.output
    result = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such run directory" in result.output


# ---------------------------------------------------------------------------- RunDir: aha log, TensorBoard
def test_log_records_appends_and_resume_truncates_them(tmp_path):
    run = RunDir(tmp_path)
    for step in (1, 2, 3):
        run.log_records("aha.jsonl", step, [{"id": f"q{step}"}])
    run.truncate_after(2)
    assert [r["step"] for r in load_run(tmp_path).aha] == [1, 2]


def test_tensorboard_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the package were not installed
    with pytest.raises(ImportError, match=r"r1lab\[tensorboard\]"):
        RunDir(tmp_path, tensorboard=True)
    RunDir(tmp_path, rank=1, tensorboard=True)  # only the writer rank needs it


def test_tensorboard_gets_every_finite_metric(tmp_path, monkeypatch):
    calls = []

    class Writer:
        def __init__(self, log_dir):
            calls.append(("dir", log_dir))

        def add_scalar(self, key, value, step):
            calls.append((key, value, step))

        def flush(self):
            calls.append("flush")

        def close(self):
            calls.append("close")

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    run = RunDir(tmp_path, tensorboard=True)
    run.log_metrics(3, {"reward/total": 0.5, "eval/n": 100, "bad": float("nan"), "flag": True, "text": "x"})
    run.close()
    assert calls == [("dir", str(tmp_path / "tensorboard")), ("reward/total", 0.5, 3), ("eval/n", 100, 3), "flush",
                     "close"]


# ---------------------------------------------------------------------------- in a real browser
def open_report(browser: Browser, page: Path) -> None:
    browser.open_watching_network(page.resolve().as_uri())
    browser.wait_for("document.body && document.body.dataset.ready === '1'")


@pytest.mark.skipif(chromium_binary() is None, reason="needs Chromium (apt-get install chromium)")
def test_report_in_headless_chromium(tmp_path):
    page = write_report([make_run(tmp_path / "run")], tmp_path / "report.html")
    browser = Browser(tmp_path / "profile", ["--window-size=1280,900"])
    try:
        open_report(browser, page)
        # curves: one inline SVG per metric, drawn with real size
        assert browser.js("document.querySelectorAll('figure.plot > svg').length") == len(DRAWN)
        width = "document.querySelector('[data-metric=\"reward/total\"] svg').getBoundingClientRect().width"
        assert browser.js(width) > 200
        # the sample browser opens on the latest step; ◀ goes back one step
        cards = "[...document.querySelectorAll('#sample-list article.sample')]"
        assert browser.js("document.getElementById('sample-list').dataset.step") == str(STEPS)
        assert browser.js(f"{cards}.length") == 2
        browser.js("document.getElementById('prev-step').click(); document.getElementById('prev-step').click()")
        assert browser.js("document.getElementById('step-select').value") == "4"
        assert browser.js(f"{cards}[0].querySelector('.question').textContent").startswith("Q: What is 4 + 8?")
        assert browser.js(f"{cards}[0].querySelector('.reflect').textContent") == "Wait"
        assert browser.js(f"{cards}[0].querySelector('.answer').textContent") == "12"
        assert browser.js(f"{cards}[0].querySelector('.badge.aha') !== null") is True
        assert browser.js(f"{cards}[0].querySelectorAll('table.breakdown tbody tr').length") == 5  # 3 + total + adv
        browser.js("const a = document.getElementById('aha-only'); a.click()")
        assert browser.js(f"{cards}.length") == 1
        browser.js("document.getElementById('aha-only').click()")
        # the step select jumps; a completion's markup shows as text and never runs
        browser.js("const s = document.getElementById('step-select'); s.value = '2';"
                   "s.dispatchEvent(new Event('change'))")
        assert browser.js("document.getElementById('sample-list').dataset.step") == "2"
        assert HOSTILE in browser.js(f"{cards}[1].querySelector('.completion').textContent")
        assert browser.js("window.__pwned === undefined") is True
        assert browser.js("document.querySelectorAll('#aha-list article.sample.aha').length") == 2
        assert browser.js("document.documentElement.scrollWidth <= window.innerWidth") is True
        browser.screenshot(tmp_path / "report.png")
        # nothing but the page itself was requested
        assert browser.requests() == [page.resolve().as_uri()]
    finally:
        browser.close()
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(chromium_binary() is None, reason="needs Chromium (apt-get install chromium)")
def test_report_of_a_real_tiny_grpo_run_in_headless_chromium(tiny_model_dir, tmp_path):
    """The same page for a run the trainer really wrote (2 GRPO steps of a tiny model, held-out evals)."""
    from r1lab.config import load_config
    from r1lab.rl.trainer import train_zero

    cfg = load_config(ZeroConfig, None, [
        f"model.name={tiny_model_dir}", f"run.output_dir={tmp_path / 'run'}", "task.train_size=32", "task.test_size=4",
        "prompt.example=false", "prompt.system=''", "grpo.steps=2", "grpo.prompts_per_step=2", "grpo.group_size=2",
        "grpo.max_new_tokens=8", "run.eval_every=1", "run.eval_size=4", "run.samples_per_step=2", "engine=native"])
    run = train_zero(cfg, progress=False)
    page = write_report([run.root], tmp_path / "report.html")
    logged = {k for m in run.read_metrics() for k, v in m.items() if isinstance(v, float)}
    browser = Browser(tmp_path / "profile", ["--window-size=1280,900"])
    try:
        open_report(browser, page)
        drawn = browser.js("[...document.querySelectorAll('figure.plot')].map(f => f.dataset.metric)")
        assert {"reward/total", "eval/accuracy", "completion/length_mean", "completion/length_p90",
                "aha/reflection_rate", "time/split"} <= set(drawn) <= logged | {"time/split"}
        assert browser.js("document.getElementById('sample-list').dataset.step") == "2"
        assert browser.js("document.querySelectorAll('#sample-list article.sample').length") == 2
        assert browser.requests() == [page.resolve().as_uri()]
    finally:
        browser.close()


def take_screenshot(run_dirs: list[Path], path: Path, workdir: Path) -> None:
    """docs/report.png: the top of the curves, then the sample browser (two clips of the page, stacked)."""
    from PIL import Image

    page = write_report(run_dirs, workdir / "report.html")
    browser = Browser(workdir / "profile", ["--window-size=1280,900"])
    shots = []
    try:
        open_report(browser, page)
        for section, height in (("curves", 1010), ("samples", 520)):
            top = browser.js(f"document.getElementById('{section}').getBoundingClientRect().top + window.scrollY")
            shot = workdir / f"{section}.png"
            browser.screenshot(shot, captureBeyondViewport=True,
                               clip={"x": 0, "y": top - 4, "width": 1265, "height": height, "scale": 1})
            shots.append(Image.open(shot))
    finally:
        browser.close()
    out = Image.new("RGB", (max(s.width for s in shots), sum(s.height for s in shots)), "white")
    top = 0
    for shot in shots:
        out.paste(shot, (0, top))
        top += shot.height
    out.save(path, optimize=True)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        real = Path(__file__).parents[1] / "runs" / "zero_smollm2"
        runs = [real] if (real / "metrics.jsonl").is_file() else [make_run(Path(tmp) / "synthetic")]
        take_screenshot(runs, Path(__file__).parents[1] / "docs" / "report.png", Path(tmp))


def test_rewards_per_function_table_shows_mean_std_and_failures(tmp_path):
    run = RunDir(tmp_path / "r")
    for step, (mean, std, failed) in enumerate([(0.2, 0.1, 1.0), (0.5, 0.25, 2.0)], 1):
        run.log_metrics(step, {"reward/total": mean, "reward/total_std": std, "reward/my_rewards.fn": mean,
                               "reward/my_rewards.fn_std": std, "reward/my_rewards.fn_failures": failed})
    html = render_report([load_run(tmp_path / "r")])
    assert "<td><code>reward/my_rewards.fn</code></td><td>0.5</td><td>0.25</td><td>3</td>" in html
    assert "<code>reward/total</code>" not in html.split("Rewards per function")[1].split("</table>")[0]
