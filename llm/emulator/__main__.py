"""Command line: ``python -m llm.emulator`` serves the emulator until Ctrl-C.

It prints the base URL (``http://127.0.0.1:PORT``) on the first line of stdout, so scripts
started with ``--port 0`` can read the port that was chosen.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from llm.emulator.engine import EmulatorConfig
from llm.emulator.engine_timing import STREAM_HEADER_MODES
from llm.emulator.server import Emulator


def parse_args(argv: list[str] | None = None) -> EmulatorConfig:
    """Command-line flags → :class:`EmulatorConfig`."""
    parser = argparse.ArgumentParser(
        prog="python -m llm.emulator",
        description="Local emulator of the Anthropic, OpenAI and Gemini HTTP APIs.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--rpm", type=int, default=None, help="requests per minute per key")
    parser.add_argument("--itpm", type=int, default=None, help="input tokens per minute per key")
    parser.add_argument("--otpm", type=int, default=None, help="output tokens per minute per key")
    parser.add_argument("--burst-s", type=float, default=1.0, help="seconds of refill per burst")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="time to first token (median if lognormal)"
    )
    parser.add_argument("--latency-dist", choices=("fixed", "lognormal"), default="fixed")
    parser.add_argument("--latency-sigma", type=float, default=0.6, help="sigma of log(latency)")
    parser.add_argument(
        "--stream-headers",
        choices=STREAM_HEADER_MODES,
        default="recorded",
        help="when a stream's headers leave: the provider's recorded delay, or with the "
        "first token",
    )
    parser.add_argument("--tokens-per-s", type=float, default=None, help="output speed")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests failing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-key", default=None, help="accept only this key")
    args = parser.parse_args(argv)
    if not 0.0 <= args.fault_rate <= 1.0:
        parser.error("--fault-rate must be between 0 and 1")
    if args.latency_sigma < 0 or args.burst_s <= 0:
        parser.error("--latency-sigma must be >= 0 and --burst-s > 0")
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        rpm=args.rpm,
        itpm=args.itpm,
        otpm=args.otpm,
        latency_ms=args.latency_ms,
        latency_dist=args.latency_dist,
        latency_sigma=args.latency_sigma,
        stream_headers=args.stream_headers,
        burst_s=args.burst_s,
        tokens_per_s=args.tokens_per_s,
        fault_rate=args.fault_rate,
        seed=args.seed,
        api_key=args.api_key,
    )


async def serve(config: EmulatorConfig) -> None:
    """Run until cancelled."""
    async with Emulator(config) as emulator:
        print(emulator.base_url, flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
