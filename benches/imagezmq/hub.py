"""Bench baseline: imagezmq's own ImageHub, the loop from imagezmq's documentation
(recv_jpg, then send_reply(b"OK")), receiving TOTAL frames on PORT, then exiting.
Prints "ready" once bound."""

import sys

import imagezmq


def main():
    port, total = int(sys.argv[1]), int(sys.argv[2])
    hub = imagezmq.ImageHub(open_port="tcp://127.0.0.1:%d" % port)
    print("ready", flush=True)
    for _ in range(total):
        hub.recv_jpg()
        hub.send_reply(b"OK")


if __name__ == "__main__":
    main()
