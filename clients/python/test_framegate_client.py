"""Tests of framegate_client.py: the hex vectors of docs/PROTOCOL.md, CRC-32C, the auth tag,
and the client's state machine against scripted server bytes over socket.socketpair().

Run from the repository root: python3 -m unittest clients/python/test_framegate_client.py
"""

import os
import re
import select
import socket
import sys
import tempfile
import threading
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import framegate_client as fg  # noqa: E402  (after the path is set)

NONCE = bytes([7]) * 32
TAG = bytes.fromhex("8a7bb92b6855d759df0e0d738b2e45f19053c161c65f87d378f2012b6abc2fa8")
JPEG = bytes.fromhex("ffd8ffd9")
CAPTURED = 1700000000  # seconds; the frame vector's captured_us / 10**6

# What each vector of docs/PROTOCOL.md encodes.
MESSAGES = {
    "hello": fg.Hello("door-cam", True),
    "challenge": fg.Challenge(NONCE),
    "auth": fg.Auth(TAG),
    "welcome": fg.Welcome(33554432, 16, 10, 41),
    "frame": fg.Frame(42, 1700000000000000, fg.CONTENT_TYPES["jpeg"], [("exp", "10")], JPEG,
                      0x6C5709B4),
    "ack": fg.Ack(42),
    "nack": fg.Nack(43, fg.CHECKSUM_MISMATCH, "crc"),
    "ping": fg.Ping(7),
    "pong": fg.Pong(7),
    "goodbye": fg.Goodbye(fg.SHUTTING_DOWN, ""),
}


def unhex(text):
    return bytes.fromhex("".join(text.split()))


def doc_vectors():
    """{name: bytes} from the "Test vectors" section of docs/PROTOCOL.md."""
    with open(os.path.join(ROOT, "docs", "PROTOCOL.md"), encoding="utf-8") as f:
        text = f.read()
    found = re.findall(r"<!-- vector ([\w-]+) -->\s*```text\n(.*?)```", text, re.S)
    return {name: unhex(body) for name, body in found}


V = doc_vectors()


def frame_bytes(seq, content_type=0, meta=(), payload=JPEG):
    return fg.encode(fg.Frame(seq, CAPTURED * 1000000, content_type, list(meta), payload, None))


class Vectors(unittest.TestCase):
    def test_the_doc_has_every_vector(self):
        self.assertEqual(set(V), set(MESSAGES) | {"auth-tag"})

    def test_encoding(self):
        for name, message in MESSAGES.items():
            self.assertEqual(fg.encode(message).hex(), V[name].hex(), name)
        computed_crc = MESSAGES["frame"]._replace(crc32c=None)
        self.assertEqual(fg.encode(computed_crc), V["frame"])

    def test_decoding_under_every_chunking(self):
        for name, message in MESSAGES.items():
            data = V[name]
            self.assertEqual(fg.decode(data), message, name)
            for cut in range(len(data) + 1):
                decoder = fg.MessageDecoder()
                got = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
                self.assertEqual(got, [message], "%s cut at %d" % (name, cut))
                self.assertFalse(decoder.mid_message())
            decoder = fg.MessageDecoder()
            got = [m for i in range(len(data)) for m in decoder.feed(data[i:i + 1])]
            self.assertEqual(got, [message], name + " byte by byte")

    def test_messages_of_equal_fields_but_different_types_differ(self):
        self.assertNotEqual(fg.Ping(7), fg.Pong(7))
        self.assertNotEqual(fg.decode(V["ping"]), fg.decode(V["pong"]))

    def test_crc32c(self):
        self.assertEqual(fg.crc32c(b"123456789"), 0xE3069283)
        self.assertEqual(fg.crc32c(JPEG), 0x6C5709B4)
        self.assertEqual(fg.crc32c(b"6789", fg.crc32c(b"12345")), 0xE3069283)
        self.assertEqual(fg.crc32c(b""), 0)

    def test_auth_tag(self):
        self.assertEqual(fg.auth_tag("s3cret", NONCE, "door-cam"), V["auth-tag"])
        self.assertEqual(fg.auth_tag(b"s3cret", NONCE, "door-cam"), TAG)
        self.assertNotEqual(fg.auth_tag("s3cret", NONCE, "yard-cam"), TAG)

    def test_the_doc_and_the_rust_tests_have_the_same_vectors(self):
        with open(os.path.join(ROOT, "src", "protocol", "tests.rs"), encoding="utf-8") as f:
            rust = f.read()
        pairs = re.findall(r'\(\s*"(\w+)",\s*Message::.*?"(4647[0-9a-f ]*)"', rust, re.S)
        self.assertEqual(len(pairs), 6, "the vectors() table of src/protocol/tests.rs")
        for name, hex_text in pairs:
            self.assertEqual(unhex(hex_text), V[name], name)
        frame = re.search(r'let hex = "(.*?)";', rust, re.S).group(1)
        self.assertEqual(unhex(frame.replace("\\", "")), V["frame"])
        self.assertIn('"%s"' % V["auth-tag"].hex(), rust)

    def test_bad_bytes_are_protocol_errors(self):
        for text in ["4746 01 01 00000000",  # magic
                     "4647 02 01 03000000",  # version
                     "4647 01 55 00000000",  # type
                     "4647 01 01 ffffff7f",  # a HELLO body too long: refused before buffering
                     "4647 01 01 03000000 05 6162",  # device id longer than the body
                     # FRAME whose parts (28 + 0 + 4) do not add up to its body (40)
                     "4647 01 10 28000000 0100000000000000 0000000000000000 00 00 0000 04000000"
                     " 00000000 00000000 00000000"]:
            decoder = fg.MessageDecoder()
            with self.assertRaises(fg.ProtocolError, msg=text):
                decoder.feed(unhex(text))
            with self.assertRaises(fg.ProtocolError, msg="errors are final"):
                decoder.feed(V["ping"])

    def test_metadata_limits(self):
        fg.meta_pairs([("k%d" % i, "v") for i in range(16)])
        for bad in ([("k%d" % i, "v") for i in range(17)], {"": "v"}, {"k": "x" * 4094}):
            with self.assertRaises(ValueError):
                fg.meta_pairs(bad)

    def test_hello_prefix(self):
        self.assertEqual(V["hello"][:4], fg.HELLO_PREFIX)
        self.assertEqual(fg.HELLO_PREFIX, bytes([0x46, 0x47, 0x01, 0x01]))


