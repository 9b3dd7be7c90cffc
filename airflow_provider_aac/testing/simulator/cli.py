"""``python -m airflow_provider_aac.testing.simulator``: serve until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from airflow_provider_aac.testing.simulator.server import logger
from airflow_provider_aac.testing.simulator.simulator import AACSimulator


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_aac.testing.simulator",
        description="Serve a local Alteryx Analytics Cloud simulator until SIGTERM or Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--access-ttl", type=float, default=300.0, help="access-token lifetime, seconds")
    parser.add_argument(
        "--refresh-ttl", type=float, default=30 * 86400.0, help="refresh-token lifetime, seconds"
    )
    parser.add_argument(
        "--refresh-deadline",
        choices=("fixed", "sliding"),
        default="fixed",
        help="sliding: each rotation renews the refresh deadline by --refresh-ttl (PingOne's default)",
    )
    parser.add_argument(
        "--refresh-cap",
        type=float,
        default=None,
        help="absolute cap on a token family's life, seconds from minting (PingOne's rolling duration)",
    )
    parser.add_argument(
        "--reuse-grace",
        type=float,
        default=0.0,
        help="seconds a spent refresh token is accepted again with the same answer (PingOne's grace period)",
    )
    parser.add_argument("--run-duration", type=float, default=2.0, help="seconds a run takes to finish")
    parser.add_argument("--client-id", default="aac-sim-client")
    parser.add_argument(
        "--without-operation",
        action="append",
        default=[],
        metavar="OPERATION_ID",
        help="leave this AAC operation (e.g. runFlow) out of the routes and the served spec; repeatable",
    )
    parser.add_argument("--pair-file", help="write a freshly minted token pair here as JSON (mode 0600)")
    parser.add_argument("--ready-file", help="write the base URL here once listening")
    parser.add_argument("--verbose", action="store_true", help="log each request (method, path, status)")
    return parser.parse_args(argv)


def _write_file_atomically(path: str, text: str, mode: int) -> None:
    """Readers polling for the file never see it half-written or, for secrets, world-readable."""
    temporary = f"{path}.{os.getpid()}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w") as handle:
        os.fchmod(handle.fileno(), mode)
        handle.write(text)
    os.replace(temporary, path)


def _enable_request_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    return stop


def _simulator(args: argparse.Namespace) -> AACSimulator:
    return AACSimulator(
        host=args.host,
        port=args.port,
        access_ttl=args.access_ttl,
        refresh_ttl=args.refresh_ttl,
        refresh_deadline=args.refresh_deadline,
        refresh_cap=args.refresh_cap,
        reuse_grace=args.reuse_grace,
        run_duration=args.run_duration,
        client_id=args.client_id,
        without_operations=args.without_operation,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.verbose:
        _enable_request_logging()
    stop = _stop_on_signals()
    try:
        simulator = _simulator(args)
    except ValueError as err:
        print(f"python -m airflow_provider_aac.testing.simulator: {err}", file=sys.stderr, flush=True)
        return 2
    with simulator:
        if args.pair_file:
            pair = {
                **simulator.mint_pair(),
                "client_id": simulator.client_id,
                "base_url": simulator.base_url,
                "token_url": simulator.token_url,
            }
            _write_file_atomically(args.pair_file, json.dumps(pair, indent=2), 0o600)
        print(f"AAC simulator listening on {simulator.base_url}", flush=True)
        if args.ready_file:
            _write_file_atomically(args.ready_file, simulator.base_url, 0o644)
        stop.wait()
    return 0
