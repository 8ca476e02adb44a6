//! The device side of a native session, sans-IO: what a forwarding gateway speaks to its
//! upstream framegate.
//!
//! It queues HELLO at once, answers CHALLENGE with AUTH and PING with PONG by itself, and
//! reports what the caller must act on ([`ClientEvent`]): the session opened, a frame was
//! ACKed or NACKed, the server said goodbye. The caller moves the bytes ([`ClientSession::feed`],
//! [`ClientSession::output`]) and decides when to send frames, ping, and give up. Unlike
//! `framegate send` ([`crate::send::native`]), it never blocks and keeps no frames: the caller
//! holds them (the forward sink keeps them in its spool).

use std::fmt;
use std::time::Duration;

use super::wire::{auth_tag, checksum};
use super::{ContentType, Decoded, FrameHeader, Message, MessageDecoder, Reason};

/// What the caller must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server accepted the session: frames may be sent now.
    Welcome {
        /// Largest payload the server takes.
        max_frame_bytes: u32,
        /// Most frames in flight (at least 1).
        window: usize,
        /// The server's heartbeat: ping after this much silence, give up after three times it.
        heartbeat: Duration,
    },
    /// Frame `seq` is committed upstream.
    Ack(u64),
    /// Frame `seq` was not stored.
    Nack {
        /// Its sequence number.
        seq: u64,
        /// Why (retryable or not: [`Reason::is_retryable`]).
        reason: Reason,
        /// The server's words.
        text: String,
    },
    /// The server ends the session.
    Goodbye {
        /// Why.
        reason: Reason,
        /// The server's words.
        text: String,
    },
}

/// A session that cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The server broke the protocol (or is not a framegate).
    Protocol(String),
    /// The server wants a secret this session does not have.
    NoSecret,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Protocol(why) => write!(f, "protocol error: {why}"),
            ClientError::NoSecret => f.write_str(
                "the upstream asks this device for a secret (CHALLENGE), and none is configured",
            ),
        }
    }
}

impl std::error::Error for ClientError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// HELLO sent (maybe AUTH too), WELCOME not yet received.
    Opening,
    Open,
    Closed,
}

/// One device's session with a server.
#[derive(Debug)]
pub struct ClientSession {
    device: String,
    secret: Option<Vec<u8>>,
    decoder: MessageDecoder,
    phase: Phase,
    out: Vec<u8>,
    pings: u64,
}

impl ClientSession {
    /// A session for `device` (1 to 64 bytes, no control characters: the caller checked),
    /// with HELLO queued.
    pub fn new(device: &str, secret: Option<Vec<u8>>) -> Self {
        let mut session = ClientSession {
            device: device.to_string(),
            decoder: MessageDecoder::new(0),
            phase: Phase::Opening,
            out: Vec::new(),
            pings: 0,
            secret,
        };
        session.send(&Message::Hello {
            device: device.to_string(),
            has_secret: session.secret.is_some(),
        });
        session
    }

    /// True once WELCOME arrived (and until GOODBYE).
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Bytes queued for the server.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Drops the first `n` queued bytes (they were written).
    pub fn consume_output(&mut self, n: usize) {
        self.out.drain(..n);
    }

    fn send(&mut self, message: &Message) {
        message.encode(&mut self.out);
    }

