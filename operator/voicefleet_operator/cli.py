"""voicefleet-operator: run the operator, print the CRD, or bring up a local cluster.

voicefleet-operator run            # in a cluster (Helm chart) or against $KUBECONFIG
voicefleet-operator crd            # the CustomResourceDefinition YAML
voicefleet-operator dev up         # local cluster with a real node, the chart, and the example agent
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys

import kopf
from prometheus_client import start_http_server

from . import crdgen


def _run(args: argparse.Namespace) -> int:
    from . import handlers, handlers_knowledge, transfer_check  # noqa: F401  (register the kopf handlers)
    from .kube import Kube
    from .leader import run_as_leader

    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.json_logs else kopf.LogFormat.FULL,
        # Text lines name their VoiceAgent ("[ns/name] ..."); JSON records carry it as a field.
        log_prefix=None,
    )
    start_http_server(args.metrics_port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"

        async def operate() -> None:
            await kopf.operator(
                standalone=True,  # no peering: the Lease decides who runs
                # Without it kopf asks the OS for a user name the image may not have.
                identity=identity,  # type: ignore[arg-type]  # kopf types it as its private NewType of str
                clusterwide=not args.namespace,
                namespaces=args.namespace or (),
                liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz",
                stop_flag=stop,
            )

        if not args.leader_election:
            await operate()
            return
        kube = await Kube.connect()
        try:
            await run_as_leader(kube.api, args.lease_name, args.lease_namespace, identity, operate, stop)
        finally:
            await kube.close()

    asyncio.run(main())
    return 0


def _crd(_: argparse.Namespace) -> int:
    sys.stdout.write(crdgen.render())
    return 0


def _dev(args: argparse.Namespace) -> int:
    from .dev import dev_command

    return dev_command(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="voicefleet-operator", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument("--namespace", action="append", help="watch only this namespace (repeatable)")
    run.add_argument(
        "--metrics-port", type=int, default=int(os.environ.get("VOICEFLEET_METRICS_PORT", "9090"))
    )
    run.add_argument("--health-port", type=int, default=int(os.environ.get("VOICEFLEET_HEALTH_PORT", "8080")))
    run.add_argument("--leader-election", action=argparse.BooleanOptionalAction, default=True)
    run.add_argument("--lease-name", default="voicefleet-operator")
    run.add_argument("--lease-namespace", default=os.environ.get("POD_NAMESPACE", "default"))
    run.add_argument("--json-logs", action=argparse.BooleanOptionalAction, default=False)
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=_run)

    crd = sub.add_parser("crd", help="print the VoiceAgent CustomResourceDefinition")
    crd.set_defaults(func=_crd)

    dev = sub.add_parser("dev", help="local cluster (real node + KWOK nodes), the chart, the example agent")
    dev.add_argument("action", choices=["up", "down"])
    dev.add_argument("--name", default="voicefleet")
    dev.add_argument("--nodes", type=int, default=3, help="fake (KWOK) nodes beside the real one")
    dev.add_argument(
        "--real-node",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the fleet on a real local node (root); --no-real-node: KWOK nodes only",
    )
    dev.add_argument("--port", type=int, default=8080, help="local port of the example agent's web page")
    dev.set_defaults(func=_dev)

    args = parser.parse_args(argv)
    if args.command != "run":  # `run` logs through kopf's handler (kopf.configure); one is enough
        logging.basicConfig(level=logging.INFO)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
