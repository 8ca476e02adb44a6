//! Non-JPEG frames (PNG from imagezmq arrays, …) encoded as JPEG for MJPEG viewers, on a
//! worker thread: decoding and encoding an image takes milliseconds the loop cannot spend.
//! At most one job per device is in flight and one waits; a newer frame replaces the waiting
//! one, so a device faster than the encoder costs no queue.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::frame::Frame;
use crate::sink::queue::WorkQueue;

/// JPEG quality of transcoded frames.
const QUALITY: u8 = 80;

/// A finished transcode.
#[derive(Debug)]
pub struct Transcoded {
    /// The frame it was made from.
    pub frame: Arc<Frame>,
    /// The JPEG, or why the frame cannot be one.
    pub jpeg: Result<Arc<Vec<u8>>, String>,
}

/// The transcoder thread and its bookkeeping (owned by the loop).
pub struct Transcoder {
    queue: Arc<WorkQueue<Arc<Frame>>>,
    staged: Vec<Arc<Frame>>,
    busy: HashSet<Arc<str>>,
    waiting: HashMap<Arc<str>, Arc<Frame>>,
    thread: Option<JoinHandle<()>>,
}

impl Transcoder {
    /// Starts the thread; each result goes to `done` (the loop's channel and waker).
    pub fn start(done: Arc<dyn Fn(Transcoded) + Send + Sync>) -> Transcoder {
        let queue = Arc::new(WorkQueue::<Arc<Frame>>::new());
        let q = queue.clone();
        let thread = thread::Builder::new()
            .name("fg-jpeg".into())
            .spawn(move || {
                while let Some(frame) = q.pop() {
                    let jpeg = to_jpeg(&frame.payload).map(Arc::new);
                    done(Transcoded { frame, jpeg });
                }
            })
            .expect("spawn the transcoder thread");
        Transcoder {
            queue,
            staged: Vec::new(),
            busy: HashSet::new(),
            waiting: HashMap::new(),
            thread: Some(thread),
        }
    }

    /// Asks for `frame` as JPEG; replaces a frame of its device still waiting.
    pub fn request(&mut self, frame: Arc<Frame>) {
        if self.busy.contains(&frame.device) {
            self.waiting.insert(frame.device.clone(), frame);
        } else {
            self.busy.insert(frame.device.clone());
            self.staged.push(frame);
        }
    }

    /// A job finished: the device's waiting frame, if any, goes next.
    pub fn finished(&mut self, device: &Arc<str>) {
        self.busy.remove(device);
        if let Some(next) = self.waiting.remove(device) {
            self.request(next);
        }
    }

    /// Hands staged jobs to the thread (once per loop turn).
    pub fn flush(&mut self) {
        if !self.staged.is_empty() {
            self.queue.push_batch(&mut self.staged);
        }
    }
}

impl Drop for Transcoder {
    fn drop(&mut self) {
        self.queue.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Decodes any image format the build reads and encodes it as an RGB JPEG.
pub fn to_jpeg(payload: &[u8]) -> Result<Vec<u8>, String> {
    let image = image::load_from_memory(payload).map_err(|e| format!("cannot decode: {e}"))?;
    let rgb = image.to_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, QUALITY)
        .encode_image(&rgb)
        .map_err(|e| format!("cannot encode JPEG: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_becomes_a_jpeg_that_decodes() {
        let img =
            image::RgbImage::from_fn(32, 16, |x, y| image::Rgb([x as u8 * 8, y as u8 * 16, 99]));
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let jpeg = to_jpeg(&png).unwrap();
        assert!(jpeg.starts_with(b"\xff\xd8\xff"));
        let back = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((back.width(), back.height()), (32, 16));
        assert!(to_jpeg(b"not an image").is_err());
    }

    #[test]
    fn every_format_a_device_may_send_becomes_a_jpeg() {
        let img = image::RgbImage::from_fn(24, 12, |x, y| image::Rgb([x as u8 * 9, y as u8, 7]));
        for format in [
            image::ImageFormat::Gif,
            image::ImageFormat::Bmp,
            image::ImageFormat::Tiff,
            image::ImageFormat::WebP,
        ] {
            let mut bytes = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut bytes), format)
                .unwrap();
            let jpeg = to_jpeg(&bytes).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            let back = image::load_from_memory(&jpeg).unwrap();
            assert_eq!((back.width(), back.height()), (24, 12), "{format:?}");
        }
    }
}
