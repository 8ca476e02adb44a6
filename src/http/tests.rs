//! The request codec, byte for byte: heads, both body framings, limits, multipart, and a
//! property test that the chunking of the input never changes what comes out.

use proptest::prelude::*;

use super::multipart::{self, MultipartError};
use super::*;

const LIMITS: Limits = Limits {
    max_head_bytes: 1024,
    max_headers: 16,
    max_body_bytes: 4096,
};

/// Feeds `chunks` in order, each until used up; returns the events and the first error.
fn decode(chunks: &[&[u8]]) -> (Vec<Event>, Result<(), HttpError>) {
    let mut decoder = RequestDecoder::new(LIMITS);
    let mut events = Vec::new();
    for chunk in chunks {
        let mut rest = *chunk;
        // Each call uses bytes or reports an event; bounded all the same.
        for _ in 0..=2 * chunk.len() + 2 {
            if rest.is_empty() {
                break;
            }
            match decoder.feed(rest) {
                Ok(fed) => {
                    rest = &rest[fed.consumed..];
                    events.extend(fed.event);
                }
                Err(e) => return (events, Err(e)),
            }
        }
        assert!(rest.is_empty(), "feed made no progress");
    }
    (events, decoder.finish())
}

fn requests(events: &[Event]) -> Vec<&Request> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Request(r) => Some(r),
            Event::Head => None,
        })
        .collect()
}

#[test]
fn get_without_body_is_one_event() {
    let (events, end) = decode(&[b"GET /devices/cam/latest?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"]);
    end.unwrap();
    assert_eq!(events.len(), 1);
    let r = requests(&events)[0];
    assert_eq!(r.head.method, "GET");
    assert_eq!(r.head.path(), "/devices/cam/latest");
    assert_eq!(r.head.query(), Some("x=1"));
    assert_eq!(r.head.header_str("host"), Some("a"));
    assert!(r.head.keep_alive());
    assert!(r.body.is_empty());
}

