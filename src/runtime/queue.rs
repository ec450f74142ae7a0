//! Ingest: per-camera frame queues between the transport (ROS subscription, bag reader) and the
//! inference loop.
//!
//! Each camera owns `ring_capacity + 2` preallocated [`Frame`] slots (reserved at start-up for
//! the largest frame, made resident only as far as frames fill them) that circulate without
//! ever being allocated again:
//!
//! ```text
//!             free slots (rtrb SPSC ring)
//!   ┌───────────────────────────────────────────────────────┐
//!   ▼                                                       │
//! FrameProducer ── copy once ──► frame queue ──► FrameConsumer ──► inference loop
//! (transport thread)   (ArrayQueue, ring_capacity)  (inference thread, stages one frame)
//! ```
//!
//! The transport copies each frame once into a free slot ([`FrameProducer::push_raw`],
//! [`FrameProducer::push_compressed`]), or swaps in a buffer that already holds it
//! ([`FrameProducer::push_swapped`]: replay's read-ahead buffers), and queues it. When the queue is full the configured
//! policy applies, and every drop is counted:
//! - [`QueuePolicy::KeepNewest`] (default): the **oldest** queued frame is evicted
//!   (`dropped_ring_full`) and its slot reused, so the newest frame always gets in. When the
//!   inference loop takes a frame it takes the newest and recycles the older ones it skips
//!   (`dropped_superseded`).
//! - [`QueuePolicy::Fifo`]: frames are taken in arrival order; a frame that finds the queue full
//!   is dropped (`dropped_ring_full`).
//!
//! The frame queue is crossbeam's lock-free bounded `ArrayQueue` because keep-newest needs the
//! producer to evict the oldest entry (`force_push`), which an SPSC ring such as rtrb cannot do
//! from the producer side; the free slots return through an rtrb ring.
//!
//! Which camera's frame the single inference loop takes next is [`crate::runtime::scheduler`]'s choice;
//! which of a camera's frames it gets (newest or oldest) is the camera's policy here.
//!
//! Contract: [`camera_ring`] allocates every slot (`slot_bytes` each). Pushing, taking and
//! recycling never allocate, never block and never fail except by dropping a frame, which is
//! counted. Waking the inference thread is a futex `unpark`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::Thread;
use std::time::Instant;

use crossbeam_queue::ArrayQueue;

use crate::config::QueuePolicy;
use crate::core::decode::CompressedFormat;
use crate::core::image::{FrameError, ImageView, PixelEncoding};
use crate::runtime::counters::{BadInputKind, CameraCounters, Rejected, mono_ns};

/// Bytes reserved for a frame's `frame_id` (longer ids are bad input).
pub const FRAME_ID_CAPACITY: usize = 256;

/// A ROS time stamp (`builtin_interfaces/Time`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// Seconds.
    pub sec: i32,
    /// Nanoseconds within the second.
    pub nanosec: u32,
}

impl Stamp {
    /// Nanoseconds since the epoch of the clock.
    pub fn as_nanos(&self) -> i64 {
        i64::from(self.sec) * 1_000_000_000 + i64::from(self.nanosec)
    }

    /// From nanoseconds since the epoch.
    pub fn from_nanos(ns: i64) -> Self {
        Self {
            sec: ns.div_euclid(1_000_000_000) as i32,
            nanosec: ns.rem_euclid(1_000_000_000) as u32,
        }
    }
}

/// How the bytes of a frame are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameFormat {
    /// A raw image (`sensor_msgs/Image`).
    Raw {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Row step in bytes.
        step_bytes: usize,
        /// Pixel encoding.
        encoding: PixelEncoding,
        /// 16-bit samples are big-endian (`is_bigendian`).
        big_endian: bool,
    },
    /// A compressed image (`sensor_msgs/CompressedImage`).
    Compressed(CompressedFormat),
}

/// The header fields of a `sensor_msgs/Image`, as a transport hands them over.
#[derive(Debug, Clone, Copy)]
pub struct RawHeader<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row step in bytes.
    pub step_bytes: usize,
    /// The encoding string.
    pub encoding: &'a str,
    /// `is_bigendian` (16-bit encodings).
    pub big_endian: bool,
}

impl<'a> RawHeader<'a> {
    /// A little-endian header (tests, 8-bit frames).
    pub fn new(width: u32, height: u32, step_bytes: usize, encoding: &'a str) -> Self {
        Self {
            width,
            height,
            step_bytes,
            encoding,
            big_endian: false,
        }
    }
}

