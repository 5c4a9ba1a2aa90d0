"""docs/results/paper_mini.md: the text and tables of `r1lab paper-mini`, from the records its stages collect.

Every accuracy comes with its n and a 95% interval; every comparison says whether the intervals separate;
every part that ran with more than one seed shows each seed and the spread.
"""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1lab.eval.metrics import mean_difference_interval, mean_interval, wilson_interval
from r1lab.eval.thinking_pays import TABLE_HEAD, table_row, thinking_gain
from r1lab.pipeline.paper_figures import figure_a, figure_b, figure_evals, stage_evals
from r1lab.pipeline.summary import summary_markdown
from r1lab.runs.rundir import atomic_write_text

TREND_STEPS = 10  # training-sample trends compare the mean of the first and of the last this many steps


@dataclass
class PaperRecords:
    machine: str
    model: str
    task: str  # the R1-Zero task in words
    step0: dict | None  # the thinking-pays stage: {"levels": [measure_level records]}
    zeros: list[dict]  # part a, one stage record per seed: run, model, seed, train_seconds
    zero_metrics: dict[int, list[dict]]  # part a: each seed's metrics.jsonl
    zero_samples: dict[int, list[dict]]  # part a: each seed's samples.jsonl (a few logged replies per step)
    b: dict | None  # part b: one run_eval summary per model label
    c: dict | None  # part c: {"summary": first seed, "seeds": {seed: summary}}
    ds: list[dict]  # part d, one stage record per R1 seed: {"r1": summary}
    zero_evals: list[dict]  # part d: each R1-Zero seed's model on the R1 recipe's held-out questions
    voting: Any  # VotingConfig
    thinking: Any  # ThinkingPaysConfig

    def present(self) -> dict[str, bool]:
        """Which parts this report has (a run with a subset of `parts` reports only those)."""
        return {"0": self.step0 is not None, "a": bool(self.zeros), "b": self.b is not None,
                "c": self.c is not None, "d": bool(self.ds)}


def _ci(ev: dict) -> str:
    low, high = ev["accuracy_ci95"]
    return f"{ev['accuracy']:.2f} [{low:.2f}, {high:.2f}]"


def _separate(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] > b[1] or b[0] > a[1]


def _compare(name_a: str, a: dict, name_b: str, b: dict) -> str:
    """One honest sentence: the difference, and whether the 95% intervals even separate."""
    verdict = ("the intervals separate" if _separate(a["accuracy_ci95"], b["accuracy_ci95"])
               else "the intervals overlap, so this is not a finding")
    return f"Held-out accuracy, {name_a} − {name_b}: {a['accuracy'] - b['accuracy']:+.2f} ({verdict})."


def _spread(gaps: list[float]) -> str:
    return (f"Mean difference over {len(gaps)} seeds: {sum(gaps) / len(gaps):+.3f} "
            f"(per seed: {', '.join(f'{g:+.2f}' for g in gaps)}).")


