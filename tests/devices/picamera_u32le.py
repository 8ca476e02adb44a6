"""picamera's network-stream recipe: struct.pack('<L', n) then the image, and
struct.pack('<L', 0) at the end (--no-end-marker leaves it out and just closes)."""

import struct

import device


def extra(parser):
    parser.add_argument("--no-end-marker", action="store_true", help="close without the zero length")


def main():
    args = device.parse_args(__doc__, extra)
    sock = device.connect(args)
    for image in device.images(args):
        sock.sendall(struct.pack("<L", len(image)))
        sock.sendall(image)
    if not args.no_end_marker:
        sock.sendall(struct.pack("<L", 0))
    device.finish(sock)


if __name__ == "__main__":
    main()
