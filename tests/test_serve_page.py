"""The chat page in headless Chromium (Debian package `chromium`): reasoning streams live into a
collapsible block above the answer.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: NUL-separated
JSON on file descriptors 3 and 4), so the test can wait for page states instead of guessing times.
"""
import json
from pathlib import Path
from urllib.parse import quote

import pytest
from chromium_support import Browser
from serve_support import running_server, scripted_service

pytestmark = pytest.mark.slow

REASONING = ("The user asks for 2 + 2. Adding two and two gives four. Let me double-check by counting up "
             "from two: three, four. So the sum is 4.")
ANSWER = "2 + 2 = 4."
SCRIPT = f"{REASONING}</think>\n\n{ANSWER}"

THINKING = "document.querySelector('details.thinking')"
REASONING_TEXT = f"{THINKING}?.querySelector('.text')?.textContent"
ANSWER_TEXT = "document.querySelector('.answer')?.textContent"


def chat_url(url: str) -> str:
    return f"{url}/?q={quote('What is 2 + 2?')}"


def take_screenshot(path: Path, profile: Path) -> None:
    """The screenshot in docs/serve_chat.png: a finished reply, reasoning above the answer."""
    with running_server(scripted_service(script=SCRIPT, step_s=0.002)) as url:
        browser = Browser(profile)
        try:
            browser.open(chat_url(url))
            browser.wait_for(f"{ANSWER_TEXT} === {json.dumps(ANSWER)} && "
                             "document.querySelector('.meta').textContent.length > 0")
            browser.screenshot(path)
        finally:
            browser.close()


def test_reasoning_streams_live_into_an_open_block_before_the_answer(tmp_path):
    service = scripted_service(script=SCRIPT, pause_at=30)
    with running_server(service) as url:
        browser = Browser(tmp_path / "profile")
        try:
            browser.open(chat_url(url))
            # generation is paused after 30 tokens: what the page shows now arrived by streaming
            assert browser.wait_for(f"{REASONING_TEXT}?.length === 30 && {REASONING_TEXT}") == REASONING[:30]
            assert browser.js(f"{THINKING}.open") is True
            assert browser.js(f"{THINKING}.querySelector('summary').textContent") == "Thinking…"
            assert browser.js(ANSWER_TEXT) == ""
            service.batcher.engine.resume.set()
            assert browser.wait_for(f"{ANSWER_TEXT} === {json.dumps(ANSWER)} && {ANSWER_TEXT}") == ANSWER
            assert browser.js(REASONING_TEXT) == REASONING
            assert browser.js(f"{THINKING}.querySelector('summary').textContent") == "Reasoning"
            # the block sits above the answer, and it folds
            assert browser.js(f"{THINKING}.getBoundingClientRect().bottom <= "
                              "document.querySelector('.answer').getBoundingClientRect().top") is True
            browser.js(f"{THINKING}.querySelector('summary').click()")
            assert browser.js(f"{THINKING}.open") is False
        finally:
            service.batcher.engine.resume.set()
            browser.close()


def test_screenshot_of_a_finished_reply(tmp_path):
    take_screenshot(tmp_path / "chat.png", tmp_path / "profile")
    assert (tmp_path / "chat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "chat.png").stat().st_size > 10_000
