"""``finer build tuning ... --executor local|slurm|ray --tasks N``: the part builds and their merge as
datatrove tasks, from the command line, against two scripted model replicas behind one router URL.

The release equals a one-machine build byte for byte (card and manifest included); a killed run
resumes without rebuilding a finished task or asking an answered prompt again; Slurm runs through
a stub ``sbatch`` that runs its job scripts here; Ray (when installed) under ``ray.init(num_cpus=2)``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from pathlib import Path

import pytest
from finer_datasets.builders.tuning.source import read_rows
from finer_datasets.builders.tuning.stage import prompt_identity

from finer_datasets.core.builder import BuildReport
from finer_datasets.core.registry import get_builder
from finer_datasets.preference.construct import part_index
from finer_datasets.testing.builder_tests import folder_files
from finer_datasets.testing.scripted import ScriptedLLM, ScriptedServer

pytest.importorskip("datatrove", reason="the [scale] extra (datatrove) is not installed")

TUNING = get_builder("tuning")
SHARD = ("--shard-samples", "7")  # several shards per split: shard boundaries are part of the comparison
_CAPTION = re.compile(r'"""\s*(.*?)\s*"""', re.S)


def finer(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "finer_datasets.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


class Router:
    """A stand-in for a router in front of model replicas (SGLang router, vllm-router): one URL,
    requests spread round-robin over the replicas by the router, not by the client."""

    def __init__(self, replicas):
        self.replicas, self.turn = [r.url.removesuffix("/v1") for r in replicas], count()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self, body=None):
                target = outer.replicas[next(outer.turn) % len(outer.replicas)] + self.path
                request = urllib.request.Request(target, data=body, headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=120) as answer:
                        status, data = answer.status, answer.read()
                except urllib.error.HTTPError as exc:
                    status, data = exc.code, exc.read()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                self._forward()

            def do_POST(self):
                self._forward(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def replicas(hook=None):
    """Two scripted model replicas behind one router; yields (router URL, replicas)."""
    with ExitStack() as stack:
        servers = [stack.enter_context(ScriptedServer(ScriptedLLM(handlers=TUNING.scripted_handlers()), hook=hook))
                   for _ in range(2)]
        yield stack.enter_context(Router(servers)).url, servers


def model(url):
    return ("--llm-base-url", url, "--llm-model", "scripted", "--no-progress", *SHARD)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The one-machine build of the sample, recorded against the replicas."""
    out = tmp_path_factory.mktemp("single") / "single"
    with replicas() as (url, servers):
        run = finer("build", "tuning", "--sample", "--out", out, *model(url))
    assert run.returncode == 0, run.stderr
    assert all(s.requests for s in servers)  # the router used both replicas
    return out


def _part_captions(part, parts):
    rows = read_rows(TUNING.sample_dir(), BuildReport(strict=False, root=TUNING.sample_dir(), policy=TUNING.policy_skips))
    return {prompt_identity(r) for r in rows if part_index(prompt_identity(r), parts) == part - 1}


