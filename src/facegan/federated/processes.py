"""Real Flower processes on this machine: one SuperLink, N SuperNodes, started, followed and always stopped.

`FlowerDeployment` starts `flower-superlink` and one `flower-supernode` per client on 127.0.0.1 (free
ports found at start, never fixed), each in its own process group, with Flower's offline settings
(telemetry off, no update check, no runtime dependency installation) and a private `FLWR_HOME`
whose `config.toml` names the SuperLink connection `facegan`. `submit()` starts a run through
`flwr run`, whose exit code only says the run was accepted, so `wait()` polls the run's status with
`flwr ls` until it is finished. `stop()` ends every process group it started (SIGTERM, then SIGKILL):
from `with`, at interpreter exit, and on SIGINT/SIGTERM, so no process or port is left behind.

Flower 1.42 serves the SuperNodes' fleet API, the control API (`flwr run`/`ls`) and the
ServerApp/ClientApp runtime over the SuperLink's one HTTP port, and SuperLink and SuperNodes start
`flower-superexec` children from PATH: the venv's bin goes first on PATH.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from facegan.errors import FaceganError

logger = logging.getLogger("facegan.federated")

CONNECTION = "facegan"
OFFLINE_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
}
FINISHED = "finished"
GROUPS_NAME = "process-groups"
# A watchdog in its own session (`python -c REAPER`): while facegan's process lives it keeps a list of every
# process group in the trees of the recorded SuperLink/SuperNode groups (flower-superexec starts each
# ServerApp/ClientApp in a session of its own); when facegan is gone, even by SIGKILL, it ends them all.
REAPER = "import sys; from facegan.federated.processes import reap; reap(int(sys.argv[1]), sys.argv[2])"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group still runs (zombies of our own children excepted)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A group whose members are all zombies is dead for our purposes.
    return any(group == pgid for _, group in _process_table().values())


def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every live (not zombie) process now, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def tree_groups(groups: list[int] | set[int]) -> set[int]:
    """The given process groups plus the groups of every descendant of their members (a child may start a session)."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found = set(groups)
    stack = [pid for pid, (_, pgid) in table.items() if pgid in found]
    seen: set[int] = set()
    while stack:
        pid = stack.pop()
        if pid in seen or pid not in table:
            continue
        seen.add(pid)
        found.add(table[pid][1])
        stack.extend(children.get(pid, []))
    return found - {0, 1, os.getpgrp()}


def reap(parent: int, groups_file: str) -> None:
    """The reaper's loop (see REAPER): follow the trees while `parent` lives, then end every group seen."""
    def listed() -> list[int]:
        try:
            return [int(x) for x in Path(groups_file).read_text().split()]
        except (OSError, ValueError):
            return []

    known: set[int] = set()
    while True:
        # Groups that ended are dropped (their numbers may be reused by unrelated processes later).
        known = {group for group in known if group_alive(group)} | tree_groups(listed())
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            pass
        time.sleep(0.5)
    known |= tree_groups(listed())
    Path(groups_file).unlink(missing_ok=True)
    for number in (signal.SIGTERM, signal.SIGKILL):
        for group in known:
            _signal_group(group, number)
        time.sleep(3)


