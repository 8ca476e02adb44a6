//! What each request gets: the routes of an HTTP listener. Nothing is served from the file
//! system; the page is compiled in.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use mio::Token;

use super::conn::{Chunk, Figures, HttpConn, Output, Phase, Viewer};
use super::{auth, Ctx, HttpFront};
use crate::http::multipart;
use crate::http::response::{self, ResponseHead};
use crate::http::{Head, Request};
use crate::net::connection::{Admit, Origin, Received};

/// The live view: one self-contained page (no CDN, no build step).
const PAGE: &str = include_str!("page.html");
/// The MJPEG part boundary.
const BOUNDARY: &str = "framegate-frame";
/// curl's default content type for `--data-binary`.
const FORM_URLENCODED: &str = "application/x-www-form-urlencoded";
/// Longest device id taken from a request.
const MAX_DEVICE_ID: usize = 128;

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Page,
    Latest(String),
    Stream(String),
    Devices,
    Metrics,
    /// An upload; the device named by the path (`/frames/{id}`), if it names one.
    Upload(Option<String>),
    NotFound,
    /// The path exists but not for this method; the methods it takes.
    Method(&'static str),
}

fn route(method: &str, path: &str) -> Result<Route, String> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // HEAD is GET without the body (RFC 9110 §9.3.2); the body is cut in `respond_chunks`.
    let get = method == "GET" || method == "HEAD";
    Ok(match (method, segments.as_slice()) {
        // Any POST is an upload, as the ESP32-CAM sketch posts to whatever path it was given.
        ("POST", ["frames", id]) => Route::Upload(Some(percent_decode(id)?)),
        ("POST", _) => Route::Upload(None),
        (_, [""]) if get => Route::Page,
        (_, ["devices", id, "latest"]) if get => Route::Latest(percent_decode(id)?),
        (_, ["devices", id, "stream"]) if get => Route::Stream(percent_decode(id)?),
        (_, ["api", "devices"]) if get => Route::Devices,
        (_, ["metrics"]) if get => Route::Metrics,
        (_, [""] | ["devices", _, "latest" | "stream"] | ["api", "devices"] | ["metrics"]) => {
            Route::Method("GET, HEAD")
        }
        (_, ["frames", _]) => Route::Method("POST"),
        _ => Route::NotFound,
    })
}

impl HttpFront {
    /// A head with a body to follow: refuse now what would be refused anyway (no body is
    /// read for nothing), else tell a client that waits for it to go on.
    pub(super) fn on_head(&mut self, token: Token, conn: &mut HttpConn, ctx: &mut Ctx<'_>) {
        let head = conn.decoder.head().expect("Event::Head has a head").clone();
        if let Some((status, why)) = self.check_auth(&head, conn) {
            return self.refuse_auth(token, conn, status, &why, ctx);
        }
        if head.method == "POST" {
            if let Err((status, why)) = acceptable(&head) {
                return self.refuse(token, conn, status, &why, ctx);
            }
        }
        if head.expects_continue() {
            conn.out
                .push(Chunk::Static(b"HTTP/1.1 100 Continue\r\n\r\n"));
            self.dirty.insert(token);
        }
    }