def _eval_table(pairs: list[tuple[str, dict]], times: dict[str, float] | None = None) -> list[str]:
    head = "| model | held-out accuracy [95% CI] | n | format | language | length |" + (" time |" if times else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, ev in pairs:
        row = (f"| {name} | {_ci(ev)} | {ev['n']} | {ev['format']:.2f} | {ev['language']:.2f} | "
               f"{ev['length_mean']:.1f} |")
        if times:
            row += f" {times[name] / 60:.1f} min |" if name in times else " |"
        lines.append(row)
    return lines


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"


def _header(r: PaperRecords) -> list[str]:
    have = r.present()
    seeds = {"a (and the RL models of b)": len(r.zeros) if have["a"] else 0,
             "c": 1 + len(r.c.get("seeds") or {}) if have["c"] else 0, "d": len(r.ds)}
    seed_words = ", ".join(f"{part} {n}" for part, n in seeds.items() if n)
    times = {"step-0 table": r.step0["seconds"] if have["0"] else None,
             "a": sum(z["train_seconds"] for z in r.zeros) if have["a"] else None,
             "b": r.b["seconds"] if have["b"] else None,
             "c": r.c["seconds"] + r.c.get("seeds_seconds", 0.0) if have["c"] else None,
             "d": sum(d["seconds"] for d in r.ds) if have["d"] else None}
    missing = [part for part, ok in have.items() if not ok]
    lines = [
        "# The R1 paper in miniature", "",
        f"Produced by `r1lab paper-mini` on {datetime.date.today().isoformat()}; machine: {r.machine}. "
        f"Base model: `{r.model}`; R1-Zero task: {r.task}. Every accuracy is on held-out questions never used in "
        "training, with its n and a 95% interval (Wilson for single greedy samples; ±1.96 standard errors across "
        "questions for pass@1 averaged over k samples; Newcombe for a difference of two proportions). "
        f"Seeds per part: {seed_words or 'none run'}; differences inside the intervals are not findings.", "",
        "Wall time of the parts on this machine: " +
        ", ".join(f"{part} {_minutes(t)}" for part, t in times.items() if t is not None) +
        (f" (a: GRPO training of its {len(r.zeros)} R1-Zero runs, held-out evaluations excluded)." if have["a"] else "."), ""]
    if missing:
        lines += [f"**Not run for this report: part(s) {', '.join(missing)}** (the recipe's `parts`); "
                  "rerun `r1lab paper-mini` with them to add them: finished parts are reused.", ""]
    return lines


def _step0(r: PaperRecords) -> list[str]:
    levels = r.step0["levels"]
    paying = [rec["level"] for rec in levels if thinking_gain(rec)[1] > 0]
    verdict = (f"Sampled reasoning beats answering at once, with the interval of the difference above 0, at "
               f"{', '.join(paying)}." if paying else
               "At no level does sampled reasoning beat answering at once with the interval of the difference above 0.")
    t = r.thinking
    return ["## Step 0: where thinking pays", "",
            f"The untrained model on {t.prompts} held-out prompts × {t.samples} samples per level (T 0.6, top-p 0.95), "
            f"under three prefills of its reply (r1lab.eval.thinking_pays): the answer forced at once, its own "
            f"reasoning (≤ {t.max_new_tokens} tokens), and the right running results prefilled (the ceiling right "
            "reasoning would reach). RL can only amplify what the model already does now and then.", "",
            *TABLE_HEAD, *(table_row(rec) for rec in levels), "", verdict, ""]


def _head_tail(records: list[dict], key: str) -> tuple[list[float], list[float]] | None:
    """The first and the last TREND_STEPS per-step values of `key` (None where no step logged it)."""
    values = [m[key] for m in records if key in m]
    return (values[:TREND_STEPS], values[-TREND_STEPS:]) if values else None


def _trend(records: list[dict], key: str) -> tuple[float, float] | None:
    ends = _head_tail(records, key)
    return None if ends is None else tuple(sum(part) / len(part) for part in ends)


def _trend_intervals(records: list[dict], key: str) -> tuple[tuple[float, float, float], ...] | None:
    """(first, last, last − first): means of the first and last TREND_STEPS per-step values with 95% t intervals;
    the spread of a run's step means, not of single samples, is what a trend has to beat."""
    ends = _head_tail(records, key)
    if ends is None:
        return None
    head, tail = ends
    return mean_interval(head), mean_interval(tail), mean_difference_interval(tail, head)


def _mean_cell(interval: tuple[float, float, float], digits: int = 1) -> str:
    mean, low, high = interval
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def reply_parts(completion: str) -> tuple[int, int]:
    """Characters inside the think block and after `</answer>`: where a longer reply put its length."""
    think = _THINK.search(completion)
    end = completion.find("</answer>")
    return (len(think.group(1)) if think else 0), (len(completion) - end - len("</answer>") if end >= 0 else 0)


def _parts_trend(samples: list[dict]) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """(think, after-answer) mean characters over the logged replies of the first and of the last steps."""
    steps = sorted({r["step"] for r in samples})
    if not steps:
        return None

    def mean_parts(chosen: set[int]) -> tuple[float, float]:
        parts = [reply_parts(r["completion"]) for r in samples if r["step"] in chosen]
        return sum(p[0] for p in parts) / len(parts), sum(p[1] for p in parts) / len(parts)

    (think0, tail0), (think1, tail1) = mean_parts(set(steps[:TREND_STEPS])), mean_parts(set(steps[-TREND_STEPS:]))
    return (think0, think1), (tail0, tail1)


def _whole(x: float) -> bool:
    return abs(x - round(x)) < 1e-6


def _held_out(m: dict) -> tuple[int, int]:
    return round(m["eval/accuracy"] * m["eval/n"]), int(m["eval/n"])


def _cell(hits: int, n: int) -> str:
    low, high = wilson_interval(hits, n)
    return f"{hits}/{n} = {hits / n:.2f} [{low:.2f}, {high:.2f}]"


def _part_a(r: PaperRecords, figure: str) -> list[str]:
    lines = ["## a. R1-Zero: accuracy, response length and reflection across RL steps", "", f"![a]({figure})", "",
             f"| seed | held-out accuracy, first evaluation | last evaluation | final model, right answers only | "
             f"held-out length (greedy) | train length, first → last {TREND_STEPS} steps | reflective samples, first → "
             f"last {TREND_STEPS} steps | aha candidates | GRPO time |", "|---|---|---|---|---|---|---|---|---|"]
    grew, fell, first_pool, last_pool, partial_credit = 0, 0, [0, 0], [0, 0], False
    split = ["| seed | think block, characters | after `</answer>`, characters | replies logged |", "|---|---|---|---|"]
    for zero in r.zeros:
        metrics = r.zero_metrics[zero["seed"]]
        evals = [m for m in metrics if "eval/accuracy" in m]
        first, last = evals[0], evals[-1]
        nan = (float("nan"),) * 3
        length = _trend_intervals(metrics, "completion/length_mean") or (nan, nan, nan)
        reflect = _trend(metrics, "aha/reflection_rate") or (float("nan"),) * 2
        grew, fell = grew + (length[2][1] > 0), fell + (length[2][2] < 0)
        for pool, m in ((first_pool, first), (last_pool, last)):
            hits, n = _held_out(m)
            pool[0], pool[1] = pool[0] + hits, pool[1] + n
        candidates = sum(m.get("aha/candidates", 0.0) for m in metrics)
        final = zero.get("final_eval") or {}
        final_cell = f"{_ci(final)} (n = {final['n']})" if final else "not evaluated"
        partial_credit = partial_credit or any(not _whole(m["eval/accuracy"] * m["eval/n"]) for m in evals)
        lines.append(f"| {zero['seed']} | step {first['step']}: {_cell(*_held_out(first))} | step {last['step']}: "
                     f"{_cell(*_held_out(last))} | {final_cell} | {first.get('eval/length_mean', float('nan')):.1f} → "
                     f"{last.get('eval/length_mean', float('nan')):.1f} | {_mean_cell(length[0])} → {_mean_cell(length[1])} | "
                     f"{reflect[0]:.3f} → {reflect[1]:.3f} | {candidates:.0f} | {zero['train_seconds'] / 60:.1f} min |")
        parts = _parts_trend(r.zero_samples.get(zero["seed"], []))
        if parts:
            (think0, think1), (tail0, tail1) = parts
            logged = len(r.zero_samples[zero["seed"]])
            split.append(f"| {zero['seed']} | {think0:.0f} → {think1:.0f} | {tail0:.0f} → {tail1:.0f} | {logged} |")
    lines += ["", f"Pooled over the {len(r.zeros)} seeds: held-out accuracy {_cell(*first_pool)} at the first "
              f"evaluation, {_cell(*last_pool)} at the last. Mean training-sample length (the mean of the first and "
              f"of the last {TREND_STEPS} steps' means, with 95% t intervals across those steps) grew in {grew} and "
              f"fell in {fell} of {len(r.zeros)} seeds, counting a change only where the interval of the "
              f"difference excludes 0. Reflective samples: the share of training samples with a reflective phrase "
              "(r1lab.eval.aha); aha candidates: right samples that reflect after a wrong intermediate result "
              "(each run's aha.jsonl).", ""]
    if partial_credit:
        lines += ["**The curve's held-out points are mean verifier scores, not right answers**: these runs were logged "
                  "before the trainer counted full credit only, and the reasoning-gym verifier pays partial credit "
                  "(`-12` for 12 scores 0.67), so the first two accuracy columns (rounded to counts) overstate. The "
                  "final model column is re-scored with right answers only, as `r1lab eval` counts.", ""]
    if len(split) > 2:
        lines += [f"Where the length went: the replies each run logged (samples.jsonl), mean characters inside the "
                  f"think block and after the closing answer tag, first → last {TREND_STEPS} steps.", "", *split, ""]
    return lines


def _part_b(r: PaperRecords, figure: str) -> list[str]:
    k = r.voting.k
    lines = [f"## b. pass@1 vs cons@{k} before and after RL", "", f"![b]({figure})", "",
             f"k = {k} samples per question, temperature {r.voting.temperature}, top-p {r.voting.top_p}, "
             f"≤ {r.voting.max_new_tokens} new tokens, {r.voting.limit} held-out questions.", "",
             f"| model | pass@1 [95% CI] | cons@{k} [95% CI] | pass@{k} | questions |", "|---|---|---|---|---|"]
    models = [(when, s) for when, s in r.b.items() if when not in ("stage", "seconds")]
    for when, s in models:
        (lo, hi), (clo, chi) = s["pass@1_ci95"], s["cons@k_ci95"]
        lines.append(f"| {when} | {s['pass@1']:.3f} [{lo:.3f}, {hi:.3f}] | {s['cons@k']:.3f} [{clo:.3f}, {chi:.3f}] | "
                     f"{s['pass@k'][str(k)]:.3f} | {s['questions']} |")
    lines += [f"{when}: cons@{k} − pass@1 = {s['cons@k'] - s['pass@1']:+.3f}." for when, s in models]
    return lines + [""]


def _distill_gap(summary: dict) -> tuple[dict, dict]:
    evals = {r["stage"][:4]: r["eval"] for r in summary["stages"] if r.get("eval")}
    return evals["3_sf"], evals["4_rl"]


def _part_c(r: PaperRecords, figure: str) -> list[str]:
    c, more = r.c["summary"], r.c.get("seeds") or {}
    pairs = stage_evals(c["stages"])
    times = {s["stage"]: s.get("cost_seconds", s["train_seconds"]) for s in c["stages"] if "train_seconds" in s}
    lines = ["## c. Distillation vs RL for the same student and wall time", "", f"![c]({figure})", "",
             f"Distillation cost (teacher sampling + rejection + SFT): {c['distill_seconds'] / 60:.1f} min; the GRPO "
             "baseline was stopped after the step that crossed the same wall time. Rejection sampling kept "
             f"{c['rejection']['kept']} of {c['rejection']['input']} teacher samples.", "",
             *_eval_table(pairs, times), ""]
    if any(name.startswith("4_rl") for name, _ in pairs):
        distilled, rl = _distill_gap(c)
        lines += [_compare("distilled student", distilled, "GRPO student", rl), ""]
    if not more:
        return lines + ["Only one seed was run for this comparison (set `distill_seeds` for more).", ""]
    lines += ["| seed | distilled | GRPO, same wall time | difference | wall time |", "|---|---|---|---|---|"]
    gaps = []
    for seed, summary in {"0": c, **more}.items():
        distilled, rl = _distill_gap(summary)
        gaps.append(distilled["accuracy"] - rl["accuracy"])
        lines.append(f"| {seed} | {_ci(distilled)} | {_ci(rl)} | {gaps[-1]:+.2f} | "
                     f"{summary['distill_seconds'] / 60:.1f} min |")
    return lines + ["", _spread(gaps), ""]


def _part_d(r: PaperRecords, figure: str, zero_seconds: float) -> list[str]:
    first = r.ds[0]["r1"]
    pairs = [("R1-Zero (pure RL)", r.zero_evals[0])] + stage_evals(first["stages"])[1:]
    lines = ["## d. R1 (cold start, multi-stage) vs R1-Zero (pure RL) from the same base", "", f"![d]({figure})", "",
             *_eval_table(pairs), "",
             _compare("R1 (final stage)", pairs[-1][1], "R1-Zero", r.zero_evals[0]) +
             f" R1-Zero: {zero_seconds / 60:.1f} min of GRPO training; the R1 pipeline: "
             f"{first['total_seconds'] / 60:.1f} min over all its stages.", ""]
    if len(r.ds) > 1 or len(r.zero_evals) > 1:
        lines += ["| seed | R1 (final stage) | R1-Zero | difference |", "|---|---|---|---|"]
        gaps = []
        for index, d in enumerate(r.ds):
            zero = r.zero_evals[min(index, len(r.zero_evals) - 1)]  # seeds pair up in order
            final = stage_evals(d["r1"]["stages"])[-1][1]
            gaps.append(final["accuracy"] - zero["accuracy"])
            lines.append(f"| {index} | {_ci(final)} | {_ci(zero)} | {gaps[-1]:+.2f} |")
        lines += ["", _spread(gaps), ""]
    return lines + [
        "Readability: format = the strict <think>/<answer> format; language = share of English words in the "
        "think section. The R1 pipeline stage by stage (first seed; stage time includes each stage's evaluation):", "",
        *summary_markdown("R1 pipeline", first["stages"]).splitlines()[2:]]


def write_results(path: Path, r: PaperRecords) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    names = {part: f"{path.with_suffix('').name}_{part}.png" for part in "abcd"}
    have = r.present()
    lines = _header(r)
    if have["0"]:
        lines += _step0(r)
    if have["a"]:
        figure_a(r.zero_metrics, path.parent / names["a"])
        lines += _part_a(r, names["a"])
    if have["b"]:
        figure_b(r.b, r.voting.k, path.parent / names["b"])
        lines += _part_b(r, names["b"])
    if have["c"]:
        figure_evals(stage_evals(r.c["summary"]["stages"]), ["accuracy", "format"],
                     "Distillation vs RL, same student, same wall time", path.parent / names["c"])
        lines += _part_c(r, names["c"])
    if have["d"]:
        r1_pairs = [("R1-Zero (pure RL)", r.zero_evals[0])] + stage_evals(r.ds[0]["r1"]["stages"])[1:]
        figure_evals(r1_pairs, ["accuracy", "format", "language"], "R1 stages vs R1-Zero, same base",
                     path.parent / names["d"])
        lines += _part_d(r, names["d"], r.zeros[0]["train_seconds"])
    atomic_write_text(path, "\n".join(lines))
