"""OpenCV socket scripts: struct.pack('>L', n) then the encoded image, one after another."""

import struct

import device


def main():
    args = device.parse_args(__doc__)
    sock = device.connect(args)
    for image in device.images(args):
        sock.sendall(struct.pack(">L", len(image)) + image)
    device.finish(sock)


if __name__ == "__main__":
    main()
