//! Reading an MCAP file past damage in its data section: when the streamed read fails (a
//! damaged chunk, a bad CRC, a broken record between chunks) and the file's summary is intact,
//! every chunk listed in the summary's chunk index is read on its own, in file order, and the
//! messages not yet handed over are. So one damaged chunk costs the messages in it, not the
//! rest of the file. A truncated file (no summary) cannot be resumed: it was read up to the end.
//!
//! Contract: runs only after damage was found; allocates (the summary, one chunk at a time,
//! each bounded by [`MAX_RECORD_BYTES`]); file I/O; every offset and length from the file is
//! checked against the file's length and the record limit before it is used.

use std::io::{Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::Path;

use mcap::records::{Record, op};
use mcap::sans_io::linear_reader::{LinearReadEvent, LinearReader, LinearReaderOptions};
use mcap::sans_io::summary_reader::{SummaryReadEvent, SummaryReader, SummaryReaderOptions};

use super::reader::MAX_RECORD_BYTES;
use super::{BagDamage, BagMessage};

/// What reading past the damage found.
#[derive(Debug)]
pub(super) struct Resumed {
    /// `Break` when the callback stopped the reading.
    pub flow: ControlFlow<()>,
    /// Each damaged chunk, with the messages read after it.
    pub damage: Vec<BagDamage>,
    /// Messages handed over by this pass.
    pub messages: u64,
}

/// The summary section of an MCAP stream `len` bytes long, if it has a readable one (read
/// through the footer, records bounded by [`MAX_RECORD_BYTES`]; never memory-mapped).
pub(super) fn read_summary<R: Read + Seek>(r: &mut R, len: u64) -> Option<mcap::Summary> {
    let mut reader = SummaryReader::new_with_options(
        SummaryReaderOptions::default()
            .with_file_size(len)
            .with_record_length_limit(MAX_RECORD_BYTES),
    );
    while let Some(event) = reader.next_event() {
        match event.ok()? {
            SummaryReadEvent::ReadRequest(n) => {
                let got = r.read(reader.insert(n)).ok()?;
                reader.notify_read(got);
            }
            SummaryReadEvent::SeekRequest(to) => {
                let pos = r.seek(to).ok()?;
                reader.notify_seeked(pos);
            }
        }
    }
    reader.finish()
}

/// Reads the MCAP stream `r` chunk by chunk through its summary's chunk index, handing `f` every
/// message after the first `delivered` ones (those the streamed read already handed over, in
/// the same file order). `None` when the stream has no readable summary or no chunk index:
/// nothing can be read past the damage.
pub(super) fn resume_mcap<R: Read + Seek>(
    r: &mut R,
    path: &Path,
    delivered: u64,
    f: &mut impl FnMut(BagMessage<'_>) -> ControlFlow<()>,
) -> Option<Resumed> {
    let len = r.seek(SeekFrom::End(0)).ok()?;
    let summary = read_summary(r, len)?;
    if summary.chunk_indexes.is_empty() {
        return None;
    }
    let mut chunks: Vec<&mcap::records::ChunkIndex> = summary.chunk_indexes.iter().collect();
    chunks.sort_by_key(|c| c.chunk_start_offset);
    let mut out = Resumed {
        flow: ControlFlow::Continue(()),
        damage: Vec::new(),
        messages: 0,
    };
    // Messages in file order over the intact parts; the first `delivered` were handed over,
    // unless a damaged chunk comes first (then everything after it is new).
    let mut seen = 0u64;
    let mut past_damage = false;
    let mut buf = Vec::new();
    for chunk in chunks {
        let mut deliver = |m: BagMessage<'_>| {
            seen += 1;
            if !past_damage && seen <= delivered {
                return ControlFlow::Continue(());
            }
            out.messages += 1;
            if let Some(d) = out.damage.last_mut() {
                d.resumed_after = Some(d.resumed_after.unwrap_or(0) + 1);
            }
            f(m)
        };
        match read_chunk(r, len, chunk, &summary, &mut buf, &mut deliver) {
            Ok(ControlFlow::Break(())) => {
                out.flow = ControlFlow::Break(());
                return Some(out);
            }
            Ok(ControlFlow::Continue(())) => {}
            Err(reason) => {
                past_damage = true;
                out.damage.push(BagDamage {
                    path: path.to_path_buf(),
                    messages_read: seen,
                    reason,
                    offset: Some(chunk.chunk_start_offset),
                    resumed_after: Some(0),
                });
            }
        }
    }
    Some(out)
}

/// Hands `f` the messages of one chunk record, read from the stream and checked on its own.
fn read_chunk<R: Read + Seek>(
    r: &mut R,
    file_len: u64,
    index: &mcap::records::ChunkIndex,
    summary: &mcap::Summary,
    buf: &mut Vec<u8>,
    f: &mut impl FnMut(BagMessage<'_>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, String> {
    index
        .chunk_start_offset
        .checked_add(index.chunk_length)
        .filter(|&end| end <= file_len)
        .ok_or("the chunk index points past the end of the file")?;
    let length = usize::try_from(index.chunk_length)
        .ok()
        .filter(|&l| l <= MAX_RECORD_BYTES + 4096)
        .ok_or_else(|| format!("chunk of {} bytes exceeds the limit", index.chunk_length))?;
    r.seek(SeekFrom::Start(index.chunk_start_offset))
        .map_err(|e| e.to_string())?;
    buf.clear();
    buf.resize(length, 0);
    r.read_exact(buf).map_err(|e| e.to_string())?;
    if buf.first() != Some(&op::CHUNK) {
        return Err("the chunk index does not point at a chunk".into());
    }
    // The chunk alone, as a data section without magic: decompressed and its CRC checked.
    let mut reader = LinearReader::new_with_options(
        LinearReaderOptions::default()
            .with_skip_start_magic(true)
            .with_skip_end_magic(true)
            .with_validate_chunk_crcs(true)
            .with_record_length_limit(MAX_RECORD_BYTES),
    );
    let mut fed = 0usize;
    while let Some(event) = reader.next_event() {
        match event.map_err(|e| e.to_string())? {
            LinearReadEvent::ReadRequest(n) => {
                let n = n.min(buf.len() - fed);
                reader.insert(n).copy_from_slice(&buf[fed..fed + n]);
                reader.notify_read(n);
                fed += n;
            }
            LinearReadEvent::Record { opcode, data } if opcode == op::MESSAGE => {
                let Record::Message { header, data } =
                    mcap::parse_record(opcode, data).map_err(|e| e.to_string())?
                else {
                    return Err("a message record that does not parse as one".into());
                };
                let channel = summary.channels.get(&header.channel_id).ok_or_else(|| {
                    format!(
                        "message on channel {} not in the summary",
                        header.channel_id
                    )
                })?;
                let schema = channel.schema.as_deref();
                let flow = f(BagMessage {
                    topic: &channel.topic,
                    type_name: schema.map_or("", |s| s.name.as_str()),
                    log_time_ns: header.log_time,
                    data: &data,
                    definition: schema.map(|s| (s.encoding.as_str(), &*s.data)),
                });
                if flow.is_break() {
                    return Ok(flow);
                }
            }
            LinearReadEvent::Record { .. } => {}
        }
    }
    Ok(ControlFlow::Continue(()))
}