/// The layout of a frame handed over by [`FrameProducer::push_swapped`].
#[derive(Debug, Clone, Copy)]
pub enum SwappedHeader<'a> {
    /// A raw image (`sensor_msgs/Image`).
    Raw(RawHeader<'a>),
    /// A compressed image, with its `format` field (`sensor_msgs/CompressedImage`).
    Compressed(&'a str),
}

/// A checked frame's metadata, on its way into a slot.
struct FrameMeta<'a> {
    stamp: Stamp,
    frame_id: &'a str,
    format: FrameFormat,
}

/// How a frame's bytes reach its slot.
enum Bytes<'a> {
    /// Copied into the slot's buffer.
    Copy(&'a [u8]),
    /// The caller's buffer swapped with the slot's; the frame is `buffer[start..start + len]`.
    Swap {
        buffer: &'a mut Vec<u8>,
        start: usize,
        len: usize,
    },
}

/// One frame slot: metadata plus a byte buffer allocated once for the camera's largest frame.
#[derive(Debug)]
pub struct Frame {
    /// Index of the camera in the configuration.
    pub camera: usize,
    /// Arrival number on this camera (0, 1, 2, ...), counting dropped frames too.
    pub seq: u64,
    /// Header stamp, copied unchanged.
    pub stamp: Stamp,
    /// Layout of `data`.
    pub format: FrameFormat,
    /// Monotonic time the transport received the frame (callback entry).
    pub received: Instant,
    /// Monotonic time the frame entered the ring.
    pub enqueued: Instant,
    frame_id: String,
    /// The slot's buffer; the frame's bytes are `data[start..start + len]` (a whole message
    /// when the buffer was swapped in rather than copied).
    data: Vec<u8>,
    start: usize,
    len: usize,
}

impl Frame {
    fn new(camera: usize, slot_bytes: usize) -> Self {
        let now = Instant::now();
        // Reserved, not touched: a page becomes resident when a frame first reaches it, so a
        // camera's memory follows its real frame size (a 1280x720 bgr8 camera uses 2.7 MB of
        // its 1920x1200x4 slot, a JPEG camera a few hundred kB), and the slot never reallocates.
        let mut data = Vec::new();
        data.reserve_exact(slot_bytes);
        Self {
            camera,
            seq: 0,
            stamp: Stamp::default(),
            format: FrameFormat::Compressed(CompressedFormat::Jpeg),
            received: now,
            enqueued: now,
            frame_id: String::with_capacity(FRAME_ID_CAPACITY),
            data,
            start: 0,
            len: 0,
        }
    }

    /// Header `frame_id`, copied unchanged.
    pub fn frame_id(&self) -> &str {
        &self.frame_id
    }

    /// The frame's bytes (raw pixels with row padding, or the compressed stream).
    pub fn data(&self) -> &[u8] {
        bytes_in(&self.data, self.start, self.len)
    }

    /// Swaps the slot's buffer with `other` (a buffer reserved for at least as large a frame),
    /// returning where the frame's bytes are in the buffer now in `other`; the slot is left
    /// empty. O(1): incident capture keeps a finished frame this way, without copying it.
    pub fn swap_buffer(&mut self, other: &mut Vec<u8>) -> (usize, usize) {
        std::mem::swap(&mut self.data, other);
        let range = (self.start, self.len);
        self.start = 0;
        self.len = 0;
        range
    }

    /// A view of a raw frame (`None` for a compressed one).
    pub fn raw_view(&self) -> Option<Result<ImageView<'_>, FrameError>> {
        match self.format {
            FrameFormat::Raw {
                width,
                height,
                step_bytes,
                encoding,
                big_endian,
            } => Some(
                ImageView::new(width, height, step_bytes, encoding, self.data())
                    .map(|v| v.with_big_endian(big_endian)),
            ),
            FrameFormat::Compressed(_) => None,
        }
    }
}

/// The transport's end of a camera ring.
pub struct FrameProducer {
    camera: usize,
    free: rtrb::Consumer<Frame>,
    queue: Arc<ArrayQueue<Frame>>,
    /// A slot taken back from the queue (evicted, or refused when full), reused next.
    spare: Option<Frame>,
    policy: QueuePolicy,
    counters: Arc<CameraCounters>,
    wake: Option<Thread>,
    next_seq: u64,
    slot_bytes: usize,
    max_width: u32,
    max_height: u32,
}

