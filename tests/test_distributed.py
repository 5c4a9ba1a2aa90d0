"""Rank-count invariance on CPU (gloo): GRPO on 2 ranks gives the 1-rank run's samples, metrics and weights.

Run as a script, this file is the worker torchrun starts on each rank: it registers the test reward
below and runs the `r1lab` command line (what `python -m r1lab zero ...` runs), so the launched path is
the real one. `R1LAB_TEST_DIE_AT=N` makes rank 1 kill itself (SIGKILL) as step N starts;
`R1LAB_TEST_RECORDS=DIR` makes each rank log the stage records of a staged recipe (pipeline, distill) it holds.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from r1lab.config import load_config
from r1lab.resources import DATA, RECIPES
from r1lab.rewards import register_reward
from r1lab.rl.config import ZeroConfig

HERE = Path(__file__).resolve()
LAUNCH_TIMEOUT_S = 240  # a hung collective fails the test instead of hanging CI


@register_reward("test_dist_char_mean")
def char_mean(completion: str, **row) -> float:
    """Mean code point of the generated text: samples of a group almost never tie. Rows named in
    R1LAB_TEST_FLAT score 0 whatever they say, so their whole group is uniform (no gradient signal)."""
    if row.get("id") in os.environ.get("R1LAB_TEST_FLAT", "").split(","):
        return 0.0
    generated = completion.removeprefix("<think>")
    return sum(map(ord, generated)) / max(len(generated), 1) / 128


SETTINGS = [
    "task.train_size=64", "task.test_size=8", "task.kwargs={min_terms: 2, max_terms: 2, min_digits: 1, max_digits: 1}",
    "prompt.example=false", "prompt.system=''", "engine=native",  # native: every sample has its own seed
    "grpo.steps=3", "grpo.prompts_per_step=4", "grpo.group_size=4", "grpo.micro_batch_size=4",
    "grpo.max_new_tokens=8", "grpo.lr=1e-3", "grpo.mu=2", "grpo.beta=0.05",
    "rewards={test_dist_char_mean: 1.0, format_partial: 0.5}",
    "run.eval_every=2", "run.eval_size=5", "run.checkpoint_every=2", "run.samples_per_step=6", "run.plot_every=0",
]


def overrides(model_dir, out) -> list[str]:
    return [f"model.name={model_dir}", f"run.output_dir={out}", *SETTINGS]


def launch(model_dir, out, *flags: str, die_at: int = 0, flat: str = "") -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 <this file> zero ...`, killed as a group if it outlives the timeout."""
    sets = [arg for item in overrides(model_dir, out) for arg in ("--set", item)]
    return torchrun(["zero", *flags, *sets], die_at=die_at, flat=flat)


