//! `auth = { … }` on an HTTP listener: bearer tokens and basic auth, compared in constant
//! time so response timing does not leak how much of a guess was right.

use crate::config::HttpAuth;
use crate::http::Head;

/// Whether `head` carries the credentials `auth` asks for.
pub fn allowed(auth: &HttpAuth, head: &Head) -> bool {
    let Some(value) = head.header("authorization") else {
        return false;
    };
    let value = String::from_utf8_lossy(value);
    let value = value.trim();
    let Some((scheme, credentials)) = value.split_once(' ') else {
        return false;
    };
    let credentials = credentials.trim();
    match auth {
        HttpAuth::Bearer(token) => {
            scheme.eq_ignore_ascii_case("bearer") && same(credentials.as_bytes(), token)
        }
        HttpAuth::Basic { user, password } => {
            if !scheme.eq_ignore_ascii_case("basic") {
                return false;
            }
            let Some(decoded) = base64_decode(credentials) else {
                return false;
            };
            let mut want = user.as_bytes().to_vec();
            want.push(b':');
            want.extend_from_slice(password);
            same(&decoded, &want)
        }
    }
}

/// The `WWW-Authenticate` challenge for a 401.
pub fn challenge(auth: &HttpAuth) -> &'static str {
    match auth {
        HttpAuth::Bearer(_) => "Bearer realm=\"framegate\"",
        HttpAuth::Basic { .. } => "Basic realm=\"framegate\", charset=\"UTF-8\"",
    }
}

/// Constant-time equality (for equal lengths; a length difference is not secret here).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Standard base64 with padding (RFC 4648 §4), as `Authorization: Basic` uses.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Event, Limits, RequestDecoder};

    fn head(authorization: &str) -> Head {
        let mut d = RequestDecoder::new(Limits {
            max_head_bytes: 1024,
            max_headers: 8,
            max_body_bytes: 0,
        });
        let text = format!("GET / HTTP/1.1\r\nAuthorization: {authorization}\r\n\r\n");
        match d.feed(text.as_bytes()).unwrap().event {
            Some(Event::Request(r)) => r.head,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bearer_and_basic() {
        let bearer = HttpAuth::Bearer(b"s3cret".to_vec());
        assert!(allowed(&bearer, &head("Bearer s3cret")));
        assert!(allowed(&bearer, &head("bearer  s3cret ")));
        assert!(!allowed(&bearer, &head("Bearer s3creT")));
        assert!(!allowed(&bearer, &head("Basic s3cret")));
        let basic = HttpAuth::Basic {
            user: "Aladdin".into(),
            password: b"open sesame".to_vec(),
        };
        // RFC 7617's example.
        assert!(allowed(&basic, &head("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")));
        assert!(!allowed(
            &basic,
            &head("Basic QWxhZGRpbjpvcGVuIHNlc2FtZg==")
        ));
        assert!(!allowed(&basic, &head("Basic !!!")));
        assert_eq!(base64_decode("YQ"), Some(b"a".to_vec()));
    }
}