/// The inference loop's end of a camera ring.
pub struct FrameConsumer {
    queue: Arc<ArrayQueue<Frame>>,
    /// The frame [`Self::take`] would return.
    staged: Option<Frame>,
    free: rtrb::Producer<Frame>,
    policy: QueuePolicy,
    counters: Arc<CameraCounters>,
}

/// `len` bytes of `buffer` from `start`: a frame's bytes in its slot buffer. The range is checked
/// where it is set; empty rather than a panic all the same.
pub fn bytes_in(buffer: &[u8], start: usize, len: usize) -> &[u8] {
    start
        .checked_add(len)
        .and_then(|end| buffer.get(start..end))
        .unwrap_or(&[])
}

/// Bytes of one frame slot of a camera of at most `max_width x max_height` (4 bytes a pixel, the
/// widest encoding). Every buffer that is swapped into a slot (replay's read-ahead, incident
/// capture's records) is reserved this large.
pub fn slot_bytes(max_width: u32, max_height: u32) -> usize {
    max_width as usize * max_height as usize * 4
}

/// Creates camera `camera`'s queue: room for `ring_capacity` waiting frames, `ring_capacity + 2`
/// slots of `max_width x max_height x 4` bytes (one being inferred, one being filled). Allocates
/// and touches all of them.
pub fn camera_ring(
    camera: usize,
    ring_capacity: usize,
    max_width: u32,
    max_height: u32,
    policy: QueuePolicy,
) -> (FrameProducer, FrameConsumer, Arc<CameraCounters>) {
    camera_ring_with_spares(camera, ring_capacity, 0, max_width, max_height, policy)
}

/// As [`camera_ring`], with `spare_slots` more slots for frames held elsewhere after inference
/// (the one a shadow model is comparing), so the queue keeps its full depth meanwhile.
pub fn camera_ring_with_spares(
    camera: usize,
    ring_capacity: usize,
    spare_slots: usize,
    max_width: u32,
    max_height: u32,
    policy: QueuePolicy,
) -> (FrameProducer, FrameConsumer, Arc<CameraCounters>) {
    let capacity = ring_capacity.max(1);
    let slots = capacity + 2 + spare_slots;
    let slot_bytes = slot_bytes(max_width, max_height);
    let (mut free_tx, free_rx) = rtrb::RingBuffer::new(slots);
    for _ in 0..slots {
        // Cannot fail: the ring has exactly `slots` places.
        let _ = free_tx.push(Frame::new(camera, slot_bytes));
    }
    let queue = Arc::new(ArrayQueue::new(capacity));
    let counters = Arc::new(CameraCounters::default());
    (
        FrameProducer {
            camera,
            free: free_rx,
            queue: Arc::clone(&queue),
            spare: None,
            policy,
            counters: Arc::clone(&counters),
            wake: None,
            next_seq: 0,
            slot_bytes,
            max_width,
            max_height,
        },
        FrameConsumer {
            queue,
            staged: None,
            free: free_tx,
            policy,
            counters: Arc::clone(&counters),
        },
        counters,
    )
}

impl FrameProducer {
    /// The thread to unpark after each pushed frame (the inference thread).
    pub fn set_wake(&mut self, thread: Thread) {
        self.wake = Some(thread);
    }

    /// This camera's counters.
    pub fn counters(&self) -> &CameraCounters {
        &self.counters
    }