def test_three_local_tasks_killed_and_resumed_equal_the_one_machine_build(single, tmp_path):
    """--executor local --tasks 3 --workers 2; part 1's prompts stall after 12 answers and the run is
    killed once parts 2 and 3 have finished; the same command again builds part 1 only (from its
    transcript: no answered prompt is asked again) and the merge: the one-machine build, byte for byte."""
    first_part = _part_captions(1, 3)
    state = {"hold": True, "answered": 0, "held": 0, "others": 0}
    release = threading.Event()
    lock = threading.Lock()

    def hook(request, n):
        found = _CAPTION.search(request["messages"][1]["content"])
        mine = found is not None and found.group(1) in first_part
        with lock:
            if not mine:
                state["others"] += 1
                return None
            if not state["hold"] or state["answered"] < 12:
                state["answered"] += 1
                return None
            state["held"] += 1
        release.wait(60)
        return 503, b'{"error": "the client is gone"}'

    logs, out = tmp_path / "logs", tmp_path / "multi"
    command = [sys.executable, "-m", "finer_datasets.cli", "build", "tuning", "--sample", "--out", str(out),
               "--executor", "local", "--tasks", "3", "--workers", "2", "--logging-dir", str(logs)]
    with replicas(hook) as (url, servers):
        run = subprocess.Popen([*command, *model(url)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        done = logs / "parts" / "completions"
        deadline = time.monotonic() + 180
        while not (state["held"] and (done / "00001").exists() and (done / "00002").exists()):
            assert run.poll() is None and time.monotonic() < deadline, "the run ended before part 1 stalled"
            time.sleep(0.05)
        os.killpg(run.pid, signal.SIGKILL)  # the run, its task processes and its helpers
        run.wait()
        release.set()
        assert not (done / "00000").exists() and not out.exists()
        state.update(hold=False, others=0)
        before = sum(s.requests for s in servers)
        again = subprocess.run([*command, *model(url)], capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        assert "3 part build(s) and the merge finished" in again.stdout
        assert state["others"] == 0  # parts 2 and 3 had finished: skipped, not built or asked again
        answered = {}
        for server in servers:
            assert server.requests  # the router used both replicas
            for key, n in server.answered.items():
                answered[key] = answered.get(key, 0) + n
        assert max(answered.values()) == 1  # no answered prompt was asked again
        assert sum(s.requests for s in servers) - before == state["answered"] - 12  # only part 1's unanswered ones
    assert folder_files(out) == folder_files(single)  # README.md and manifest.json included
    assert sorted(p.name for p in done.iterdir()) == ["00000", "00001", "00002"]
    # the primitive underneath: finer merge of the same parts records the one-machine command too
    parts = [part for part in sorted((logs / "builds").glob("part-*-of-00003")) if part.is_dir()]
    assert [p.name for p in parts] == [f"part-0000{i}-of-00003" for i in (1, 2, 3)]
    merged = finer("merge", "tuning", "--sample", "--parts", *parts, "--out", tmp_path / "merged", *SHARD,
                   "--no-progress")
    assert merged.returncode == 0, merged.stderr
    assert folder_files(tmp_path / "merged") == folder_files(single)
    # the same command again: every task has finished, nothing runs; another number of tasks is refused
    closed = model("http://127.0.0.1:9/v1")
    same = finer(*command[3:], *closed)
    assert same.returncode == 0 and "nothing to do" in same.stdout, same.stderr
    other = finer(*command[3:10], "--tasks", "4", "--logging-dir", logs, *closed)
    assert other.returncode == 2 and other.stderr.strip().splitlines() == [
        f"error: --logging-dir {logs} holds the tasks of another run (it differs in tasks); resume that run with its "
        "options or give a new --logging-dir"]


SBATCH = r'''#!{python}
"""A stub sbatch: records its arguments and script, runs a datatrove task script here (every array
index, one after the other; other jobs, e.g. stats merges, are only recorded), honours afterok
dependencies, prints the job id like sbatch."""
import json, os, re, subprocess, sys
from pathlib import Path
state = Path(__file__).with_name("jobs.json")
jobs = json.loads(state.read_text()) if state.exists() else {{}}
args, script = sys.argv[1:-1], Path(sys.argv[-1]).read_text()
job = str(101 + len(jobs))
env = dict(os.environ, SLURM_JOB_ID=job, SLURM_ARRAY_JOB_ID=job, SLURM_NODELIST="localhost")
for arg in args:
    if arg.startswith("--export=ALL,"):
        env.update(kv.split("=", 1) for kv in arg[len("--export=ALL,"):].split(","))
needs = [d for a in args if a.startswith("--dependency=") for d in a.split("=", 1)[1].split(",")]
ok = all(not d.startswith("afterok:") or jobs[d.split(":")[1]]["ok"] for d in needs)
first, last = map(int, re.search(r"#SBATCH --array=(\d+)-(\d+)", script).group(1, 2))
output = re.search(r"#SBATCH --output=(\S+)", script).group(1)
codes = []
for index in range(first, last + 1) if ok and "launch_pickled_pipeline" in script else ():
    with open(output.replace("%A", job).replace("%a", str(index)), "w") as log:
        codes.append(subprocess.run(["bash", "-c", script], env=dict(env, SLURM_ARRAY_TASK_ID=str(index)),
                                    stdout=log, stderr=subprocess.STDOUT).returncode)
jobs[job] = {{"args": args, "script": script, "ran": ok, "ok": ok and not any(codes)}}
state.write_text(json.dumps(jobs))
print(f"Submitted batch job {{job}}")
'''


def test_slurm_through_a_stub_sbatch(single, tmp_path):
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "sbatch").write_text(SBATCH.format(python=sys.executable))
    (stub / "srun").write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do case "$1" in -n|-N) shift 2;; -*) shift;; *) break;; '
                               'esac; done\nexec "$@"\n')
    (stub / "scontrol").write_text('#!/bin/sh\n[ "$1" = show ] && echo localhost\nexit 0\n')
    for tool in stub.iterdir():
        tool.chmod(0o755)
    env = dict(os.environ, PATH=f"{stub}{os.pathsep}{os.environ['PATH']}")
    with replicas() as (url, _):
        run = finer("build", "tuning", "--sample", "--out", tmp_path / "multi", *model(url), "--executor", "slurm",
                    "--slurm-partition", "debug", "--tasks", "2", "--logging-dir", tmp_path / "logs", env=env)
    assert run.returncode == 0, run.stderr
    assert "submitted to Slurm: 2 part build(s) as job 101" in run.stdout
    jobs = json.loads((stub / "jobs.json").read_text())
    parts, merge = jobs["101"], next(j for j in jobs.values() if f"{tmp_path / 'logs' / 'merge'}" in j["script"]
                                     and "launch_pickled_pipeline" in j["script"])
    assert "#SBATCH --array=0-1" in parts["script"] and "#SBATCH --partition=debug" in parts["script"]
    assert f"export PATH={Path(sys.executable).parent}" in parts["script"]
    assert "--dependency=afterok:101" in merge["args"] and merge["ok"]
    assert folder_files(tmp_path / "multi") == folder_files(single)


