//! imagezmq connections: the ZMTP codec's requests become frames, and a request's `OK` goes
//! out only after the sinks committed its frame. ndarray payloads are encoded to PNG on
//! converter threads ([`Converter`]), never on the event loop.

use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::sink::queue::WorkQueue;
use crate::zmtp::{array_to_png, ZmtpServer};

/// One imagezmq connection's state.
#[derive(Debug)]
pub struct ZmtpSession {
    /// The codec.
    pub server: ZmtpServer,
}

impl ZmtpSession {
    /// A session for a listener with this `max_frame_bytes`; our greeting is queued already.
    pub fn new(max_frame_bytes: u64) -> Self {
        ZmtpSession {
            server: ZmtpServer::new(max_frame_bytes),
        }
    }

    /// Answers the request whose frame the sinks finished: `OK`, or `ERROR: why`.
    pub fn answer(&mut self, result: Result<(), String>) {
        match result {
            Ok(()) => self.server.reply_ok(),
            Err(why) => self.server.reply(format!("ERROR: {why}").as_bytes()),
        };
    }
}

/// An ndarray to encode as PNG for a connection.
#[derive(Debug)]
pub struct ArrayJob {
    /// The connection's token.
    pub conn: usize,
    /// The imagezmq name, which becomes the device id.
    pub device: Arc<str>,
    /// numpy dtype, e.g. `uint8`.
    pub dtype: String,
    /// numpy shape.
    pub shape: Vec<usize>,
    /// The array's bytes, C order.
    pub data: Vec<u8>,
}

/// A finished [`ArrayJob`].
#[derive(Debug)]
pub struct Converted {
    /// The connection's token.
    pub conn: usize,
    /// The device id.
    pub device: Arc<str>,
    /// The PNG, or why the array cannot be one.
    pub png: Result<Vec<u8>, String>,
}

/// Threads that encode arrays to PNG, off the event loop.
pub struct Converter {
    queue: Arc<WorkQueue<ArrayJob>>,
    staged: Vec<ArrayJob>,
    threads: Vec<JoinHandle<()>>,
}

impl Converter {
    /// Starts `threads` converters; each result goes to `done` (the loop's channel and waker).
    pub fn start(threads: usize, done: Arc<dyn Fn(Converted) + Send + Sync>) -> Converter {
        let queue = Arc::new(WorkQueue::<ArrayJob>::new());
        let threads = (0..threads.max(1))
            .map(|i| {
                let (queue, done) = (queue.clone(), done.clone());
                thread::Builder::new()
                    .name(format!("fg-png-{i}"))
                    .spawn(move || {
                        while let Some(job) = queue.pop() {
                            let png = array_to_png(&job.dtype, &job.shape, &job.data)
                                .map_err(|e| e.to_string());
                            done(Converted {
                                conn: job.conn,
                                device: job.device,
                                png,
                            });
                        }
                    })
                    .expect("spawn a converter thread")
            })
            .collect();
        Converter {
            queue,
            staged: Vec::new(),
            threads,
        }
    }

    /// Queues a job (handed over by [`Converter::flush`]).
    pub fn submit(&mut self, job: ArrayJob) {
        self.staged.push(job);
    }

    /// Hands staged jobs to the threads.
    pub fn flush(&mut self) {
        self.queue.push_batch(&mut self.staged);
    }
}

impl Drop for Converter {
    fn drop(&mut self) {
        self.queue.close();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
