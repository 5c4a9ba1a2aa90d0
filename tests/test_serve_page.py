"""The chat page in headless Chromium (Debian package `chromium`): reasoning streams live into a
collapsible block above the answer.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: NUL-separated
JSON on file descriptors 3 and 4), so the test can wait for page states instead of guessing times.
"""
import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from serve_support import running_server, scripted_service

pytestmark = pytest.mark.slow

REASONING = ("The user asks for 2 + 2. Adding two and two gives four. Let me double-check by counting up "
             "from two: three, four. So the sum is 4.")
ANSWER = "2 + 2 = 4."
SCRIPT = f"{REASONING}</think>\n\n{ANSWER}"
# Without the background-networking flags Chromium tries to reach Google's servers at startup.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=900,640", "--remote-debugging-pipe"]


class Browser:
    def __init__(self, profile: Path) -> None:
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        assert binary, "this test needs Chromium: apt-get install chromium"
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4.
        self._proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, pass_fds=(3, 4),
            preexec_fn=lambda: (os.dup2(to_chrome_r, 3), os.dup2(from_chrome_w, 4)))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer, self._next_id, self.session = b"", 0, None

    def call(self, method: str, **params):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                ready, _, _ = select.select([self._from_chrome], [], [], 30)
                assert ready, f"chromium did not answer {method} within 30 s"
                chunk = os.read(self._from_chrome, 1 << 16)
                assert chunk, "chromium exited"
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                assert "error" not in reply, reply
                return reply["result"]

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url=url)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def js(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"page never satisfied {expression}; body: {self.js('document.body.innerText')}")

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait(timeout=20)
        os.close(self._to_chrome)
        os.close(self._from_chrome)


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
            service.batcher.decoder.resume.set()
            assert browser.wait_for(f"{ANSWER_TEXT} === {json.dumps(ANSWER)} && {ANSWER_TEXT}") == ANSWER
            assert browser.js(REASONING_TEXT) == REASONING
            assert browser.js(f"{THINKING}.querySelector('summary').textContent") == "Reasoning"
            # the block sits above the answer, and it folds
            assert browser.js(f"{THINKING}.getBoundingClientRect().bottom <= "
                              "document.querySelector('.answer').getBoundingClientRect().top") is True
            browser.js(f"{THINKING}.querySelector('summary').click()")
            assert browser.js(f"{THINKING}.open") is False
        finally:
            service.batcher.decoder.resume.set()
            browser.close()


def test_screenshot_of_a_finished_reply(tmp_path):
    take_screenshot(tmp_path / "chat.png", tmp_path / "profile")
    assert (tmp_path / "chat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "chat.png").stat().st_size > 10_000
