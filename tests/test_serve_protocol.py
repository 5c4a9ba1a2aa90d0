import pytest

from r1lab.models import tiny_tokenizer
from r1lab.serve.choices import ChoiceText
from r1lab.serve.errors import ApiError
from r1lab.serve.protocol import DEFAULT_TEMPERATURE, parse_chat_request

USER = [{"role": "user", "content": "hi"}]


def body(**fields):
    return {"model": "m", "messages": USER, **fields}


def error_of(raw) -> ApiError:
    with pytest.raises(ApiError) as info:
        parse_chat_request(raw)
    return info.value


def test_defaults_follow_r1_usage_advice():
    request = parse_chat_request(body())
    assert (request.temperature, request.top_p, request.n, request.max_tokens) == (DEFAULT_TEMPERATURE, 0.95, 1, None)
    assert request.stop == [] and not request.stream


def test_all_parameters_are_read():
    request = parse_chat_request(body(max_tokens=7, temperature=0, top_p=0.5, stop="X", n=2, seed=3, stream=True,
                                      stream_options={"include_usage": True}, frequency_penalty=0.1))
    assert (request.max_tokens, request.temperature, request.top_p, request.stop, request.n, request.seed) == \
        (7, 0.0, 0.5, ["X"], 2, 3)
    assert request.stream and request.include_usage


def test_max_completion_tokens_wins_over_the_deprecated_max_tokens():
    assert parse_chat_request(body(max_tokens=5, max_completion_tokens=9)).max_tokens == 9


@pytest.mark.parametrize("field, value", [
    ("temperature", 2.5), ("temperature", -0.1), ("temperature", "hot"), ("top_p", 0), ("top_p", 1.5),
    ("n", 0), ("n", 1000), ("n", 1.5), ("max_tokens", 0), ("max_tokens", True), ("stop", ["a"] * 5),
    ("stop", 3), ("seed", "x"), ("stream", "yes"),
])
def test_out_of_range_or_mistyped_parameters_name_the_parameter(field, value):
    err = error_of(body(**{field: value}))
    assert err.status == 400 and err.param == field and field in err.message


@pytest.mark.parametrize("messages, param", [
    ([], "messages"), ("hi", "messages"), ([{"role": "robot", "content": "x"}], "messages[0].role"),
    ([{"role": "user", "content": [{"type": "image_url"}]}], "messages[0].content"),
])
def test_bad_messages_are_rejected(messages, param):
    assert error_of(body(messages=messages)).param == param


def test_sending_back_reasoning_content_is_rejected_like_deepseeks_api():
    history = [*USER, {"role": "assistant", "content": "4", "reasoning_content": "2+2"}, *USER]
    err = error_of(body(messages=history))
    assert (err.status, err.param, err.code) == (400, "messages[1].reasoning_content", "reasoning_content_in_input")


