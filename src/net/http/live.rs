//! The newest frame of each device, for `/devices/{id}/latest`, the live page and new MJPEG
//! viewers, in at most `[live] max_bytes`: when a frame would go over, the devices updated
//! least recently are dropped first. Frames are the `Arc<Frame>` the sinks had, so keeping
//! one costs no copy.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::frame::Frame;

struct Entry {
    frame: Arc<Frame>,
    /// When it was stored, in insertions: the eviction order.
    tick: u64,
}

/// The newest frame per device, bounded in bytes.
pub struct Live {
    max_bytes: u64,
    bytes: u64,
    tick: u64,
    frames: HashMap<Arc<str>, Entry>,
    /// tick → device, oldest first.
    order: BTreeMap<u64, Arc<str>>,
}

impl Live {
    /// A store of at most `max_bytes` of payload.
    pub fn new(max_bytes: u64) -> Self {
        Live {
            max_bytes,
            bytes: 0,
            tick: 0,
            frames: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// Keeps `frame` as its device's newest, evicting the least recently updated devices
    /// while over the bound. A frame larger than the bound alone is not kept (its device's
    /// older frame is dropped too, so `latest` never shows a stale image as new).
    pub fn put(&mut self, frame: Arc<Frame>) {
        self.remove(&frame.device);
        let size = frame.size() as u64;
        if size > self.max_bytes {
            return;
        }
        while self.bytes + size > self.max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(e) = self.frames.remove(&oldest) {
                self.bytes -= e.frame.size() as u64;
            }
        }
        self.tick += 1;
        self.bytes += size;
        self.order.insert(self.tick, frame.device.clone());
        self.frames.insert(
            frame.device.clone(),
            Entry {
                frame,
                tick: self.tick,
            },
        );
    }

    fn remove(&mut self, device: &str) {
        if let Some(e) = self.frames.remove(device) {
            self.order.remove(&e.tick);
            self.bytes -= e.frame.size() as u64;
        }
    }

    /// The newest frame of `device`, if kept.
    pub fn get(&self, device: &str) -> Option<&Arc<Frame>> {
        self.frames.get(device).map(|e| &e.frame)
    }

    /// The bound (`[live] max_bytes`).
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Devices with a frame held.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when no frame is held.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Every held frame, by device.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Frame>> {
        self.frames.values().map(|e| &e.frame)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn frame(device: &str, seq: u64, size: usize) -> Arc<Frame> {
        Arc::new(Frame {
            listener: Arc::from("web"),
            device: Arc::from(device),
            peer: "127.0.0.1:1".parse().unwrap(),
            seq,
            received_at: SystemTime::now(),
            format: None,
            payload: vec![0; size],
            native: None,
        })
    }

    #[test]
    fn bounded_and_oldest_device_goes_first() {
        let mut live = Live::new(100);
        live.put(frame("a", 1, 40));
        live.put(frame("b", 1, 40));
        live.put(frame("a", 2, 40)); // a is now the newest
        assert_eq!(live.bytes(), 80);
        live.put(frame("c", 1, 40)); // over: b (least recently updated) goes
        assert!(live.get("b").is_none());
        assert_eq!(live.get("a").unwrap().seq, 2);
        assert_eq!(live.get("c").unwrap().seq, 1);
        assert_eq!(live.bytes(), 80);
        live.put(frame("a", 3, 500)); // larger than the bound: not kept, old one dropped
        assert!(live.get("a").is_none());
        assert_eq!((live.len(), live.bytes()), (1, 40));
    }
}
