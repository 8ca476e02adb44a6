"""What the device scripts share: arguments, connecting, and waiting for the host to close.

Standard library only. The scripts themselves keep the wire code as devices in the field write it.
"""

import argparse
import socket
import sys

TIMEOUT = 20.0


def parse_args(description, extra=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--to", required=True, help="HOST:PORT of the framegate listener")
    parser.add_argument("--files", nargs="+", required=True, help="images, sent in order")
    parser.add_argument("--source-ip", help="bind to this local address before connecting")
    if extra:
        extra(parser)
    return parser.parse_args()


def connect(args):
    host, port = args.to.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    if args.source_ip:
        sock.bind((args.source_ip, 0))
    sock.connect((host, int(port)))
    return sock


def images(args):
    for path in args.files:
        with open(path, "rb") as f:
            yield f.read()


def finish(sock):
    """Stops sending, then waits until the host closes the connection (EOF or reset)."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the host may have closed already (u32le end marker)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        sys.exit(f"the host did not close the connection within {TIMEOUT}s")
    finally:
        sock.close()
