"""framegate native-protocol client: one file, standard library only, Python 3.7+.

Copy this file next to your device script::

    from framegate_client import FramegateClient

    with FramegateClient("gateway.local", 1919, "door-cam", secret="s3cret") as fg:
        seq = fg.send(jpeg_bytes, meta={"exposure": 10}, content_type="jpeg")

``send`` returns once every sink on the server has committed the frame (its ACK). For
throughput, ``send_async`` several frames and ``flush`` (up to the server's ``max_in_flight``
are on the wire at once). Connection losses, timeouts and retryable NACKs are handled by
reconnecting with exponential backoff and resending everything unacknowledged; the server
stores a resent frame only once.

The byte layout is docs/PROTOCOL.md; the encoders and the decoder below are module-level so
they can be tested (and reused) on their own.
"""

import collections
import hashlib
import hmac
import os
import random
import select
import socket
import struct
import time

VERSION = 1
MAGIC = b"FG"
HELLO_PREFIX = b"FG\x01\x01"  # how `auto` listeners recognise the native protocol
HEADER = struct.Struct("<2sBBI")  # magic, version, type, body length
FRAME_FIXED = struct.Struct("<QQBBHII")  # seq, captured_us, type, entries, meta bytes, len, crc
HEADER_LEN = HEADER.size  # 8
FRAME_FIXED_LEN = FRAME_FIXED.size  # 28
MAX_DEVICE_ID = 64
MAX_META_ENTRIES = 16
MAX_META_BYTES = 4096
MAX_TEXT = 255
NONCE_LEN = 32
AUTH_CONTEXT = b"framegate-auth-v1"

# Message types (header byte 3).
HELLO, CHALLENGE, AUTH, WELCOME = 0x01, 0x02, 0x03, 0x04
FRAME, ACK, NACK = 0x10, 0x11, 0x12
PING, PONG = 0x20, 0x21
GOODBYE = 0x7F

# Reason codes in NACK and GOODBYE.
TOO_LARGE = 1
CHECKSUM_MISMATCH = 2
REJECTED_BY_SINK = 3
NOT_AUTHORISED = 4
SHUTTING_DOWN = 5
MALFORMED = 6
WINDOW_EXCEEDED = 7
REASON_NAMES = {
    TOO_LARGE: "too large",
    CHECKSUM_MISMATCH: "checksum mismatch",
    REJECTED_BY_SINK: "rejected by a sink",
    NOT_AUTHORISED: "not authorised",
    SHUTTING_DOWN: "server shutting down",
    MALFORMED: "malformed message",
    WINDOW_EXCEEDED: "too many frames in flight",
}
_RETRYABLE = frozenset([CHECKSUM_MISMATCH, REJECTED_BY_SINK, SHUTTING_DOWN, WINDOW_EXCEEDED])

CONTENT_TYPES = {"unknown": 0, "jpeg": 1, "png": 2, "gif": 3, "bmp": 4, "webp": 5,
                 "tiff": 6, "other": 7}


def is_retryable(reason):
    """True when sending the same frame again later can succeed. Unknown codes are not."""
    return reason in _RETRYABLE


def reason_name(reason):
    """A reason code as text, for messages."""
    return REASON_NAMES.get(reason, "reason %d" % reason)


# --- messages -----------------------------------------------------------------------------

def _message(name, fields, kind):
    base = collections.namedtuple(name, fields)

    # Plain namedtuples compare as tuples, so Ack(7) would equal Ping(7): compare types too.
    def __eq__(self, other):
        return type(self) is type(other) and tuple.__eq__(self, other)

    def __ne__(self, other):
        return not __eq__(self, other)

    return type(name, (base,), {"__slots__": (), "kind": kind, "__eq__": __eq__,
                                "__ne__": __ne__, "__hash__": base.__hash__})


Hello = _message("Hello", "device has_secret", HELLO)
Challenge = _message("Challenge", "nonce", CHALLENGE)
Auth = _message("Auth", "tag", AUTH)
Welcome = _message("Welcome", "max_frame_bytes max_in_flight heartbeat_secs committed_through",
                   WELCOME)