    /// Takes bytes from the server, all of them; returns the events they completed, in order.
    /// An error is final.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<Vec<ClientEvent>, ClientError> {
        let mut events = Vec::new();
        while !input.is_empty() {
            let fed = self
                .decoder
                .feed(input)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            input = &input[fed.consumed..];
            match fed.event {
                Some(Decoded::Message(message)) => {
                    if let Some(event) = self.on_message(message)? {
                        events.push(event);
                    }
                }
                Some(_) => return Err(ClientError::Protocol("the server sent a FRAME".into())),
                None => {}
            }
        }
        Ok(events)
    }

    fn on_message(&mut self, message: Message) -> Result<Option<ClientEvent>, ClientError> {
        let unexpected = |what: &str, phase: Phase| {
            Err(ClientError::Protocol(format!(
                "unexpected {what} from the server ({phase:?})"
            )))
        };
        Ok(match (message, self.phase) {
            (Message::Challenge { nonce }, Phase::Opening) => {
                let Some(secret) = &self.secret else {
                    return Err(ClientError::NoSecret);
                };
                let tag = auth_tag(secret, &nonce, &self.device);
                self.send(&Message::Auth { tag });
                None
            }
            (
                Message::Welcome {
                    max_frame_bytes,
                    max_in_flight,
                    heartbeat_secs,
                    ..
                },
                Phase::Opening,
            ) => {
                self.phase = Phase::Open;
                Some(ClientEvent::Welcome {
                    max_frame_bytes,
                    window: usize::from(max_in_flight.max(1)),
                    heartbeat: Duration::from_secs(u64::from(heartbeat_secs.max(1))),
                })
            }
            (Message::Ack { seq }, Phase::Open) => Some(ClientEvent::Ack(seq)),
            (Message::Nack { seq, reason, text }, Phase::Open) => {
                Some(ClientEvent::Nack { seq, reason, text })
            }
            (Message::Ping { token }, _) => {
                self.send(&Message::Pong { token });
                None
            }
            (Message::Pong { .. }, _) => None,
            (Message::Goodbye { reason, text }, _) => {
                self.phase = Phase::Closed;
                Some(ClientEvent::Goodbye { reason, text })
            }
            (other, phase) => return unexpected(&format!("{:?}", other.kind()), phase),
        })
    }

    /// Queues a FRAME with this identity and payload.
    ///
    /// # Panics
    /// Before WELCOME, or with metadata over the protocol's limits (check with
    /// [`FrameHeader::check`]) or a payload over [`super::wire::MAX_PAYLOAD`].
    pub fn send_frame(
        &mut self,
        seq: u64,
        captured_us: u64,
        content_type: ContentType,
        meta: Vec<(String, String)>,
        payload: &[u8],
    ) {
        assert!(self.is_open(), "send_frame before WELCOME");
        let header = FrameHeader {
            seq,
            captured_us,
            content_type,
            meta,
            payload_len: u32::try_from(payload.len()).expect("payload fits a FRAME"),
            crc32c: checksum(payload),
        };
        self.send(&Message::Frame(header));
        self.out.extend_from_slice(payload);
    }

    /// Queues a PING (the caller sent nothing for a heartbeat).
    pub fn ping(&mut self) {
        self.pings += 1;
        let token = self.pings;
        self.send(&Message::Ping { token });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::wire::verify_auth_tag;

    fn bytes(messages: &[Message]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            m.encode(&mut out);
        }
        out
    }

    /// What the session queued, decoded as a server would.
    fn sent(session: &mut ClientSession) -> Vec<Decoded> {
        let mut decoder = MessageDecoder::new(u64::MAX);
        let mut out = session.output().to_vec();
        session.consume_output(out.len());
        let mut decoded = Vec::new();
        while !out.is_empty() {
            let fed = decoder.feed(&out).unwrap();
            out.drain(..fed.consumed);
            decoded.extend(fed.event);
        }
        decoded
    }

    const WELCOME: Message = Message::Welcome {
        max_frame_bytes: 1000,
        max_in_flight: 4,
        heartbeat_secs: 7,
        committed_through: 0,
    };

    #[test]
    fn hello_welcome_frames_and_answers() {
        let mut s = ClientSession::new("cam-1", None);
        assert_eq!(
            sent(&mut s),
            [Decoded::Message(Message::Hello {
                device: "cam-1".into(),
                has_secret: false
            })]
        );
        assert!(!s.is_open());
        // Split anywhere, the answers read the same.
        let input = bytes(&[
            WELCOME,
            Message::Ping { token: 9 },
            Message::Ack { seq: 3 },
            Message::Nack {
                seq: 4,
                reason: Reason::RejectedBySink,
                text: "disk full".into(),
            },
        ]);
        let (a, b) = input.split_at(13);
        let mut events = s.feed(a).unwrap();
        events.extend(s.feed(b).unwrap());
        assert_eq!(
            events,
            [
                ClientEvent::Welcome {
                    max_frame_bytes: 1000,
                    window: 4,
                    heartbeat: Duration::from_secs(7)
                },
                ClientEvent::Ack(3),
                ClientEvent::Nack {
                    seq: 4,
                    reason: Reason::RejectedBySink,
                    text: "disk full".into()
                },
            ]
        );
        assert!(s.is_open());
        s.send_frame(
            5,
            123,
            ContentType::Png,
            vec![("via".into(), "gw".into())],
            b"payload",
        );
        let out = sent(&mut s);
        assert_eq!(out[0], Decoded::Message(Message::Pong { token: 9 }));
        let Decoded::Frame { header, payload } = &out[1] else {
            panic!("{out:?}");
        };
        assert_eq!(
            (header.seq, header.captured_us, header.content_type),
            (5, 123, ContentType::Png)
        );
        assert_eq!(header.meta, [("via".to_string(), "gw".to_string())]);
        assert_eq!(payload, b"payload");
        assert_eq!(header.crc32c, checksum(b"payload"));
    }

    #[test]
    fn a_challenge_is_answered_with_the_secret_or_fails_without_one() {
        let nonce = [7u8; 32];
        let mut s = ClientSession::new("cam-1", Some(b"s3cret".to_vec()));
        sent(&mut s);
        assert!(s
            .feed(&bytes(&[Message::Challenge { nonce }]))
            .unwrap()
            .is_empty());
        let [Decoded::Message(Message::Auth { tag })] = &sent(&mut s)[..] else {
            panic!("no AUTH");
        };
        assert!(verify_auth_tag(b"s3cret", &nonce, "cam-1", tag));

        let mut s = ClientSession::new("cam-1", None);
        assert_eq!(
            s.feed(&bytes(&[Message::Challenge { nonce }])),
            Err(ClientError::NoSecret)
        );
    }

    #[test]
    fn goodbye_ends_and_out_of_place_messages_are_errors() {
        let mut s = ClientSession::new("cam-1", None);
        let events = s
            .feed(&bytes(&[Message::Goodbye {
                reason: Reason::NotAuthorised,
                text: "no".into(),
            }]))
            .unwrap();
        assert!(matches!(
            events[..],
            [ClientEvent::Goodbye {
                reason: Reason::NotAuthorised,
                ..
            }]
        ));
        assert!(!s.is_open());
        let mut s = ClientSession::new("cam-1", None);
        assert!(matches!(
            s.feed(&bytes(&[Message::Ack { seq: 1 }])),
            Err(ClientError::Protocol(_))
        ));
        let mut s = ClientSession::new("cam-1", None);
        assert!(s.feed(b"HTTP/1.1 400 Bad Request\r\n\r\n").is_err());
    }
}