def tool(name: str) -> str:
    """The path of a Flower command next to this Python (the venv's bin), or its bare name on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def flower_env(flwr_home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every Flower process: private FLWR_HOME, offline settings, the venv's bin first on PATH."""
    env = dict(os.environ)
    env.update(OFFLINE_ENV)
    env["FLWR_HOME"] = str(flwr_home)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def write_connection(flwr_home: Path, port: int) -> Path:
    """`$FLWR_HOME/config.toml` with the one connection `facegan` to the SuperLink on 127.0.0.1:port."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    path = flwr_home / "config.toml"
    path.write_text(f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\naddress = "127.0.0.1:{port}"\ninsecure = true\n')
    return path


def node_config_string(values: dict[str, Any]) -> str:
    """Flower's --node-config syntax: `key=value` pairs, strings quoted."""
    parts = []
    for key, value in values.items():
        if isinstance(value, str):
            parts.append(f'{key}={json.dumps(value)}')
        elif isinstance(value, bool):
            parts.append(f"{key}={'true' if value else 'false'}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


class FlowerDeployment:
    """A SuperLink and `num_nodes` SuperNodes as real processes; a context manager that always cleans up."""

    def __init__(self, app_dir: str | os.PathLike, flwr_home: str | os.PathLike, num_nodes: int,
                 node_configs: list[dict[str, Any]] | None = None, log_dir: str | os.PathLike | None = None,
                 env: dict[str, str] | None = None, start_timeout: float = 60.0) -> None:
        if num_nodes < 1:
            raise FaceganError(f"a deployment needs at least one SuperNode, got {num_nodes}")
        self.app_dir = Path(app_dir).resolve()
        self.flwr_home = Path(flwr_home).resolve()
        self.num_nodes = num_nodes
        self.node_configs = node_configs or [{"partition-id": i, "num-partitions": num_nodes} for i in range(num_nodes)]
        if len(self.node_configs) != num_nodes:
            raise FaceganError(f"{len(self.node_configs)} node configs for {num_nodes} SuperNodes")
        self.log_dir = Path(log_dir).resolve() if log_dir else self.flwr_home / "logs"
        self.env = flower_env(self.flwr_home, env)
        self.start_timeout = start_timeout
        self.superlink_port = 0
        self.node_ports: list[int] = [0] * num_nodes
        self._superlink: subprocess.Popen | None = None
        self._nodes: list[subprocess.Popen | None] = [None] * num_nodes
        self._logs: list[Any] = []
        self._stopped = True
        self._lock = threading.Lock()
        self._old_handlers: dict[int, Any] = {}
        self._reaper: subprocess.Popen | None = None
        self._spawned_groups: list[int] = []

    # ---- what is running ------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.superlink_port}"

    @property
    def ports(self) -> list[int]:
        return [self.superlink_port, *self.node_ports]

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in [self._superlink, *self._nodes] if proc is not None]

    def node_alive(self, index: int) -> bool:
        proc = self._nodes[index]
        return proc is not None and proc.poll() is None

    # ---- start and stop -------------------------------------------------------------------------
    def __enter__(self) -> "FlowerDeployment":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "FlowerDeployment":
        if not self._stopped:
            return self
        self._stopped = False
        self.log_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        self._install_signal_handlers()
        try:
            self._write_groups()
            self._reaper = subprocess.Popen([sys.executable, "-c", REAPER, str(os.getpid()), str(self._groups_path)],
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            start_new_session=True)
            self.superlink_port = free_port()
            write_connection(self.flwr_home, self.superlink_port)
            self._superlink = self._spawn("superlink", [
                tool("flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(self.superlink_port),
                "--database", str(self.flwr_home / "state.db"),
            ])
            self._wait_for_port(self.superlink_port, self._superlink, "the SuperLink")
            for index in range(self.num_nodes):
                self._start_node(index)
            for index in range(self.num_nodes):
                self._wait_for_port(self.node_ports[index], self._nodes[index], f"SuperNode {index}")
        except BaseException:
            self.stop()
            raise
        logger.info("Flower SuperLink on %s with %d SuperNode(s)", self.address, self.num_nodes)
        return self

    def _start_node(self, index: int) -> None:
        self.node_ports[index] = free_port()
        self._nodes[index] = self._spawn(f"supernode-{index}", [
            tool("flower-supernode"), "--insecure", "--superlink", self.address, "--host", "127.0.0.1",
            "--port", str(self.node_ports[index]), "--node-config", node_config_string(self.node_configs[index]),
        ])

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        self._logs.append(log)
        try:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                                    cwd=str(self.flwr_home), start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as error:
            raise FaceganError(f"cannot start {command[0]} ({error.strerror or error}); is flwr installed in this Python's venv?") from None
        self._spawned_groups.append(proc.pid)
        self._write_groups()
        return proc

    def _write_groups(self) -> None:
        """Every process group started so far, for the reaper (written whole, then renamed)."""
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        temporary = self._groups_path.with_name(f".{self._groups_path.name}.tmp")
        temporary.write_text(" ".join(str(pid) for pid in self._spawned_groups))
        os.replace(temporary, self._groups_path)

    @property
    def _groups_path(self) -> Path:
        return self.flwr_home / f"{GROUPS_NAME}-{os.getpid()}"

    def _wait_for_port(self, port: int, proc: subprocess.Popen | None, what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc is None or proc.poll() is not None:
                raise FaceganError(f"{what} exited while starting (code {proc.returncode if proc else '?'}); see {self.log_dir}")
            if port_open(port):
                return
            time.sleep(0.2)
        raise FaceganError(f"{what} did not open port {port} within {self.start_timeout:g} s; see {self.log_dir}")

    def stop(self, grace: float = 3.0) -> None:
        """End every process group this deployment started (idempotent, safe from handlers and atexit)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        procs = [proc for proc in [*self._nodes, self._superlink] if proc is not None]
        # Every group in the trees (superexec runs each ServerApp/ClientApp in a session of its own), taken before
        # any parent dies: an orphaned ServerApp would otherwise retry its dead SuperLink forever.
        groups = tree_groups(self._spawned_groups)
        for pgid in groups:
            _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(group_alive(pgid) for pgid in groups):
            for proc in procs:
                proc.poll()
            time.sleep(0.1)
        for pgid in groups | tree_groups(groups):
            _signal_group(pgid, signal.SIGKILL)
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # superexec children may sit outside our groups for a moment; give their ports time to close.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(port and port_open(port) for port in self.ports):
            time.sleep(0.2)
        if self._reaper is not None:
            self._reaper.kill()
            self._reaper.wait(timeout=5)
            self._reaper = None
            self._groups_path.unlink(missing_ok=True)
        for log in self._logs:
            log.close()
        self._logs = []
        self._restore_signal_handlers()
        try:
            atexit.unregister(self.stop)
        except Exception:  # pragma: no cover - interpreter shutting down
            pass

    # ---- faults ---------------------------------------------------------------------------------
    def kill_node(self, index: int) -> None:
        """SIGKILL a SuperNode's whole process group, as a crash would (no goodbye to the SuperLink)."""
        proc = self._nodes[index]
        if proc is None:
            return
        for pgid in tree_groups([proc.pid]):  # with the ClientApp processes it started, as a dead machine would
            _signal_group(pgid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and group_alive(proc.pid):
            time.sleep(0.1)
        if not group_alive(proc.pid):  # gone for good: never signal that number again (it may be reused)
            self._spawned_groups = [pgid for pgid in self._spawned_groups if pgid != proc.pid]
            self._write_groups()

    def restart_node(self, index: int) -> None:
        """Start a killed SuperNode again (a new port; the SuperLink sees a new node that rejoins)."""
        if self.node_alive(index):
            raise FaceganError(f"SuperNode {index} is still running")
        self._start_node(index)
        self._wait_for_port(self.node_ports[index], self._nodes[index], f"SuperNode {index}")

    # ---- runs -----------------------------------------------------------------------------------
    def flwr(self, *args: str, timeout: float = 120) -> str:
        """Run the `flwr` CLI against this deployment; its stdout, or one FaceganError."""
        try:
            done = subprocess.run([tool("flwr"), *args], capture_output=True, text=True, env=self.env, timeout=timeout,
                                  cwd=str(self.flwr_home), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise FaceganError(f"`flwr {args[0]}` did not answer within {timeout:g} s") from None
        if done.returncode != 0:
            detail = (done.stdout.strip() or done.stderr.strip() or f"exit code {done.returncode}").splitlines()[-1]
            raise FaceganError(f"`flwr {args[0]}` failed: {detail}")
        return done.stdout

    def submit(self, run_config: dict[str, Any] | None = None, timeout: float = 120) -> int:
        """Start a run of the app on this deployment; its run id."""
        args = ["run", str(self.app_dir), CONNECTION, "--format", "json"]
        if run_config:
            args += ["--run-config", node_config_string(run_config)]
        output = self.flwr(*args, timeout=timeout)
        reply = _last_json(output)
        if not reply or not reply.get("success") or not reply.get("run-id"):
            raise FaceganError(f"Flower did not accept the run: {(reply or {}).get('error-message') or output.strip()[-300:]}")
        return int(reply["run-id"])

    def status(self, run_id: int) -> str:
        """The run's status text, e.g. 'running' or 'finished:completed'."""
        reply = _last_json(self.flwr("ls", CONNECTION, "--run-id", str(run_id), "--format", "json", timeout=60))
        for run in (reply or {}).get("runs", []):
            if str(run.get("run-id")) == str(run_id):
                return str(run.get("status"))
        raise FaceganError(f"Flower does not know run {run_id}")

    def wait(self, run_id: int, on_poll: Callable[[str], None] | None = None, poll_s: float = 1.0, timeout: float = 3600) -> str:
        """Poll until the run is finished; its final status ('finished:completed', ':failed', ':stopped')."""
        deadline = time.monotonic() + timeout
        failures = 0
        while True:
            if self._superlink is None or self._superlink.poll() is not None:
                raise FaceganError(f"the SuperLink exited while run {run_id} was going; see {self.log_dir}")
            try:
                status = self.status(run_id)
                failures = 0
            except FaceganError:
                failures += 1
                if failures > 4:
                    raise
                status = ""
            if on_poll is not None:
                on_poll(status)
            if status.startswith(FINISHED):
                return status
            if time.monotonic() > deadline:
                raise FaceganError(f"run {run_id} did not finish within {timeout:g} s (status {status or 'unknown'})")
            time.sleep(poll_s)

    def stop_run(self, run_id: int) -> None:
        try:
            self.flwr("stop", str(run_id), CONNECTION, timeout=30)
        except FaceganError:
            pass

    # ---- signals --------------------------------------------------------------------------------
    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(signum)
            self._old_handlers[signum] = previous

            def handler(number: int, frame: Any, previous: Any = previous) -> None:
                self.stop(grace=1.0)
                if callable(previous):
                    previous(number, frame)
                elif number == signal.SIGINT:
                    raise KeyboardInterrupt
                else:
                    raise SystemExit(128 + number)

            signal.signal(signum, handler)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in self._old_handlers.items():
            try:
                signal.signal(signum, previous)
            except (TypeError, ValueError):
                pass
        self._old_handlers = {}


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when facegan dies, even by SIGKILL (Linux prctl PR_SET_PDEATHSIG).

    Without it a `kill -9` of facegan would leave the SuperLink and SuperNodes running in their own
    sessions; their superexec children follow their parent within seconds."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
        except OSError:
            pass


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _last_json(output: str) -> dict[str, Any] | None:
    """The JSON object `flwr --format json` printed (the last parseable one)."""
    text = output.strip()
    start = text.find("{")
    while start != -1:
        try:
            value = json.loads(text[start:])
            return value if isinstance(value, dict) else None
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
    return None