def test_text_parts_and_developer_role_become_plain_chat_messages():
    request = parse_chat_request(body(messages=[
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": None}]))
    assert request.messages == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "ab"},
                                {"role": "assistant", "content": ""}]


def test_a_missing_model_is_an_error():
    assert error_of({"messages": USER}).param == "model"


def test_error_body_has_openais_four_fields():
    assert error_of(body(n=0)).body() == {"error": {"message": "n must be between 1 and 16, got 0",
                                                    "type": "invalid_request_error", "param": "n",
                                                    "code": "invalid_value"}}


def run_choice(text: str, stop: list[str], finish: str = "stop") -> ChoiceText:
    tokenizer = tiny_tokenizer()
    choice = ChoiceText(tokenizer, stop)
    for token in tokenizer(text, add_special_tokens=False)["input_ids"]:
        choice.on_token(token)
        if choice.stopped:
            break
    choice.on_finish(finish)
    return choice


def test_choice_counts_reasoning_tokens_through_the_close_tag():
    choice = run_choice("ab</think>cd", [])
    assert (choice.completion_tokens, choice.reasoning_tokens) == (12, 10)
    assert ("".join(choice.reasoning), "".join(choice.content), choice.finish_reason) == ("ab", "cd", "stop")


def test_choice_stop_cuts_the_answer_but_not_the_reasoning():
    choice = run_choice("x.y</think>1.2.3", ["."])
    assert ("".join(choice.reasoning), "".join(choice.content), choice.finish_reason) == ("x.y", "1", "stop")
    assert choice.completion_tokens == 13  # counted up to the token that completed the stop string


def test_choice_cut_before_the_close_tag_has_no_content_and_finishes_by_length():
    choice = run_choice("still thinking", [], finish="length")
    assert (choice.content, choice.finish_reason, choice.reasoning_tokens) == (None, "length", 14)


def test_choice_with_an_empty_answer_has_content_empty_string_not_none():
    assert run_choice("done</think>", []).content == []


def test_prompt_opens_the_think_block_unless_disabled():
    from serve_support import scripted_service

    service = scripted_service()
    tokenizer = service.tokenizer
    with_prefill = tokenizer.decode(service.prompt_ids(USER))
    assert with_prefill.endswith("<|im_start|>assistant\n<think>\n")
    service.config.think_prefill = False
    assert tokenizer.decode(service.prompt_ids(USER)).endswith("<|im_start|>assistant\n")


def test_a_template_that_already_opens_the_think_block_is_not_prefilled_twice():
    from serve_support import scripted_service

    service = scripted_service()
    template = service.tokenizer.chat_template
    service.tokenizer.chat_template = template.replace("assistant\n{% endif %}", "assistant\n<think>\n{% endif %}")
    assert service.tokenizer.chat_template != template
    assert service.tokenizer.decode(service.prompt_ids(USER)).endswith("<|im_start|>assistant\n<think>\n")


def test_chat_page_escapes_the_model_name():
    from r1lab.serve.page import render_chat_page

    page = render_chat_page('x</script><b>"', needs_key=True)
    assert "</script><b>" not in page
    assert 'const MODEL = "x\\u003c/script>\\u003cb>\\"", NEEDS_KEY = true;' in page
    assert "<title>r1lab chat · x&lt;/script&gt;&lt;b&gt;&quot;</title>" in page


@pytest.mark.parametrize("field, value", [
    ("temperature", float("nan")), ("temperature", float("inf")), ("top_p", float("nan")), ("top_p", float("-inf")),
])
def test_non_finite_numbers_are_rejected(field, value):
    err = error_of(body(**{field: value}))
    assert (err.status, err.param) == (400, field) and "finite" in err.message


@pytest.mark.parametrize("fields, param", [
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"logprobs": True, "top_logprobs": 2}, "top_logprobs"),
])
def test_openai_features_this_server_lacks_are_refused_by_name(fields, param):
    err = error_of(body(**fields))
    assert (err.status, err.param, err.code) == (400, param, "unsupported_parameter")


def test_asking_for_nothing_unsupported_is_fine():
    request = parse_chat_request(body(tools=[], tool_choice="none", response_format={"type": "text"},
                                      logprobs=True, top_logprobs=0))
    assert request.logprobs


@pytest.mark.parametrize("fields, param", [
    ({"top_logprobs": 1}, "top_logprobs"),  # without logprobs: true
    ({"logprobs": "yes"}, "logprobs"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
])
def test_bad_logprobs_and_reasoning_effort_values(fields, param):
    assert error_of(body(**fields)).param == param


def test_reasoning_effort_is_accepted():
    assert parse_chat_request(body(reasoning_effort="low")).model == "m"


def test_choice_log_probs_cover_every_counted_token_once():
    tokenizer = tiny_tokenizer()
    choice = ChoiceText(tokenizer, stop=[], logprobs=True)
    ids = tokenizer("ab</think>c", add_special_tokens=False)["input_ids"]
    for k, token in enumerate(ids):
        choice.on_token(token, -k / 4)
        if k == 1:
            assert [e["logprob"] for e in choice.new_logprobs()] == [0.0, -0.25]
    choice.on_finish("stop")
    assert [e["logprob"] for e in choice.logprobs] == [-k / 4 for k in range(len(ids))]
    assert "".join(e["token"] for e in choice.logprobs) == "ab</think>c"
    assert len(choice.new_logprobs()) == len(ids) - 2  # only those not handed out before
    assert choice.logprobs[0]["bytes"] == [ord("a")]
