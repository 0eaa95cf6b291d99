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
temporary directory::

    with DeploymentCluster(num_supernodes=2) as cluster:         # TLS + SuperNode authentication
        run = cluster.run_app(config, timeout=600)
    print(run.status, read_result(config["output-dir"]))

Every process it starts runs under a supervisor (:mod:`.processes`), so the SuperLink, the SuperNodes, their
``flower-superexec`` helpers, the ServerApp and ClientApp processes and ``flwr run`` all end within seconds when the
cluster stops, when the code inside the ``with`` raises, and when the Python process that started them is killed,
even with SIGKILL. Its ``host`` and command-prefix options place the SuperLink, each SuperNode and the CLI elsewhere,
e.g. in separate network namespaces (``tests/federated/test_deploy_netns.py`` runs a round that way).

``python -m ffmrec.federated.engines.flower.deploy --supernodes 2 --config run.json`` does the same from the command line
(``--keep`` keeps the link and nodes up until Ctrl-C and prints the commands to use them).

The package: :mod:`.tls` (certificates and node keys), :mod:`.cluster` (:class:`DeploymentCluster`, the app project,
the CLI connection, results), :mod:`.processes` and :mod:`.supervisor` (process lifecycle), :mod:`.cli` (the command
line).
"""

from __future__ import annotations

from ffmrec.federated.engines.flower.deploy.cluster import (
    EXIT_SUPERNODE_CONNECTION_ERROR,
    FLWR_ENV,
    DeploymentCluster,
    DeploymentError,
    NodeHandle,
    RunResult,
    free_port,
    read_result,
    write_app_project,
    write_flwr_connection,
)
from ffmrec.federated.engines.flower.deploy.processes import ManagedProcess, descendants
from ffmrec.federated.engines.flower.deploy.tls import TlsFiles, generate_node_keypair, generate_tls

__all__ = [
    "EXIT_SUPERNODE_CONNECTION_ERROR", "FLWR_ENV", "DeploymentCluster", "DeploymentError", "ManagedProcess",
    "NodeHandle", "RunResult", "TlsFiles", "descendants", "free_port", "generate_node_keypair", "generate_tls",
    "read_result", "write_app_project", "write_flwr_connection",
]
