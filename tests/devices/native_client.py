"""A device using clients/python/framegate_client.py (imported by path) against a real daemon.

Sends --count frames made from --seed exactly as tests/common/mod.rs `frames(seed, n, lo, hi)`
makes them (xorshift64*, JPEG or PNG magic), with send_async and a final flush; the window is
whatever the server's WELCOME says. Standard library only.

Exit status: 0 when every frame was acknowledged; 2 when the server refused the session (not
authorised); 3 when the server stayed unavailable past --max-retries; 4 when a frame was
rejected; 5 when --deadline passed; 1 for anything else. The last line on stdout says what
happened (`ok: …`, `refused: …`, …).

--gate-after K --gate-file F: after the K-th frame, wait (without touching the connection)
until F exists, so a test can restart the server while this device still holds frames whose
ACKs it has not read. Every wait is bounded by --deadline.
"""

import argparse
import importlib.util
import os
import signal
import struct
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLIENT = os.path.join(ROOT, "clients", "python", "framegate_client.py")

MASK = (1 << 64) - 1
JPEG_MAGIC = b"\xff\xd8\xff\xe0"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load_client():
    spec = importlib.util.spec_from_file_location("framegate_client", CLIENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Rng(object):
    """tests/common/mod.rs `Rng`: xorshift64*."""

    def __init__(self, seed):
        self.state = ((seed * 0x9E3779B97F4A7C15) & MASK) | 1

    def next_u64(self):
        x = self.state
        x ^= x >> 12
        x ^= (x << 25) & MASK
        x ^= x >> 27
        self.state = x
        return (x * 0x2545F4914F6CDD1D) & MASK

    def range(self, lo, hi):
        return lo + self.next_u64() % (hi - lo + 1)

    def fill(self, length):
        words = (length + 7) // 8
        data = struct.pack("<%dQ" % words, *(self.next_u64() for _ in range(words)))
        return data[:length]


def with_magic(magic, seed, length):
    data = bytearray(Rng(seed).fill(max(length, len(magic))))
    data[:len(magic)] = magic
    return bytes(data)


def frames(seed, n, lo, hi):
    """tests/common/mod.rs `frames`: n frames of lo..=hi bytes, a third of them PNG."""
    rng = Rng(seed)
    out = []
    for i in range(n):
        length = rng.range(max(lo, 8), hi)
        s = (seed * 1000 + i) & MASK
        magic = PNG_MAGIC if rng.next_u64() % 3 == 0 else JPEG_MAGIC
        out.append(with_magic(magic, s, length))
    return out


def finish(code, line):
    print(line, flush=True)
    sys.exit(code)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--to", required=True, help="HOST:PORT of a native listener")
    parser.add_argument("--device", required=True)
    parser.add_argument("--secret")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--min-bytes", type=int, required=True)
    parser.add_argument("--max-bytes", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=10.0, help="connect/handshake timeout")
    parser.add_argument("--max-retries", type=int, default=8)
    parser.add_argument("--backoff", type=float, default=0.1)
    parser.add_argument("--backoff-max", type=float, default=1.0)
    parser.add_argument("--interval", type=float, default=0.0, help="pause between frames, s")
    parser.add_argument("--gate-after", type=int, default=0)
    parser.add_argument("--gate-file")
    parser.add_argument("--deadline", type=float, default=120.0, help="give up after, s")
    args = parser.parse_args()

    # Whatever happens, never outlive the deadline (the test kills us later still).
    def expired(_signum, _frame):
        print("deadline: still running after %.0f s" % args.deadline, flush=True)
        os._exit(5)

    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, args.deadline)

    fg_mod = load_client()
    host, port = args.to.rsplit(":", 1)
    payloads = frames(args.seed, args.count, args.min_bytes, args.max_bytes)
    connections = [0]

    def connect(h, p, timeout):
        sock = fg_mod._tcp_connect(h, p, timeout)
        connections[0] += 1
        print("connected (#%d)" % connections[0], flush=True)
        return sock

    client = fg_mod.FramegateClient(
        host, int(port), args.device, secret=args.secret, timeout=args.timeout,
        max_retries=args.max_retries, backoff=args.backoff, backoff_max=args.backoff_max,
        connect=connect)
    seqs = []
    window = None
    try:
        for i, payload in enumerate(payloads):
            seqs.append(client.send_async(payload))
            if window is None:
                window = client.welcome.max_in_flight
                print("window %d from WELCOME (committed_through %d)"
                      % (window, client.welcome.committed_through), flush=True)
            if args.gate_after and i + 1 == args.gate_after:
                # (_unacked is the client's private queue; read only, for the test's report.)
                print("holding after %d frames, %d unacknowledged"
                      % (i + 1, len(client._unacked)), flush=True)
                while not os.path.exists(args.gate_file):
                    time.sleep(0.02)
                print("released", flush=True)
            elif args.interval:
                time.sleep(args.interval)
        client.flush()
    except fg_mod.Refused as error:
        finish(2, "refused: %s" % error)
    except fg_mod.Unavailable as error:
        finish(3, "unavailable: %s (%d unacknowledged)" % (error, error.unacknowledged))
    except fg_mod.FrameRejected as error:
        finish(4, "rejected: %s" % error)
    finally:
        client.close(flush=False)
    if len(set(seqs)) != args.count or seqs != sorted(seqs):
        finish(1, "bad sequence numbers: %s" % seqs)
    finish(0, "ok: %d of %d frames acknowledged over %d connection(s), seqs %d..%d"
           % (len(seqs), args.count, connections[0], seqs[0], seqs[-1]))


if __name__ == "__main__":
    main()