Frame = _message("Frame", "seq captured_us content_type meta payload crc32c", FRAME)
Ack = _message("Ack", "seq", ACK)
Nack = _message("Nack", "seq reason text", NACK)
Ping = _message("Ping", "token", PING)
Pong = _message("Pong", "token", PONG)
Goodbye = _message("Goodbye", "reason text", GOODBYE)
_TYPES = {cls.kind: cls for cls in (Hello, Challenge, Auth, Welcome, Frame, Ack, Nack, Ping,
                                    Pong, Goodbye)}


# --- exceptions ---------------------------------------------------------------------------

class FramegateError(Exception):
    """Base class of this module's errors."""


class ProtocolError(FramegateError):
    """Bytes that break docs/PROTOCOL.md."""


class FrameRejected(FramegateError):
    """The server refused a frame for a reason that retrying cannot fix (a non-retryable NACK).

    ``seq`` (None when refused locally, before sending), ``reason`` (a code), ``text``;
    ``others`` lists further rejections when ``flush`` found several.
    """

    def __init__(self, seq, reason, text):
        FramegateError.__init__(self, "frame %s rejected: %s%s" % (
            seq, reason_name(reason), ": " + text if text else ""))
        self.seq, self.reason, self.text, self.others = seq, reason, text, []


class Refused(FramegateError):
    """The server ended the session for good (GOODBYE with a non-retryable reason, e.g. not
    authorised), or it asked for a secret this client does not have. ``reason``, ``text``."""

    def __init__(self, reason, text):
        FramegateError.__init__(self, "server refused the session: %s%s" % (
            reason_name(reason), ": " + text if text else ""))
        self.reason, self.text = reason, text


class Unavailable(FramegateError):
    """``max_retries`` reconnects/resends in a row failed. Unacknowledged frames stay queued:
    a later ``send``/``flush`` tries again. ``unacknowledged`` is their number."""

    def __init__(self, message, unacknowledged):
        FramegateError.__init__(self, message)
        self.unacknowledged = unacknowledged


class _Retry(Exception):
    """Internal: this connection is done (lost, silent, shutting down); reconnect."""


# --- CRC-32C and the auth tag -------------------------------------------------------------

def _crc_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli, reflected, poly 0x82F63B78, init and xorout 0xFFFFFFFF).

    ``crc32c(b"123456789") == 0xE3069283``. Pass a previous result as ``crc`` to continue
    over more data. Pure Python: a few MB/s, fine for camera frames.
    """
    table = _CRC_TABLE
    crc ^= 0xFFFFFFFF
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def auth_tag(secret, nonce, device):
    """AUTH's tag: HMAC-SHA-256(secret, b"framegate-auth-v1" + nonce + device id as UTF-8)."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    return hmac.new(secret, AUTH_CONTEXT + bytes(nonce) + device.encode("utf-8"),
                    hashlib.sha256).digest()


# --- encoding -----------------------------------------------------------------------------

def _utf8(text, what, low, high):
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if not low <= len(data) <= high:
        raise ValueError("%s must be %d to %d bytes of UTF-8, not %d"
                         % (what, low, high, len(data)))
    return data


def _text(text):
    """Reason text cut to MAX_TEXT bytes on a character boundary, as the server does."""
    data = text.encode("utf-8")[:MAX_TEXT]
    return data.decode("utf-8", "ignore").encode("utf-8")


def meta_pairs(meta):
    """Metadata (a dict or (key, value) pairs; values converted with str) as checked (str,
    str) pairs: at most 16 entries, keys 1-255 bytes, MAX_META_BYTES on the wire."""
    items = list(meta.items()) if hasattr(meta, "items") else list(meta or ())
    pairs = [(str(k), v if isinstance(v, str) else str(v)) for k, v in items]
    if len(pairs) > MAX_META_ENTRIES:
        raise ValueError("%d metadata entries, at most %d" % (len(pairs), MAX_META_ENTRIES))
    total = 0
    for key, value in pairs:
        total += 1 + len(_utf8(key, "metadata key", 1, 255))
        total += 2 + len(_utf8(value, "metadata value", 0, 65535))
    if total > MAX_META_BYTES:
        raise ValueError("%d bytes of metadata, at most %d" % (total, MAX_META_BYTES))
    return pairs