def torchrun(args: list[str], die_at: int = 0, flat: str = "",
             records: Path | None = None) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 <this file> ARGS` (an r1lab command line) with a hard timeout. With `records`,
    each rank appends every stage record it holds to records/rank<N>.jsonl (see `_worker`)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
           str(HERE), *args]
    env = {**os.environ, "R1LAB_TEST_DIE_AT": str(die_at), "R1LAB_TEST_FLAT": flat, "OMP_NUM_THREADS": "1",
           "R1LAB_TEST_RECORDS": str(records or "")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks: the session this test started
        output, _ = proc.communicate()
        pytest.fail(f"2-rank run did not finish in {LAUNCH_TIMEOUT_S} s:\n{output[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, output)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def weights(run_dir: Path, step: int | None = None) -> dict[str, torch.Tensor]:
    name = f"step-{step:06d}" if step else (run_dir / "checkpoints" / "latest").read_text().strip()
    return load_file(run_dir / "checkpoints" / name / "model.safetensors")


def assert_same_run(got: Path, want: Path, until: int = 10**9) -> None:
    """Same samples (text exactly) and metrics up to step `until`, same weights at its last checkpoint,
    up to float summation order (ranks add gradients and metrics in another order)."""
    samples = [s for s in read_jsonl(got / "samples.jsonl") if s["step"] <= until]
    expected = [s for s in read_jsonl(want / "samples.jsonl") if s["step"] <= until]
    assert [(s["step"], s["id"], s["completion"]) for s in samples] == \
           [(s["step"], s["id"], s["completion"]) for s in expected]
    for s, e in zip(samples, expected):
        assert s["reward"] == pytest.approx(e["reward"], abs=1e-6)
        assert s["advantage"] == pytest.approx(e["advantage"], abs=1e-5)
    metrics = [m for m in read_jsonl(got / "metrics.jsonl") if m["step"] <= until]
    expected = [m for m in read_jsonl(want / "metrics.jsonl") if m["step"] <= until]
    assert [m["step"] for m in metrics] == [m["step"] for m in expected]
    for m, e in zip(metrics, expected):
        keys = {k for k in e if not k.startswith("time/") and k != "tokens_per_s"}
        assert keys <= set(m)
        assert {k: m[k] for k in keys} == pytest.approx({k: e[k] for k in keys}, rel=1e-5, abs=1e-6), m["step"]
    step = metrics[-1]["step"]
    a, b = weights(got, step), weights(want, step)
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-5, f"step {step}: weights differ by {worst}"


@pytest.fixture(scope="module")
def one_rank(tiny_model_dir, tmp_path_factory):
    """The reference: one process, same global batch and seed, 3 steps. Returns (run dir, flat row ids)."""
    from r1lab.data import load_task
    from r1lab.rl.trainer import prompt_indices, train_zero

    out = tmp_path_factory.mktemp("one-rank") / "run"
    cfg = load_config(ZeroConfig, None, overrides(tiny_model_dir, out))
    rows = load_task(cfg.task).train
    picks = prompt_indices(len(rows), cfg.grpo.seed, 0, cfg.grpo.prompts_per_step)
    # step 1: the prompts rank 1 of 2 samples (positions 1 and 3) get a flat reward, so that rank has
    # no counted sample while rank 0 does: it must still join every collective
    flat = ",".join(rows[picks[j]]["id"] for j in (1, 3))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("R1LAB_TEST_FLAT", flat)
        torch.set_num_threads(1)
        train_zero(cfg, progress=False)
    metrics = read_jsonl(out / "metrics.jsonl")
    assert metrics[1]["groups/uniform_fraction"] == 0.5  # the two flat groups, and only them
    return out, flat


@pytest.fixture(scope="module")
def killed_two_ranks(one_rank, tiny_model_dir, tmp_path_factory):
    """2 ranks (DDP) that checkpoint at step 2 and die as step 3 starts (rank 1: SIGKILL)."""
    out = tmp_path_factory.mktemp("two-ranks") / "run"
    killed = launch(tiny_model_dir, out, die_at=3, flat=one_rank[1])
    assert killed.returncode != 0
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-000002", killed.stdout[-4000:]
    return out


def test_two_ranks_match_one_rank(one_rank, killed_two_ranks):
    """2 GRPO steps on 2 ranks: same completions, rewards, loss and metrics, same weights (<= 1e-5)."""
    assert_same_run(killed_two_ranks, one_rank[0], until=2)


def test_two_ranks_killed_after_a_checkpoint_resume_exactly(one_rank, killed_two_ranks, tiny_model_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(killed_two_ranks, copy)  # for the world-size change below
    resumed = launch(tiny_model_dir, killed_two_ranks, "--resume", flat=one_rank[1])
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    assert_same_run(killed_two_ranks, one_rank[0])  # the uninterrupted run (equal on 1 and 2 ranks, above)

    # DDP state is replicated, so the 2-rank checkpoint resumes on one process too
    from r1lab.rl.trainer import train_zero

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("R1LAB_TEST_FLAT", one_rank[1])
        train_zero(load_config(ZeroConfig, None, overrides(tiny_model_dir, copy)), resume=True, progress=False)
    assert_same_run(copy, one_rank[0])


def killed_fsdp_run(one_rank, tiny_model_dir, out: Path) -> None:
    killed = launch(tiny_model_dir, out, "--fsdp", die_at=3, flat=one_rank[1])
    assert killed.returncode != 0
    assert (out / "checkpoints" / "step-000002" / "optimizer" / ".metadata").is_file(), killed.stdout[-4000:]


def test_fsdp_two_ranks_match_one_rank_and_resume_on_one(one_rank, tiny_model_dir, tmp_path):
    """FSDP2: 2 steps on 2 ranks match 1 rank; the checkpoint holds full safetensors weights and each rank's
    optimizer shard, which torch.distributed.checkpoint reshards to resume on one process."""
    out = tmp_path / "run"
    killed_fsdp_run(one_rank, tiny_model_dir, out)
    assert_same_run(out, one_rank[0], until=2)
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "checkpoints" / "step-000002")  # plain transformers
    from r1lab.rl.trainer import train_zero

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("R1LAB_TEST_FLAT", one_rank[1])
        cfg = load_config(ZeroConfig, None, [*overrides(tiny_model_dir, out), "fsdp=true"])  # 1 process: no-op
        train_zero(cfg, resume=True, progress=False)
    assert_same_run(out, one_rank[0])


@pytest.mark.slow  # two more launches (~20 s); the same-size resume path of FSDP's sharded optimizer
def test_fsdp_two_ranks_killed_and_resumed_on_two_match_one_rank(one_rank, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    killed_fsdp_run(one_rank, tiny_model_dir, out)
    resumed = launch(tiny_model_dir, out, "--fsdp", "--resume", flat=one_rank[1])
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    assert_same_run(out, one_rank[0])


def test_sft_two_ranks_match_one_rank(tiny_model_dir, tmp_path):
    """2 SFT steps on 2 ranks (each takes every other sample of the step, gradients summed across ranks)
    give the 1-process run's losses and weights."""
    from r1lab.sft.config import SFTConfig
    from r1lab.sft.trainer import train_sft

    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {i} + {i}?", "completion": f"<think> {i} + {i} = {2 * i}. "
                                        f"</think> <answer>{2 * i}</answer>"}) + "\n" for i in range(12)))
    sets = [f"model.name={tiny_model_dir}", f"data.path={data}", "train.steps=2", "train.batch_size=5",
            "train.lr=1e-3", "train.max_seq_len=128", "train.micro_batch_tokens=128", "run.plot_every=0",
            "prompt.example=false", "prompt.system=''"]
    one, two = tmp_path / "one", tmp_path / "two"
    torch.set_num_threads(1)
    train_sft(load_config(SFTConfig, None, [*sets, f"run.output_dir={one}"]), progress=False)
    launched = torchrun(["sft", *[a for item in [*sets, f"run.output_dir={two}"] for a in ("--set", item)]])
    assert launched.returncode == 0, launched.stdout[-4000:]
    got, want = read_jsonl(two / "metrics.jsonl"), read_jsonl(one / "metrics.jsonl")
    assert [m["step"] for m in got] == [1, 2]
    for g, w in zip(got, want):
        for key in ("loss", "target_tokens", "tokens", "grad_norm", "lr"):
            assert g[key] == pytest.approx(w[key], rel=1e-5), key
    a, b = weights(two), weights(one)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5


def test_more_ranks_than_prompts_is_a_clear_error(tiny_model_dir, tmp_path, monkeypatch):
    from r1lab import dist
    from r1lab.rl.trainer import train_zero

    monkeypatch.setattr(dist, "world_size", lambda: 8)
    cfg = load_config(ZeroConfig, None, overrides(tiny_model_dir, tmp_path / "run"))
    with pytest.raises(ValueError, match="prompts_per_step=4 must be at least the number of ranks"):
        train_zero(cfg, progress=False)


def test_vllm_without_a_gpu_is_a_clear_error(monkeypatch):
    from r1lab.rollout.factory import make_engine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="engine=vllm needs a CUDA GPU"):
        make_engine("vllm", None, None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(ValueError, match=r"pip install 'r1lab\[vllm\]'"):
        make_engine("vllm", None, None)


# ---------------------------------------------------------------- staged recipes (r1lab pipeline, r1lab distill)
R1_STAGES = ["0_base", "1_cold_start", "2_reasoning_rl", "3_rejection", "4_sft", "5_final_rl"]
TIMINGS = ("seconds", "train_seconds")  # wall time each rank measured itself: informational only


def r1_settings(model_dir, out: Path) -> list[str]:
    """recipes/r1_tiny.yaml as it is (~15 s on one process), on the session's tiny model. Its engine is already
    `native`, which gives every sample its own seed: held-out evaluation and rejection sampling (rank 0 only)
    and GRPO sampling (each rank its own prompts) give the same tokens whatever the rank count."""
    return [f"model={model_dir}", f"output_dir={out}", f"task.path={DATA / 'tiny/sevens.jsonl'}",
            f"cold_start.data={DATA / 'tiny/sevens_cold_start.jsonl'}", "threads=1"]


def staged_on_two_ranks(command: list[str], sets: list[str], records: Path) -> None:
    records.mkdir(parents=True, exist_ok=True)
    launched = torchrun([*command, *[a for item in sets for a in ("--set", item)]], records=records)
    assert launched.returncode == 0, launched.stdout[-4000:]
    assert_ranks_agree(records)


def assert_ranks_agree(records: Path) -> None:
    """Every rank went on from every stage with rank 0's record (the model it trained or evaluated, the data
    it sampled, the evaluation, the distillation's time budget), up to the wall times each rank measured."""
    def strip(rows):
        return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]

    rank0, rank1 = (read_jsonl(records / f"rank{r}.jsonl") for r in (0, 1))
    assert rank0 and strip(rank1) == strip(rank0)


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def max_weight_diff(got: Path, want: Path) -> float:
    a, b = weights(got), weights(want)
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


SAME_INPUT_STAGES = ("0_base", "1_cold_start")


def stage_evals(root: Path) -> dict[str, dict | None]:
    return {s["stage"]: s.get("eval") for s in json.loads((root / "summary.json").read_text())["stages"]}


@pytest.fixture(scope="module")
def r1_one_rank(tiny_model_dir, tmp_path_factory):
    """The reference: recipes/r1_tiny.yaml on one process, in this one."""
    from r1lab.pipeline.config import R1Config
    from r1lab.pipeline.r1 import run_r1

    out = tmp_path_factory.mktemp("r1-one-rank") / "r1"
    run_r1(load_config(R1Config, RECIPES / "r1_tiny.yaml", r1_settings(tiny_model_dir, out)),
           progress=False, log=lambda _: None)
    return out


def test_r1_pipeline_on_two_ranks_runs_every_stage_and_only_rank0_writes(r1_one_rank, tiny_model_dir, tmp_path):
    """`r1lab pipeline recipes/r1_tiny.yaml` on 2 ranks: every stage finishes, the run directory holds exactly
    the 1-rank run's files with the same number of log lines (no rank-1 duplicates), the cold start (same
    inputs on 1 and 2 ranks) gives the same weights, and it and the base the same held-out accuracy.

    Later stages' weights are not compared here: each stage starts from the previous one's model, and the
    ~4e-6 that summation order leaves after the cold start grows through Adam (whose normalised update turns
    a tiny change of a near-zero gradient into one of up to lr) and through temperature sampling in the
    rejection stage (one flipped token changes the SFT set): stages 2, 4 and 5 end up 3e-5 to 4e-4 apart, and
    their held-out accuracy on 4 prompts may differ by one answer (CI once saw 4_sft at 1.0 vs 0.75).
    With identical inputs each training stage is rank-count invariant: see the next test."""
    out = tmp_path / "r1"
    staged_on_two_ranks(["pipeline", str(RECIPES / "r1_tiny.yaml")], r1_settings(tiny_model_dir, out),
                        tmp_path / "records")
    for name in R1_STAGES:
        assert (out / name / "stage.json").is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == R1_STAGES and (out / "summary.md").is_file()

    assert files(out) == files(r1_one_rank)  # one config.yaml, one of each log, no leftovers of a second writer
    for path in out.rglob("*.jsonl"):
        got, want = read_jsonl(path), read_jsonl(r1_one_rank / path.relative_to(out))  # every line parses
        if path.relative_to(out) == Path("3_rejection", "sft_data.jsonl"):  # what passed depends on the samples
            assert len(got) == summary["rejection"]["kept"] > 0
            continue
        assert len(got) == len(want), path  # lengths fixed by the config: a second writer would add lines
        if path.name == "metrics.jsonl":
            assert [m["step"] for m in got] == [m["step"] for m in want], path
        if path.name == "traces.jsonl":
            assert [(t["id"], t["sample_index"]) for t in got] == [(t["id"], t["sample_index"]) for t in want]
    assert yaml.safe_load((out / "config.yaml").read_text())["model"] == tiny_model_dir

    assert max_weight_diff(out / "1_cold_start" / "run", r1_one_rank / "1_cold_start" / "run") <= 1e-5
    # greedy answers of a model that learnt the task (0 before the cold start, 1 after) outlast that drift
    accuracy = {name: ev and ev["accuracy"] for name, ev in stage_evals(out).items()}
    reference = {name: ev and ev["accuracy"] for name, ev in stage_evals(r1_one_rank).items()}
    assert [accuracy[s] for s in SAME_INPUT_STAGES] == [reference[s] for s in SAME_INPUT_STAGES]
    assert accuracy["1_cold_start"] == 1.0  # not a vacuous comparison: the cold start learns the task
    # later stages train on drifted inputs (see above): each still evaluates where the 1-rank run does
    assert [name for name, a in accuracy.items() if a is None] == [name for name, a in reference.items() if a is None]
    assert all(0.0 <= a <= 1.0 for a in accuracy.values() if a is not None)


def test_r1_pipeline_rl_stages_on_two_ranks_match_one_rank(r1_one_rank, tiny_model_dir, tmp_path):
    """The 1-rank run with its GRPO stages (2 and 5) deleted, resumed on 2 ranks: both ranks skip the finished
    stages, and stages 2 and 5, from the same inputs as on one rank (the models of stages 1 and 4), give the
    same weights (<= 1e-5) and the same held-out evaluation. (The SFT stages' counterpart is the cold start of
    the previous test; stage 4 is not redone here: its 60 steps at lr 3e-3 constant over ~30 samples let Adam
    grow the 1e-7 of summation order to ~1e-4 by the end, on 1 vs 2 ranks as on any two summation orders.)"""
    out = tmp_path / "r1"
    shutil.copytree(r1_one_rank, out)
    for name in ("2_reasoning_rl", "5_final_rl"):
        shutil.rmtree(out / name)
    (out / "summary.json").unlink()
    staged_on_two_ranks(["pipeline", str(RECIPES / "r1_tiny.yaml")], r1_settings(tiny_model_dir, out),
                        tmp_path / "records")
    assert files(out) == files(r1_one_rank)
    for name in ("2_reasoning_rl", "5_final_rl"):
        assert max_weight_diff(out / name / "run", r1_one_rank / name / "run") <= 1e-5, name
    assert stage_evals(out) == stage_evals(r1_one_rank)


def test_distill_on_two_ranks_matches_one_rank(tiny_model_dir, tmp_path):
    """`r1lab distill` with its same-wall-time GRPO baseline on 2 ranks: rank 0 samples the traces, both ranks
    train the student, and the summary matches one rank's, except the baseline, which by design depends on
    wall time (its step count, so its model); it must still run and stop on one step for all ranks."""
    from r1lab.pipeline.config import DistillConfig
    from r1lab.pipeline.distill import run_distill

    def settings(out: Path) -> list[str]:
        return [
            f"teacher.model={tiny_model_dir}", f"student={tiny_model_dir}", f"output_dir={out}", "engine=native",
            "task.source=jsonl", f"task.path={DATA / 'tiny/sevens.jsonl'}", "task.test_size=8",
            "task.verifier=numeric", "prompt.example=false", "prompt.system=", "eval.size=8",
            "eval.max_new_tokens=24", "threads=1", "traces.limit=6", "traces.n=2", "traces.max_new_tokens=24",
            # a random teacher is never right: keep everything to exercise the plumbing
            "traces.rejection.require_correct=false", "traces.rejection.require_closed_think=false",
            "traces.rejection.min_language_share=0", "traces.rejection.max_repeated_ngram_share=1.0",
            "traces.rejection.drop_truncated=false", "traces.rejection.dedupe=false",
            "sft.steps=3", "sft.batch_size=4", "sft.lr=1e-3", "compare_with_rl=true",
            "compare_rl.grpo.steps=1000", "compare_rl.grpo.prompts_per_step=2", "compare_rl.grpo.group_size=2",
            "compare_rl.grpo.max_new_tokens=24"]

    one, two = tmp_path / "one", tmp_path / "two"
    want = run_distill(load_config(DistillConfig, None, settings(one)), progress=False, log=lambda _: None)
    staged_on_two_ranks(["distill"], settings(two), tmp_path / "records")
    got = json.loads((two / "summary.json").read_text())
    assert [s["stage"] for s in got["stages"]] == [s["stage"] for s in want["stages"]]
    assert [s.get("eval") for s in got["stages"][:3]] == [s.get("eval") for s in want["stages"][:3]]
    assert {k: v for k, v in got["rejection"].items() if not k.endswith("_file")} == \
           {k: v for k, v in want["rejection"].items() if not k.endswith("_file")}
    assert (two / "2_traces" / "sft_data.jsonl").read_text() == (one / "2_traces" / "sft_data.jsonl").read_text()
    assert max_weight_diff(two / "3_sft" / "run", one / "3_sft" / "run") <= 1e-5
    assert [f for f in files(two) if not f.startswith("4_rl/")] == [f for f in files(one) if not f.startswith("4_rl/")]
    steps = [m["step"] for m in read_jsonl(two / "4_rl" / "run" / "metrics.jsonl")]
    assert steps == list(range(1, len(steps) + 1)) and 1 <= len(steps) < 1000  # stopped by the wall-time budget


def _worker() -> None:
    """One rank of `launch`: the real command line, plus an optional self-kill as a step starts."""
    die_at = int(os.environ.get("R1LAB_TEST_DIE_AT") or 0)
    if die_at:
        from r1lab import dist
        from r1lab.rl import trainer

        real_step = trainer.GRPOTrainer.train_step

        def train_step(self):
            if self.step + 1 == die_at and dist.rank() == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_step(self)

        trainer.GRPOTrainer.train_step = train_step
    records = os.environ.get("R1LAB_TEST_RECORDS")
    if records:  # what each rank goes on with after a stage (model paths, data, evals): all ranks must agree
        from r1lab import dist
        from r1lab.pipeline.stages import Stages

        real_run = Stages.run

        def run(self, name, body):
            record = real_run(self, name, body)
            with open(Path(records) / f"rank{dist.rank()}.jsonl", "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
            return record

        Stages.run = run
    from r1lab.cli import app

    app(sys.argv[1:])


if __name__ == "__main__":
    _worker()


def _rank0_failure_worker(rank: int, init_file: str, results: str) -> None:
    import torch.distributed as torch_dist

    from r1lab import dist

    torch_dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        assert dist.on_rank0(lambda: f"made by rank {dist.rank()}") == "made by rank 0"

        def fails():
            raise ValueError("no such file: data.jsonl")

        try:
            dist.on_rank0(fails)
            outcome = "returned"
        except Exception as err:  # noqa: BLE001 - the type is what the test checks
            outcome = f"{type(err).__name__}: {err}"
        Path(results, f"rank{rank}").write_text(outcome)
    finally:
        torch_dist.destroy_process_group()


def test_a_failure_in_rank0_work_reaches_every_rank_instead_of_hanging(tmp_path):
    """on_rank0: rank 0 re-raises its own error, the other ranks raise Rank0Error naming it (a failure
    before the broadcast used to leave them waiting in the collective forever)."""
    import torch.multiprocessing as mp

    context = mp.start_processes(_rank0_failure_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2,
                                 join=False, start_method="spawn")
    deadline = time.monotonic() + 120
    while not context.join(timeout=5):
        assert time.monotonic() < deadline, "ranks hung"
    assert (tmp_path / "rank0").read_text() == "ValueError: no such file: data.jsonl"
    assert (tmp_path / "rank1").read_text() == "Rank0Error: rank 0 failed: ValueError: no such file: data.jsonl"


def _precision_worker(rank: int, init_file: str, results: str) -> None:
    import torch.distributed as torch_dist

    from r1lab import precision

    torch_dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        precision._measured_speedup = 4.0 if rank == 0 else 0.02  # two ranks that measured differently
        precision.agree_across_ranks()
        Path(results, f"rank{rank}").write_text(str(precision.use_bf16_autocast("auto")))
    finally:
        torch_dist.destroy_process_group()


def test_auto_precision_is_rank0s_decision_on_every_rank(tmp_path):
    import torch.multiprocessing as mp

    mp.start_processes(_precision_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, start_method="spawn")
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["True", "True"]
