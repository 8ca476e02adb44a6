"""The classic field recipe: the length as ASCII digits, maybe a sleep, then the JPEG.

    sock.send(str(len(jpeg)).encode())
    time.sleep(1)
    sock.send(jpeg)

--sleep S sleeps between length and image; --one-segment sends length and image in one
sendall (what the host scripts of old lose data on). Several --files go back to back on one
connection.
"""

import time

import device


def extra(parser):
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds between length and image")
    parser.add_argument("--one-segment", action="store_true", help="length and image in one sendall")


def main():
    args = device.parse_args(__doc__, extra)
    sock = device.connect(args)
    for jpeg in device.images(args):
        if args.one_segment:
            sock.sendall(str(len(jpeg)).encode() + jpeg)
            continue
        sock.sendall(str(len(jpeg)).encode())
        if args.sleep:
            time.sleep(args.sleep)
        sock.sendall(jpeg)
    device.finish(sock)


if __name__ == "__main__":
    main()
