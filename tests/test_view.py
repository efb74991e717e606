"""`rtpose view` in a real headless Chromium, against real daemon runs on the fly clip.

The browser is Debian's ``chromium`` driven through ``chromium-driver`` (selenium); both
are installed by ``make setup`` (as root, with apt-get) where they are missing. A
machine without them fails these tests, it never skips them. Set
``RTPOSE_VIEW_SCREENSHOT=path.png`` to keep the screenshot (the README's comes from here).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from rtpose.engine.base import load_engine
from rtpose.live.daemon import Daemon
from rtpose.live.protocol import load_protocol

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "experiments" / "male_approach_replay.yaml"
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1280")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout_s: float, what: str, interval_s: float = 0.2):
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail("chromium and chromium-driver are needed for the view's browser tests: "
                    "`make setup` installs them (apt-get install chromium chromium-driver, as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


class ViewProcess:
    """``python -m rtpose view`` as a separate process, its terminal output collected."""

    def __init__(self, address: str, tmp_path: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = tmp_path / f"view-{self.port}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "rtpose", "view", address, "--port", str(self.port),
                                         *extra], stdout=open(self.log, "w"), stderr=subprocess.STDOUT, env=env,
                                        cwd=REPO)
        wait_for(lambda: "rtpose view: http://" in self.output() or self.process.poll() is not None, 60,
                 "the view to serve its page")
        assert self.process.poll() is None, self.output()

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def banner(driver) -> tuple[str, str]:
    element = driver.find_element("id", "banner")
    return element.get_attribute("data-state"), element.text


def drawn(driver) -> tuple[int, int, int]:
    """(frames drawn, frame index drawn, a checksum of the canvas's pixels)."""
    return driver.execute_script(
        "const el = document.getElementById('frame-number');"
        "const canvas = document.getElementById('frame');"
        "const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;"
        "let sum = 0; for (let i = 0; i < pixels.length; i += 4) sum = (sum * 31 + pixels[i]) % 1000000007;"
        "return [Number(el.dataset.drawn || 0), Number(el.dataset.frame || -1), sum];")


@pytest.fixture(scope="module")
def engine():
    engine = load_engine(REPO / "models" / "flies13", "ort-cpu")
    yield engine
    engine.close()


def start_run(address: str, tmp_path: Path, engine, duration: float, name: str) -> tuple[Daemon, threading.Thread]:
    """The demo protocol (preview on) on ``address``, in a thread of this process.

    Frames 1100-1499, looped: the male-approach rule is false, true, false, true, false
    there for stretches of 40-80 frames (an offline pass of the shipped model), so it
    changes however many frames a loaded machine drops.
    """
    loaded = load_protocol(DEMO, [f"publisher.address={address}", f"recorder.path={tmp_path / name}",
                                  "recorder.export_slp=false", f"name={name}", "camera.frames=1100-1499",
                                  "camera.loop=true"], duration=duration)
    assert loaded.protocol.publisher.preview is not None  # the demo shows the picture
    daemon = Daemon(loaded, engine=engine, handle_signals=False)
    results = []
    thread = threading.Thread(target=lambda: results.append(daemon.run()), daemon=True)
    thread.start()
    thread.results = results
    return daemon, thread


def test_the_page_follows_a_run_and_the_next_one(browser, engine, tmp_path, flies_video_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    view = ViewProcess(address, tmp_path)
    try:
        browser.get(view.url)
        # Before any daemon: the page and the terminal say that nothing answers.
        wait_for(lambda: banner(browser)[0] == "waiting", 20, "the page to say nothing answers")
        assert address in banner(browser)[1]
        wait_for(lambda: "nothing answers at" in view.output(), 10, "the terminal to say nothing answers")

        daemon, thread = start_run(address, tmp_path, engine, duration=6.0, name="first")
        wait_for(lambda: banner(browser)[0] == "live", 30, "the page to go live")
        wait_for(lambda: drawn(browser)[0] >= 2, 20, "a preview frame drawn")
        count1, frame1, pixels1 = drawn(browser)
        wait_for(lambda: drawn(browser)[1] > frame1 + 10, 20, "the drawn frame to advance")
        count2, frame2, pixels2 = drawn(browser)
        assert count2 > count1 and pixels2 != pixels1
        # The run's description comes with the status topic (every 0.5 s; a PUB socket drops what it
        # sends before the view's subscription reaches it), which may trail the first preview frames.
        wait_for(lambda: all(word in browser.find_element("id", "run-info").text
                             for word in ("first", "ort-cpu", "flies13")), 10, "the run's description")
        # A rule change shows up (the clip's opening seconds hold male approaches that come and go).
        wait_for(lambda: int(browser.find_element("id", "rule-male_approach").get_attribute("data-changes")) >= 1,
                 30, "a change of male_approach on the page")
        # The counters come with the status topic (every STATUS_PERIOD_S), not with the poses the
        # rule change rode on: a loaded machine may show the change before the next status.
        wait_for(lambda: browser.find_element("id", "n-processed").text.isdigit()
                 and int(browser.find_element("id", "n-processed").text) > 0, 10, "a processed count above 0")
        wait_for(lambda: browser.find_elements("css selector", "#events li:not(.muted)"), 20, "a trigger event")
        screenshot = Path(os.environ.get("RTPOSE_VIEW_SCREENSHOT") or tmp_path / "view.png")
        assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000

        thread.join(60)
        result = thread.results[0]
        assert result.error is None and result.summary["preview"]["encoded"] > 0
        # The last status says the run stopped, on the page and in the terminal.
        wait_for(lambda: banner(browser)[0] == "stopped", 20, "the page to say the daemon stopped")
        assert "duration" in banner(browser)[1]
        wait_for(lambda: "the daemon stopped (duration)" in view.output(), 10, "the terminal to say it stopped")
        stopped_at = drawn(browser)[0]

        # The daemon starts again on the same address: the view picks the new run up.
        daemon2, thread2 = start_run(address, tmp_path, engine, duration=3.0, name="second")
        wait_for(lambda: banner(browser)[0] == "live" and "second" in browser.find_element("id", "run-info").text,
                 30, "the page to follow the second run")
        wait_for(lambda: drawn(browser)[0] > stopped_at + 2, 20, "frames of the second run drawn")
        thread2.join(60)
        wait_for(lambda: banner(browser)[0] == "stopped", 20, "the page to say the second run stopped")
        assert view.process.poll() is None  # the view outlived both runs
    finally:
        view.stop()
    assert "error" not in view.output().lower(), view.output()


class FakePeer:
    """Something at an address that is not an rtpose daemon: a raw TCP server or a foreign ZeroMQ PUB."""

    def __init__(self, kind: str):
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=getattr(self, f"_{kind}"), daemon=True)
        self.thread.start()

    def _http(self) -> None:  # answers like a web server and hangs up
        with socket.create_server(("127.0.0.1", self.port)) as server:
            server.settimeout(0.1)
            while not self.stop.is_set():
                try:
                    connection, _ = server.accept()
                except TimeoutError:
                    continue
                with connection:
                    connection.settimeout(1.0)
                    try:
                        connection.recv(64)
                        connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    except OSError:
                        pass

    def _zmq_other(self) -> None:  # a ZeroMQ publisher of something else
        context = zmq.Context()
        pub = context.socket(zmq.PUB)
        pub.bind(self.address)
        while not self.stop.wait(0.05):
            pub.send(b"ticks 12345")
        pub.close(0)
        context.term()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.mark.parametrize("kind, page_says, terminal_says", [
    ("http", "not as a ZeroMQ publisher", "not as a ZeroMQ publisher"),
    ("zmq_other", "does not carry an rtpose stream", "messages on topic(s) ticks"),
])
def test_a_wrong_address_is_named_on_the_page_and_in_the_terminal(browser, tmp_path, kind, page_says,
                                                                  terminal_says):
    peer = FakePeer(kind)
    view = ViewProcess(peer.address, tmp_path)
    try:
        browser.get(view.url)
        wait_for(lambda: banner(browser)[0] == "error", 30, f"the page to report the {kind} peer")
        assert page_says in banner(browser)[1] and peer.address in banner(browser)[1]
        wait_for(lambda: terminal_says in view.output(), 10, "the terminal to report it")
    finally:
        view.stop()
        peer.close()
    assert view.output().count("error:") == 1, view.output()  # said once, not once per message


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_view_with_rtpose_runs_exit_status(tmp_path, signum, status):
    """Ctrl-C or SIGTERM stops the server and exits 128 + the signal (130, 143), as ``rtpose
    run`` and ``rtpose listen`` do; its last line says it stopped, with no traceback."""
    view = ViewProcess(f"tcp://127.0.0.1:{free_port()}", tmp_path)
    view.process.send_signal(signum)
    assert view.process.wait(20) == status, view.output()
    assert view.output().rstrip().endswith("rtpose view: stopped") and "Traceback" not in view.output()


def test_an_address_with_no_tcp_port_is_one_line_and_exit_status_2():
    process = subprocess.run([sys.executable, "-m", "rtpose", "view", "tcp://127.0.0.1:99999", "--port",
                              str(free_port())], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert process.returncode == 2 and process.stdout == ""
    assert process.stderr == "error: tcp://127.0.0.1:99999: port 99999 is not a TCP port (1-65535)\n"


def test_a_malformed_address_is_one_line_and_exit_status_2(tmp_path):
    process = subprocess.run([sys.executable, "-m", "rtpose", "view", "localhost:5555", "--port", str(free_port())],
                             capture_output=True, text=True, timeout=60, cwd=REPO)
    assert process.returncode == 2
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: localhost:5555: not a ZeroMQ address"), process.stderr


def test_a_busy_port_is_one_line_naming_a_free_one_and_nothing_else():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = subprocess.run([sys.executable, "-m", "rtpose", "view", "--port", str(port)],
                                 capture_output=True, text=True, timeout=60, cwd=REPO)
    assert process.returncode == 2 and process.stdout == "", process.stdout  # no stream line before it
    line, = process.stderr.strip().splitlines()
    prefix = f"error: --port {port}: in use on 127.0.0.1 (another rtpose view, or another server); give another, e.g. --port "
    assert line.startswith(prefix), line
    suggested = int(line[len(prefix):])
    assert port < suggested < port + 50


WEB_SERVER_SAYS = "is a web server (HTTP), not a ZeroMQ publisher: is it a view's page port?"


@pytest.mark.parametrize("kind", ["http.server", "view page port"])
def test_a_web_server_at_the_address_is_named_as_such(browser, tmp_path, kind):
    """``python -m http.server`` never answers ZeroMQ's greeting; a view's page port (aiohttp) answers it
    with an HTTP error that ZeroMQ reads as frames: both are named as web servers, once, within seconds."""
    others = []
    try:
        if kind == "http.server":
            port = free_port()
            server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
            others.append(lambda: (server.terminate(), server.wait(10)))

            def answers():
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        return True
                except OSError:
                    return False
            wait_for(answers, 30, "http.server to listen")
        else:
            first = ViewProcess(f"tcp://127.0.0.1:{free_port()}", tmp_path)
            others.append(first.stop)
            port = first.port
        address = f"tcp://127.0.0.1:{port}"
        view = ViewProcess(address, tmp_path)
        try:
            browser.get(view.url)
            # ZeroMQ's own handshake timeout is 30 s: the line comes well before it
            wait_for(lambda: WEB_SERVER_SAYS in view.output(), 20, "the terminal to name a web server")
            assert f"error: {address} is a web server (HTTP)" in view.output()
            assert "the daemon's stream is its publisher.address (default tcp://127.0.0.1:5555)" in view.output()
            wait_for(lambda: banner(browser)[0] == "error" and WEB_SERVER_SAYS in banner(browser)[1], 10,
                     "the page to name a web server")
            time.sleep(1.0)  # a few more reconnections: nothing else is said
        finally:
            view.stop()
    finally:
        for stop in others:
            stop()
    assert view.output().count("error:") == 1, view.output()
    assert "does not carry an rtpose stream" not in view.output()
