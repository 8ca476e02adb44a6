"""The classic OpenCV camera loop (cv2.VideoCapture, cv2.imencode('.jpg', frame), send), with
framegate's delivery guarantees: each send returns once the frame is stored, and frames lost
with a connection are resent.

    python3 example_opencv.py --to gateway.local:1919 --device door-cam [--secret S] [--fps 2]

Without OpenCV it sends the files of --dir instead (handy for a first test). Copy
framegate_client.py next to this script.
"""

import argparse
import os
import sys
import time

from framegate_client import FramegateClient, FrameRejected


def camera_frames(cv2, index, fps):
    """(jpeg bytes, capture time, metadata) per captured frame, at most ``fps`` a second."""
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        sys.exit("cannot open camera %d" % index)
    try:
        while True:
            started = time.time()
            ok, frame = capture.read()
            if not ok:
                return
            ok, jpeg = cv2.imencode(".jpg", frame, [int(cv2.IMWRITE_JPEG_QUALITY), 85])
            if ok:
                height, width = frame.shape[:2]
                yield jpeg.tobytes(), started, {"w": width, "h": height}
            time.sleep(max(0.0, 1.0 / fps - (time.time() - started)))
    finally:
        capture.release()


def directory_frames(path):
    """The regular files of ``path``, in name order, as frames."""
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            with open(full, "rb") as f:
                yield f.read(), os.path.getmtime(full), {"file": name[:200]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--to", required=True, help="HOST:PORT of the framegate listener")
    parser.add_argument("--device", required=True, help="this device's id (1-64 bytes)")
    parser.add_argument("--secret", help="the device's secret, if the server has one for it")
    parser.add_argument("--seq-file", help="keeps sequence numbers increasing across reboots")
    parser.add_argument("--camera", type=int, default=0, help="OpenCV camera index")
    parser.add_argument("--fps", type=float, default=2.0, help="frames per second, at most")
    parser.add_argument("--dir", help="send these files instead when OpenCV is missing")
    args = parser.parse_args()

    try:
        import cv2  # imported here: the --dir fallback runs without OpenCV
        frames = camera_frames(cv2, args.camera, args.fps)
    except ImportError:
        if not args.dir:
            parser.error("OpenCV (cv2) is not installed: pass --dir DIR to send files")
        frames = directory_frames(args.dir)

    host, port = args.to.rsplit(":", 1)
    with FramegateClient(host, int(port), args.device, secret=args.secret,
                         seq_file=args.seq_file) as client:
        for payload, captured, meta in frames:
            try:
                # content_type None: the server tells JPEG, PNG, … apart by their magic bytes.
                seq = client.send(payload, meta=meta, captured=captured)
            except FrameRejected as error:  # e.g. larger than the server takes: skip it
                print(error, file=sys.stderr)
                continue
            print("frame %d stored (%d bytes)" % (seq, len(payload)))


if __name__ == "__main__":
    main()