class Peer(object):
    """The server's end of a socketpair, driven by a test's script."""

    def __init__(self, sock):
        self.sock = sock
        sock.settimeout(5)

    def expect(self, data):
        got = b""
        while len(got) < len(data):
            chunk = self.sock.recv(len(data) - len(got))
            if not chunk:
                break
            got += chunk
        if got != data:
            raise AssertionError("expected %s, got %s" % (data.hex(), got.hex()))

    def send(self, data):
        self.sock.sendall(data)

    def quiet(self, seconds):
        readable, _, _ = select.select([self.sock], [], [], seconds)
        if readable:
            raise AssertionError("unexpected bytes: %s" % self.sock.recv(100).hex())

    def expect_eof(self):
        rest = self.sock.recv(100)
        if rest:
            raise AssertionError("expected the client to close, got %s" % rest.hex())


class ScriptedServer(object):
    """Hands the client one socketpair per connection; each connection's server end plays
    the next script in a thread."""

    def __init__(self, *scripts):
        self.scripts, self.threads, self.errors, self.connects = list(scripts), [], [], 0

    def connect(self, host, port, timeout):
        self.connects += 1
        if not self.scripts:
            raise ConnectionRefusedError("no more scripted connections")
        client_end, server_end = socket.socketpair()
        thread = threading.Thread(target=self._play, args=(self.scripts.pop(0), server_end))
        thread.daemon = True
        thread.start()
        self.threads.append(thread)
        return client_end

    def _play(self, script, sock):
        try:
            script(Peer(sock))
        except Exception:  # reported by check() in the test's thread
            self.errors.append(traceback.format_exc())
        finally:
            sock.close()

    def check(self, test, connects):
        for thread in self.threads:
            thread.join(10)
            test.assertFalse(thread.is_alive(), "a script did not finish")
        test.assertEqual(self.errors, [])
        test.assertEqual(self.connects, connects)
        test.assertEqual(self.scripts, [], "scripts left unplayed")


def client(server, **options):
    options.setdefault("secret", "s3cret")
    return fg.FramegateClient("scripted", 1919, "door-cam", connect=server.connect, timeout=5,
                              backoff=0.01, backoff_max=0.05, **options)


def send_vector_frame(c):
    return c.send(JPEG, meta={"exp": 10}, content_type="jpeg", captured=CAPTURED)


