"""The browser as a device (`browser:chromium`): Debian's Chromium, driven by Playwright, runs the bundle in a page.

ONNX artifacts run in onnxruntime-web (WASM), .tflite artifacts in LiteRT.js, both from the npm packages `make setup`
installs into .node/web (never from the internet). The bundle is served from 127.0.0.1 on an ephemeral port with
COOP `same-origin` + COEP `require-corp`, so the page is cross-origin isolated and WASM threads work. The page
(web/device.html) times the fixed inputs with performance.now() using the bundle's warm-up and runs, runs every
row of bundle.json's "eval" and "judge" entries one at a time, and PUTs its outputs back to the server, fetched from
the runtime by the output names bundle.json lists (the task's: start_logits and end_logits, or logits) and saved as
one .npy per name in the bundle folder; the host judges them through bundle.py like any other device.

These are real timings of this machine's CPU through the browser's WASM engine, not emulation: the rows carry no
`emulated` mark and sit in latency tables and plots under their own device (`browser:chromium` + browser version).

`pocketbert device web ARTIFACT` serves the QA page (web/qa.html) for one artifact folder instead.

Speed beside the native runtimes (a benchmark, not a test; minutes at seq 384):
    pocketbert device browser-speed ONNX_FP32 ONNX_INT8 TFLITE_FP32 TFLITE_INT8 --out DIR
times each artifact on `host` (2 threads) and in Chromium at 1 and 2 WASM threads, round by round, merges the rows
into DIR/results.json and writes DIR/browser_speed.md (1t/2t above 1: the second WASM thread really worked).
"""
from __future__ import annotations

import importlib.util
import json
import mimetypes
import os
import shutil
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from pocketbert.errors import PocketbertError
from pocketbert.manifest import manifest_task, read_manifest
from pocketbert.mobile_harness.bundle import check_judge_outputs, check_outputs, outcome
from pocketbert.mobile_harness.linux import HostTarget
from pocketbert.mobile_harness.run import run_on_device
from pocketbert.mobile_harness.targets import DEFAULT_TIMEOUT_S, DeviceLost, Target, TargetOptions, register_target
from pocketbert.results import latency_stats, machine_info
from pocketbert.tasks import QUESTION_ANSWERING

WEB_DIR = Path(__file__).with_name("web")
REPO_ROOT = Path(__file__).resolve().parents[1]
# Where `make setup` installs onnxruntime-web and @litertjs/core (POCKETBERT_WEB_MODULES overrides it).
NODE_MODULES = Path(os.environ.get("POCKETBERT_WEB_MODULES") or REPO_ROOT / ".node" / "web" / "node_modules")
CHROMIUM = os.environ.get("POCKETBERT_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run")
SETUP_HINT = "run `make setup` (it installs Debian's chromium, the pinned npm packages into .node/web and playwright)"
# The headers that make a page cross-origin isolated (SharedArrayBuffer, hence WASM threads).
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
                     "Cross-Origin-Resource-Policy": "same-origin"}
CONTENT_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
                 ".json": "application/json", ".html": "text/html; charset=utf-8", ".css": "text/css",
                 ".map": "application/json"}

# format -> the web runtime that runs it.
WEB_RUNTIMES = {"onnx": "onnxruntime-web", "tflite": "litert.js"}
# (format, precision) -> why the web runtime cannot run it: found by running tiny artifacts of each precision in
# Chromium 156 with onnxruntime-web 1.30.0 and @litertjs/core 2.5.3 (tests/test_device_browser.py keeps them honest).
REFUSED_PRECISIONS: dict[tuple[str, str], str] = {}
RESULT_NAME = "result.json"


def web_modules() -> Path:
    """The node_modules folder that holds onnxruntime-web and @litertjs/core, refused with the setup hint if absent."""
    if not (NODE_MODULES / "onnxruntime-web" / "package.json").is_file() or \
            not (NODE_MODULES / "@litertjs" / "core" / "package.json").is_file():
        raise PocketbertError(f"onnxruntime-web / @litertjs/core are not installed in {NODE_MODULES}; {SETUP_HINT}")
    return NODE_MODULES


