"""R1's evaluation protocol on any checkpoint: k seeded samples per question through an `Engine`,
each scored by its row's verifier, logged per sample (resumable), then summarised (pass@1 ± se,
cons@k, pass@k curve, length, truncation).

    summary = run_eval(EvalConfig(model="smollm2-135m", benchmark="gsm8k", k=4, limit=50), engine, tokenizer)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from r1lab.data import Row
from r1lab.data.prompts import STYLES, PromptConfig, full_completion, render
from r1lab.eval.benchmarks import BenchmarkSpec, load_benchmark
from r1lab.eval.records import CONFIG_FILE, SAMPLES_FILE, SUMMARY_FILE, EvalError, append_samples, read_samples
from r1lab.eval.summary import summarize
from r1lab.rewards import get_verifier
from r1lab.rewards.extract import extract_answer
from r1lab.rollout import Completion, Engine, SamplingParams
from r1lab.runs.rundir import atomic_write_text


@dataclass
class EvalConfig:
    """One evaluation. Defaults follow R1's protocol (§5), except the length budget (R1: 32,768)."""

    model: str = ""  # alias (smollm2-135m), local checkpoint dir or hub id; recorded, loaded by the caller
    benchmark: str = "gsm8k"  # math500 | aime24 | gsm8k | humaneval | jsonl | a reasoning-gym name | a hub id
    k: int = 8  # samples per question
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 1024
    prompt_style: str = "r1"  # r1: R1 usage advice, reply opens "<think>\n"; zero: R1-Zero template; chat: training chat prompt
    limit: int = 0  # first n questions (0 = all); raising it later reuses the samples already written
    data: str = ""  # benchmark file overriding the bundled copy (required for jsonl)
    prompt_field: str = ""  # jsonl: question field ("" guesses prompt / question / problem)
    answer_field: str = "answer"  # jsonl: gold answer field
    verifier: str = ""  # jsonl: verifier name ("" = math)
    task_kwargs: dict[str, Any] = field(default_factory=dict)  # reasoning-gym dataset options
    lenient: bool = False  # an untagged, unboxed reply answers with its last number (not R1's protocol)
    output_dir: str = ""  # "" = runs/eval/<model>/<benchmark>-<style>-t<T>-p<top_p>-n<max_new_tokens>-s<seed>
    batch_size: int = 32  # samples per engine.generate call
    stop: list[str] = field(default_factory=list)  # text stops kept in the reply, e.g. ["</answer>"]
    seed: int = 0  # base of every (question, sample) seed, and of the reasoning-gym held-out split

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.prompt_style not in STYLES:
            raise ValueError(f"prompt_style must be one of {list(STYLES)}, got {self.prompt_style!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.limit < 0:
            raise ValueError(f"limit must be >= 0, got {self.limit}")
        SamplingParams(self.max_new_tokens, self.temperature, self.top_p)  # same checks as the engine's

    def sampling_params(self) -> SamplingParams:
        return SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                              top_p=self.top_p, logprobs=False).ending_at(self.stop)

    def run_dir(self) -> Path:
        if self.output_dir:
            return Path(self.output_dir)
        model = re.sub(r"[^A-Za-z0-9._-]+", "_", self.model.strip("/").replace("/", "__")) or "model"
        bench = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(self.data).stem if self.benchmark == "jsonl" else self.benchmark)
        return Path("runs/eval") / model / (f"{bench}-{self.prompt_style}-t{self.temperature:g}-p{self.top_p:g}"
                                            f"-n{self.max_new_tokens}-s{self.seed}")


# Fields that change which completions are sampled or how they are scored: a resumed run must match
# them. k, limit and batch_size may change: more samples or questions extend the same log.
RESUME_KEYS = ("model", "benchmark", "temperature", "top_p", "max_new_tokens", "prompt_style", "data",
               "prompt_field", "answer_field", "verifier", "task_kwargs", "lenient", "seed", "stop")


def prompt_config(style: str) -> PromptConfig:
    """r1 opens the reply with "<think>\\n" as R1's usage advice says; zero and chat keep training's prompts."""
    if style == "r1":
        return PromptConfig(style="r1", prefill="<think>\n")
    return PromptConfig(style=style)


