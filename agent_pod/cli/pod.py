"""`voicefleet pod`: run an agent pod (locally: fully offline on the default config)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from ..logs import setup_logging
from ..runtime import Pod, Ports
from ..settings import PodSettings

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("pod", help="run an agent pod; open the printed URL to talk to it")
    p.add_argument(
        "--config", type=Path, help="AgentConfig JSON (default: VOICEFLEET_CONFIG or the offline default)"
    )
    p.add_argument("--host", help="bind host (default: VOICEFLEET_BIND_HOST or 0.0.0.0)")
    p.add_argument("--grpc-port", type=int, help="gRPC port (0: any free port)")
    p.add_argument("--http-port", type=int, help="HTTP port (0: any free port)")
    p.add_argument("--metrics-port", type=int, help="Prometheus port (0: any free port)")
    p.add_argument("--udp-ports", help="WebRTC media UDP port range MIN-MAX")
    p.add_argument("--log-format", choices=("json", "text"), help="default: VOICEFLEET_LOG_FORMAT or json")
    p.set_defaults(func=run)


def pod_from_args(args: argparse.Namespace) -> Pod:
    overrides: dict[str, object] = {}
    if args.config is not None:
        overrides["config"] = args.config
    if args.host is not None:
        overrides["bind_host"] = args.host
    if args.log_format is not None:
        overrides["log_format"] = args.log_format
    settings = PodSettings(**overrides)  # type: ignore[arg-type]
    config = settings.load_config()
    ports = Ports.from_config(config)
    for name in ("grpc", "http", "metrics"):
        value = getattr(args, f"{name}_port")
        if value is not None:
            setattr(ports, name, value)
    if args.udp_ports:
        low, _, high = args.udp_ports.partition("-")
        ports.udp_min, ports.udp_max = int(low), int(high or low)
    return Pod(settings, config, ports)


def run(args: argparse.Namespace) -> int:
    pod = pod_from_args(args)
    setup_logging(pod.settings.log_format)

    async def main() -> int:
        async def announce() -> None:
            await pod.ready.wait()
            print(
                f"voicefleet pod {pod.settings.pod_name} ready\n"
                f"  talk to it:  {pod.http_url}/\n"
                f"  gRPC:        {pod.grpc_address or 'disabled'}\n"
                f"  metrics:     http://{pod.host}:{pod.metrics_port}/metrics",
                flush=True,
            )

        announcer = asyncio.get_running_loop().create_task(announce())
        try:
            return await pod.run()
        finally:
            announcer.cancel()

    return asyncio.run(main())
