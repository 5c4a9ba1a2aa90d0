"""Headless Chromium (Debian package `chromium`) driven over the DevTools protocol on a pipe
(`--remote-debugging-pipe`: NUL-separated JSON on file descriptors 3 and 4), so tests can wait for
page states instead of guessing times. Shared by the chat-page and report tests."""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

# Without the background-networking flags Chromium tries to reach Google's servers at startup.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=900,640", "--remote-debugging-pipe"]


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self, profile: Path, flags: list[str] | None = None) -> None:
        binary = chromium_binary()
        assert binary, "this test needs Chromium: apt-get install chromium"
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4.
        self._proc = subprocess.Popen(
            [binary, *FLAGS, *(flags or []), f"--user-data-dir={profile}", "about:blank"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, pass_fds=(3, 4),
            preexec_fn=lambda: (os.dup2(to_chrome_r, 3), os.dup2(from_chrome_w, 4)))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer, self._next_id, self.session = b"", 0, None
        self.events: list[dict] = []  # every protocol event received so far ({"method", "params", …})

    def _read_message(self, timeout: float, what: str) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_chrome], [], [], timeout)
            assert ready, f"chromium did not answer {what} within {timeout:.0f} s"
            chunk = os.read(self._from_chrome, 1 << 16)
            assert chunk, "chromium exited"
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, **params):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read_message(30, method)
            if "method" in reply and "id" not in reply:
                self.events.append(reply)
            elif reply.get("id") == self._next_id:
                assert "error" not in reply, reply
                return reply["result"]

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url=url)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def open_watching_network(self, url: str) -> None:
        """Open a blank tab, enable the Network domain, then navigate: every request the page makes,
        its own document included, lands in `events` as Network.requestWillBeSent."""
        self.open("about:blank")
        self.call("Network.enable")
        self.call("Page.enable")
        self.call("Page.navigate", url=url)

    def requests(self) -> list[str]:
        """URLs of the requests seen so far (Network.enable must be on)."""
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

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

    def screenshot(self, path: Path, **params) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png", **params)["data"]))

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait(timeout=20)
        os.close(self._to_chrome)
        os.close(self._from_chrome)
