"""`r1lab generate`: n completions per task prompt from a teacher, one JSONL record per (row, sample).

The output file is the run's state: rerunning the same command skips every (id, sample_index) already
in it, so a killed run resumes where it stopped (a torn last line is cut and sampled again). Rows go
to the teacher in fixed slices of the task, and every sample has its own seed, so an interrupted run
and an uninterrupted one write the same file.

    path = generate_traces(GenerateConfig(teacher="smollm2-135m", task=TaskConfig(name="chain_sum"), n=4))
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from r1lab.config import ConfigError
from r1lab.data import Row, TaskConfig, TaskError, load_task
from r1lab.data.files import append_jsonl, cut_torn_tail, read_jsonl
from r1lab.data.prompts import R1_MATH_SUFFIX, PromptConfig
from r1lab.pipeline.teachers import EndpointTeacher, LocalTeacher, Teacher, TeacherError, TeacherSample
from r1lab.rollout import SamplingParams
from r1lab.rollout.factory import ENGINES

@dataclass
class GenerateConfig:
    """One trace-generation run. Set `teacher` for a local model, or `base_url` + `endpoint_model` for an endpoint."""

    teacher: str = ""  # local teacher: model alias (smollm2-135m), checkpoint dir or hub id
    base_url: str = ""  # endpoint teacher: OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1
    api_key: str = ""  # endpoint bearer key ("" sends none); the CLI also reads R1LAB_TEACHER_API_KEY
    endpoint_model: str = ""  # endpoint teacher: the `model` sent with each request
    engine: str = "auto"  # local teacher's rollout backend: auto (native, else hf) | native | hf
    task: TaskConfig = field(default_factory=TaskConfig)
    split: str = "train"  # train | test
    limit: int = 0  # first n rows of the split (0 = all)
    n: int = 4  # samples per prompt
    temperature: float = 0.6  # R1's usage advice
    top_p: float = 0.95
    max_new_tokens: int = 512  # per sample, reasoning included
    prompt: PromptConfig = field(default_factory=PromptConfig)  # local teacher: how questions are rendered
    user_suffix: str = R1_MATH_SUFFIX  # endpoint teacher: appended to each question ("" for none)
    batch_size: int = 32  # samples per teacher call (and engine batch); each call's records are appended at once
    concurrency: int = 8  # endpoint teacher: requests in flight
    retries: int = 5  # endpoint teacher: retries per request on connection errors, 429 and 5xx
    seed: int = 0  # base of every (row id, sample index) seed
    output: str = "traces.jsonl"  # rerun with the same output to resume

    def __post_init__(self):
        for name, low in (("n", 1), ("limit", 0), ("batch_size", 1), ("concurrency", 1), ("retries", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {self.split!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {list(ENGINES)}, got {self.engine!r}")
        if not self.output:
            raise ValueError("output must name a .jsonl file")
        self.sampling_params()  # the engine's own checks on temperature, top_p, max_new_tokens

    def sampling_params(self) -> SamplingParams:
        return SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                              logprobs=False)


def teacher_kind(cfg: GenerateConfig) -> str:
    """"local" or "endpoint"; a config naming neither or both is refused before anything loads."""
    if cfg.teacher and cfg.base_url:
        raise ConfigError(f"set either teacher (a local model, got {cfg.teacher!r}) or base_url (an endpoint, "
                          f"got {cfg.base_url!r}), not both")
    if cfg.base_url and not cfg.endpoint_model:
        raise ConfigError("endpoint_model is required with base_url: the `model` sent in each request "
                          "(--model on the command line)")
    if not cfg.teacher and not cfg.base_url:
        raise ConfigError("no teacher: set teacher (a local model: alias, checkpoint dir or hub id) "
                          "or base_url + endpoint_model (an OpenAI-compatible endpoint)")
    return "endpoint" if cfg.base_url else "local"


def make_teacher(cfg: GenerateConfig) -> Teacher:
    """The teacher the config names: a local model (`teacher`) or an endpoint (`base_url` + `endpoint_model`)."""
    if teacher_kind(cfg) == "endpoint":
        return EndpointTeacher(cfg.base_url, cfg.api_key, cfg.endpoint_model, cfg.sampling_params(),
                               concurrency=cfg.concurrency, retries=cfg.retries, user_suffix=cfg.user_suffix)
    return LocalTeacher(cfg.teacher, cfg.engine, cfg.prompt, cfg.sampling_params(), cfg.batch_size)


def task_rows(cfg: GenerateConfig) -> list[Row]:
    task = load_task(cfg.task)
    rows = task.split(cfg.split)
    rows = rows[: cfg.limit] if cfg.limit else rows
    seen: set[str] = set()
    for row in rows:
        if row["id"] in seen:  # traces are keyed by (id, sample_index): a repeat would be skipped as done
            raise TaskError(f"task {task.name}: row id {row['id']!r} appears twice in split {cfg.split!r}")
        seen.add(row["id"])
    return rows


def read_done(path: Path, teacher_name: str) -> set[tuple[str, int]]:
    """(id, sample_index) of every complete record; bytes after the last newline (a torn write) are cut."""
    if not path.is_file():
        return set()
    cut_torn_tail(path)
    done = set()
    for lineno, record in read_jsonl(path, required=("id", "sample_index", "teacher")):
        if record["teacher"] != teacher_name:
            raise ValueError(f"{path}:{lineno}: written by teacher {record['teacher']!r}, this run's teacher is "
                             f"{teacher_name!r}; pass another output or delete the file")
        done.add((record["id"], record["sample_index"]))
    return done


def trace_record(row: Row, sample_index: int, sample: TeacherSample, teacher: str) -> dict:
    return {"id": row["id"], "question": row["question"], "answer": row["answer"],
            "verifier": row.get("verifier", "math"), "metadata": row.get("metadata", {}),
            "sample_index": sample_index, "completion": sample.completion, "finish_reason": sample.finish_reason,
            "num_tokens": sample.num_tokens, "teacher": teacher}


@contextmanager
def _progress(total: int, completed: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda _: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("traces"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task("traces", total=total, completed=completed)
        yield lambda count: bar.advance(task, count)


def generate_traces(cfg: GenerateConfig, teacher: Teacher | None = None, progress: bool = True) -> Path:
    """Sample every (row, sample index) not yet in `cfg.output` and append it; returns the output path."""
    if teacher is None:
        teacher_kind(cfg)  # a config mistake should not wait for the task (or a model) to load
    rows = task_rows(cfg)
    teacher = teacher or make_teacher(cfg)
    path = Path(cfg.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = read_done(path, teacher.name)
    per_call = max(1, cfg.batch_size // cfg.n)  # rows per teacher call
    finished = sum((row["id"], j) in done for row in rows for j in range(cfg.n))
    with _progress(len(rows) * cfg.n, finished, progress) as advance:
        for start in range(0, len(rows), per_call):
            todo = [row for row in rows[start : start + per_call]
                    if any((row["id"], j) not in done for j in range(cfg.n))]
            if not todo:
                continue
            # a row cut short by a torn write is sampled whole again; its seeds give the same samples
            samples = teacher.sample(todo, cfg.n, cfg.seed)
            if len(samples) != len(todo) or any(len(s) != cfg.n for s in samples):
                raise TeacherError(f"teacher {teacher.name!r} returned {[len(s) for s in samples]} samples for "
                                   f"{len(todo)} rows; expected {cfg.n} per row")
            records = [trace_record(row, j, sample, teacher.name)
                       for row, row_samples in zip(todo, samples) for j, sample in enumerate(row_samples)
                       if (row["id"], j) not in done]
            append_jsonl(path, records)
            advance(len(records))
    return path