    /// Counts an arrival and hands out a free slot, or counts a drop when none is free.
    fn acquire(&mut self, received: Instant) -> Option<(Frame, u64)> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        self.counters
            .last_received_ns
            .store(mono_ns(received), Ordering::Relaxed);
        match self.spare.take().or_else(|| self.free.pop().ok()) {
            Some(mut f) => {
                f.received = received;
                Some((f, seq))
            }
            // Not reachable with `ring_capacity + 2` slots; counted rather than assumed.
            None => {
                self.counters
                    .dropped_ring_full
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Queues a filled slot, applying the policy when the queue is full. Returns whether this
    /// frame is queued (false: FIFO refused it).
    fn submit(&mut self, mut frame: Frame) -> bool {
        frame.enqueued = Instant::now();
        let queued = match self.policy {
            QueuePolicy::KeepNewest => {
                if let Some(oldest) = self.queue.force_push(frame) {
                    self.counters
                        .dropped_ring_full
                        .fetch_add(1, Ordering::Relaxed);
                    self.spare = Some(oldest);
                }
                true
            }
            QueuePolicy::Fifo => match self.queue.push(frame) {
                Ok(()) => true,
                Err(refused) => {
                    self.counters
                        .dropped_ring_full
                        .fetch_add(1, Ordering::Relaxed);
                    self.spare = Some(refused);
                    false
                }
            },
        };
        if queued && let Some(t) = &self.wake {
            t.unpark();
        }
        queued
    }

    /// Where a checked frame's bytes come from.
    fn place(&mut self, received: Instant, meta: FrameMeta<'_>, bytes: Bytes<'_>) -> bool {
        let Some((mut frame, seq)) = self.acquire(received) else {
            return false;
        };
        frame.camera = self.camera;
        frame.seq = seq;
        frame.stamp = meta.stamp;
        frame.format = meta.format;
        frame.frame_id.clear();
        frame.frame_id.push_str(meta.frame_id);
        match bytes {
            Bytes::Copy(data) => {
                frame.data.clear();
                frame.data.extend_from_slice(data);
                frame.start = 0;
                frame.len = data.len();
            }
            Bytes::Swap { buffer, start, len } => {
                std::mem::swap(&mut frame.data, buffer);
                frame.start = start;
                frame.len = len;
            }
        }
        self.submit(frame)
    }

    /// Checks a raw frame's header and bytes against the encoding and this ring's limits.
    fn check_raw(&mut self, header: &RawHeader<'_>, data: &[u8]) -> Result<FrameFormat, Rejected> {
        let &RawHeader {
            width,
            height,
            step_bytes,
            encoding,
            big_endian,
        } = header;
        let checked = PixelEncoding::from_ros(encoding)
            .and_then(|e| ImageView::new(width, height, step_bytes, e, data).map(|_| e));
        let encoding = match checked {
            Ok(e) => e,
            Err(e) => return Err(self.reject(e)),
        };
        if width > self.max_width || height > self.max_height || data.len() > self.slot_bytes {
            return Err(self.reject(FrameError::TooLarge {
                width,
                height,
                max_width: self.max_width,
                max_height: self.max_height,
            }));
        }
        Ok(FrameFormat::Raw {
            width,
            height,
            step_bytes,
            encoding,
            big_endian,
        })
    }

    /// Checks a compressed frame's format and size against this ring's limits.
    fn check_compressed(
        &mut self,
        format: &str,
        len_bytes: usize,
    ) -> Result<FrameFormat, Rejected> {
        let format = match CompressedFormat::from_ros(format) {
            Ok(f) => f,
            Err(e) => return Err(self.reject(e)),
        };
        if len_bytes > self.slot_bytes {
            return Err(self.reject(FrameError::TooLarge {
                width: 0,
                height: 0,
                max_width: self.max_width,
                max_height: self.max_height,
            }));
        }
        Ok(FrameFormat::Compressed(format))
    }

    fn check_frame_id(&mut self, frame_id: &str) -> Result<(), Rejected> {
        if frame_id.len() > FRAME_ID_CAPACITY {
            return Err(self.reject(FrameError::FrameIdTooLong {
                len_bytes: frame_id.len(),
                max_bytes: FRAME_ID_CAPACITY,
            }));
        }
        Ok(())
    }

    /// Copies a raw frame into a slot. Bad frames (unknown encoding, inconsistent geometry,
    /// larger than the slot, over-long `frame_id`) are counted and returned as errors. Returns
    /// `Ok(true)` when the frame is queued, `Ok(false)` when the policy dropped it (counted).
    pub fn push_raw(
        &mut self,
        received: Instant,
        stamp: Stamp,
        frame_id: &str,
        header: RawHeader<'_>,
        data: &[u8],
    ) -> Result<bool, Rejected> {
        let format = self.check_raw(&header, data)?;
        self.check_frame_id(frame_id)?;
        let meta = FrameMeta {
            stamp,
            frame_id,
            format,
        };
        Ok(self.place(received, meta, Bytes::Copy(data)))
    }

    /// Copies a compressed frame into a slot (decoded later by the inference loop). Same
    /// contract as [`Self::push_raw`].
    pub fn push_compressed(
        &mut self,
        received: Instant,
        stamp: Stamp,
        frame_id: &str,
        format: &str,
        data: &[u8],
    ) -> Result<bool, Rejected> {
        let format = self.check_compressed(format, data.len())?;
        self.check_frame_id(frame_id)?;
        let meta = FrameMeta {
            stamp,
            frame_id,
            format,
        };
        Ok(self.place(received, meta, Bytes::Copy(data)))
    }

    /// As [`Self::push_raw`] or [`Self::push_compressed`], without copying the pixels: the frame's
    /// bytes are `buffer[range]` (e.g. the image inside a whole serialized message), and
    /// `buffer` is swapped with the slot's buffer, so the caller gets a buffer back to reuse
    /// (the slot's previous one). `header`: the frame's layout; its strings must not borrow
    /// `buffer` (copy them out first). On an error `buffer` is left as it was. Allocates nothing.
    pub fn push_swapped(
        &mut self,
        received: Instant,
        stamp: Stamp,
        frame_id: &str,
        header: SwappedHeader<'_>,
        buffer: &mut Vec<u8>,
        range: std::ops::Range<usize>,
    ) -> Result<bool, Rejected> {
        let Some(data) = buffer.get(range.clone()) else {
            return Err(self.reject(FrameError::DataTooShort {
                len_bytes: buffer.len(),
                height: 0,
                step_bytes: 0,
                need_bytes: range.end,
            }));
        };
        let format = match header {
            SwappedHeader::Raw(h) => self.check_raw(&h, data)?,
            SwappedHeader::Compressed(f) => self.check_compressed(f, data.len())?,
        };
        self.check_frame_id(frame_id)?;
        let meta = FrameMeta {
            stamp,
            frame_id,
            format,
        };
        let bytes = Bytes::Swap {
            buffer,
            start: range.start,
            len: range.len(),
        };
        Ok(self.place(received, meta, bytes))
    }

    /// Counts a message that could not be deserialized (replay: malformed CDR) as received and
    /// as bad input; returns true the first time on this camera (log it then).
    pub fn reject_malformed(&mut self) -> bool {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        self.counters
            .last_received_ns
            .store(mono_ns(Instant::now()), Ordering::Relaxed);
        self.next_seq += 1;
        self.counters.bad(BadInputKind::Malformed)
    }

    fn reject(&mut self, error: FrameError) -> Rejected {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        self.counters
            .last_received_ns
            .store(mono_ns(Instant::now()), Ordering::Relaxed);
        self.next_seq += 1;
        let kind = BadInputKind::of(&error);
        Rejected {
            kind,
            first_of_kind: self.counters.bad(kind),
            error,
        }
    }
}

impl FrameConsumer {
    /// This camera's counters.
    pub fn counters(&self) -> &CameraCounters {
        &self.counters
    }

    /// Frames waiting (queued or staged).
    pub fn queued(&self) -> usize {
        self.queue.len() + usize::from(self.staged.is_some())
    }

    /// Applies the policy and returns the stamp of the frame that [`Self::take`] would return:
    /// with keep-newest, every queued frame replaces the staged one (which is recycled and
    /// counted as superseded); with FIFO, the oldest is staged.
    fn candidate(&mut self) -> Option<Stamp> {
        match self.policy {
            QueuePolicy::KeepNewest => {
                while let Some(newer) = self.queue.pop() {
                    if let Some(old) = self.staged.replace(newer) {
                        self.counters
                            .dropped_superseded
                            .fetch_add(1, Ordering::Relaxed);
                        self.recycle(old);
                    }
                }
            }
            QueuePolicy::Fifo => {
                if self.staged.is_none() {
                    self.staged = self.queue.pop();
                }
            }
        }
        self.staged.as_ref().map(|f| f.stamp)
    }

    /// Whether a frame is waiting (applies the policy, as [`Self::take`] would).
    pub fn has_candidate(&mut self) -> bool {
        self.candidate().is_some()
    }

    /// Takes the next frame by policy.
    pub fn take(&mut self) -> Option<Frame> {
        self.candidate()?;
        self.staged.take()
    }

    /// Returns a slot to the producer.
    pub fn recycle(&mut self, frame: Frame) {
        // Cannot fail: `free` has a place for every slot.
        let _ = self.free.push(frame);
    }
}

#[cfg(test)]
mod tests;