def encode_frame_header(seq, captured_us, content_type, meta, payload_len, crc):
    """The bytes of a FRAME before its payload: header, fixed fields, metadata. Send the
    ``payload_len`` payload bytes right after them."""
    body = bytearray()
    for key, value in meta_pairs(meta):
        key, value = key.encode("utf-8"), value.encode("utf-8")
        body += struct.pack("<B", len(key)) + key + struct.pack("<H", len(value)) + value
    if not 1 <= seq < 1 << 64:
        raise ValueError("seq must be 1 to 2**64-1")
    fixed = FRAME_FIXED.pack(seq, captured_us, content_type, len(meta_pairs(meta)), len(body),
                             payload_len, crc)
    body_len = FRAME_FIXED_LEN + len(body) + payload_len
    if body_len > 0xFFFFFFFF:
        raise ValueError("frame body of %d bytes does not fit the header's u32" % body_len)
    return HEADER.pack(MAGIC, VERSION, FRAME, body_len) + fixed + bytes(body)


def encode(message):
    """A message (``Hello(...)``, ``Frame(...)``, …) as bytes. A Frame whose ``crc32c`` is
    None gets the payload's CRC-32C."""
    kind = message.kind
    if kind == FRAME:
        crc = message.crc32c
        if crc is None:
            crc = crc32c(message.payload)
        return encode_frame_header(message.seq, message.captured_us, message.content_type,
                                   message.meta, len(message.payload), crc) + bytes(message.payload)
    if kind == HELLO:
        device = _utf8(message.device, "device id", 1, MAX_DEVICE_ID)
        flags = 1 if message.has_secret else 0
        body = struct.pack("<B", len(device)) + device + struct.pack("<B", flags)
    elif kind in (CHALLENGE, AUTH):
        body = bytes(message[0])
        if len(body) != NONCE_LEN:
            raise ValueError("nonce and tag are %d bytes" % NONCE_LEN)
    elif kind == WELCOME:
        body = struct.pack("<IHHQ", *message)
    elif kind in (ACK, PING, PONG):
        body = struct.pack("<Q", message[0])
    elif kind == NACK:
        text = _text(message.text)
        body = struct.pack("<QBB", message.seq, message.reason, len(text)) + text
    else:  # GOODBYE
        text = _text(message.text)
        body = struct.pack("<BB", message.reason, len(text)) + text
    return HEADER.pack(MAGIC, VERSION, kind, len(body)) + body


# --- decoding -----------------------------------------------------------------------------

# Body lengths each type may announce, checked before the body is buffered.
_BODY_RANGE = {HELLO: (3, 2 + MAX_DEVICE_ID), CHALLENGE: (NONCE_LEN, NONCE_LEN),
               AUTH: (NONCE_LEN, NONCE_LEN), WELCOME: (16, 16), ACK: (8, 8), PING: (8, 8),
               PONG: (8, 8), NACK: (10, 10 + MAX_TEXT), GOODBYE: (2, 2 + MAX_TEXT)}


def _decode_utf8(data, what):
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("%s is not UTF-8: %s" % (what, bytes(data).hex()))


def _decode_frame(body):
    seq, captured_us, content_type, count, meta_len, payload_len, crc = \
        FRAME_FIXED.unpack_from(body)
    if count > MAX_META_ENTRIES or meta_len > MAX_META_BYTES:
        raise ProtocolError("frame %d: %d metadata entries in %d bytes" % (seq, count, meta_len))
    if len(body) != FRAME_FIXED_LEN + meta_len + payload_len:
        raise ProtocolError("frame %d body is %d bytes but its parts add up to %d" % (
            seq, len(body), FRAME_FIXED_LEN + meta_len + payload_len))
    meta, at, end = [], FRAME_FIXED_LEN, FRAME_FIXED_LEN + meta_len
    for _ in range(count):
        if at >= end or body[at] == 0:
            raise ProtocolError("frame %d: empty or missing metadata key" % seq)
        key_end = at + 1 + body[at]
        if key_end + 2 > end:
            raise ProtocolError("frame %d: metadata overruns its length" % seq)
        (value_len,) = struct.unpack_from("<H", body, key_end)
        value_end = key_end + 2 + value_len
        if value_end > end:
            raise ProtocolError("frame %d: metadata overruns its length" % seq)
        meta.append((_decode_utf8(body[at + 1:key_end], "metadata key"),
                     _decode_utf8(body[key_end + 2:value_end], "metadata value")))
        at = value_end
    if at != end:
        raise ProtocolError("frame %d: %d bytes left after the metadata" % (seq, end - at))
    return Frame(seq, captured_us, content_type, meta, bytes(body[end:]), crc)