    /// A complete request.
    pub(super) fn on_request(
        &mut self,
        token: Token,
        conn: &mut HttpConn,
        request: Request,
        ctx: &mut Ctx<'_>,
        now: Instant,
    ) {
        let head = &request.head;
        conn.close_after |= !head.keep_alive() || conn.draining || ctx.shutting_down;
        conn.head_only = head.method == "HEAD";
        if let Some((status, why)) = self.check_auth(head, conn) {
            return self.refuse_auth(token, conn, status, &why, ctx);
        }
        let route = match route(&head.method, head.path()) {
            Ok(route) => route,
            Err(why) => return self.refuse(token, conn, 400, &why, ctx),
        };
        match route {
            Route::Page => {
                let head = ResponseHead::new(200)
                    .field("Content-Type", "text/html; charset=utf-8")
                    .field("Cache-Control", "no-cache")
                    .field("Content-Security-Policy", "default-src 'self'; img-src 'self' blob:; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
                    .finish(Some(PAGE.len()), conn.close_after);
                self.respond_chunks(
                    token,
                    conn,
                    200,
                    vec![Chunk::Owned(head), Chunk::Static(PAGE.as_bytes())],
                );
            }
            Route::Latest(id) => self.latest(token, conn, &id, head),
            Route::Stream(id) => self.stream(token, conn, id),
            Route::Devices => {
                conn.phase = Phase::Figures(Figures::Devices);
                self.figures.push(token);
            }
            Route::Metrics => {
                conn.phase = Phase::Figures(Figures::Metrics);
                self.figures.push(token);
            }
            Route::Upload(path_id) => self.upload(token, conn, request, path_id, ctx, now),
            Route::NotFound => {
                let body = response::error(
                    404,
                    "no such page; see / for the live view",
                    conn.close_after,
                );
                self.respond(token, conn, 404, body);
            }
            Route::Method(allowed) => {
                let why = format!("use {allowed} here");
                let body = serde_json::json!({ "error": why, "status": 405 }).to_string();
                let mut out = ResponseHead::new(405)
                    .field("Allow", allowed)
                    .field("Content-Type", "application/json")
                    .finish(Some(body.len()), conn.close_after);
                out.extend_from_slice(body.as_bytes());
                self.respond(token, conn, 405, out);
            }
        }
    }

    /// `Some((401, why))` when the listener wants credentials the request lacks.
    fn check_auth(&self, head: &Head, conn: &HttpConn) -> Option<(u16, String)> {
        let auth = self
            .listeners
            .get(&conn.peer.listener)?
            .http
            .auth
            .as_ref()?;
        (!auth::allowed(auth, head)).then(|| {
            (
                401,
                "this listener needs credentials (auth in its [[listener]])".to_string(),
            )
        })
    }

    fn refuse_auth(
        &mut self,
        token: Token,
        conn: &mut HttpConn,
        status: u16,
        why: &str,
        ctx: &mut Ctx<'_>,
    ) {
        let challenge = self
            .listeners
            .get(&conn.peer.listener)
            .and_then(|l| l.http.auth.as_ref())
            .map_or("Bearer", auth::challenge);
        self.note_refusal(conn, status, why, ctx);
        let body = serde_json::json!({ "error": why, "status": status }).to_string();
        let mut out = ResponseHead::new(status)
            .field("WWW-Authenticate", challenge)
            .field("Content-Type", "application/json")
            .finish(Some(body.len()), true);
        out.extend_from_slice(body.as_bytes());
        self.respond(token, conn, status, out);
    }

    /// `GET /devices/{id}/latest`: the newest frame, with validators for caches.
    fn latest(&mut self, token: Token, conn: &mut HttpConn, id: &str, head: &Head) {
        let Some(frame) = self.live.get(id).cloned() else {
            let body = response::error(
                404,
                "no frame of this device is held (none yet, or [live] max_bytes evicted it)",
                conn.close_after,
            );
            return self.respond(token, conn, 404, body);
        };
        let etag = format!("\"{}-{}\"", frame.seq, frame.size());
        let modified = response::http_date(frame.received_at);
        let fresh = head
            .header_str("if-none-match")
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let status = if fresh { 304 } else { 200 };
        let out = ResponseHead::new(status)
            .field("Content-Type", content_type(&frame))
            .field("ETag", &etag)
            .field("Last-Modified", &modified)
            .field("Cache-Control", "no-cache")
            .field("X-Frame-Seq", frame.seq);
        if fresh {
            let out = out.finish(None, conn.close_after);
            return self.respond(token, conn, 304, out);
        }
        let out = out.finish(Some(frame.size()), conn.close_after);
        self.respond_chunks(
            token,
            conn,
            200,
            vec![Chunk::Owned(out), Chunk::Frame(frame)],
        );
    }

    /// `GET /devices/{id}/stream`: MJPEG of the device's frames from now on, starting with
    /// its newest.
    fn stream(&mut self, token: Token, conn: &mut HttpConn, id: String) {
        let device: Arc<str> = Arc::from(id.as_str());
        let head_only = conn.head_only;
        let out = ResponseHead::new(200)
            .field(
                "Content-Type",
                format!("multipart/x-mixed-replace; boundary={BOUNDARY}"),
            )
            .field("Cache-Control", "no-cache, no-store")
            .field("X-Accel-Buffering", "no")
            .finish(None, conn.close_after || !head_only);
        if head_only {
            // The stream's head alone; no viewer is registered.
            return self.respond(token, conn, 200, out);
        }
        conn.out.push(Chunk::Owned(out));
        conn.requests += 1;
        conn.close_after = true;
        self.metrics.response(&conn.peer.listener_name, 200);
        conn.phase = Phase::Streaming(Viewer {
            device: device.clone(),
            next: None,
            parts: 0,
            skipped: 0,
        });
        log::info!("http: {} is viewing {device} (MJPEG)", conn.peer.addr);
        self.viewers
            .entry(device.clone())
            .or_default()
            .insert(token);
        self.dirty.insert(token);
        if let Some(frame) = self.live.get(&device).cloned() {
            if frame.format == Some(image::ImageFormat::Jpeg) {
                if let Phase::Streaming(viewer) = &mut conn.phase {
                    viewer.next = Some(Chunk::Frame(frame));
                }
            } else {
                self.transcoder.request(frame);
            }
        }
    }

    /// An upload: the image from the body (raw, or the file part of a multipart form),
    /// admitted like any framing's frame; the response waits for the sinks.
    fn upload(
        &mut self,
        token: Token,
        conn: &mut HttpConn,
        request: Request,
        path_id: Option<String>,
        ctx: &mut Ctx<'_>,
        now: Instant,
    ) {
        let Request { head, mut body } = request;
        if let Err((status, why)) = acceptable(&head) {
            return self.refuse(token, conn, status, &why, ctx);
        }
        let mut form_device = None;
        if let Some(boundary) = head
            .header_str("content-type")
            .and_then(multipart::boundary)
        {
            match multipart::extract(&body, &boundary) {
                Ok(upload) => {
                    form_device = upload
                        .fields
                        .iter()
                        .find(|(name, _)| name == "device")
                        .map(|(_, v)| v.clone());
                    // The file's bytes become the payload without another buffer.
                    body.truncate(upload.file.end);
                    body.drain(..upload.file.start);
                }
                Err(e) => return self.refuse(token, conn, 400, &e.to_string(), ctx),
            }
        }
        if body.is_empty() {
            return self.refuse(
                token,
                conn,
                400,
                "the upload is empty; send the image as the body",
                ctx,
            );
        }
        let declared = head.header_str("content-type").unwrap_or("");
        if declared.to_ascii_lowercase().starts_with(FORM_URLENCODED)
            && crate::framing::signature::image_format(&body).is_none()
        {
            let why = "the body is form data, not an image; send the image bytes (curl --data-binary @img.jpg) or a file part (curl -F imageFile=@img.jpg)";
            return self.refuse(token, conn, 415, why, ctx);
        }
        let max = self
            .listeners
            .get(&conn.peer.listener)
            .map_or(crate::config::DEFAULT_MAX_FRAME_BYTES, |l| {
                l.max_frame_bytes
            });
        if body.len() as u64 > max {
            let why = format!(
                "image of {} bytes exceeds max_frame_bytes = {max}",
                body.len()
            );
            return self.refuse(token, conn, 413, &why, ctx);
        }
        let query_device = head.query().and_then(|q| query_param(q, "device"));
        let named = [
            path_id,
            query_device,
            head.header_str("x-device-id").map(str::to_string),
            form_device,
        ]
        .into_iter()
        .flatten()
        .find(|d| !d.is_empty());
        let device: Arc<str> = match named {
            None => conn.peer.device.clone(),
            Some(d) if d.len() > MAX_DEVICE_ID || d.chars().any(char::is_control) => {
                let why = format!(
                    "device id must be 1 to {MAX_DEVICE_ID} bytes without control characters"
                );
                return self.refuse(token, conn, 400, &why, ctx);
            }
            Some(d) => Arc::from(d.as_str()),
        };
        let frame = Received {
            payload: body,
            at: SystemTime::now(),
            origin: Origin::Http(device),
        };
        match ctx.intake.admit(&conn.peer, frame) {
            Ok(()) => {
                conn.frames += 1;
                conn.phase = Phase::Committing;
            }
            // The sinks are full: held like any framing's frame (the loop stops reading
            // this client), answered 503 if no room comes within HOLD_LIMIT.
            Err(frame) => conn.phase = Phase::Held(frame, now),
        }
    }
}

/// Whether an upload's content type is one framegate stores: images, octet streams, forms.
fn acceptable(head: &Head) -> Result<(), (u16, String)> {
    let Some(ct) = head.header_str("content-type") else {
        return Ok(());
    };
    let kind = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    // curl --data-binary sends application/x-www-form-urlencoded unless told otherwise; such
    // a body is taken if its bytes are an image (checked once it is complete).
    if kind.starts_with("image/")
        || kind == "application/octet-stream"
        || kind == FORM_URLENCODED
        || kind.is_empty()
    {
        return Ok(());
    }
    if kind == "multipart/form-data" {
        return match multipart::boundary(ct) {
            Some(_) => Ok(()),
            None => Err((400, "multipart/form-data without a boundary".to_string())),
        };
    }
    Err((
        415,
        format!("content type {kind:?} is not an image; send image/jpeg (or another image type), application/octet-stream or multipart/form-data"),
    ))
}

/// The content type of a frame's bytes.
fn content_type(frame: &crate::frame::Frame) -> &'static str {
    match frame.format {
        Some(f) => f.to_mime_type(),
        None => "application/octet-stream",
    }
}

