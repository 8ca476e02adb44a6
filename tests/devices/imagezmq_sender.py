"""An imagezmq camera: a real imagezmq.ImageSender (pyzmq REQ) sending to framegate's ZMTP listener.

Needs pyzmq, imagezmq and numpy: run it with the python that tests/devices/imagezmq_venv.sh prints.

    imagezmq_sender.py --to tcp://127.0.0.1:PORT --name cam-1 --jpg a.jpg b.jpg
    imagezmq_sender.py --to tcp://127.0.0.1:PORT --name cam-1 --array-seed 7 --count 3 [--shape 48,64,3]

--jpg sends each file with send_jpg(name, bytes). --array-seed sends --count uint8 arrays with
send_image(name, array); array k (0-based) has shape --shape (rows,columns[,channels], OpenCV BGR
order) and byte i (C order) = (i * 7 + seed * 13 + k * 101) % 256, so a test can rebuild it.

Prints one JSON line per image: {"name", "kind": "jpg"|"array", "shape", "bytes", "sha256" (of the
bytes sent: the file, or the array's raw C-order bytes), "reply"}. Exits 0 only when every send got
the reply b"OK"; 1 on any other reply, a timeout or an error. Never hangs: imagezmq's REQ socket
blocks forever by default, so every send and receive is bounded by --timeout, LINGER is 0, and a
SIGALRM backstop ends the whole run.
"""

import argparse
import hashlib
import json
import signal
import sys

import numpy as np
import zmq
import imagezmq


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--to", required=True, help="tcp://HOST:PORT of framegate's imagezmq listener")
    parser.add_argument("--name", default="imagezmq-test", help="the msg (image/camera name) sent with each image")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--jpg", nargs="+", metavar="FILE", help="files sent with send_jpg, in order")
    what.add_argument("--array-seed", type=int, metavar="N", help="send generated arrays with send_image")
    parser.add_argument("--count", type=int, default=1, help="how many arrays (with --array-seed)")
    parser.add_argument("--shape", default="48,64,3", help="array shape: rows,columns[,channels]")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per send and per reply")
    return parser.parse_args()


def generated_array(seed, k, shape):
    """Array k of a run: byte i = (i * 7 + seed * 13 + k * 101) % 256, uint8, C order."""
    size = int(np.prod(shape))
    i = np.arange(size, dtype=np.uint64)
    return ((i * 7 + seed * 13 + k * 101) % 256).astype(np.uint8).reshape(shape)


def images(args):
    """Yields (kind, shape, bytes sent, send function argument) per image."""
    if args.jpg:
        for path in args.jpg:
            with open(path, "rb") as f:
                data = f.read()
            yield "jpg", None, data, data
    else:
        shape = tuple(int(d) for d in args.shape.split(","))
        for k in range(args.count):
            array = generated_array(args.array_seed, k, shape)
            yield "array", list(shape), array.tobytes(), array


def main():
    args = parse_args()
    sends = len(args.jpg) if args.jpg else args.count
    # Backstop for anything the socket timeouts do not cover (e.g. a stuck context term).
    signal.signal(signal.SIGALRM, lambda *_: sys.exit("imagezmq_sender: no progress, gave up after the overall deadline"))
    signal.alarm(int(args.timeout * (2 * sends + 2)) + 5)

    sender = imagezmq.ImageSender(connect_to=args.to)
    socket = sender.zmq_socket
    timeout_ms = int(args.timeout * 1000)
    socket.setsockopt(zmq.RCVTIMEO, timeout_ms)
    socket.setsockopt(zmq.SNDTIMEO, timeout_ms)
    socket.setsockopt(zmq.LINGER, 0)
    failed = False
    try:
        for kind, shape, data, item in images(args):
            try:
                if kind == "jpg":
                    reply = sender.send_jpg(args.name, item)
                else:
                    reply = sender.send_image(args.name, item)
            except zmq.Again:
                sys.exit(f"imagezmq_sender: no reply from {args.to} within {args.timeout}s (image {kind}, {len(data)} bytes)")
            line = {
                "name": args.name,
                "kind": kind,
                "shape": shape,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "reply": reply.decode("utf-8", "backslashreplace"),
            }
            print(json.dumps(line), flush=True)
            if reply != b"OK":
                print(f"imagezmq_sender: expected reply b'OK', got {reply!r}", file=sys.stderr)
                failed = True
                break
    finally:
        sender.close()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