def decode_body(kind, body):
    """The message of type ``kind`` whose complete body is ``body``."""
    if kind == FRAME:
        return _decode_frame(body)
    if kind == HELLO:
        size = body[0]
        if size == 0 or len(body) != 2 + size:
            raise ProtocolError("HELLO device id of %d bytes in a body of %d" % (size, len(body)))
        return Hello(_decode_utf8(body[1:1 + size], "device id"), body[1 + size] & 1 == 1)
    if kind in (CHALLENGE, AUTH):
        return _TYPES[kind](bytes(body))
    if kind == WELCOME:
        return Welcome(*struct.unpack("<IHHQ", body))
    if kind in (ACK, PING, PONG):
        return _TYPES[kind](*struct.unpack("<Q", body))
    at = 8 if kind == NACK else 0
    if len(body) != at + 2 + body[at + 1]:
        raise ProtocolError("text of %d bytes in a body of %d" % (body[at + 1], len(body)))
    text = _decode_utf8(body[at + 2:], "reason text")
    if kind == NACK:
        return Nack(struct.unpack_from("<Q", body)[0], body[8], text)
    return Goodbye(body[0], text)


class MessageDecoder(object):
    """Turns a byte stream into messages: ``feed(data)`` returns the messages completed so far.

    Every announced length is checked before its body is buffered; the first error is final.
    """

    def __init__(self, max_frame_bytes=64 << 20):
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._error = None

    def feed(self, data):
        """Adds ``data``; returns a list of the messages it completed (maybe empty)."""
        if self._error is not None:
            raise self._error
        self._buf += data
        messages = []
        try:
            while True:
                message = self._next()
                if message is None:
                    return messages
                messages.append(message)
        except ProtocolError as error:
            self._error = error
            raise

    def mid_message(self):
        """True when part of a message has arrived but not all of it."""
        return bool(self._buf)

    def _next(self):
        if len(self._buf) < HEADER_LEN:
            return None
        magic, version, kind, size = HEADER.unpack_from(self._buf)
        if magic != MAGIC:
            raise ProtocolError("not a framegate message: header %s" % bytes(self._buf[:8]).hex())
        if version != VERSION:
            raise ProtocolError("protocol version %d is not supported" % version)
        if kind not in _TYPES:
            raise ProtocolError("unknown message type 0x%02x" % kind)
        low, high = _BODY_RANGE.get(kind, (FRAME_FIXED_LEN, FRAME_FIXED_LEN + MAX_META_BYTES
                                           + self.max_frame_bytes))
        if not low <= size <= high:
            raise ProtocolError("%s message with a body of %d bytes"
                                % (_TYPES[kind].__name__, size))
        if kind == FRAME and len(self._buf) >= HEADER_LEN + FRAME_FIXED_LEN:
            # Like the server: refuse a frame whose parts disagree before buffering its payload.
            fixed = FRAME_FIXED.unpack_from(self._buf, HEADER_LEN)
            parts = FRAME_FIXED_LEN + fixed[4] + fixed[5]
            if parts != size:
                raise ProtocolError("frame %d body is %d bytes but its parts add up to %d" % (
                    fixed[0], size, parts))
        if len(self._buf) < HEADER_LEN + size:
            return None
        body = bytes(self._buf[HEADER_LEN:HEADER_LEN + size])
        del self._buf[:HEADER_LEN + size]
        return decode_body(kind, body)


def decode(data):
    """Exactly one complete message from ``data``."""
    decoder = MessageDecoder()
    messages = decoder.feed(data)
    if len(messages) != 1 or decoder.mid_message():
        raise ProtocolError("expected exactly one complete message")
    return messages[0]


# --- the client ---------------------------------------------------------------------------

