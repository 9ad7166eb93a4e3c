"""Run the named benchmarks (all by default), print each figure beside its floor, write JSON.

    uv run python -m bench [NAME ...] [--json FILE]

Exit status 1 when a floor is missed, 2 when a benchmark cannot run here.
"""

import argparse
import importlib
import json
import os
import platform
import sys
import time

from bench.common import BenchmarkError

BENCHMARKS = {
    "checks": "bench.checks",
    "pages": "bench.pages",
    "reports": "bench.reports",
    "broadcast": "bench.broadcast",
    "callbacks": "bench.callbacks",
    "events": "bench.events",
    "pacing": "bench.pacing",
    "sends": "bench.sends",
    "firstsend": "bench.firstsend",
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHMARKS)} (default: all)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument(
        "--with-history",
        action="store_true",
        help="firstsend: import the account's Twilio history before the first broadcast",
    )
    args = parser.parse_args(argv)
    if args.with_history:
        os.environ["BENCH_FIRSTSEND_HISTORY"] = "1"
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    figures, started = [], time.monotonic()
    for name in names:
        print(f"== {name}", flush=True)
        module = importlib.import_module(BENCHMARKS[name])
        try:
            figures += module.run()
        except BenchmarkError as error:
            print(f"bench {name}: {error}", file=sys.stderr)
            return 2
    print()
    print(f"{'benchmark':<10} {'figure':<44} {'value':>12} {'unit':<7} {'floor':<18} ok")
    for f in figures:
        ok = "" if f.ok is None else ("yes" if f.ok else "NO")
        print(f"{f.benchmark:<10} {f.name:<44} {f.value:>12,.2f} {f.unit:<7} {f.floor:<18} {ok}")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    print(f"\n{len(figures)} figures in {time.monotonic() - started:.0f} s on {machine}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"machine": machine, "figures": [f.as_dict() for f in figures]}, handle, indent=2
            )
    return 1 if any(f.ok is False for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
