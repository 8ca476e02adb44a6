"""Bench sender: one imagezmq.ImageSender sending the same JPEG COUNT times with send_jpg,
each waiting for its reply, as fast as the hub answers. Prints the seconds it took (from the
first send to the last reply) on stdout; exits 1 on any reply other than b"OK"."""

import sys
import time

import imagezmq
import zmq


def main():
    to, name, path, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with open(path, "rb") as f:
        jpg = f.read()
    sender = imagezmq.ImageSender(connect_to=to)
    sender.zmq_socket.setsockopt(zmq.RCVTIMEO, 30000)
    sender.zmq_socket.setsockopt(zmq.SNDTIMEO, 30000)
    sender.zmq_socket.setsockopt(zmq.LINGER, 0)
    # Wait for the go signal (a line on stdin) so every sender starts together.
    sys.stdin.readline()
    started = time.monotonic()
    for _ in range(count):
        if sender.send_jpg(name, jpg) != b"OK":
            sys.exit("unexpected reply")
    print("%.6f" % (time.monotonic() - started), flush=True)
    sender.zmq_socket.close()


if __name__ == "__main__":
    main()