def _tcp_connect(host, port, timeout):
    sock = socket.create_connection((host, port), timeout)
    # ACKs, PINGs and frame headers are small: don't let Nagle hold them back.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _content_type_code(content_type):
    if content_type is None:
        return 0  # the server detects the format from the payload's magic bytes
    if isinstance(content_type, int):
        return content_type
    name = content_type.lower().replace("image/", "")
    name = {"jpg": "jpeg", "tif": "tiff"}.get(name, name)
    if name not in CONTENT_TYPES:
        raise ValueError("unknown content type %r; one of %s"
                         % (content_type, sorted(CONTENT_TYPES)))
    return CONTENT_TYPES[name]


def _captured_us(captured):
    if captured is None:
        captured = time.time()
    elif hasattr(captured, "timestamp"):  # a datetime
        captured = captured.timestamp()
    return int(round(captured * 1000000))


def _read_seq_file(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except FileNotFoundError:
        return 0


def _write_seq_file(path, seq):
    # Write-replace-fsync, directory too: after a power cut the file must never go back to a
    # seq that was already sent, or the server would take the next frame for a duplicate.
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % seq)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # not possible on every OS (Windows); the rename is still atomic


class FramegateClient(object):
    """A device's session with a framegate server (native protocol).

    ``host``, ``port``: the listener. ``device``: this device's id (1-64 bytes of UTF-8).
    ``secret``: str or bytes when the server knows this device by a secret. ``timeout``:
    seconds for connecting and the handshake, and for silence when the server sends no
    heartbeats. ``seq_file``: a file that keeps the last sequence number used, so numbers go on
    increasing across reboots (written and fsynced before each frame is sent); without it the
    first frame after a start gets WELCOME's ``committed_through + 1`` (see docs/PROTOCOL.md
    for why a rebooting device should not rely on that). ``first_seq``: lowest number to use,
    e.g. ``int(time.time() * 1e6)`` on a device with a trustworthy clock. ``max_retries``:
    failed reconnects/resends in a row allowed per call before ``Unavailable`` is raised;
    waits between them grow from ``backoff`` to ``backoff_max`` seconds, with jitter.
    ``connect``: ``f(host, port, timeout) -> socket``, for tests.

    Not thread-safe: use one client from one thread. The server drops a connection silent for
    three heartbeats; call ``poll()`` while idle to keep it, or let the next ``send`` reconnect.
    """

    def __init__(self, host, port, device, secret=None, timeout=10.0, seq_file=None,
                 first_seq=None, max_retries=8, backoff=0.5, backoff_max=30.0, connect=None):
        _utf8(device, "device id", 1, MAX_DEVICE_ID)
        self.host, self.port, self.device, self.timeout = host, port, device, timeout
        self.max_retries, self.backoff, self.backoff_max = max_retries, backoff, backoff_max
        self._secret = secret.encode("utf-8") if isinstance(secret, str) else secret
        self._seq_file, self._first_seq = seq_file, first_seq
        self._connect_fn = connect or _tcp_connect
        self.welcome = None  # the current session's Welcome, None when not connected
        self._sock = self._decoder = None
        self._out = collections.deque()  # memoryviews still to write, whole messages only
        self._unacked = collections.OrderedDict()  # seq -> (header bytes, payload)
        self._in_flight = set()  # seqs written on this connection and not answered yet
        self._retry_at = {}  # seq -> monotonic time it is due to be (re)sent
        self._rejected = collections.OrderedDict()  # seq -> FrameRejected, not reported yet
        self._next_seq = None
        self._failures = 0
        self._ping_token = 0
        self._last_sent = self._last_recv = 0.0

    # public API

    def send(self, payload, meta=None, content_type=None, captured=None):
        """Sends one frame and waits for its ACK; returns its sequence number.

        ``payload``: bytes. ``meta``: dict or pairs, at most 16 entries. ``content_type``:
        "jpeg", "png", … or a code; None lets the server detect it. ``captured``: capture
        time (seconds since the epoch as from ``time.time()``, or a datetime); None: now.
        Raises FrameRejected (non-retryable NACK), Refused, or Unavailable.
        """
        seq = self.send_async(payload, meta, content_type, captured)
        self._run(lambda: seq not in self._unacked)
        error = self._rejected.pop(seq, None)
        if error is not None:
            raise error
        return seq

    def send_async(self, payload, meta=None, content_type=None, captured=None):
        """Like ``send`` but returns the sequence number once the frame is written, without
        waiting for its ACK; waits first while ``max_in_flight`` frames are unacknowledged.
        Rejections of frames sent this way are raised by ``flush``."""
        self._failures = 0
        payload = payload if isinstance(payload, bytes) else bytes(payload)
        if not payload:
            raise ValueError("empty payload: the server refuses it (NACK malformed)")
        meta = meta_pairs(meta)
        content_type = _content_type_code(content_type)
        captured_us = _captured_us(captured)
        crc = crc32c(payload)
        self._run(lambda: self.welcome is not None and len(self._unacked) < self._window())
        if len(payload) > self.welcome.max_frame_bytes:
            raise FrameRejected(None, TOO_LARGE, "payload of %d bytes, the server takes at most %d"
                                % (len(payload), self.welcome.max_frame_bytes))
        seq = self._next_seq
        self._next_seq += 1
        if self._seq_file:
            _write_seq_file(self._seq_file, seq)
        header = encode_frame_header(seq, captured_us, content_type, meta, len(payload), crc)
        self._unacked[seq] = (header, payload)
        self._retry_at[seq] = 0.0  # due now; _step writes it
        self._run(lambda: seq not in self._retry_at and not self._out)
        return seq

    def flush(self):
        """Waits until every frame sent is acknowledged; then raises FrameRejected for the
        first frame the server refused since the last flush (the rest in its ``others``)."""
        self._failures = 0
        self._run(lambda: not self._unacked and not self._out)
        if self._rejected:
            errors = list(self._rejected.values())
            self._rejected.clear()
            errors[0].others = errors[1:]
            raise errors[0]

    def poll(self):
        """Without blocking: answers the server's PINGs, sends one when idle, takes ACKs."""
        if self._sock is not None or self._unacked:
            self._failures = 0
            self._run(None)

    def close(self, flush=True):
        """Flushes (unless ``flush`` is False: unacknowledged frames are then dropped) and
        closes the connection."""
        try:
            if flush and (self._unacked or self._rejected):
                self.flush()
        finally:
            self._drop()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(flush=exc_type is None)
        return False

    # the connection

    def _window(self):
        return max(1, self.welcome.max_in_flight)

    def _silence_limit(self):
        beat = self.welcome.heartbeat_secs if self.welcome else 0
        return 3 * beat if beat else self.timeout

    def _run(self, done):
        """Drives the connection until ``done()`` (None: one non-blocking step), reconnecting
        with backoff when it fails."""
        self._revive()
        while True:
            if done is not None and done():
                return
            try:
                if self._sock is None:
                    self._connect()
                    continue
                if done is None:
                    self._step(0.0)
                    return
                self._step(None)
            except Refused:
                self._drop()
                raise
            except (_Retry, OSError, ProtocolError) as error:
                self._drop()
                self._failures += 1
                if self._failures > self.max_retries:
                    raise Unavailable("gave up after %d attempts: %s" % (self._failures, error),
                                      len(self._unacked))
                time.sleep(self._backoff_delay())

    def _backoff_delay(self):
        delay = min(self.backoff_max, self.backoff * 2 ** (self._failures - 1))
        return random.uniform(delay / 2, delay)  # jitter: devices that lost one server spread out

    def _revive(self):
        # After a pause longer than the server's patience the connection is probably gone;
        # finding that out is not a failure, so replace it without counting one.
        if self._sock is None or time.monotonic() - self._last_recv < self._silence_limit():
            return
        self._last_recv = time.monotonic()
        try:
            self._step(0.0)
        except (_Retry, OSError, ProtocolError):
            self._drop()

    def _connect(self):
        self._drop()
        sock = self._connect_fn(self.host, self.port, self.timeout)
        sock.setblocking(False)
        self._sock, self._decoder = sock, MessageDecoder()
        self._last_sent = self._last_recv = time.monotonic()
        self._queue(encode(Hello(self.device, self._secret is not None)))
        deadline = time.monotonic() + self.timeout
        while self.welcome is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Retry("no WELCOME within %s s" % self.timeout)
            self._step(left)

    def _drop(self):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = self._decoder = self.welcome = None
        self._out.clear()
        self._in_flight.clear()

    def _queue(self, *chunks):
        self._out.extend(memoryview(chunk) for chunk in chunks)

    def _step(self, max_wait):
        """One round: (re)send due frames, heartbeat, wait for the socket, read and write."""
        now = time.monotonic()
        wait = max_wait
        if self.welcome is not None:
            self._send_due(now)
            limit, beat = self._silence_limit(), self.welcome.heartbeat_secs
            if now - self._last_recv >= limit:
                raise _Retry("server silent for %.0f s" % (now - self._last_recv))
            if beat and not self._out and now - self._last_sent >= beat:
                self._ping_token += 1
                self._queue(encode(Ping(self._ping_token)))
            wake = [self._last_recv + limit]
            if beat:
                wake.append(self._last_sent + beat)
            if len(self._in_flight) < self._window() and self._retry_at:
                wake.append(min(self._retry_at.values()))
            until = max(0.0, min(wake) - now)
            wait = until if max_wait is None else min(max_wait, until)
        readable, writable, _ = select.select([self._sock], [self._sock] if self._out else [],
                                              [], wait)
        if writable:
            self._write()
        if readable:
            self._read()

    def _send_due(self, now):
        for seq in sorted(self._retry_at):  # lowest first, so resends keep their order
            if len(self._in_flight) >= self._window():
                return
            if self._retry_at[seq] <= now:
                del self._retry_at[seq]
                self._queue(*self._unacked[seq])
                self._in_flight.add(seq)

    def _write(self):
        while self._out:
            chunk = self._out[0]
            try:
                sent = self._sock.send(chunk)
            except (BlockingIOError, InterruptedError):
                return
            self._last_sent = time.monotonic()
            if sent < len(chunk):
                self._out[0] = chunk[sent:]
                return
            self._out.popleft()

    def _read(self):
        try:
            data = self._sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            raise _Retry("the server closed the connection")
        self._last_recv = time.monotonic()
        for message in self._decoder.feed(data):
            self._handle(message)

    def _handle(self, message):
        kind = message.kind
        if kind == PING:
            self._queue(encode(Pong(message.token)))
        elif kind == PONG:
            pass
        elif kind == GOODBYE:
            if is_retryable(message.reason):
                raise _Retry("server said goodbye: %s %s"
                             % (reason_name(message.reason), message.text))
            raise Refused(message.reason, message.text)
        elif self.welcome is None and kind == CHALLENGE:
            if self._secret is None:
                raise Refused(NOT_AUTHORISED, "the server asks for a secret and none is configured")
            self._queue(encode(Auth(auth_tag(self._secret, message.nonce, self.device))))
        elif self.welcome is None and kind == WELCOME:
            self._welcomed(message)
        elif self.welcome is not None and kind == ACK:
            if message.seq in self._unacked:
                self._failures = 0  # progress
            self._settle(message.seq)
        elif self.welcome is not None and kind == NACK:
            self._nacked(message)
        else:
            raise ProtocolError("unexpected %s from the server" % type(message).__name__)

    def _welcomed(self, welcome):
        self.welcome = welcome
        # Everything unacknowledged goes again, oldest first, even seqs <= committed_through:
        # the server ACKs a frame it already committed without storing it twice, and
        # resending is right whether or not committed_through has holes below it.
        self._retry_at = dict.fromkeys(self._unacked, 0.0)
        floor = welcome.committed_through + 1
        if self._next_seq is None:
            stored = _read_seq_file(self._seq_file) + 1 if self._seq_file else 1
            self._next_seq = max(floor, stored, self._first_seq or 1)
        else:
            self._next_seq = max(self._next_seq, floor)

    def _settle(self, seq):
        self._unacked.pop(seq, None)
        self._in_flight.discard(seq)
        self._retry_at.pop(seq, None)

    def _nacked(self, nack):
        if nack.seq not in self._unacked:
            return  # a stale answer about a frame already settled
        self._in_flight.discard(nack.seq)
        if not is_retryable(nack.reason):
            self._settle(nack.seq)
            self._rejected[nack.seq] = FrameRejected(nack.seq, nack.reason, nack.text)
            return
        if nack.reason == SHUTTING_DOWN:
            raise _Retry("server shutting down")  # reconnecting resends the frame
        self._failures += 1
        self._retry_at[nack.seq] = time.monotonic() + self._backoff_delay()
        if self._failures > self.max_retries:
            raise Unavailable("frame %d: %s, %d times in a row" % (
                nack.seq, reason_name(nack.reason), self._failures), len(self._unacked))
