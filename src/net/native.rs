//! One native-protocol connection's session: the handshake, frames in, ACKs and NACKs out.
//!
//! Sans-IO like the decoders: it takes decoded messages and the loop's answers about devices
//! ([`Directory`]) and queues the bytes to send ([`NativeSession::output`]); the connection
//! moves bytes, the loop routes commits back ([`NativeSession::committed`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::wire::{checksum, verify_auth_tag, NONCE_LEN};
use crate::protocol::{Decoded, FrameHeader, Message, MessageDecoder, Reason};

/// A listener's settings for native sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload taken; larger frames are NACKed "too large".
    pub max_frame_bytes: u64,
    /// Most unacknowledged frames per connection.
    pub max_in_flight: u16,
    /// Ping after this much silence; a peer silent three times as long is dead.
    pub heartbeat: Duration,
    /// Only devices with a configured secret, proven by challenge–response, may send.
    pub require_auth: bool,
}

/// What a session asks of the loop about devices.
pub trait Directory {
    /// The device's configured secret, if it has one.
    fn secret(&self, device: &str) -> Option<&[u8]>;
    /// Highest sequence number committed for the device with every lower one committed too.
    fn committed_through(&self, device: &str) -> u64;
    /// True if the device's frame `seq` was committed (and recorded) already.
    fn is_committed(&self, device: &str, seq: u64) -> bool;
}

/// A frame that passed the session's checks, for the loop to admit.
#[derive(Debug)]
pub struct NativeFrame {
    /// The authenticated (or at least announced) device id.
    pub device: Arc<str>,
    /// Sequence number, capture time, metadata.
    pub header: FrameHeader,
    /// The payload, checksum verified.
    pub payload: Vec<u8>,
}

/// What the loop does after the session handled a message.
#[derive(Debug)]
pub enum Step {
    /// Nothing more (a reply may have been queued).
    Continue,
    /// Admit this frame; [`NativeSession::committed`] answers it later.
    Frame(NativeFrame),
    /// Close the connection after sending what is queued (a GOODBYE); the text is for the log.
    Close(String),
    /// A frame was NACKed for the device's own fault (damaged, too large, beyond the window,
    /// malformed); the session goes on. The text is for the operator's log.
    Refused {
        /// The device that sent it.
        device: Arc<str>,
        /// What was refused and why.
        line: String,
    },
}

#[derive(Debug)]
enum Phase {
    Hello,
    Auth {
        device: Arc<str>,
        nonce: [u8; NONCE_LEN],
    },
    Open {
        device: Arc<str>,
    },
}

/// The state of one native connection.
#[derive(Debug)]
pub struct NativeSession {
    /// Decodes the device's bytes.
    pub decoder: MessageDecoder,
    limits: Limits,
    phase: Phase,
    /// Sequence numbers handed to the sinks and not answered yet. At most `max_in_flight`
    /// (16 by default): an ordered set of that size is searched without hashing, which the
    /// loop would otherwise do three times per frame, and yields them in order at shutdown.
    in_flight: BTreeSet<u64>,
    out: Vec<u8>,
    pings_sent: u64,
}

impl NativeSession {
    /// A session waiting for HELLO.
    pub fn new(limits: Limits) -> Self {
        NativeSession {
            decoder: MessageDecoder::new(limits.max_frame_bytes),
            limits,
            phase: Phase::Hello,
            in_flight: BTreeSet::new(),
            out: Vec::new(),
            pings_sent: 0,
        }
    }

    /// The device id, once HELLO named it.
    pub fn device(&self) -> Option<&Arc<str>> {
        match &self.phase {
            Phase::Hello => None,
            Phase::Auth { device, .. } | Phase::Open { device } => Some(device),
        }
    }

    /// Frames waiting for their commit.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Bytes queued for the device.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Drops the first `n` queued bytes (they were written).
    pub fn consume_output(&mut self, n: usize) {
        self.out.drain(..n);
    }

    fn send(&mut self, message: Message) {
        message.encode(&mut self.out);
    }

    /// Queues a GOODBYE; the caller closes the connection once it is written.
    pub fn goodbye(&mut self, reason: Reason, text: &str) {
        self.send(Message::Goodbye {
            reason,
            text: text.to_string(),
        });
    }

    /// Queues a PING (the loop calls this when the device has been silent for a heartbeat).
    pub fn ping(&mut self) {
        self.pings_sent += 1;
        let token = self.pings_sent;
        self.send(Message::Ping { token });
    }

