#!/usr/bin/env python3
"""Replays the widely copied ESP32-CAM upload sketch (RandomNerdTutorials) byte for byte with
http.client: the same request line and headers, the multipart head, the JPEG written in
1024-byte chunks, the tail; then waits up to 10 s for the response body, as the firmware does.

Prints one JSON line: {"status": …, "body": "…", "elapsed": seconds}.
Usage: esp32_cam.py HOST PORT PATH JPEG_FILE
"""
import http.client
import json
import sys
import time

host, port, path, jpeg_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with open(jpeg_file, "rb") as f:
    fb = f.read()

head = (
    "--RandomNerdTutorials\r\n"
    'Content-Disposition: form-data; name="imageFile"; filename="esp32-cam.jpg"\r\n'
    "Content-Type: image/jpeg\r\n\r\n"
)
tail = "\r\n--RandomNerdTutorials--\r\n"
total_len = len(fb) + len(head) + len(tail)

start = time.monotonic()
conn = http.client.HTTPConnection(host, port, timeout=10)
# The sketch sends exactly these lines (client.println), nothing else.
conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
conn.putheader("Host", host)
conn.putheader("Content-Length", str(total_len))
conn.putheader("Content-Type", "multipart/form-data; boundary=RandomNerdTutorials")
conn.endheaders()
conn.send(head.encode())
for n in range(0, len(fb), 1024):
    conn.send(fb[n : n + 1024])
conn.send(tail.encode())
# The firmware polls for up to 10 s and gives up without a body; so do we.
response = conn.getresponse()
body = response.read().decode()
conn.close()
print(json.dumps({"status": response.status, "body": body, "elapsed": time.monotonic() - start}))
