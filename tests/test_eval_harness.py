import json

import pytest

from r1lab.data.prompts import R1_MATH_SUFFIX
from r1lab.eval.harness import EvalConfig, run_eval, sample_seed
from r1lab.eval.records import EvalError
from r1lab.rollout import Completion
from r1lab.rollout.hf import HFEngine

GOLD = {"q0": "4", "q1": "7", "q2": "10"}
CORRECT_SAMPLES = {"q0": 0, "q1": 2, "q2": 4}  # of k = 4: samples j < c answer right


@pytest.fixture
def bench(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps({"id": q, "prompt": f"question {q}", "answer": a}) + "\n" for q, a in GOLD.items()))
    return str(path)


class ScriptedEngine:
    """Answers by seed: sample j of question q is right iff j < CORRECT_SAMPLES[q]; wrong answers all differ."""

    def __init__(self, tokenizer, k=4, seed=0, fail_after_calls=None):
        self.tokenizer, self.fail_after_calls = tokenizer, fail_after_calls
        self.by_seed = {sample_seed(seed, q, j): (q, j) for q in GOLD for j in range(k)}
        self.prompts, self.calls = [], 0

    def generate(self, prompts, params, seeds=None):
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise KeyboardInterrupt  # the user pressed Ctrl-C mid-run
        self.calls += 1
        out = []
        for ids, seed in zip(prompts, seeds):
            self.prompts.append(self.tokenizer.decode(ids))
            q, j = self.by_seed[seed]
            answer = GOLD[q] if j < CORRECT_SAMPLES[q] else str(100 + j)
            tokens = self.tokenizer(f"think</think> \\boxed{{{answer}}}", add_special_tokens=False)["input_ids"]
            out.append(Completion(list(ids), tokens, self.tokenizer.decode(tokens), "stop" if q != "q2" else "length"))
        return out


def _cfg(bench, out, **kw):
    return EvalConfig(**{"model": "scripted", "benchmark": "jsonl", "data": bench, "k": 4, "batch_size": 5,
                         "output_dir": str(out), "max_new_tokens": 64, **kw})


def _samples(out):
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def test_summary_matches_hand_computed_metrics(bench, tmp_path, tokenizer):
    summary = run_eval(_cfg(bench, tmp_path / "run"), ScriptedEngine(tokenizer), tokenizer)
    assert summary["questions"] == 3 and summary["samples"] == 12 and summary["complete"]
    assert summary["pass@1"] == pytest.approx((0 + 2 / 4 + 4 / 4) / 3)
    # pass@2 for c = 0, 2, 4 of n = 4: 0, 1 - C(2,2)/C(4,2) = 5/6, 1
    assert summary["pass@k"]["2"] == pytest.approx((0 + 5 / 6 + 1) / 3)
    assert summary["pass@k"]["4"] == pytest.approx(2 / 3)
    # votes: q0 has four different wrong answers (tie -> first, wrong); q1 7,7,102,103 -> right; q2 right
    assert summary["cons@k"] == pytest.approx(2 / 3)
    assert summary["truncation_rate"] == pytest.approx(4 / 12)
    assert summary["answer_rate"] == 1.0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["pass@1"] == summary["pass@1"]


def test_every_sample_is_logged_with_its_answer_and_verdict(bench, tmp_path, tokenizer):
    run_eval(_cfg(bench, tmp_path / "run"), ScriptedEngine(tokenizer), tokenizer)
    records = {(r["question_id"], r["sample_index"]): r for r in _samples(tmp_path / "run")}
    assert len(records) == 12
    assert records[("q1", 1)]["answer"] == "7" and records[("q1", 1)]["correct"] is True
    assert records[("q1", 2)]["answer"] == "102" and records[("q1", 2)]["correct"] is False
    assert records[("q1", 0)]["completion"].startswith("<think>\n")  # the forced prefill is part of the reply


def test_r1_prompt_has_no_system_turn_asks_for_a_box_and_opens_the_think_block(bench, tmp_path, tokenizer):
    engine = ScriptedEngine(tokenizer)
    run_eval(_cfg(bench, tmp_path / "run", k=1), engine, tokenizer)
    prompt = engine.prompts[0]
    assert "system" not in prompt
    assert f"question q0\n{R1_MATH_SUFFIX}" in prompt
    assert prompt.endswith("<think>\n")


def test_an_interrupted_eval_resumes_where_it_stopped(bench, tmp_path, tokenizer):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_eval(_cfg(bench, out), ScriptedEngine(tokenizer, fail_after_calls=1), tokenizer)
    assert len(_samples(out)) == 5  # the first batch was flushed before the interrupt
    engine = ScriptedEngine(tokenizer)
    summary = run_eval(_cfg(bench, out), engine, tokenizer)
    assert len(engine.prompts) == 7  # only the missing samples were generated
    assert summary["samples"] == 12
    assert sorted((r["question_id"], r["sample_index"]) for r in _samples(out)) == [
        (q, j) for q in sorted(GOLD) for j in range(4)]


def test_a_finished_eval_reruns_without_sampling(bench, tmp_path, tokenizer):
    first = run_eval(_cfg(bench, tmp_path / "run"), ScriptedEngine(tokenizer), tokenizer)
    engine = ScriptedEngine(tokenizer)
    again = run_eval(_cfg(bench, tmp_path / "run"), engine, tokenizer)
    assert engine.calls == 0
    assert again["pass@1"] == first["pass@1"]