def package_version(name: str) -> str | None:
    """The installed version of npm package `name` (None where unreadable), as the target list and the pages report it."""
    try:
        return json.loads((NODE_MODULES / name / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


# --- the server ------------------------------------------------------------------------------------------------

class WebServer:
    """A loopback HTTP server in a thread: /web/ (the pages), /node/ (the npm packages), /b/NAME/ (folders mounted
    by name). A mounted folder accepts PUT only for the file names it was mounted with (the page's outputs)."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1"):
        self.mounts: dict[str, tuple[Path, frozenset[str]]] = {}
        self.roots = {"web": WEB_DIR, "node": web_modules()}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: the page's own log says what happened
                pass

            def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8"):
                self.send_response(code)
                self._headers(content_type, len(body))
                self.wfile.write(body)

            def _headers(self, content_type: str, length: int):
                for key, value in ISOLATION_HEADERS.items():
                    self.send_header(key, value)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(length))
                self.end_headers()

            def do_GET(self, body: bool = True):
                if self.path == "/favicon.ico":  # browsers ask; a 404 would be a console error in every page
                    return self._send(204, b"")
                path = server.resolve(self.path)
                if path is None or not path.is_file():
                    return self._send(404, b"not found")
                content_type = CONTENT_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or \
                    "application/octet-stream"
                self.send_response(200)
                self._headers(content_type, path.stat().st_size)
                if body:
                    with path.open("rb") as handle:
                        shutil.copyfileobj(handle, self.wfile, 1 << 20)

            def do_HEAD(self):
                self.do_GET(body=False)

            def do_PUT(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    server.store(self.path, body, self.headers.get("X-Shape"))
                except PocketbertError as err:
                    return self._send(403, str(err).encode())
                self._send(200, b"saved")

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="pocketbert-web", daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        """The port the server listens on (the ephemeral one when started with port 0)."""
        return self.httpd.server_address[1]

    def url(self, path: str = "") -> str:
        """The loopback URL of `path` on this server."""
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def mount(self, name: str, folder: Path, writable: tuple[str, ...] = ()) -> str:
        """Serve `folder` under /b/NAME/, accepting PUT for the `writable` file names only; returns that URL path."""
        self.mounts[name] = (Path(folder), frozenset(writable))
        return f"/b/{urllib.parse.quote(name)}/"

    def unmount(self, name: str) -> None:
        """Stop serving the folder mounted as `name` (no error if it is not mounted)."""
        self.mounts.pop(name, None)

    def _split(self, url_path: str) -> tuple[str, list[str]] | None:
        parts = [urllib.parse.unquote(p) for p in urllib.parse.urlsplit(url_path).path.split("/") if p]
        if not parts or any(p in (".", "..") or "\\" in p for p in parts):
            return None
        return parts[0], parts[1:]

    def resolve(self, url_path: str) -> Path | None:
        """The file a GET of `url_path` serves, or None; `.` and `..` segments are refused, never resolved."""
        split = self._split(url_path)
        if split is None:
            return None
        root, rest = split
        if root == "b" and rest and rest[0] in self.mounts:
            return self.mounts[rest[0]][0].joinpath(*rest[1:]) if len(rest) > 1 else None
        if root in self.roots and rest:
            return self.roots[root].joinpath(*rest)
        return None

    def store(self, url_path: str, body: bytes, shape: str | None) -> Path:
        """Save a PUT body into a mounted folder: as .npy of little-endian float32 when the page sent a shape
        (X-Shape), else as is; refused for any name the folder was not mounted with."""
        split = self._split(url_path)
        if split is None or split[0] != "b" or len(split[1]) != 2 or split[1][0] not in self.mounts:
            raise PocketbertError(f"cannot write {url_path}")
        folder, writable = self.mounts[split[1][0]]
        name = split[1][1]
        if name not in writable:
            raise PocketbertError(f"{name} is not an output of this page")
        path = folder / name
        if shape:
            dims = [int(d) for d in shape.split(",")]
            np.save(path, np.frombuffer(body, dtype="<f4").reshape(dims))
        else:
            path.write_bytes(body)
        return path

    def close(self) -> None:
        """Stop serving and free the port."""
        self.httpd.shutdown()
        self.httpd.server_close()


# --- the browser -------------------------------------------------------------------------------------------------

class Chromium:
    """Debian's Chromium under Playwright, with a fresh throw-away profile; Playwright never downloads a browser."""

    def __init__(self, executable: str = CHROMIUM):
        if not Path(executable).is_file():
            raise PocketbertError(f"Chromium is not installed at {executable}; {SETUP_HINT}")
        try:
            from playwright.sync_api import sync_playwright  # lazy: optional; only the browser target and its tests need it
        except ImportError:
            raise PocketbertError(f"the Python package playwright is not installed; {SETUP_HINT}") from None
        self.profile = tempfile.mkdtemp(prefix="pocketbert-chromium-")
        self.playwright = sync_playwright().start()
        try:
            self.context = self.playwright.chromium.launch_persistent_context(
                self.profile, executable_path=executable, headless=True, args=list(CHROMIUM_ARGS))
        except Exception as err:
            self.playwright.stop()
            shutil.rmtree(self.profile, ignore_errors=True)
            raise PocketbertError(f"Chromium ({executable}) did not start: {str(err).splitlines()[0]}") from None

    def open(self, url: str, done: str, timeout_s: float) -> tuple[Any, list[str]]:
        """A new tab at `url`, returned once the JS expression `done` is truthy; with the page's console errors."""
        page = self.context.new_page()
        messages: list[str] = []
        page.on("console", lambda m: messages.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda err: messages.append(f"pageerror: {err}"))
        from playwright.sync_api import TimeoutError as PlaywrightTimeout  # lazy: optional, as in __init__

        try:
            page.goto(url)
            page.wait_for_function(done, timeout=timeout_s * 1e3, polling=100)
        except PlaywrightTimeout:
            page.close()
            detail = "; ".join(messages[-3:]) or "the page logged nothing"
            raise PocketbertError(f"the page at {url} did not finish within {timeout_s:.0f} s ({detail}); "
                                  "raise --timeout") from None
        except Exception as err:  # the tab or the browser died (out of memory, killed)
            raise DeviceLost(f"Chromium stopped answering: {str(err).strip().splitlines()[0]}") from None
        return page, messages

    def thread_cpu(self) -> dict[tuple[int, int], float] | None:
        """User + system CPU seconds of every thread of this Chromium and the processes under it (renderers run the
        WASM threads as OS threads), by (pid, thread id); None where psutil cannot read them."""
        try:
            import psutil  # lazy: optional (no dependency of pocketbert); without it the row says None
        except ImportError:
            return None
        flag = f"--user-data-dir={self.profile}"
        processes = {}
        # Every process started with this profile (the browser, and helpers that exited but linger as zombies) and
        # everything under them (zygotes, renderers, utility processes).
        for process in psutil.process_iter(["cmdline"]):
            if flag in (process.info["cmdline"] or []):
                try:
                    processes.update({p.pid: p for p in [process, *process.children(recursive=True)]})
                except psutil.Error:
                    pass
        seconds = {}
        for each in processes.values():
            try:
                for thread in each.threads():
                    seconds[each.pid, thread.id] = thread.user_time + thread.system_time
            except psutil.Error:
                pass
        return seconds or None

    def close(self) -> None:
        """Close the browser, stop Playwright and delete the throw-away profile."""
        try:
            self.context.close()
        finally:
            self.playwright.stop()
            shutil.rmtree(self.profile, ignore_errors=True)


def browser_facts(chromium: Chromium, server: WebServer, timeout_s: float = 60) -> dict:
    """What the browser says about itself (web/probe.html): version, user agent, cores, WASM SIMD, isolation."""
    page, _ = chromium.open(server.url("/web/probe.html"), "window.pocketbertFacts", timeout_s)
    facts = page.evaluate("window.pocketbertFacts")
    page.close()
    return facts


def busy_threads(before: dict | None, after: dict | None, wall_s: float, share: float = 0.25) -> dict:
    """Whether the WASM threads really ran, from the CPU time each Chromium thread spent during one page's run:
    busy_threads counts the threads that used at least `share` of the busiest one's CPU time (the page's main
    thread plus, with N WASM threads, N - 1 pool workers doing comparable work), whatever else loads the machine;
    chromium_cpu_per_wall is all of Chromium's CPU seconds per wall second (below 1 on a loaded machine)."""
    if before is None or after is None or wall_s <= 0:
        return {"busy_threads": None, "chromium_cpu_per_wall": None}
    spent = [seconds - before.get(key, 0.0) for key, seconds in after.items()]
    busiest = max(spent, default=0.0)
    return {"busy_threads": sum(1 for s in spent if busiest > 0 and s >= share * busiest),
            "chromium_cpu_per_wall": round(sum(spent) / wall_s, 2)}


# --- the target --------------------------------------------------------------------------------------------------

def refusal(format_name: str, precision: str) -> str | None:
    """Why the browser cannot run this artifact (None: it can)."""
    if format_name not in WEB_RUNTIMES:
        return (f"{format_name} cannot run in a browser: browser:chromium runs onnx (onnxruntime-web) and tflite "
                "(LiteRT.js)")
    return REFUSED_PRECISIONS.get((format_name, precision))


@register_target
class BrowserTarget(Target):
    """`browser:chromium`: this machine's Chromium, running artifacts in WASM runtimes inside a page."""

    kind = "browser"
    usage = "browser:chromium"
    default_workdir = ""
    browsers = ("chromium",)

    def __init__(self, spec: str = "browser:chromium", workdir: str | None = None, timeout: float = DEFAULT_TIMEOUT_S):
        super().__init__(spec, workdir, timeout)
        name = spec.split(":", 1)[1] if ":" in spec else ""
        if name not in self.browsers:
            raise PocketbertError(f"target '{spec}': the browser target is {self.usage}")
        self.server: WebServer | None = None
        self.chromium: Chromium | None = None
        self.facts: dict | None = None

    @classmethod
    def from_spec(cls, spec: str, options: TargetOptions) -> Target:
        return cls(spec, options.workdir, options.timeout)

    @classmethod
    def discover(cls) -> list[dict]:
        missing = [what for what, ok in (("chromium", Path(CHROMIUM).is_file()),
                                         ("npm packages", (NODE_MODULES / "onnxruntime-web").is_dir()),
                                         ("playwright", _has_playwright())) if not ok]
        if missing:
            return [{"target": cls.usage, "state": "not installed",
                     "note": f"missing {', '.join(missing)}: {SETUP_HINT}"}]
        return [{"target": cls.usage, "state": "ready",
                 "note": f"Debian Chromium + onnxruntime-web {package_version('onnxruntime-web')}, "
                         f"@litertjs/core {package_version('@litertjs/core')} (WASM, this CPU)"}]

    def check(self) -> None:
        self._started()

    def _started(self) -> tuple[Chromium, WebServer, dict]:
        """The browser, its server and what the browser says about itself, started on first use."""
        if self.chromium is None or self.server is None or self.facts is None:
            self.close()
            self.server = WebServer()
            try:
                self.chromium = Chromium()
            except BaseException:
                self.close()
                raise
            self.facts = browser_facts(self.chromium, self.server)
        return self.chromium, self.server, self.facts

    def info(self) -> dict:
        facts, machine = self._started()[2], machine_info()
        return {
            "model": f"Chromium {facts['browser_version']} (headless, WASM) on {machine['cpu']}",
            "soc": machine["cpu"], "os": machine["os"], "abi": "wasm32", "cores": facts["hardware_concurrency"],
            "cpu_features": machine["cpu_features"], "governor": None, "thermal": None,
            "browser": facts["browser"], "browser_version": facts["browser_version"],
            "user_agent": facts["user_agent"], "cross_origin_isolated": facts["cross_origin_isolated"],
            "wasm_simd": facts["wasm_simd"],
        }

    def measure(self, bundle, runners: dict[str, Path]) -> dict:
        runtime = WEB_RUNTIMES.get(bundle.format, bundle.runtime)
        refused = refusal(bundle.format, bundle.manifest["precision"])
        if refused:
            return {"status": "not_measurable", "runtime": runtime, "reason": refused}
        chromium, server, _ = self._started()
        config = bundle.config
        writable = [RESULT_NAME, *config["device_outputs"]] + [name for key in ("eval", "judge")
                                                               for name in (config.get(key) or {}).get("outputs", [])]
        for name in writable:
            (bundle.folder / name).unlink(missing_ok=True)
        base = server.mount(bundle.name, bundle.folder, tuple(writable))
        query = urllib.parse.urlencode({"bundle": base, "litert": package_version("@litertjs/core") or "?"})
        cpu_before, started = chromium.thread_cpu(), time.perf_counter()
        try:
            page, messages = chromium.open(server.url(f"/web/device.html?{query}"), "window.pocketbertDone", self.timeout)
            cpu_after, wall = chromium.thread_cpu(), time.perf_counter() - started
            page.close()
        finally:
            server.unmount(bundle.name)
        threads_used = busy_threads(cpu_before, cpu_after, wall)
        result_path = bundle.folder / RESULT_NAME
        if not result_path.is_file():
            return {"status": "failed", "runtime": runtime,
                    "reason": f"the page returned no result ({'; '.join(messages[-2:]) or 'no console output'})"}
        data = json.loads(result_path.read_text())
        if data.get("error"):
            return {"status": "failed", "runtime": runtime, "reason": f"in the browser: {data['error']}"}
        # The rulebook decides on the judge windows where the bundle has them, else on the timed input's logits.
        checked = check_judge_outputs(bundle) if config.get("judge") else None
        if checked is None:
            checked = check_outputs([np.load(bundle.folder / name) for name in config["device_outputs"]], bundle)
        page_facts = data["device"]
        return {"runtime": data["runtime"], "load_ms": data["load_ms"], "first_ms": data["first_ms"],
                "latency_ms": latency_stats(data["latencies_ms"], warmup=data["warmup"]),
                "peak_rss_bytes": None, "outputs": checked, "runtime_settings": data.get("runtime_settings"),
                "device_facts": {"runtime": data["runtime"], "runtime_version": data["runtime_version"],
                                 "threads": data["threads"], "wasm_thread_pool": data.get("wasm_thread_pool"),
                                 "runtime_settings": data.get("runtime_settings"),
                                 **threads_used,
                                 "browser": page_facts["browser"], "browser_version": page_facts["browser_version"],
                                 "wasm_simd": page_facts["wasm_simd"],
                                 "cross_origin_isolated": page_facts["cross_origin_isolated"]},
                **outcome(checked)}

    def close(self) -> None:
        if self.chromium is not None:
            self.chromium.close()
            self.chromium = None
        if self.server is not None:
            self.server.close()
            self.server = None

    # The "device" is a page on this machine: bundles are served from their staging folder, never copied.
    def push(self, local: Path, remote: str) -> None:
        pass

    def run(self, argv, timeout=None):
        raise PocketbertError("browser:chromium runs pages, not programs")

    def pull(self, remote: str, local: Path) -> None:
        pass

    def remove(self, remote: str) -> None:
        pass

    def free_space(self) -> int | None:
        return None


def _has_playwright() -> bool:
    return importlib.util.find_spec("playwright") is not None


# --- the QA page ------------------------------------------------------------------------------------------------

def serve_qa_page(artifact: str | Path, port: int = 0, threads: int | None = None,
                  max_seq_len: int | None = None) -> tuple[WebServer, str]:
    """Serve web/qa.html for one artifact folder (from `pocketbert export`); returns the server and the page URL.
    The page cuts windows as `pocketbert eval` does (`max_seq_len` is eval's --max-seq-len, default 384)."""
    folder = Path(artifact)
    manifest = read_manifest(folder)
    if manifest_task(manifest) is not QUESTION_ANSWERING:
        raise PocketbertError(f"'{folder}' is a {manifest_task(manifest).name} artifact; the web page answers questions "
                              "with question-answering artifacts only (time or judge this one with `pocketbert device "
                              "run --target browser:chromium`)")
    refused = refusal(manifest["format"], manifest["precision"])
    if refused:
        raise PocketbertError(refused)
    if not (folder / "tokenizer.json").is_file():
        raise PocketbertError(f"'{folder}' has no tokenizer.json; re-export it with `pocketbert export`")
    server = WebServer(port)
    base = server.mount("artifact", folder)
    query = {"artifact": base, "litert": package_version("@litertjs/core") or "?"}
    if threads:
        query["threads"] = str(threads)
    if max_seq_len:
        query["max_seq_len"] = str(max_seq_len)
    return server, server.url(f"/web/qa.html?{urllib.parse.urlencode(query)}")


# --- speed: the browser beside this host's native runtimes ------------------------------------------------------

def speed_comparison(artifacts: list[str | Path], out: str | Path, threads: tuple[int, ...] = (1, 2),
                     host_threads: int = 2, warmup: int = 5, runs: int = 20, rounds: int = 2,
                     seq_len: int | None = None) -> list[dict]:
    """Each artifact on `host` (its native runtime, `host_threads`) and in Chromium at each of `threads`, artifact by
    artifact and round by round (host, browser 1 thread, browser 2 threads, next artifact, ...) so that load on a
    shared machine hits all alike; every row is merged into OUT/results.json (later rounds replace earlier ones of
    the same kind). Returns [{artifact, format, precision, where, threads, threads_configured, trimmed_mean, p50}]
    for every round. A benchmark, not a test: minutes at seq 384."""
    rows = []
    for round_index in range(rounds):
        for artifact in artifacts:
            plan = [(HostTarget(), host_threads)] + [(BrowserTarget(), n) for n in threads]
            for target, n in plan:
                record, = run_on_device(target, [artifact], out, warmup=warmup, runs=runs, threads=n, seq_len=seq_len)
                latency = record["latency_ms"] or {}
                rows.append({"round": round_index, "artifact": str(artifact), "format": record["format"],
                             "precision": record["precision"], "seq_len": record["seq_len"],
                             "where": f"{record['device']['target']} {record['runtime']}", "threads": n,
                             "threads_configured": record["device"].get("threads"), "status": record["status"],
                             "cpu_per_wall": record["device"].get("chromium_cpu_per_wall"),
                             "busy_threads": record["device"].get("busy_threads"),
                             "trimmed_mean": latency.get("trimmed_mean"), "p50": latency.get("p50")})
    return rows


def speed_table(rows: list[dict]) -> str:
    """The best (lowest) trimmed mean over rounds of each artifact x place x threads, as a markdown table, with the
    browser's 1-thread / 2-thread ratio (above 1: the second WASM thread really worked)."""
    best: dict[tuple, dict] = {}
    for row in rows:
        key = (row["format"], row["precision"], row["seq_len"], row["where"], row["threads"])
        if row["trimmed_mean"] is not None and (key not in best or row["trimmed_mean"] < best[key]["trimmed_mean"]):
            best[key] = row
    lines = ["| format | precision | seq | where | threads (configured) | trimmed mean ms | vs native | 1t/2t | "
             "busy Chromium threads | Chromium CPU s per wall s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (fmt, precision, seq, where, n), row in sorted(best.items()):
        native = next((r for (f, p, s, w, _), r in best.items() if (f, p, s) == (fmt, precision, seq)
                       and w.startswith("host")), None)
        ratio = f"{row['trimmed_mean'] / native['trimmed_mean']:.1f}x" if native and row is not native else "-"
        one = best.get((fmt, precision, seq, where, 1))
        scaling = f"{one['trimmed_mean'] / row['trimmed_mean']:.2f}" if one and n > 1 and where.startswith("browser") \
            else "-"
        lines.append(f"| {fmt} | {precision} | {seq} | {where} | {n} ({row['threads_configured']}) | "
                     f"{row['trimmed_mean']:.2f} | {ratio} | {scaling} | {row.get('busy_threads') or '-'} | "
                     f"{row.get('cpu_per_wall') or '-'} |")
    return "\n".join(lines)
