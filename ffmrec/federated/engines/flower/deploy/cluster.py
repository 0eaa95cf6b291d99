"""A SuperLink and SuperNodes as separate processes (:class:`DeploymentCluster`), the app project and CLI connection
they run from, and the result a run leaves behind."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ffmrec.federated.engines.flower.deploy.processes import ManagedProcess, run_supervised, spawn
from ffmrec.federated.engines.flower.deploy.tls import TlsFiles, generate_node_keypair, generate_tls

FLWR_ENV = {
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2",  # how often SuperExec looks for a ClientApp/ServerApp to start (1 s)
}
EXIT_SUPERNODE_CONNECTION_ERROR = 305  # flwr.supercore.exit.ExitCode.SUPERNODE_CONNECTION_ERROR


# --- app project and CLI configuration --------------------------------------------------------------------------------
def _toml_value(key: str, value):
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    raise TypeError(f"run config {key}={value!r}: a Flower run config holds only bool/int/float/str values")


def write_app_project(app_dir: str | os.PathLike, config: dict, *, name: str = "ffmrec-flower",
                      server_app: str = "ffmrec.federated.engines.flower.apps:server_app",
                      client_app: str = "ffmrec.federated.engines.flower.apps:client_app") -> Path:
    """Generate a Flower app project (``pyproject.toml`` only) whose components are ffmrec's apps and whose run
    config is ``config`` (``None`` values are left out: Flower has no null)."""
    import tomli_w

    app = Path(app_dir)
    app.mkdir(parents=True, exist_ok=True)
    doc = {
        "build-system": {"requires": ["hatchling"], "build-backend": "hatchling.build"},
        "project": {"name": name, "version": "1.0.0", "description": "ffmrec on Flower", "license": "Apache-2.0",
                    "dependencies": []},
        "tool": {"flwr": {"app": {
            "publisher": "ffmrec",
            "components": {"serverapp": server_app, "clientapp": client_app},
            "config": {str(k): _toml_value(str(k), v) for k, v in config.items() if v is not None},
        }}},
    }
    (app / "pyproject.toml").write_text(tomli_w.dumps(doc))
    return app


def write_flwr_connection(flwr_home: str | os.PathLike, name: str, address: str,
                          root_certificates: str | os.PathLike | None = None) -> Path:
    """Write ``$FLWR_HOME/config.toml`` with one SuperLink connection ``name`` (the default)."""
    import tomli_w

    conn: dict = {"address": address}
    if root_certificates is None:
        conn["insecure"] = True
    else:
        conn["root-certificates"] = str(Path(root_certificates).resolve())
    home = Path(flwr_home)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(tomli_w.dumps({"superlink": {"default": name, name: conn}}))
    return path


def read_result(out_dir: str | os.PathLike) -> dict:
    """What the ServerApp wrote to ``output-dir``: ``result.json`` entries plus one dict of arrays per ``.npz``."""
    out = Path(out_dir)
    result = json.loads((out / "result.json").read_text()) if (out / "result.json").exists() else {}
    for npz in sorted(out.glob("*.npz")):
        with np.load(npz) as data:
            result[npz.stem] = {k: data[k] for k in data.files}
    return result


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _healthy(url: str, cafile: str | None) -> bool:
    """One ``GET /health`` on the SuperLink (through TLS verified against ``cafile`` when given)."""
    import httpx

    verify = ssl.create_default_context(cafile=cafile) if cafile else False
    try:
        return httpx.get(url, verify=verify, timeout=2.0).is_success
    except httpx.HTTPError:
        return False


@dataclass
class NodeHandle:
    partition_id: int
    num_partitions: int
    process: ManagedProcess
    private_key: Path | None
    public_key: Path | None
    node_id: int | None = None  # from `flwr supernode register` (None without node auth)


@dataclass
class RunResult:
    run_id: int | None
    status: str | None
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and (self.status or "").endswith("completed")


class DeploymentError(RuntimeError):
    pass


class DeploymentCluster:
    """A SuperLink and ``num_supernodes`` SuperNodes, as separate processes (see the package docstring).

    Every process runs under a supervisor (:mod:`~ffmrec.federated.engines.flower.deploy.processes`), so it ends,
    with everything it started, when the cluster stops, when the code using it raises, and when this Python process
    dies, even by SIGKILL.

    By default everything runs on this machine and talks over 127.0.0.1. The ``*_prefix`` options run the SuperLink,
    the SuperNodes and the ``flwr`` CLI under a command prefix each instead, e.g. ``("ip", "netns", "exec", "ns0")``
    to place them in separate network namespaces; ``host`` is then the SuperLink's address as the others reach it.

    :param num_supernodes: SuperNodes started by :meth:`start`; node ``i`` gets
        ``--node-config "partition-id=i num-partitions=num_supernodes"``.
    :param tls: serve the SuperLink over TLS with certificates generated for this cluster (SANs: ``host`` and
        ``localhost``).
    :param node_auth: ``--enable-supernode-auth`` on the SuperLink; every SuperNode gets its own key pair, registered
        with ``flwr supernode register`` before it starts (needs ``tls``).
    :param simulation: start the SuperLink with ``--simulation`` (no SuperNodes: ``flwr run`` then runs the app in
        Flower's simulation engine, see :mod:`~ffmrec.federated.engines.flower.simulation`).
    :param workdir: where certificates, keys, logs, the app project and ``FLWR_HOME`` go (default: a temporary
        directory removed on exit unless ``keep_workdir``). Every process of the cluster must see it at this path.
    :param host: the IP address (or ``localhost``) the SuperLink listens on and the SuperNodes and the CLI connect to.
        An address other than loopback makes the SuperLink reachable from other machines, so it needs ``tls`` and
        ``node_auth``.
    :param startup_timeout: seconds to wait for the SuperLink and for each SuperNode to connect.
    :param node_host: where each SuperNode serves its Runtime API; only its own ClientApps connect to it, on the same
        machine (or namespace).
    :param superlink_prefix: command prefix the SuperLink runs under (empty: directly).
    :param supernode_prefixes: one command prefix per SuperNode (the node with ``partition-id=i`` uses entry ``i``;
        empty: all run directly).
    :param cli_prefix: command prefix of the ``flwr`` CLI and of the SuperLink health check; from there ``host`` must
        be reachable.
    """

    def __init__(self, num_supernodes: int = 2, *, tls: bool = True, node_auth: bool = True, simulation: bool = False,
                 workdir: str | os.PathLike | None = None, host: str = "127.0.0.1", startup_timeout: float = 60.0,
                 connection: str = "ffmrec", extra_env: dict[str, str] | None = None, keep_workdir: bool = False,
                 node_host: str = "127.0.0.1", superlink_prefix: Sequence[str] = (),
                 supernode_prefixes: Sequence[Sequence[str]] = (), cli_prefix: Sequence[str] = ()):
        if node_auth and not tls:
            raise ValueError("SuperNode authentication needs TLS (flower-superlink refuses --enable-supernode-auth "
                             "with --insecure): set tls=True or node_auth=False")
        if not _is_loopback(host) and not (tls and node_auth):
            raise ValueError(f"host={host!r} is not a loopback address, so other machines could reach the SuperLink: "
                             f"run it with tls=True and node_auth=True, or use host='127.0.0.1'")
        if supernode_prefixes and len(supernode_prefixes) != int(num_supernodes):
            raise ValueError(f"supernode_prefixes has {len(supernode_prefixes)} entries for num_supernodes="
                             f"{num_supernodes}: give one command prefix per SuperNode, or none")
        self.num_supernodes = int(num_supernodes)
        self.tls_enabled, self.node_auth, self.simulation = tls, node_auth, simulation
        self.host, self.startup_timeout, self.connection = host, float(startup_timeout), connection
        self.node_host = node_host
        self.superlink_prefix = list(superlink_prefix)
        self.supernode_prefixes = [list(p) for p in supernode_prefixes]
        self.cli_prefix = list(cli_prefix)
        self._own_workdir = workdir is None
        self.keep_workdir = keep_workdir
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="ffmrec-flwr-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port: int | None = None
        self.tls: TlsFiles | None = None
        self.superlink: ManagedProcess | None = None
        self.nodes: list[NodeHandle] = []
        self._processes: list[ManagedProcess] = []
        self.env = self._base_env(extra_env)
        self.flwr_home = self.workdir / "flwr-home"

    # --- environment -----------------------------------------------------------------------------------------------
    @staticmethod
    def _base_env(extra: dict[str, str] | None) -> dict[str, str]:
        import ffmrec

        env = dict(os.environ)
        env.update(FLWR_ENV)
        repo = str(Path(ffmrec.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([repo] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.pop("FLWR_HOME", None)
        if extra:
            env.update(extra)
        return env

    def _exe(self, name: str) -> str:
        path = Path(sys.executable).parent / name
        return str(path) if path.exists() else (shutil.which(name, path=self.env["PATH"]) or name)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @staticmethod
    def _port(host: str, prefix: Sequence[str]) -> int:
        """A port for a process to listen on at ``host``: free here, or, for a process under a prefix (elsewhere),
        free on this machine's loopback as a guess (a clash there is retried)."""
        return free_port("127.0.0.1" if prefix else host)

    def _spawn(self, name: str, args: list[str], home: Path) -> ManagedProcess:
        home.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "FLWR_HOME": str(home)}
        proc = spawn(name, args, self.workdir / "logs" / f"{name}.log", env=env, cwd=home)
        self._processes.append(proc)
        return proc

    def flwr(self, *args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess:
        """Run the ``flwr`` CLI against this cluster's SuperLink connection (own ``FLWR_HOME``)."""
        env = {**self.env, "FLWR_HOME": str(self.flwr_home)}
        try:
            res = run_supervised([*self.cli_prefix, self._exe("flwr"), *args], env=env, timeout=timeout,
                                 cwd=self.workdir)
        except subprocess.TimeoutExpired as err:
            raise DeploymentError(f"`flwr {' '.join(args)}` did not finish within {timeout:g} s") from err
        if check and res.returncode != 0:
            raise DeploymentError(f"`flwr {' '.join(args)}` failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    # --- lifecycle -------------------------------------------------------------------------------------------------
    def __enter__(self) -> DeploymentCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> DeploymentCluster:
        self.start_superlink()
        for i in range(self.num_supernodes):
            self.add_supernode(i, self.num_supernodes, wait=False)
        for node in self.nodes:
            self.wait_for_node(node)
        return self

    def start_superlink(self, attempts: int = 3) -> ManagedProcess:
        """Start the SuperLink on a free port (another one if that port was taken meanwhile) and wait for it."""
        if self.tls_enabled:
            self.tls = generate_tls(self.workdir / "certs", hosts=(self.host, "localhost"))
        for attempt in range(attempts):
            try:
                return self._start_superlink_once()
            except DeploymentError as err:
                port_clash = "address already in use" in str(err).lower()
                if not port_clash or attempt == attempts - 1:
                    raise
                self.superlink.stop()
        raise AssertionError("unreachable")

    def _start_superlink_once(self) -> ManagedProcess:
        self.port = self._port(self.host, self.superlink_prefix)
        args = [*self.superlink_prefix, self._exe("flower-superlink"), "--host", self.host, "--port", str(self.port),
                "--disable-runtime-dependency-installation"]
        if self.tls:
            args += ["--ssl-ca-certfile", str(self.tls.ca_cert), "--ssl-certfile", str(self.tls.server_cert),
                     "--ssl-keyfile", str(self.tls.server_key)]
        else:
            args += ["--insecure"]
        if self.node_auth:
            args += ["--enable-supernode-auth"]
        if self.simulation:
            args += ["--simulation"]
        self.superlink = self._spawn("superlink", args, self.workdir / "home-superlink")
        write_flwr_connection(self.flwr_home, self.connection, self.address,
                              self.tls.ca_cert if self.tls else None)
        self._wait_healthy()
        return self.superlink

    def _wait_healthy(self) -> None:
        """Wait until the SuperLink answers ``/health`` (asked from where the CLI runs)."""
        url = f"{'https' if self.tls else 'http'}://{self.address}/health"
        cafile = str(self.tls.ca_cert) if self.tls else None
        probe = [*self.cli_prefix, sys.executable, "-c",
                 "import sys; from ffmrec.federated.engines.flower.deploy.cluster import _healthy; "
                 "sys.exit(0 if _healthy(sys.argv[1], sys.argv[2] or None) else 1)", url, cafile or ""]
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.superlink.poll() is not None:
                raise DeploymentError(f"flower-superlink exited with {self.superlink.popen.returncode}:\n"
                                      f"{self.superlink.log()[-4000:]}")
            if not self.cli_prefix:
                healthy = _healthy(url, cafile)
            else:
                try:
                    healthy = run_supervised(probe, env=self.env, timeout=30.0).returncode == 0
                except subprocess.TimeoutExpired:
                    healthy = False
            if healthy:
                return
            time.sleep(0.2)
        raise DeploymentError(f"SuperLink not healthy at {url} within {self.startup_timeout:g} s:\n"
                              f"{self.superlink.log()[-4000:]}")

    def register_node(self, public_key: str | os.PathLike) -> int:
        """``flwr supernode register <public key>``; returns the node id the SuperLink assigned."""
        res = self.flwr("supernode", "register", str(public_key), self.connection, "--format", "json")
        data = _last_json(res.stdout)
        if not data or not data.get("success"):
            raise DeploymentError(f"registering {public_key} failed:\n{res.stdout}\n{res.stderr}")
        return int(data["node-id"])

    def add_supernode(self, partition_id: int, num_partitions: int, *, register: bool = True, wait: bool = True,
                      keypair: tuple[Path, Path] | None = None, name: str | None = None,
                      max_wait_time: float | None = None, prefix: Sequence[str] | None = None) -> NodeHandle:
        """Start a SuperNode holding partition ``partition_id`` of ``num_partitions``. With node auth it gets a fresh
        key pair (or ``keypair``), registered first unless ``register=False``. It runs under ``prefix`` (default:
        ``supernode_prefixes[partition_id]``, or none)."""
        if prefix is None:
            if self.supernode_prefixes and not 0 <= partition_id < len(self.supernode_prefixes):
                raise ValueError(f"partition_id={partition_id} has no entry in supernode_prefixes (0.."
                                 f"{len(self.supernode_prefixes) - 1}): pass prefix= for this SuperNode")
            prefix = self.supernode_prefixes[partition_id] if self.supernode_prefixes else []
        name = name or f"supernode-{len(self.nodes)}"
        private = public = None
        node_id = None
        if self.node_auth:
            private, public = keypair or generate_node_keypair(self.workdir / "keys", name)
            if register:
                node_id = self.register_node(public)
        args = [*prefix, self._exe("flower-supernode"), "--superlink", self.address,
                "--node-config", f"partition-id={int(partition_id)} num-partitions={int(num_partitions)}",
                "--host", self.node_host, "--port", str(self._port(self.node_host, prefix)),
                "--max-wait-time", str(max_wait_time if max_wait_time is not None else self.startup_timeout)]
        args += ["--root-certificates", str(self.tls.ca_cert)] if self.tls else ["--insecure"]
        if private is not None:
            args += ["--auth-supernode-private-key", str(private)]
        proc = self._spawn(name, args, self.workdir / f"home-{name}")
        node = NodeHandle(int(partition_id), int(num_partitions), proc, private, public, node_id)
        self.nodes.append(node)
        if wait:
            self.wait_for_node(node)
        return node

    def wait_for_node(self, node: NodeHandle, timeout: float | None = None) -> int:
        """Wait until the SuperNode logged ``SuperNode ID: <id>`` (it activated on the SuperLink); returns the id.
        A SuperNode whose Runtime API port was taken meanwhile is restarted on another port (twice at most)."""
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        restarts = 0
        while time.monotonic() < deadline:
            for line in node.process.log().splitlines():
                if "SuperNode ID:" in line:
                    node.node_id = int(line.rsplit(":", 1)[1].strip().split()[0])
                    return node.node_id
            if node.process.poll() is not None:
                log = node.process.log()
                if "address already in use" in log.lower() and restarts < 2:
                    restarts += 1
                    args = list(node.process.args)
                    prefix = args[:args.index(self._exe("flower-supernode"))]
                    args[args.index("--port") + 1] = str(self._port(self.node_host, prefix))
                    node.process.stop()
                    node.process.log_path.rename(node.process.log_path.with_suffix(f".clash{restarts}.log"))
                    node.process = self._spawn(node.process.name, args, self.workdir / f"home-{node.process.name}")
                    continue
                raise DeploymentError(f"{node.process.name} exited with {node.process.popen.returncode}:\n"
                                      f"{log[-4000:]}")
            time.sleep(0.2)
        raise DeploymentError(f"{node.process.name} did not connect within the timeout:\n{node.process.log()[-4000:]}")

    def list_nodes(self) -> list[dict]:
        """``flwr supernode ls --format json``: the SuperLink's view of its nodes."""
        res = self.flwr("supernode", "ls", self.connection, "--format", "json")
        data = _last_json(res.stdout) or {}
        return list(data.get("nodes", []))

    def run_app(self, config: dict, *, timeout: float = 600.0, federation_config: dict | None = None,
                app_dir: str | os.PathLike | None = None, check: bool = True) -> RunResult:
        """Generate the app project for ``config``, ``flwr run <app> <connection> --stream`` it (bounded by
        ``timeout``) and return its run id, final status and output."""
        app = write_app_project(app_dir or self.workdir / "app", config)
        args = ["run", str(app), self.connection, "--stream"]
        if federation_config:
            args += ["--federation-config", " ".join(f"{k}={_cli_value(v)}" for k, v in federation_config.items())]
        start = time.monotonic()
        try:
            res = self.flwr(*args, timeout=timeout, check=False)
        except DeploymentError:
            raise DeploymentError(f"`flwr run` did not finish within {timeout:g} s; SuperLink log:\n"
                                  f"{self.superlink.log()[-6000:] if self.superlink else ''}") from None
        output = res.stdout + res.stderr
        run_id = _run_id(output)
        status = None
        if run_id is not None:
            status = self.run_status(run_id, timeout=max(10.0, timeout - (time.monotonic() - start)))
        result = RunResult(run_id, status, res.returncode, output)
        if check and not result.ok:
            raise DeploymentError(f"run {run_id} ended with status={status} (flwr exit {res.returncode}):\n"
                                  f"{output[-6000:]}")
        return result

    def run_status(self, run_id: int, timeout: float = 30.0) -> str | None:
        """The run's status from ``flwr ls --run-id``, waiting (bounded) until it is ``finished:*``."""
        deadline = time.monotonic() + timeout
        status = None
        while True:
            res = self.flwr("ls", self.connection, "--run-id", str(run_id), "--format", "json", check=False)
            data = _last_json(res.stdout) or {}
            runs = data.get("runs") or []
            status = runs[0].get("status") if runs else None
            if (status and status.startswith("finished")) or time.monotonic() >= deadline:
                return status
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop every process this cluster started, with everything they started: all are asked at once (SuperNodes
        first), then each is waited for (SIGKILL after its grace period)."""
        for proc in reversed(self._processes):
            proc.terminate()
        for proc in reversed(self._processes):
            proc.stop()
        if self._own_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def commands(self) -> str:
        """Shell lines to use this cluster by hand."""
        flwr = " ".join([*self.cli_prefix, "flwr"])
        return (f"export FLWR_HOME={self.flwr_home} FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 "
                f"PYTHONPATH={self.env['PYTHONPATH']}\n"
                f"{flwr} supernode ls {self.connection}\n"
                f"{flwr} run {self.workdir / 'app'} {self.connection} --stream")



def _cli_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def _last_json(text: str) -> dict | None:
    """The last top-level JSON object printed by ``flwr ... --format json``."""
    end = text.rfind("}")
    while end != -1:
        depth = 0
        for i in range(end, -1, -1):
            if text[i] == "}":
                depth += 1
            elif text[i] == "{":
                depth -= 1
                if depth == 0:
                    try:
                        return json.loads(text[i:end + 1])
                    except json.JSONDecodeError:
                        break
        end = text.rfind("}", 0, end)
    return None


def _run_id(output: str) -> int | None:
    import re

    m = re.search(r"Successfully started run (\d+)", output)
    return int(m.group(1)) if m else None

