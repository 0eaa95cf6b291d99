"""Flower's deployment engine for ffmrec: a real SuperLink and SuperNodes as separate processes (flwr 1.41).

Running ffmrec on Flower's deployment engine
============================================

In Flower 1.41 the SuperLink serves its Fleet, Control and Runtime APIs over HTTPS on one port (``--host``/``--port``,
default ``127.0.0.1:8000``; the old ``--fleet-api-address``/``--control-api-address`` flags are deprecated). The
SuperLink and each SuperNode start a ``flower-superexec`` helper (it must be on ``PATH``). Each SuperNode connects,
runs a small HTTP "Runtime API" of its own (``--port``, default 9094, so give every SuperNode on one machine its
own port) and starts a ``flwr-clientapp`` process per message. The ServerApp runs in a ``flwr-serverapp`` process
that the SuperLink starts for each run. ``ffmrec`` must be importable in all of them: install it into the environment
or set ``PYTHONPATH``. Runtime dependency installation must be off (``FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1``).

1. TLS. SuperNode authentication requires TLS. Make a CA and a server certificate whose SANs contain the address the
   SuperNodes and the CLI use (here ``IP:127.0.0.1`` and ``DNS:localhost``). :func:`generate_tls` does this with the
   ``cryptography`` package (EC P-256 keys); with openssl it is the usual ``req -x509`` CA plus a CSR signed with a
   ``subjectAltName`` extension.

2. SuperLink, with SuperNode authentication on::

       FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 flower-superlink \\
           --ssl-ca-certfile ca.crt --ssl-certfile server.crt --ssl-keyfile server.key \\
           --enable-supernode-auth --host 127.0.0.1 --port 9093

   With ``--enable-supernode-auth`` a SuperNode can no longer register itself: it must be registered beforehand
   through the Control API, and every Fleet request it makes is signed with its private key (the SuperLink checks
   the signature, the timestamp and that the public key belongs to the node id). The flag refuses to start together
   with ``--insecure``. (1.41 no longer accepts ``--auth-list-public-keys`` with a CSV of keys: it exits asking for
   ``flwr supernode register``.)

3. The CLI's connection to the SuperLink lives in ``$FLWR_HOME/config.toml`` (default ``~/.flwr``)::

       [superlink]
       default = "ffmrec"

       [superlink.ffmrec]
       address = "127.0.0.1:9093"
       root-certificates = "/abs/path/ca.crt"

4. One key pair per SuperNode, an EC key on a NIST curve in OpenSSH format (:func:`generate_node_keypair`, or
   ``ssh-keygen -t ecdsa -b 384 -N "" -f node0``), and register each public key::

       flwr supernode register node0.pub ffmrec        # prints the new node id

5. SuperNodes, each with its partition of the users (user ``u`` lives on the node with ``partition-id = u % N``)::

       FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 flower-supernode \\
           --superlink 127.0.0.1:9093 --root-certificates ca.crt \\
           --auth-supernode-private-key node0 \\
           --node-config "partition-id=0 num-partitions=2" --port 9100

   A SuperNode whose key was not registered is refused: its ``ActivateNode`` request is rejected, it logs
   ``Exit Code: 305`` (``SUPERNODE_CONNECTION_ERROR``: "Failed to initialize the connection to the SuperLink.
   [code: 2004] Failed to activate SuperNode.") and exits with status 1 within seconds, and it never appears in
   ``flwr supernode ls ffmrec``. A SuperNode started without ``--auth-supernode-private-key`` makes a key pair and
   tries to register itself, which the SuperLink forbids ("[code: 2001] SuperNode authentication is enabled. All
   SuperNodes must be registered via the CLI."; same exit). The node id printed by ``flwr supernode register`` is
   the one the SuperNode logs (``SuperNode ID: ...``) when it connects.

6. The app. A Flower app is a directory with a ``pyproject.toml``; :func:`write_app_project` generates one whose
   ``[tool.flwr.app.components]`` point to ``ffmrec.federated.engines.flower.apps:server_app`` / ``:client_app`` and whose
   ``[tool.flwr.app.config]`` holds the flat run config (``flwr run --run-config`` can only override keys defined
   there). Start it and follow its log until it ends::

       FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 flwr run ./app ffmrec --stream
       flwr ls ffmrec --format json        # the run's status, e.g. "finished:completed"

   Set ``output-dir`` in the run config to have the ServerApp write the driver's result there.

:class:`DeploymentCluster` does all of the above on 127.0.0.1 with fresh certificates, keys and free ports in a
temporary directory, and stops every process it started (and their children) on exit::

    with DeploymentCluster(num_supernodes=2) as cluster:         # TLS + SuperNode authentication
        run = cluster.run_app(config, timeout=600)
    print(run.status, read_result(config["output-dir"]))

``python -m ffmrec.federated.engines.flower.deploy --supernodes 2 --config run.json`` does the same from the command line
(``--keep`` keeps the link and nodes up until Ctrl-C and prints the commands to use them).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FLWR_ENV = {
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2",  # how often SuperExec looks for a ClientApp/ServerApp to start (1 s)
}
EXIT_SUPERNODE_CONNECTION_ERROR = 305  # flwr.supercore.exit.ExitCode.SUPERNODE_CONNECTION_ERROR


# --- certificates and keys ---------------------------------------------------------------------------------------
@dataclass
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def generate_tls(out_dir: str | os.PathLike, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
                 days: int = 7) -> TlsFiles:
    """A throw-away CA and a server certificate for ``hosts`` (IP and DNS SANs), EC P-256, PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ffmrec test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    files = TlsFiles(out / "ca.crt", out / "server.crt", out / "server.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    os.chmod(files.server_key, 0o600)
    return files


def generate_node_keypair(out_dir: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """A SuperNode authentication key pair (EC P-384, OpenSSH format): ``(private key, public key)`` paths."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private, public = out / name, out / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    os.chmod(private, 0o600)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH) + b"\n")
    return private, public


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


# --- processes ---------------------------------------------------------------------------------------------------
def _proc_stats() -> dict[int, tuple[int, int, str, int]]:
    """``{pid: (ppid, process group, state, start time)}`` of every process (Linux ``/proc``; empty elsewhere)."""
    stats: dict[int, tuple[int, int, str, int]] = {}
    if not os.path.isdir("/proc"):
        return stats
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            fields = stat[stat.rindex(")") + 2:].split()
            stats[int(entry)] = (int(fields[1]), int(fields[2]), fields[0], int(fields[19]))
        except (OSError, ValueError, IndexError):
            continue
    return stats


def descendants(pid: int, stats: dict[int, tuple[int, int, str, int]] | None = None) -> list[int]:
    """All live descendants of ``pid``."""
    stats = _proc_stats() if stats is None else stats
    children: dict[int, list[int]] = {}
    for child, (ppid, *_) in stats.items():
        children.setdefault(ppid, []).append(child)
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _ours(leader: int, known: dict[int, int]) -> set[int]:
    """Live processes we started: ``leader``'s process group and descendants, plus ``known`` ones (``{pid: start
    time}`` of descendants seen earlier, which may have been re-parented or moved to a session of their own; the
    start time guards against a reused pid) and their descendants."""
    stats = _proc_stats()
    pids = {p for p, (_, pgrp, *_) in stats.items() if pgrp == leader}
    pids |= set(descendants(leader, stats))
    pids |= {p for p, start in known.items() if p in stats and stats[p][3] == start}
    for p in list(pids):
        pids |= set(descendants(p, stats))
    return {p for p in pids if p in stats and stats[p][2] != "Z"}


@dataclass
class ManagedProcess:
    """A process we started (in its own session) and its log file."""

    name: str
    args: list[str]
    popen: subprocess.Popen
    log_path: Path
    _known: dict[int, int] = field(default_factory=dict)  # descendants seen: {pid: start time}

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        self.remember_children()
        return self.popen.poll()

    def remember_children(self) -> None:
        if self.popen.poll() is None:
            stats = _proc_stats()
            self._known.update({p: stats[p][3] for p in descendants(self.popen.pid, stats)})

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process, its process group and every descendant; SIGKILL what is left after ``grace`` s."""
        self.remember_children()

        def signal_all(sig: int) -> set[int]:
            pids = _ours(self.popen.pid, self._known)
            if self.popen.poll() is None:
                pids.add(self.popen.pid)
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            return pids

        stats = _proc_stats()
        self._known.update({p: stats[p][3] for p in signal_all(signal.SIGTERM) if p in stats})
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (self.popen.poll() is None or _ours(self.popen.pid, self._known)):
            time.sleep(0.1)
        signal_all(signal.SIGKILL)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


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
    """A SuperLink and ``num_supernodes`` SuperNodes on ``host``, as separate processes (see the module docstring).

    :param num_supernodes: SuperNodes started by :meth:`start`; node ``i`` gets
        ``--node-config "partition-id=i num-partitions=num_supernodes"``.
    :param tls: serve the SuperLink over TLS with certificates generated for this cluster.
    :param node_auth: ``--enable-supernode-auth`` on the SuperLink; every SuperNode gets its own key pair, registered
        with ``flwr supernode register`` before it starts (needs ``tls``).
    :param simulation: start the SuperLink with ``--simulation`` (no SuperNodes: ``flwr run`` then runs the app in
        Flower's simulation engine, see :mod:`~ffmrec.federated.engines.flower.simulation`).
    :param workdir: where certificates, keys, logs, the app project and ``FLWR_HOME`` go (default: a temporary
        directory removed on exit unless ``keep_workdir``).
    :param startup_timeout: seconds to wait for the SuperLink and for each SuperNode to connect.
    """

    def __init__(self, num_supernodes: int = 2, *, tls: bool = True, node_auth: bool = True, simulation: bool = False,
                 workdir: str | os.PathLike | None = None, host: str = "127.0.0.1", startup_timeout: float = 60.0,
                 connection: str = "ffmrec", extra_env: dict[str, str] | None = None, keep_workdir: bool = False):
        if node_auth and not tls:
            raise ValueError("SuperNode authentication needs TLS (flower-superlink refuses --enable-supernode-auth "
                             "with --insecure)")
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("DeploymentCluster binds to the loopback interface only")
        self.num_supernodes = int(num_supernodes)
        self.tls_enabled, self.node_auth, self.simulation = tls, node_auth, simulation
        self.host, self.startup_timeout, self.connection = host, float(startup_timeout), connection
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

    def _spawn(self, name: str, args: list[str], home: Path) -> ManagedProcess:
        home.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "FLWR_HOME": str(home)}
        with open(log_path, "ab") as log_file:
            popen = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=str(home), start_new_session=True,
                                     preexec_fn=_die_with_parent_fn())
        proc = ManagedProcess(name, args, popen, log_path)
        self._processes.append(proc)
        return proc

    def flwr(self, *args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess:
        """Run the ``flwr`` CLI against this cluster's SuperLink connection (own ``FLWR_HOME``)."""
        env = {**self.env, "FLWR_HOME": str(self.flwr_home)}
        try:
            res = subprocess.run([self._exe("flwr"), *args], env=env, capture_output=True, text=True,
                                 timeout=timeout, stdin=subprocess.DEVNULL, cwd=str(self.workdir))
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
        self.port = free_port(self.host)
        args = [self._exe("flower-superlink"), "--host", self.host, "--port", str(self.port),
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
        import httpx

        url = f"{'https' if self.tls else 'http'}://{self.address}/health"
        verify = ssl.create_default_context(cafile=str(self.tls.ca_cert)) if self.tls else False
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.superlink.poll() is not None:
                raise DeploymentError(f"flower-superlink exited with {self.superlink.popen.returncode}:\n"
                                      f"{self.superlink.log()[-4000:]}")
            try:
                if httpx.get(url, verify=verify, timeout=2.0).is_success:
                    return
            except httpx.HTTPError:
                pass
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
                      max_wait_time: float | None = None) -> NodeHandle:
        """Start a SuperNode holding partition ``partition_id`` of ``num_partitions``. With node auth it gets a fresh
        key pair (or ``keypair``), registered first unless ``register=False``."""
        name = name or f"supernode-{len(self.nodes)}"
        private = public = None
        node_id = None
        if self.node_auth:
            private, public = keypair or generate_node_keypair(self.workdir / "keys", name)
            if register:
                node_id = self.register_node(public)
        args = [self._exe("flower-supernode"), "--superlink", self.address,
                "--node-config", f"partition-id={int(partition_id)} num-partitions={int(num_partitions)}",
                "--host", self.host, "--port", str(free_port(self.host)),
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
                    args[args.index("--port") + 1] = str(free_port(self.host))
                    node.process.stop()
                    node.process.log_path.rename(node.process.log_path.with_suffix(f".clash{restarts}.log"))
                    node.process = self._spawn(node.process.name, args, Path(self.workdir / f"home-{node.process.name}"))
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
        """Stop every process this cluster started (SuperNodes first), with their children."""
        for proc in self._processes:
            proc.remember_children()
        for proc in reversed(self._processes):
            proc.stop()
        if self._own_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def commands(self) -> str:
        """Shell lines to use this cluster by hand."""
        return (f"export FLWR_HOME={self.flwr_home} FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 "
                f"PYTHONPATH={self.env['PYTHONPATH']}\n"
                f"flwr supernode ls {self.connection}\n"
                f"flwr run {self.workdir / 'app'} {self.connection} --stream")


def _die_with_parent_fn():
    """A ``preexec_fn`` asking Linux to SIGTERM the child when this process dies (even by SIGKILL), so a killed test
    run leaves no SuperLink/SuperNode behind. Only from the main thread: the signal follows the spawning *thread*."""
    import threading

    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


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


def main(argv: list[str] | None = None) -> int:
    """CLI: start a TLS + node-auth cluster on 127.0.0.1, run one ffmrec app, stop everything."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m ffmrec.federated.engines.flower.deploy", description=__doc__.split("\n")[0])
    p.add_argument("--supernodes", type=int, default=2)
    p.add_argument("--config", help="JSON file with the flat run config")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="run-config entries (JSON values)")
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--insecure", action="store_true", help="no TLS and no node authentication")
    p.add_argument("--workdir")
    p.add_argument("--keep", action="store_true", help="keep the cluster up after the run until Ctrl-C")
    args = p.parse_args(argv)
    config = json.loads(Path(args.config).read_text()) if args.config else {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            config[key] = value
    with DeploymentCluster(args.supernodes, tls=not args.insecure, node_auth=not args.insecure,
                           workdir=args.workdir, keep_workdir=bool(args.workdir or args.keep)) as cluster:
        print(f"SuperLink {cluster.address}; SuperNodes {[n.node_id for n in cluster.nodes]}; logs in "
              f"{cluster.workdir / 'logs'}", flush=True)
        run = cluster.run_app(config, timeout=args.timeout, check=False)
        print(run.output, flush=True)
        print(f"run {run.run_id}: {run.status}", flush=True)
        if args.keep:
            print(cluster.commands(), flush=True)
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        return 0 if run.ok else 1


if __name__ == "__main__":
    sys.exit(main())