#[test]
fn keep_alive_follows_version_and_connection() {
    let head = |text: &[u8]| {
        let (events, _) = decode(&[text]);
        requests(&events)[0].head.clone()
    };
    assert!(!head(b"GET / HTTP/1.0\r\n\r\n").keep_alive());
    assert!(head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
    assert!(!head(b"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n").keep_alive());
}

#[test]
fn content_length_body_reports_head_then_request_and_pipelines() {
    let wire = b"POST /frames/cam HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n";
    let mut decoder = RequestDecoder::new(LIMITS);
    let fed = decoder.feed(wire).unwrap();
    assert_eq!(fed.event, Some(Event::Head));
    assert!(decoder.head().unwrap().expects_continue());
    assert!(decoder.in_body());
    let rest = &wire[fed.consumed..];
    let fed = decoder.feed(rest).unwrap();
    assert_eq!(fed.consumed, 5);
    let Some(Event::Request(r)) = fed.event else {
        panic!("{fed:?}")
    };
    assert_eq!(r.body, b"hello");
    let fed = decoder.feed(&rest[5..]).unwrap();
    assert!(matches!(fed.event, Some(Event::Request(ref r)) if r.head.method == "GET"));
    decoder.finish().unwrap();
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let wire = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;name=v\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n";
    let (events, end) = decode(&[wire]);
    end.unwrap();
    assert_eq!(requests(&events)[0].body, b"Wikipedia in\r\n\r\nchunks.");
}

#[test]
fn announced_body_over_the_limit_is_refused_at_the_head() {
    let (_, end) = decode(&[b"POST /x HTTP/1.1\r\nContent-Length: 4097\r\n\r\n"]);
    let e = end.unwrap_err();
    assert_eq!(
        e,
        HttpError::BodyTooLarge {
            announced: Some(4097),
            max: 4096
        }
    );
    assert_eq!(e.status(), 413);
    // A length that does not fit u64 is malformed, not a panic.
    let (_, end) =
        decode(&[b"POST /x HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"]);
    assert_eq!(end.unwrap_err().status(), 400);
}

#[test]
fn chunked_body_over_the_limit_is_refused_before_its_data() {
    let (_, end) = decode(&[
        b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n",
        &[b'a'; 2048],
        b"\r\n801\r\n",
    ]);
    assert_eq!(
        end.unwrap_err(),
        HttpError::BodyTooLarge {
            announced: None,
            max: 4096
        }
    );
}

#[test]
fn head_over_the_limit_is_refused_even_byte_by_byte() {
    let mut wire = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
    wire.extend(std::iter::repeat_n(b'a', 2000));
    let bytes: Vec<&[u8]> = wire.chunks(1).collect();
    let (_, end) = decode(&bytes);
    assert_eq!(end.unwrap_err(), HttpError::HeadTooLarge { max: 1024 });
}

#[test]
fn too_many_headers_and_smuggling_shapes_are_refused() {
    let mut wire = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..20 {
        wire.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    wire.extend_from_slice(b"\r\n");
    assert_eq!(decode(&[&wire]).1.unwrap_err().status(), 431);
    let both = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(decode(&[both]).1.unwrap_err().status(), 400);
    let two = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
    assert_eq!(decode(&[two]).1.unwrap_err().status(), 400);
    let gzip = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    assert_eq!(decode(&[gzip]).1.unwrap_err().status(), 501);
    let junk = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n\n";
    assert_eq!(decode(&[junk]).1.unwrap_err().status(), 400);
}

#[test]
fn errors_are_final_and_truncation_is_reported() {
    let mut decoder = RequestDecoder::new(LIMITS);
    let e = decoder.feed(b"BAD\x00 / HTTP/1.1\r\n\r\n").unwrap_err();
    assert_eq!(decoder.feed(b"GET / HTTP/1.1\r\n\r\n").unwrap_err(), e);
    let (_, end) = decode(&[b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"]);
    assert_eq!(end.unwrap_err(), HttpError::Truncated);
    let (_, end) = decode(&[b"GET / HT"]);
    assert_eq!(end.unwrap_err(), HttpError::Truncated);
}

/// The ESP32-CAM sketch's request (RandomNerdTutorials), body written as the sketch does.
fn esp32_request(jpeg: &[u8]) -> Vec<u8> {
    let head = "--RandomNerdTutorials\r\nContent-Disposition: form-data; name=\"imageFile\"; filename=\"esp32-cam.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n";
    let tail = "\r\n--RandomNerdTutorials--\r\n";
    let mut out = format!(
        "POST /upload.php HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nContent-Type: multipart/form-data; boundary=RandomNerdTutorials\r\n\r\n{head}",
        jpeg.len() + head.len() + tail.len()
    )
    .into_bytes();
    out.extend_from_slice(jpeg);
    out.extend_from_slice(tail.as_bytes());
    out
}

#[test]
fn esp32_cam_upload_yields_its_file_part() {
    let jpeg: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
    let wire = esp32_request(&jpeg);
    let chunks: Vec<&[u8]> = wire.chunks(1024).collect();
    let (events, end) = decode(&chunks);
    end.unwrap();
    let r = requests(&events)[0];
    let ct = r.head.header_str("content-type").unwrap();
    let b = multipart::boundary(ct).unwrap();
    assert_eq!(b, "RandomNerdTutorials");
    let up = multipart::extract(&r.body, &b).unwrap();
    assert_eq!(&r.body[up.file.clone()], &jpeg[..]);
    assert_eq!(up.name.as_deref(), Some("imageFile"));
    assert_eq!(up.filename.as_deref(), Some("esp32-cam.jpg"));
    assert_eq!(up.content_type.as_deref(), Some("image/jpeg"));
}

#[test]
fn multipart_like_curl_with_text_fields_and_a_preamble() {
    let body = b"preamble\r\n------x\r\nContent-Disposition: form-data; name=\"device\"\r\n\r\ndoor\r\n------x\r\nContent-Disposition: form-data; name=\"imageFile\"; filename=\"a b.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\r\n--x\xff\xd9\r\n------x--\r\nepilogue";
    assert_eq!(
        multipart::boundary("multipart/form-data; boundary=\"----x\"").as_deref(),
        Some("----x")
    );
    let up = multipart::extract(body, "----x").unwrap();
    assert_eq!(&body[up.file.clone()], b"\xff\xd8\r\n--x\xff\xd9");
    assert_eq!(up.filename.as_deref(), Some("a b.jpg"));
    assert_eq!(up.fields, vec![("device".to_string(), "door".to_string())]);
}

#[test]
fn multipart_without_a_file_or_boundary_is_refused() {
    let body = b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b\r\nContent-Disposition: form-data; name=\"c\"\r\n\r\n2\r\n--b--\r\n";
    assert_eq!(multipart::extract(body, "b"), Err(MultipartError::NoFile));
    assert!(matches!(
        multipart::extract(b"nothing here", "b"),
        Err(MultipartError::Malformed(_))
    ));
    assert!(matches!(
        multipart::extract(b"--b\r\nContent-Type: image/png\r\n\r\nno end", "b"),
        Err(MultipartError::Malformed(_))
    ));
    assert_eq!(multipart::boundary("image/jpeg"), None);
    assert_eq!(multipart::boundary("multipart/form-data"), None);
}

/// A pipelined stream of requests, some with Content-Length bodies, some chunked.
fn wire_of(bodies: &[(Vec<u8>, Option<Vec<usize>>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (body, chunks) in bodies {
        match chunks {
            None => {
                out.extend_from_slice(
                    format!("POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len())
                        .as_bytes(),
                );
                out.extend_from_slice(body);
            }
            Some(sizes) => {
                out.extend_from_slice(b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
                let mut rest = &body[..];
                for &size in sizes {
                    let take = size.min(rest.len());
                    if take == 0 {
                        break;
                    }
                    out.extend_from_slice(format!("{take:x}\r\n").as_bytes());
                    out.extend_from_slice(&rest[..take]);
                    out.extend_from_slice(b"\r\n");
                    rest = &rest[take..];
                }
                if !rest.is_empty() {
                    out.extend_from_slice(format!("{:X}\r\n", rest.len()).as_bytes());
                    out.extend_from_slice(rest);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn chunking_never_changes_the_requests(
        bodies in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 0..300),
             prop::option::of(prop::collection::vec(1usize..100, 0..5))),
            1..5),
        cuts in prop::collection::vec(0usize..3000, 0..40),
    ) {
        let wire = wire_of(&bodies);
        let (whole, end) = decode(&[&wire]);
        prop_assert!(end.is_ok(), "{end:?}");
        let got: Vec<Vec<u8>> = requests(&whole).iter().map(|r| r.body.clone()).collect();
        let want: Vec<Vec<u8>> = bodies.iter().map(|(b, _)| b.clone()).collect();
        prop_assert_eq!(&got, &want);
        let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c < wire.len()).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut chunks = Vec::new();
        let mut start = 0;
        for c in cuts {
            chunks.push(&wire[start..c]);
            start = c;
        }
        chunks.push(&wire[start..]);
        let (split, end) = decode(&chunks);
        prop_assert!(end.is_ok());
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_exceed_limits(data in prop::collection::vec(any::<u8>(), 0..2000)) {
        let (events, _) = decode(&[&data]);
        for r in requests(&events) {
            prop_assert!(r.body.len() as u64 <= LIMITS.max_body_bytes);
        }
    }
}