    /// Handles one decoded message.
    pub fn on_decoded(&mut self, decoded: Decoded, directory: &dyn Directory) -> Step {
        match decoded {
            Decoded::Message(Message::Ping { token }) => {
                self.send(Message::Pong { token });
                Step::Continue
            }
            Decoded::Message(Message::Pong { .. }) => Step::Continue,
            Decoded::Message(Message::Hello { device, has_secret })
                if matches!(self.phase, Phase::Hello) =>
            {
                self.on_hello(device, has_secret, directory)
            }
            Decoded::Message(Message::Auth { tag }) => self.on_auth(&tag, directory),
            Decoded::Frame { header, payload } => self.on_frame(header, payload, directory),
            Decoded::FrameTooLarge { header } => match &self.phase {
                Phase::Open { device } => {
                    let device = device.clone();
                    let text = format!(
                        "payload of {} bytes exceeds max_frame_bytes = {}",
                        header.payload_len, self.limits.max_frame_bytes
                    );
                    self.refuse(device, header.seq, Reason::TooLarge, text)
                }
                _ => self.unexpected("FRAME"),
            },
            Decoded::Message(other) => self.unexpected(&format!("{:?}", other.kind())),
        }
    }

    fn unexpected(&mut self, what: &str) -> Step {
        let phase = match self.phase {
            Phase::Hello => "before HELLO",
            Phase::Auth { .. } => "while waiting for AUTH",
            Phase::Open { .. } => "in an open session",
        };
        let text = format!("unexpected {what} {phase}");
        self.goodbye(Reason::Malformed, &text);
        Step::Close(text)
    }

    fn on_hello(&mut self, device: String, has_secret: bool, directory: &dyn Directory) -> Step {
        if device.chars().any(char::is_control) {
            let text = "device id contains control characters".to_string();
            self.goodbye(Reason::Malformed, &text);
            return Step::Close(text);
        }
        let device: Arc<str> = Arc::from(device);
        match directory.secret(&device) {
            Some(_) if !has_secret => {
                // A CHALLENGE it cannot answer would only stall it; say what is missing.
                let text = format!(
                    "device {device:?} has a secret configured here; give it to the device"
                );
                self.goodbye(Reason::NotAuthorised, &text);
                Step::Close(text)
            }
            Some(_) => {
                let nonce = random_nonce();
                self.send(Message::Challenge { nonce });
                self.phase = Phase::Auth { device, nonce };
                Step::Continue
            }
            None if self.limits.require_auth => {
                let text = format!("device {device:?} has no secret configured here");
                self.goodbye(Reason::NotAuthorised, &text);
                Step::Close(text)
            }
            None => self.welcome(device, directory),
        }
    }

    fn on_auth(&mut self, tag: &[u8], directory: &dyn Directory) -> Step {
        let Phase::Auth { device, nonce } = &self.phase else {
            return self.unexpected("AUTH");
        };
        let device = device.clone();
        let proven = directory
            .secret(&device)
            .is_some_and(|secret| verify_auth_tag(secret, nonce, &device, tag));
        if !proven {
            let text = format!("wrong secret for device {device:?}");
            self.goodbye(Reason::NotAuthorised, &text);
            return Step::Close(text);
        }
        self.welcome(device, directory)
    }

    fn welcome(&mut self, device: Arc<str>, directory: &dyn Directory) -> Step {
        let heartbeat = self
            .limits
            .heartbeat
            .as_secs()
            .clamp(1, u64::from(u16::MAX)) as u16;
        self.send(Message::Welcome {
            max_frame_bytes: self.limits.max_frame_bytes.min(u64::from(u32::MAX)) as u32,
            max_in_flight: self.limits.max_in_flight,
            heartbeat_secs: heartbeat,
            committed_through: directory.committed_through(&device),
        });
        self.phase = Phase::Open { device };
        Step::Continue
    }

    fn on_frame(
        &mut self,
        header: FrameHeader,
        payload: Vec<u8>,
        directory: &dyn Directory,
    ) -> Step {
        let Phase::Open { device } = &self.phase else {
            return self.unexpected("FRAME");
        };
        let device = device.clone();
        let seq = header.seq;
        if seq == 0 {
            let text = "sequence numbers start at 1".to_string();
            return self.refuse(device, seq, Reason::Malformed, text);
        } else if directory.is_committed(&device, seq) {
            // A resend of a frame already stored: answer again, store nothing.
            self.send(Message::Ack { seq });
        } else if self.in_flight.contains(&seq) {
            // A resend of a frame still in the sinks: its ACK is on the way.
        } else if self.in_flight.len() >= usize::from(self.limits.max_in_flight) {
            let text = format!(
                "{} frames in flight, max_in_flight is {}",
                self.in_flight.len(),
                self.limits.max_in_flight
            );
            return self.refuse(device, seq, Reason::WindowExceeded, text);
        } else if payload.is_empty() {
            return self.refuse(device, seq, Reason::Malformed, "empty payload".into());
        } else if checksum(&payload) != header.crc32c {
            let text = format!(
                "CRC-32C of the {} bytes received is {:08x}, the frame says {:08x}",
                payload.len(),
                checksum(&payload),
                header.crc32c
            );
            return self.refuse(device, seq, Reason::ChecksumMismatch, text);
        } else {
            self.in_flight.insert(seq);
            return Step::Frame(NativeFrame {
                device,
                header,
                payload,
            });
        }
        Step::Continue
    }