def test_ray_under_a_two_cpu_cluster(single, tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install ray): the Ray executor is not tested here")
    with replicas() as (url, _):
        code = ("import sys, ray; ray.init(num_cpus=2); from finer_datasets.cli import main; "
                "sys.exit(main(sys.argv[1:]))")
        run = subprocess.run([sys.executable, "-c", code, "build", "tuning", "--sample", "--out", str(tmp_path / "multi"),
                              *model(url), "--executor", "ray", "--tasks", "2", "--logging-dir", str(tmp_path / "logs")],
                             capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert folder_files(tmp_path / "multi") == folder_files(single)


def test_what_cannot_run_is_one_line_and_writes_nothing(tmp_path):
    shadow = tmp_path / "shadow" / "datatrove"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('datatrove is not installed here')\n")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("not a logging folder")
    base = ["build", "tuning", "--sample", "--out", tmp_path / "out", "--executor", "local", "--tasks", "2",
            "--logging-dir", tmp_path / "logs"]
    cases = [
        (["build", "compre_cap", "--sample", "--out", tmp_path / "out", "--executor", "local", "--tasks", "2",
          "--logging-dir", tmp_path / "logs"], None, 2, "error: --executor: FINER-CompreCap cannot be built in parts"),
        (base[:7] + ["--logging-dir", tmp_path / "logs"], None, 2, "error: --executor needs --tasks N"),
        (base[:9], None, 2, "error: --executor needs --logging-dir DIR"),
        (base + ["--part", "1/2"], None, 2, "error: --part and --executor exclude each other"),
        (base + ["--transcript", tmp_path / "t.sqlite"], None, 2, "error: --transcript and --executor exclude"),
        (base, {"PYTHONPATH": str(shadow.parent)}, 2, "error: --executor needs datatrove (the optional extra [scale]): "
                                                     "pip install 'finer-datasets[scale]'"),
        ([*base[:6], "slurm", *base[7:]], None, 2, "error: --executor slurm needs --slurm-partition NAME"),
        ([*base[:6], "slurm", *base[7:], "--slurm-partition", "x"], {"PATH": os.path.dirname(sys.executable)}, 2,
         "error: --executor slurm needs sbatch on PATH"),
        ([*base[:-1], mine], None, 6, f"error: --logging-dir {mine} already exists and was not written by"),
        ([*base[:5], "--tasks", "2", "--logging-dir", tmp_path / "logs"], None, 2,
         "error: --tasks, --logging-dir only work with --executor local|slurm|ray"),
    ]
    for args, env, code, start in cases:
        run = finer(*args, env={**os.environ, **env} if env else None)
        assert (run.returncode, run.stderr.splitlines()[-1][:len(start)]) == (code, start), (args, run.stderr)
        assert len(run.stderr.splitlines()) == 1, run.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "logs").exists()
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_a_failed_task_stops_the_run_with_its_error_and_exit_status(tmp_path):
    run = finer("build", "tuning", "--sample", "--out", tmp_path / "out", "--llm-base-url", "http://127.0.0.1:9/v1",
                "--llm-model", "scripted", "--llm-max-retries", "0", "--no-progress", "--executor", "local",
                "--tasks", "2", "--workers", "1", "--logging-dir", tmp_path / "logs")
    assert run.returncode == 5  # the model backend's exit status
    last = run.stderr.splitlines()[-1]
    assert last.startswith("error: part build 1 of 2 failed: http://127.0.0.1:9/v1: cannot reach the endpoint"), last
    assert "run the same command again to resume" in last
    assert "│" not in run.stderr  # no variable dump of the task's frames in datatrove's log of the failure
    assert not (tmp_path / "out").exists() and not (tmp_path / "logs" / "parts" / "completions").exists()
