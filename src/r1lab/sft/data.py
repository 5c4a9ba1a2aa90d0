"""SFT rows -> token ids + label masks. Two row formats:

- prompt/completion: {"prompt": question, "completion": reply}. The prompt is rendered exactly as RL and
  eval render it (prompts.render, ending with the prefill such as "<think>"), so the model learns on the
  same text it is later sampled from. The stored completion is the reply as said, prefill included; the
  prefill is cut from its front so it is not there twice. Targets: the completion tokens + EOS.
- chat: {"messages": [{"role", "content"}, ...]} through the tokenizer's chat template. Targets: each
  assistant turn's content and its end-of-turn token; system/user turns and template text are context.

Prompt and reply are tokenised separately, the way the model meets them when sampling (prompt encoded
alone, reply generated token by token), not re-merged across the boundary. Samples longer than
max_seq_len are cut from the right (Sample.truncated) and tokens after the last target are dropped:
under a causal mask they cannot change the loss.
"""
from __future__ import annotations

from pathlib import Path

from r1lab.config import config_dir
from r1lab.data.base import TaskError
from r1lab.data.files import read_jsonl
from r1lab.data.prompts import PromptConfig, render
from r1lab.resources import find_file
from r1lab.sft.config import SFTDataConfig
from r1lab.sft.packing import IGNORE, Sample


def _ids(tokenizer, text: str) -> list[int]:
    # the template/render already holds any BOS it wants; never let the tokenizer add another
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def _eos_id(tokenizer) -> int:
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; SFT targets end with one")
    return tokenizer.eos_token_id


def from_pieces(tokenizer, pieces: list[tuple[str, bool]]) -> Sample:
    """(text, is_target) pieces -> one sample; each piece tokenised on its own."""
    ids: list[int] = []
    labels: list[int] = []
    for text, target in pieces:
        piece = _ids(tokenizer, text)
        ids += piece
        labels += piece if target else [IGNORE] * len(piece)
    last = max((i for i, label in enumerate(labels) if label != IGNORE), default=len(labels) - 1)
    return Sample(ids[: last + 1], labels[: last + 1])


def encode_prompt_completion(prompt: str, completion: str, tokenizer, prompt_cfg: PromptConfig,
                             render_prompt: bool = True) -> Sample:
    """Rendered prompt as context; completion (less the prefill the prompt already ends with) + EOS as target."""
    if render_prompt:
        text = render(prompt, prompt_cfg, tokenizer)
        completion = completion.removeprefix(prompt_cfg.prefill) if prompt_cfg.prefill else completion
    else:
        text = prompt
    sample = from_pieces(tokenizer, [(text, False), (completion, True)])
    eos = _eos_id(tokenizer)
    if sample.input_ids and sample.input_ids[-1] == eos and sample.labels[-1] != IGNORE:
        return sample  # the stored reply already ends with EOS
    return Sample(sample.input_ids + [eos], sample.labels + [eos])


def _chat_text(tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    import jinja2

    try:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)
    except jinja2.TemplateError as err:  # templates reject e.g. a conversation that does not start with a user
        raise ValueError(f"the chat template rejected the messages: {err}") from None


def encode_chat(messages: list[dict], tokenizer) -> Sample:
    """Chat template over the whole conversation; each assistant turn is found by rendering prefixes:
    text(messages[:i], generation prompt) ends where turn i's reply starts, text(messages[:i+1]) where it ends."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat rows need a tokenizer with a chat template; use prompt/completion rows instead")
    full = _chat_text(tokenizer, messages, False)
    eos = tokenizer.eos_token or ""
    pieces: list[tuple[str, bool]] = []
    cursor = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _chat_text(tokenizer, messages[:i], True)
        through = _chat_text(tokenizer, messages[: i + 1], False)
        if not (through.startswith(before) and full.startswith(through) and len(before) >= cursor):
            raise ValueError(f"the chat template renders message {i} differently inside the whole conversation "
                             "(e.g. it rewrites earlier turns), so its reply cannot be located; "
                             "use prompt/completion rows for this data")
        reply = through[len(before):]
        if eos and eos in reply:  # train up to the end-of-turn token, not the template's whitespace after it
            reply = reply[: reply.rindex(eos) + len(eos)]
        pieces += [(full[cursor:len(before)], False), (reply, True)]
        cursor = len(before) + len(reply)
    return from_pieces(tokenizer, pieces)


def truncate(sample: Sample, max_len: int) -> Sample:
    if len(sample.input_ids) <= max_len:
        return sample
    return Sample(sample.input_ids[:max_len], sample.labels[:max_len], truncated=True)


def _row_format(record: dict, cfg: SFTDataConfig) -> str:
    if cfg.format != "auto":
        return cfg.format
    if cfg.messages_field in record:
        return "chat"
    if cfg.prompt_field in record and cfg.completion_field in record:
        return "prompt_completion"
    raise ValueError(f"expected a {cfg.messages_field!r} list (chat) or {cfg.prompt_field!r} and "
                     f"{cfg.completion_field!r} fields; fields present: {sorted(record)}")


def _messages(record: dict, field: str) -> list[dict]:
    messages = record.get(field)
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{field!r} must be a non-empty list of {{role, content}} objects")
    for j, m in enumerate(messages):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise ValueError(f"{field}[{j}] must be an object with string 'role' and 'content', got {m!r}")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError(f"{field!r} has no assistant message to train on")
    return messages


def encode_record(record: dict, cfg: SFTDataConfig, prompt_cfg: PromptConfig, tokenizer) -> Sample:
    if _row_format(record, cfg) == "chat":
        return encode_chat(_messages(record, cfg.messages_field), tokenizer)
    values = []
    for name in (cfg.prompt_field, cfg.completion_field):
        if not isinstance(record.get(name), str):
            raise ValueError(f"field {name!r} must be a string, got {record.get(name)!r}")
        values.append(record[name])
    return encode_prompt_completion(*values, tokenizer, prompt_cfg, cfg.render_prompt)


def load_samples(cfg: SFTDataConfig, prompt_cfg: PromptConfig, tokenizer, max_seq_len: int) -> list[Sample]:
    """Every row of cfg.path as a sample of <= max_seq_len tokens; a bad row raises TaskError naming file:line."""
    if not cfg.path:
        raise TaskError("data.path: no SFT data file given (--data FILE.jsonl or --set data.path=...)")
    samples = []
    for lineno, record in read_jsonl(find_file(cfg.path, config_dir(cfg))):
        try:
            samples.append(truncate(encode_record(record, cfg, prompt_cfg, tokenizer), max_seq_len))
        except ValueError as err:
            raise TaskError(f"{cfg.path}:{lineno}: {err}") from None
    if not samples:
        raise TaskError(f"{Path(cfg.path)}: no rows (the file is empty)")
    return samples