    /// NACKs frame `seq` for the device's own fault, and says so for the log.
    fn refuse(&mut self, device: Arc<str>, seq: u64, reason: Reason, text: String) -> Step {
        let line = format!("frame #{seq} refused ({reason}): {text}");
        self.send(Message::Nack { seq, reason, text });
        Step::Refused { device, line }
    }

    /// NACKs every frame still waiting for its commit, in order (at shutdown).
    pub fn refuse_in_flight(&mut self, reason: Reason, text: &str) {
        for seq in std::mem::take(&mut self.in_flight) {
            self.send(Message::Nack {
                seq,
                reason,
                text: text.to_string(),
            });
        }
    }

    /// The sinks finished frame `seq`: ACK it, or NACK with the sink's error.
    pub fn committed(&mut self, seq: u64, result: Result<(), String>) {
        if !self.in_flight.remove(&seq) {
            return;
        }
        match result {
            Ok(()) => self.send(Message::Ack { seq }),
            Err(text) => self.send(Message::Nack {
                seq,
                reason: Reason::RejectedBySink,
                text,
            }),
        }
    }
}

/// 32 bytes from the kernel's CSPRNG, for a challenge.
fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    let mut filled = 0;
    while filled < NONCE_LEN {
        // SAFETY: getrandom writes at most the given length into our buffer.
        let n =
            unsafe { libc::getrandom(nonce[filled..].as_mut_ptr().cast(), NONCE_LEN - filled, 0) };
        if n > 0 {
            filled += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // getrandom(2) without GRND_NONBLOCK only fails this way on a broken system; a
            // predictable challenge would let a recorded AUTH be replayed, so refuse to go on.
            panic!("getrandom failed: {}", std::io::Error::last_os_error());
        }
    }
    nonce
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::protocol::wire::auth_tag;
    use crate::protocol::ContentType;

    #[derive(Default)]
    struct Devices {
        secrets: HashMap<String, Vec<u8>>,
        committed: HashMap<String, Vec<u64>>,
    }

    impl Directory for Devices {
        fn secret(&self, device: &str) -> Option<&[u8]> {
            self.secrets.get(device).map(Vec::as_slice)
        }
        fn committed_through(&self, device: &str) -> u64 {
            self.committed
                .get(device)
                .and_then(|s| s.iter().max().copied())
                .unwrap_or(0)
        }
        fn is_committed(&self, device: &str, seq: u64) -> bool {
            self.committed.get(device).is_some_and(|s| s.contains(&seq))
        }
    }

    const LIMITS: Limits = Limits {
        max_frame_bytes: 1000,
        max_in_flight: 2,
        heartbeat: Duration::from_secs(10),
        require_auth: false,
    };

    fn replies(session: &mut NativeSession) -> Vec<Message> {
        let bytes = session.output().to_vec();
        session.consume_output(bytes.len());
        let mut dec = MessageDecoder::new(1 << 20);
        let mut rest = &bytes[..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let fed = dec.feed(rest).unwrap();
            rest = &rest[fed.consumed..];
            if let Some(Decoded::Message(m)) = fed.event {
                out.push(m);
            }
        }
        out
    }

    fn hello(device: &str) -> Decoded {
        Decoded::Message(Message::Hello {
            device: device.into(),
            has_secret: false,
        })
    }

    fn hello_with_secret(device: &str) -> Decoded {
        Decoded::Message(Message::Hello {
            device: device.into(),
            has_secret: true,
        })
    }

    fn frame(seq: u64, payload: &[u8]) -> Decoded {
        Decoded::Frame {
            header: FrameHeader {
                seq,
                captured_us: 0,
                content_type: ContentType::Jpeg,
                meta: vec![],
                payload_len: payload.len() as u32,
                crc32c: checksum(payload),
            },
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn hello_frames_acks_duplicates_and_the_window() {
        let mut devices = Devices::default();
        devices.committed.insert("cam".into(), vec![1, 2, 3]);
        let mut s = NativeSession::new(LIMITS);
        assert!(matches!(
            s.on_decoded(hello("cam"), &devices),
            Step::Continue
        ));
        assert_eq!(
            replies(&mut s),
            [Message::Welcome {
                max_frame_bytes: 1000,
                max_in_flight: 2,
                heartbeat_secs: 10,
                committed_through: 3
            }]
        );
        // Already committed: ACKed again, not stored.
        assert!(matches!(
            s.on_decoded(frame(2, b"x"), &devices),
            Step::Continue
        ));
        assert_eq!(replies(&mut s), [Message::Ack { seq: 2 }]);
        // New frames fill the window; the third is refused.
        assert!(matches!(
            s.on_decoded(frame(4, b"a"), &devices),
            Step::Frame(_)
        ));
        assert!(matches!(
            s.on_decoded(frame(5, b"b"), &devices),
            Step::Frame(_)
        ));
        s.on_decoded(frame(6, b"c"), &devices);
        assert!(matches!(
            &replies(&mut s)[..],
            [Message::Nack {
                seq: 6,
                reason: Reason::WindowExceeded,
                ..
            }]
        ));
        s.committed(5, Err("disk full".into()));
        s.committed(4, Ok(()));
        assert_eq!(
            replies(&mut s),
            [
                Message::Nack {
                    seq: 5,
                    reason: Reason::RejectedBySink,
                    text: "disk full".into()
                },
                Message::Ack { seq: 4 }
            ]
        );
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn checksum_size_and_order_errors() {
        let devices = Devices::default();
        let mut s = NativeSession::new(LIMITS);
        assert!(matches!(
            s.on_decoded(frame(1, b"x"), &devices),
            Step::Close(_)
        ));
        assert!(matches!(
            &replies(&mut s)[..],
            [Message::Goodbye {
                reason: Reason::Malformed,
                ..
            }]
        ));

        let mut s = NativeSession::new(LIMITS);
        s.on_decoded(hello("cam"), &devices);
        replies(&mut s);
        let Decoded::Frame {
            mut header,
            payload,
        } = frame(1, b"abc")
        else {
            unreachable!()
        };
        header.crc32c ^= 1;
        s.on_decoded(
            Decoded::Frame {
                header: header.clone(),
                payload,
            },
            &devices,
        );
        s.on_decoded(Decoded::FrameTooLarge { header }, &devices);
        s.on_decoded(Decoded::Message(Message::Ping { token: 9 }), &devices);
        let got = replies(&mut s);
        assert!(matches!(
            got[0],
            Message::Nack {
                seq: 1,
                reason: Reason::ChecksumMismatch,
                ..
            }
        ));
        assert!(matches!(
            got[1],
            Message::Nack {
                seq: 1,
                reason: Reason::TooLarge,
                ..
            }
        ));
        assert_eq!(got[2], Message::Pong { token: 9 });
    }

    #[test]
    fn challenge_response() {
        let mut devices = Devices::default();
        devices.secrets.insert("cam".into(), b"s3cret".to_vec());
        let limits = Limits {
            require_auth: true,
            ..LIMITS
        };

        // Right secret: WELCOME.
        let mut s = NativeSession::new(limits);
        s.on_decoded(hello_with_secret("cam"), &devices);
        let [Message::Challenge { nonce }] = replies(&mut s)[..] else {
            panic!("no challenge")
        };
        let tag = auth_tag(b"s3cret", &nonce, "cam");
        assert!(matches!(
            s.on_decoded(Decoded::Message(Message::Auth { tag }), &devices),
            Step::Continue
        ));
        assert!(matches!(replies(&mut s)[..], [Message::Welcome { .. }]));

        // Wrong secret, unknown device: GOODBYE not authorised.
        let mut s = NativeSession::new(limits);
        s.on_decoded(hello_with_secret("cam"), &devices);
        replies(&mut s);
        let tag = auth_tag(b"guess", &[0; NONCE_LEN], "cam");
        assert!(matches!(
            s.on_decoded(Decoded::Message(Message::Auth { tag }), &devices),
            Step::Close(_)
        ));
        let mut s = NativeSession::new(limits);
        assert!(matches!(
            s.on_decoded(hello("stranger"), &devices),
            Step::Close(_)
        ));
        assert!(matches!(
            &replies(&mut s)[..],
            [Message::Goodbye {
                reason: Reason::NotAuthorised,
                ..
            }]
        ));

        // A device that says it has no secret is told so at once.
        let mut s = NativeSession::new(limits);
        assert!(matches!(
            s.on_decoded(hello("cam"), &devices),
            Step::Close(_)
        ));
        assert!(matches!(
            &replies(&mut s)[..],
            [Message::Goodbye {
                reason: Reason::NotAuthorised,
                ..
            }]
        ));

        // Nonces differ per challenge, so a recorded AUTH cannot be replayed.
        let mut a = NativeSession::new(limits);
        let mut b = NativeSession::new(limits);
        a.on_decoded(hello_with_secret("cam"), &devices);
        b.on_decoded(hello_with_secret("cam"), &devices);
        assert_ne!(replies(&mut a), replies(&mut b));
    }
}
