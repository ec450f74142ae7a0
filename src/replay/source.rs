//! The replay's frame source: bag messages into the runtime's queues (raw frames by handing
//! over the read-ahead buffer, compressed frames copied), bad ones counted and logged once.

use std::time::Instant;

use super::{Camera, Replay};
use crate::bag::cdr;
use crate::config::ImageKind;
use crate::runtime::queue::{RawHeader, SwappedHeader};

impl Replay {
    /// Copies one camera message into its ring (bad messages are counted and logged once).
    pub(super) fn push(&mut self, camera: usize, data: &[u8]) {
        let c = &mut self.cameras[camera];
        c.frames_in += 1;
        let received = Instant::now();
        let pushed = match c.kind {
            ImageKind::Image => cdr::image(data).map(|m| {
                c.producer.push_raw(
                    received,
                    m.stamp,
                    m.frame_id,
                    RawHeader {
                        width: m.width,
                        height: m.height,
                        step_bytes: m.step as usize,
                        encoding: m.encoding,
                        big_endian: m.is_bigendian != 0,
                    },
                    m.data,
                )
            }),
            ImageKind::Compressed => cdr::compressed_image(data).map(|m| {
                c.producer
                    .push_compressed(received, m.stamp, m.frame_id, m.format, m.data)
            }),
        };
        Self::report_push(c, pushed);
    }

    /// Logs (once per kind) and counts what a push refused.
    pub(super) fn report_push<E: std::fmt::Display>(
        c: &mut Camera,
        pushed: Result<Result<bool, crate::runtime::counters::Rejected>, E>,
    ) {
        match pushed {
            Ok(Ok(_)) => {}
            Ok(Err(rejected)) => crate::runtime::counters::warn_bad_input(
                &c.name,
                &rejected.error,
                rejected.first_of_kind,
            ),
            Err(e) => {
                if c.producer.reject_malformed() {
                    tracing::warn!(camera = %c.name, error = %e, "message does not deserialize (further ones are counted, not logged)");
                }
            }
        }
    }

    /// As [`Self::push`], without copying the pixels of a raw image: the message's buffer
    /// becomes the frame slot's, and `buffer` gets the slot's previous one (the bag reader
    /// reuses it). Compressed frames are copied: they are small (a 1280x720 JPEG, ~200 kB,
    /// copies in tens of microseconds), and the copy leaves them in this core's cache for the
    /// decoder.
    pub(super) fn push_swapped(&mut self, camera: usize, buffer: &mut Vec<u8>) {
        if self.cameras[camera].kind == ImageKind::Compressed {
            return self.push(camera, buffer);
        }
        let c = &mut self.cameras[camera];
        c.frames_in += 1;
        let received = Instant::now();
        let (frame_id, encoding) = (&mut c.frame_id, &mut c.encoding);
        let parsed = cdr::image(buffer).map(|m| {
            frame_id.clear();
            frame_id.push_str(m.frame_id);
            encoding.clear();
            encoding.push_str(m.encoding);
            // Where the pixels, a slice of the buffer, start in it.
            let start = (m.data.as_ptr() as usize).wrapping_sub(buffer.as_ptr() as usize);
            let range = start..start.saturating_add(m.data.len());
            let geometry = (m.width, m.height, m.step as usize, m.is_bigendian != 0);
            (m.stamp, geometry, range)
        });
        let pushed = parsed.map(|(stamp, (width, height, step_bytes, big_endian), range)| {
            let header = SwappedHeader::Raw(RawHeader {
                width,
                height,
                step_bytes,
                encoding: &c.encoding,
                big_endian,
            });
            c.producer
                .push_swapped(received, stamp, &c.frame_id, header, buffer, range)
        });
        Self::report_push(c, pushed);
    }
}