def sample_seed(base: int, question_id: str, sample_index: int) -> int:
    """A seed fixed by (base, question, sample) alone, so reruns and resumes sample the same stream."""
    digest = hashlib.sha256(f"{base}/{question_id}/{sample_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def score_completion(completion: str, row: Row, lenient: bool = False) -> tuple[str | None, float, str | None]:
    """(extracted answer, verifier score, error): the row's own verifier judges the extracted answer.

    A verifier that raises scores 0 and returns its error, so one odd reply cannot end an evaluation.
    """
    answer = extract_answer(completion, fallback_last_number=lenient)
    try:
        return answer, float(get_verifier(row.get("verifier", "math"))(answer, row)), None
    except Exception as err:  # counted in the summary as scoring_errors
        return answer, 0.0, f"{type(err).__name__}: {err}"


def _check_verifiers(rows: list[Row], benchmark: str) -> None:
    for name in sorted({r.get("verifier", "math") for r in rows}):
        try:
            get_verifier(name)
        except KeyError as err:
            raise EvalError(f"benchmark {benchmark}: its rows use verifier {name!r}, which is not registered "
                            f"({err.args[0]})") from None


def _start_math_checker() -> None:
    """Warm math-verify up (worker start-up and its lazy LaTeX-parser imports) under a generous deadline,
    so that on a busy CPU the first real checks do not spend their short deadlines on one-off costs."""
    from r1lab.rewards.math import verify_answer

    verify_answer("1", "1", timeout=120.0)


def _check_resume(cfg: EvalConfig, run_dir: Path) -> None:
    """Refuse to mix samples from a different setup into one log; record the setup on first use."""
    path = run_dir / CONFIG_FILE
    current = dataclasses.asdict(cfg)
    if path.is_file():
        previous = json.loads(path.read_text())
        defaults = dataclasses.asdict(EvalConfig())  # a key newer than the log holds its default there
        changed = [f"{key}: {previous.get(key, defaults[key])!r} -> {current[key]!r}" for key in RESUME_KEYS
                   if previous.get(key, defaults[key]) != current[key]]
        if changed:
            raise EvalError(f"{run_dir} holds samples from another setup ({'; '.join(changed)}); "
                            "pass a different --output-dir or delete that folder")
    atomic_write_text(path, json.dumps(current, indent=2))


def _sample_records(todo: list[tuple[Row, int]], seeds: list[int], completions: list[Completion], prompt_cfg: PromptConfig,
                    lenient: bool) -> list[dict]:
    """One samples.jsonl record per generated completion, scored by its row's verifier."""
    records = []
    for (row, j), seed, completion in zip(todo, seeds, completions, strict=True):
        text = full_completion(completion.text, prompt_cfg)
        answer, score, error = score_completion(text, row, lenient)
        records.append({
            "question_id": row["id"], "sample_index": j, "seed": seed, "completion": text,
            "answer": answer, "correct": score >= 1.0, "score": score, "gold": row["answer"],
            "num_tokens": len(completion.token_ids), "finish_reason": completion.finish_reason,
            "error": error,
        })
    return records


def run_eval(cfg: EvalConfig, engine: Engine, tokenizer,
             on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Sample, score and log every (question, sample index) not already in the log; write and return the summary.

    Batches are fixed slices of the full (question, sample) list, so an interrupted run resumes
    with the same batches (engines that seed a batch by its first row then reproduce it exactly).
    """
    started = time.perf_counter()
    rows = load_benchmark(BenchmarkSpec(cfg.benchmark, cfg.data, cfg.prompt_field, cfg.answer_field,
                                        cfg.verifier, cfg.seed, cfg.task_kwargs, cfg.limit))
    _check_verifiers(rows, cfg.benchmark)
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_resume(cfg, run_dir)
    samples_path = run_dir / SAMPLES_FILE
    records = read_samples(samples_path)
    done = {(r["question_id"], r["sample_index"]) for r in records}

    _start_math_checker()  # math rows are scored with it, and cons@k votes with it on every benchmark
    prompt_cfg = prompt_config(cfg.prompt_style)
    prompt_ids: dict[str, list[int]] = {}  # rendered lazily: a finished run renders nothing
    params = cfg.sampling_params()
    pairs = [(row, j) for row in rows for j in range(cfg.k)]
    finished = sum((row["id"], j) in done for row, j in pairs)
    if on_progress:
        on_progress(finished, len(pairs))

    for start in range(0, len(pairs), cfg.batch_size):
        todo = [(row, j) for row, j in pairs[start : start + cfg.batch_size] if (row["id"], j) not in done]
        if not todo:
            continue
        batch_started = time.perf_counter()
        for row, _ in todo:
            if row["id"] not in prompt_ids:
                text = render(row["question"], prompt_cfg, tokenizer)
                prompt_ids[row["id"]] = tokenizer(text, add_special_tokens=False)["input_ids"]
        seeds = [sample_seed(cfg.seed, row["id"], j) for row, j in todo]
        completions = engine.generate([prompt_ids[row["id"]] for row, _ in todo], params, seeds)
        batch_records = _sample_records(todo, seeds, completions, prompt_cfg, cfg.lenient)
        seconds = time.perf_counter() - batch_started
        for record in batch_records:  # each sample's share of its batch: sums to generation time across resumes
            record["time_s"] = seconds / len(batch_records)
        append_samples(samples_path, batch_records)
        records += batch_records
        finished += len(batch_records)
        if on_progress:
            on_progress(finished, len(pairs))

    summary = summarize(rows, records, cfg.k, lenient=cfg.lenient)
    summary.update(model=cfg.model, benchmark=cfg.benchmark, prompt_style=cfg.prompt_style,
                   temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                   seed=cfg.seed, run_dir=str(run_dir), session_time_s=time.perf_counter() - started)
    atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
    return summary