def test_raising_k_reuses_the_samples_already_written(bench, tmp_path, tokenizer):
    run_eval(_cfg(bench, tmp_path / "run", k=2), ScriptedEngine(tokenizer), tokenizer)
    engine = ScriptedEngine(tokenizer)
    summary = run_eval(_cfg(bench, tmp_path / "run", k=4), engine, tokenizer)
    assert len(engine.prompts) == 3 * 2
    assert summary["samples"] == 12


def test_resuming_with_another_sampling_setup_is_refused(bench, tmp_path, tokenizer):
    run_eval(_cfg(bench, tmp_path / "run", k=1), ScriptedEngine(tokenizer), tokenizer)
    with pytest.raises(EvalError, match=r"temperature: 0.6 -> 1.0"):
        run_eval(_cfg(bench, tmp_path / "run", k=1, temperature=1.0), ScriptedEngine(tokenizer), tokenizer)


def test_stop_strings_reach_the_engine_kept_and_define_the_setup(bench, tmp_path, tokenizer):
    engine = ScriptedEngine(tokenizer)
    seen = []
    generate = engine.generate
    engine.generate = lambda prompts, params, seeds=None: seen.append(params) or generate(prompts, params, seeds)
    run_eval(_cfg(bench, tmp_path / "run", k=1, stop=["</answer>"]), engine, tokenizer)
    assert seen[0].stop == ["</answer>"] and seen[0].include_stop
    with pytest.raises(EvalError, match=r"stop: \['</answer>'\] -> \[\]"):
        run_eval(_cfg(bench, tmp_path / "run", k=1), ScriptedEngine(tokenizer), tokenizer)


def test_a_log_from_before_stop_strings_resumes_without_them(bench, tmp_path, tokenizer):
    run_eval(_cfg(bench, tmp_path / "run", k=1), ScriptedEngine(tokenizer), tokenizer)
    config = tmp_path / "run" / "eval_config.json"
    config.write_text(json.dumps({k: v for k, v in json.loads(config.read_text()).items() if k != "stop"}))
    assert run_eval(_cfg(bench, tmp_path / "run", k=2), ScriptedEngine(tokenizer), tokenizer)["samples"] == 6


def test_seeds_depend_on_question_and_sample_only(bench, tmp_path, tokenizer):
    run_eval(_cfg(bench, tmp_path / "a", batch_size=5), ScriptedEngine(tokenizer), tokenizer)
    run_eval(_cfg(bench, tmp_path / "b", batch_size=2), ScriptedEngine(tokenizer), tokenizer)
    seeds = lambda out: {(r["question_id"], r["sample_index"]): r["seed"] for r in _samples(out)}
    assert seeds(tmp_path / "a") == seeds(tmp_path / "b")
    assert len(set(seeds(tmp_path / "a").values())) == 12


def test_a_benchmark_whose_verifier_is_missing_fails_before_sampling(bench, tmp_path, tokenizer):
    engine = ScriptedEngine(tokenizer)
    with pytest.raises(EvalError, match="verifier 'no_such_verifier'"):
        run_eval(_cfg(bench, tmp_path / "run", verifier="no_such_verifier"), engine, tokenizer)
    assert engine.calls == 0


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="k must be >= 1"):
        EvalConfig(model="m", k=0)
    with pytest.raises(ValueError, match="prompt_style"):
        EvalConfig(model="m", prompt_style="fancy")


def test_hf_engine_end_to_end_is_reproducible(bench, tmp_path, model, tokenizer):
    engine = HFEngine(model, tokenizer, max_batch_size=4)
    runs = []
    for name in ("a", "b"):
        run_eval(_cfg(bench, tmp_path / name, k=2, max_new_tokens=4, batch_size=4), engine, tokenizer)
        runs.append({(r["question_id"], r["sample_index"]): r["completion"] for r in _samples(tmp_path / name)})
    assert runs[0] == runs[1]
    assert all(1 <= len(r["completion"]) - len("<think>\n") <= 4 for r in _samples(tmp_path / "a"))


class InterruptAfter:
    """Wraps an engine; raises on its (calls + 1)-th generate, as Ctrl-C would."""

    def __init__(self, engine, calls):
        self.engine, self.calls_left = engine, calls

    def generate(self, prompts, params, seeds=None):
        if self.calls_left == 0:
            raise KeyboardInterrupt
        self.calls_left -= 1
        return self.engine.generate(prompts, params, seeds)


def test_hf_engine_resumed_run_equals_uninterrupted_run(bench, tmp_path, model, tokenizer):
    engine = HFEngine(model, tokenizer, max_batch_size=4)
    run_eval(_cfg(bench, tmp_path / "whole", k=2, max_new_tokens=4, batch_size=4), engine, tokenizer)
    with pytest.raises(KeyboardInterrupt):
        run_eval(_cfg(bench, tmp_path / "resumed", k=2, max_new_tokens=4, batch_size=4), InterruptAfter(engine, 1), tokenizer)
    run_eval(_cfg(bench, tmp_path / "resumed", k=2, max_new_tokens=4, batch_size=4), engine, tokenizer)
    completions = lambda out: {(r["question_id"], r["sample_index"]): r["completion"] for r in _samples(out)}
    assert completions(tmp_path / "resumed") == completions(tmp_path / "whole")