/// Queues one MJPEG part.
pub(super) fn push_part(out: &mut Output, jpeg: Chunk) {
    let len = match &jpeg {
        Chunk::Frame(f) => f.size(),
        Chunk::Shared(v) => v.len(),
        Chunk::Owned(v) => v.len(),
        Chunk::Static(s) => s.len(),
    };
    out.push(Chunk::Owned(
        format!("--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len}\r\n\r\n")
            .into_bytes(),
    ));
    out.push(jpeg);
    out.push(Chunk::Static(b"\r\n"));
}

/// A query parameter's decoded value (`+` is a space, as forms send it).
fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(&v.replace('+', " ")).ok())?
    })
}

/// `%XX` escapes decoded; the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in {text:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8 once decoded"))
}

/// A device id as a path segment.
pub(super) fn escape_path(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_ids() {
        assert_eq!(
            route("POST", "/frames/door%201"),
            Ok(Route::Upload(Some("door 1".into())))
        );
        assert_eq!(route("POST", "/upload.php"), Ok(Route::Upload(None)));
        assert_eq!(route("GET", "/"), Ok(Route::Page));
        assert_eq!(
            route("GET", "/devices/cam/latest"),
            Ok(Route::Latest("cam".into()))
        );
        assert_eq!(
            route("GET", "/devices/cam/stream"),
            Ok(Route::Stream("cam".into()))
        );
        assert_eq!(route("GET", "/api/devices"), Ok(Route::Devices));
        assert_eq!(route("GET", "/metrics"), Ok(Route::Metrics));
        assert_eq!(route("GET", "/etc/passwd"), Ok(Route::NotFound));
        assert_eq!(route("GET", "/../../etc/passwd"), Ok(Route::NotFound));
        assert_eq!(route("DELETE", "/metrics"), Ok(Route::Method("GET, HEAD")));
        assert_eq!(route("HEAD", "/metrics"), Ok(Route::Metrics));
        assert_eq!(route("HEAD", "/frames/cam"), Ok(Route::Method("POST")));
        assert_eq!(route("GET", "/frames/cam"), Ok(Route::Method("POST")));
        assert!(route("GET", "/devices/%zz/latest").is_err());
        assert_eq!(
            query_param("a=1&device=door+2%21", "device").as_deref(),
            Some("door 2!")
        );
        assert_eq!(escape_path("a b/c"), "a%20b%2Fc");
    }
}
