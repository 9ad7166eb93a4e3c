"""A load client in its own process: signed Twilio callbacks over keep-alive HTTP/1.1.

    python -m bench.loadclient --port P --path /webhooks/twilio/status/ --token T \
        --count N --concurrency 16 [--prefix RUN]

Prints one JSON object: requests, errors, seconds, rate, p50/p99 latency. Only 127.0.0.1.
"""

import argparse
import asyncio
import json
import time
import zlib
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator


def run_sid(run, n):
    """The n-th message SID of a run: 34 characters, like Twilio's, distinct across runs."""
    return f"SM{zlib.crc32(run.encode()):08x}{n:024d}"


def payloads(count, run, base_url, token, path):
    """A "sent", then a "delivered" callback for each of count / 2 messages of the run: each a
    new event (a duplicate is one with the same SID, status and error code)."""
    validator = RequestValidator(token)
    url = base_url + path
    statuses = ["sent", "delivered"]
    for n in range(count):
        sid = run_sid(run, n // 2)
        params = {
            "AccountSid": "AC" + "0" * 32,
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": statuses[n % 2],
            "To": "+12125550100",
            "From": "+16175552001",
            "ApiVersion": "2010-04-01",
        }
        body = urlencode(params).encode()
        signature = validator.compute_signature(url, params)
        yield body, signature, f"{run}-{n}"


async def client(port, path, queue, latencies, errors):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            try:
                body, signature, token = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            head = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\nX-Twilio-Signature: {signature}\r\n"
                f"I-Twilio-Idempotency-Token: {token}\r\nConnection: keep-alive\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            status_line = await reader.readline()
            length, close = 0, False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value.strip())
                if name.lower() == "connection" and value.strip().lower() == "close":
                    close = True
            if length:
                await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            code = int(status_line.split()[1]) if status_line else 0
            if code >= 300:
                errors.append(code)
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


async def main_async(args):
    queue = asyncio.Queue()
    base = f"http://127.0.0.1:{args.port}"
    for item in payloads(args.count, args.prefix, base, args.token, args.path):
        queue.put_nowait(item)
    latencies, errors = [], []
    started = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(
            *(
                client(args.port, args.path, queue, latencies, errors)
                for _ in range(args.concurrency)
            )
        ),
        timeout=args.timeout,
    )
    seconds = time.perf_counter() - started
    latencies.sort()

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    return {
        "requests": len(latencies),
        "errors": len(errors),
        "seconds": seconds,
        "rate": len(latencies) / seconds if seconds else 0.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--prefix", default="run")
    parser.add_argument("--timeout", type=float, default=120)
    print(json.dumps(asyncio.run(main_async(parser.parse_args()))))


if __name__ == "__main__":
    main()