class StateMachine(unittest.TestCase):
    def test_handshake_ack_ping_and_retryable_nack(self):
        frame43 = frame_bytes(43, fg.CONTENT_TYPES["jpeg"], [("exp", "10")])

        def session(peer):
            peer.expect(V["hello"])
            peer.send(V["challenge"])
            peer.expect(V["auth"])
            peer.send(V["welcome"])  # committed_through 41: the next new frame is 42
            peer.expect(V["frame"])
            peer.send(V["ping"])
            peer.expect(V["pong"])
            peer.send(V["ack"])
            peer.expect(frame43)
            peer.send(V["nack"])  # 43: checksum mismatch, retryable
            peer.expect(frame43)  # the same bytes again
            peer.send(fg.encode(fg.Ack(43)))
            peer.expect_eof()

        server = ScriptedServer(session)
        with client(server) as c:
            self.assertEqual(send_vector_frame(c), 42)
            self.assertEqual(send_vector_frame(c), 43)
        server.check(self, connects=1)

    def test_a_lost_connection_is_replaced_and_the_frame_resent(self):
        def lost(peer):
            peer.expect(V["hello"])
            peer.send(V["welcome"])  # no secret configured on this server: no CHALLENGE
            peer.expect(V["frame"])  # ... and the connection breaks before the ACK

        def resumed(peer):
            peer.expect(V["hello"])
            peer.send(V["welcome"])
            peer.expect(V["frame"])
            peer.send(V["ack"])
            peer.expect_eof()

        server = ScriptedServer(lost, resumed)
        with client(server) as c:
            self.assertEqual(send_vector_frame(c), 42)
        server.check(self, connects=2)

    def test_shutting_down_means_reconnect_and_resend_even_below_committed_through(self):
        def shutting_down(peer):
            peer.expect(V["hello"])
            peer.send(V["welcome"])
            peer.expect(V["frame"])
            peer.send(V["goodbye"])

        def committed_meanwhile(peer):
            peer.expect(V["hello"])
            peer.send(fg.encode(fg.Welcome(33554432, 16, 10, 42)))
            peer.expect(V["frame"])  # resent: the server answers it without storing it again
            peer.send(V["ack"])
            peer.expect_eof()

        server = ScriptedServer(shutting_down, committed_meanwhile)
        with client(server) as c:
            self.assertEqual(send_vector_frame(c), 42)
        server.check(self, connects=2)

    def test_the_window_bounds_frames_in_flight(self):
        def session(peer):
            peer.expect(fg.encode(fg.Hello("door-cam", False)))
            peer.send(fg.encode(fg.Welcome(1 << 20, 2, 10, 0)))
            peer.expect(frame_bytes(1) + frame_bytes(2))
            peer.quiet(0.3)  # the third waits for an answer
            peer.send(fg.encode(fg.Ack(1)))
            peer.expect(frame_bytes(3))
            peer.send(fg.encode(fg.Ack(3)) + fg.encode(fg.Ack(2)))  # any order
            peer.expect_eof()

        server = ScriptedServer(session)
        c = client(server, secret=None)
        self.assertEqual([c.send_async(JPEG, captured=CAPTURED) for _ in range(3)], [1, 2, 3])
        c.flush()
        c.close()
        server.check(self, connects=1)

    def test_a_non_retryable_nack_raises_and_the_seq_is_not_reused(self):
        def session(peer):
            peer.expect(V["hello"])
            peer.send(V["welcome"])
            peer.expect(V["frame"])
            peer.send(fg.encode(fg.Nack(42, fg.REJECTED_BY_SINK + 3, "not allowed")))
            peer.expect(frame_bytes(43, fg.CONTENT_TYPES["jpeg"], [("exp", "10")]))
            peer.send(fg.encode(fg.Ack(43)))
            peer.expect_eof()

        server = ScriptedServer(session)
        with client(server) as c:
            with self.assertRaises(fg.FrameRejected) as raised:
                send_vector_frame(c)
            self.assertEqual((raised.exception.seq, raised.exception.reason), (42, 6))
            self.assertEqual(send_vector_frame(c), 43)
        server.check(self, connects=1)

    def test_not_authorised_is_final(self):
        def session(peer):
            peer.expect(V["hello"])
            peer.send(V["challenge"])
            peer.expect(V["auth"])
            peer.send(fg.encode(fg.Goodbye(fg.NOT_AUTHORISED, "wrong secret")))

        server = ScriptedServer(session)
        c = client(server)
        with self.assertRaises(fg.Refused) as raised:
            send_vector_frame(c)
        self.assertEqual(raised.exception.reason, fg.NOT_AUTHORISED)
        c.close()
        server.check(self, connects=1)

    def test_retries_are_bounded(self):
        server = ScriptedServer()  # every connect is refused
        c = client(server, max_retries=3)
        with self.assertRaises(fg.Unavailable):
            send_vector_frame(c)
        server.check(self, connects=4)

    def test_seq_file_keeps_numbers_increasing_across_restarts(self):
        def session(peer):
            peer.expect(V["hello"])
            peer.send(fg.encode(fg.Welcome(1 << 20, 16, 10, 41)))
            peer.expect(frame_bytes(100))
            peer.send(fg.encode(fg.Ack(100)))
            peer.expect_eof()

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "seq")
            with open(path, "w") as f:
                f.write("99\n")
            server = ScriptedServer(session)
            with client(server, seq_file=path) as c:
                self.assertEqual(c.send(JPEG, captured=CAPTURED), 100)
            with open(path) as f:
                self.assertEqual(f.read().strip(), "100")
        server.check(self, connects=1)


if __name__ == "__main__":
    unittest.main()
