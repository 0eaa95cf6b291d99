"""``python -m ffmrec.federated.engines.flower.deploy``: start a cluster, run one ffmrec app on it, stop everything."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ffmrec.federated.engines.flower.deploy.cluster import DeploymentCluster


def main(argv: list[str] | None = None) -> int:
    """CLI: start a TLS + node-auth cluster on 127.0.0.1, run one ffmrec app, stop everything."""
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m ffmrec.federated.engines.flower.deploy",
        description="Start a SuperLink and SuperNodes on this machine (TLS and SuperNode authentication unless "
                    "--insecure), run one ffmrec app on them, stop everything.")
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


