//! What an ONNX file declares, read without ONNX Runtime: IR version, producer, opsets, graph
//! inputs and outputs with their element types and shapes, operator counts, metadata. Used by
//! `lookout model inspect` to check a model package's manifest against its ONNX file, and to say
//! which decoder fits a model that has no manifest yet.
//!
//! The file is streamed through a small protobuf reader: the weights (initializers, often
//! hundreds of MB) are skipped with a seek, never read. Every length and count comes from an
//! untrusted file and is checked against a limit before it is used; a file that breaks one is
//! an [`OnnxError`], never a panic or an allocation of the size it claims.
//!
//! Contract: [`read`] allocates (names, shapes), does file I/O, and never blocks on anything
//! but the file.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::model::{DecoderKind, Manifest};

/// The longest name, producer or metadata string read, bytes.
const MAX_STRING: u64 = 64 * 1024;
/// The most graph inputs, outputs or metadata entries read.
const MAX_VALUES: usize = 10_000;
/// The most initializers (their names are kept to tell them from real inputs).
const MAX_INITIALIZERS: usize = 1_000_000;
/// The most nodes counted.
const MAX_NODES: usize = 10_000_000;
/// The most dimensions of one tensor.
const MAX_DIMS: usize = 64;
/// The largest file accepted, bytes (protobuf's own limit is 2 GiB; external data aside).
const MAX_FILE: u64 = 4 << 30;

/// Why an ONNX file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file cannot be opened or read.
    #[error("cannot read ONNX file {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The bytes are not a valid ONNX protobuf, or break a limit.
    #[error("invalid ONNX file {path} at byte {offset}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where the reading stopped.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// One dimension of a declared shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A named (dynamic) size, e.g. `batch`.
    Named(String),
}

impl Dim {
    /// The fixed size, if any.
    pub fn fixed(&self) -> Option<i64> {
        match self {
            Dim::Fixed(v) => Some(*v),
            Dim::Named(_) => None,
        }
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(v) => write!(f, "{v}"),
            Dim::Named(n) if n.is_empty() => f.write_str("?"),
            Dim::Named(n) => f.write_str(n),
        }
    }
}

/// A graph input or output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorInfo {
    /// Its name.
    pub name: String,
    /// Element type (`float32`, `uint8`, ...; `type N` for others).
    pub element_type: String,
    /// Declared shape (empty when the file declares none).
    pub shape: Vec<Dim>,
}

/// What an ONNX file declares.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OnnxInfo {
    /// IR version.
    pub ir_version: i64,
    /// Producer name (`producer_name`).
    pub producer_name: String,
    /// Producer version.
    pub producer_version: String,
    /// Opset per domain (`""` is the default ONNX domain, shown as `ai.onnx`).
    pub opsets: BTreeMap<String, i64>,
    /// Graph inputs that are not initializers.
    pub inputs: Vec<TensorInfo>,
    /// Graph outputs.
    pub outputs: Vec<TensorInfo>,
    /// Nodes per operator type.
    pub operators: BTreeMap<String, u64>,
    /// Initializers (weights) in the graph.
    pub initializers: u64,
    /// `metadata_props`.
    pub metadata: BTreeMap<String, String>,
}

/// Which decoder reads an output, and how many classes that implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Fit {
    /// The decoder.
    pub decoder: DecoderKind,
    /// Classes implied by the shape (`None` for `end2end`, whose rows carry a class id).
    pub classes: Option<usize>,
}

impl OnnxInfo {
    /// The decoder that reads output `name` (the first output when `None`): `end2end` when the
    /// graph does its own NMS and the output is `[1, D, 6|7]`; else `yolov8` for `[1, 4+C, N]`
    /// with `4+C < N`; else `yolov5` for `[1, N, 5+C]`. `Err` says why none fits.
    pub fn decoder_fit(&self, name: Option<&str>) -> Result<Fit, String> {
        let out = match name {
            Some(n) => self.outputs.iter().find(|o| o.name == n),
            None => self.outputs.first(),
        }
        .ok_or_else(|| format!("no output {}", name.unwrap_or("at all")))?;
        let dims: Vec<Option<i64>> = out.shape.iter().map(Dim::fixed).collect();
        let [_, Some(a), Some(b)] = dims[..] else {
            return Err(format!(
                "output {} has shape [{}]: the decoders read [1, A, B] with A and B fixed",
                out.name,
                join(&out.shape)
            ));
        };
        let nms = [
            "NonMaxSuppression",
            "EfficientNMS_TRT",
            "BatchedNMSDynamic_TRT",
        ]
        .iter()
        .any(|op| self.operators.contains_key(*op));
        if nms && (b == 6 || b == 7) {
            return Ok(Fit {
                decoder: DecoderKind::End2end,
                classes: None,
            });
        }
        if a >= 5 && a < b {
            return Ok(Fit {
                decoder: DecoderKind::Yolov8,
                classes: usize::try_from(a - 4).ok(),
            });
        }
        if b >= 6 {
            return Ok(Fit {
                decoder: DecoderKind::Yolov5,
                classes: usize::try_from(b - 5).ok(),
            });
        }
        Err(format!(
            "output {} [{}] fits none of yolov5 [1, N, 5+C], yolov8 [1, 4+C, N], end2end [1, D, 6]",
            out.name,
            join(&out.shape)
        ))
    }
}

/// What disagrees between a manifest and the ONNX file it names: each entry one finding with
/// the manifest key. Empty when they agree (input and output names, shapes where the file fixes
/// them, element types, the decoder and the class count the output implies).
pub fn check_manifest(manifest: &Manifest, info: &OnnxInfo) -> Vec<String> {
    let mut findings = Vec::new();
    match info.inputs.iter().find(|i| i.name == manifest.input.name) {
        Some(t) => {
            check_shape(&mut findings, "input.shape", &manifest.input.shape, t);
            check_batch(&mut findings, manifest.input.max_batch, t);
        }
        None => findings.push(format!(
            "input.name: no input {} in the ONNX file (it has: {})",
            manifest.input.name,
            names(&info.inputs)
        )),
    }
    match info.outputs.iter().find(|o| o.name == manifest.output.name) {
        Some(t) => {
            check_shape(&mut findings, "output.shape", &manifest.output.shape, t);
            check_batch(&mut findings, manifest.input.max_batch, t);
            match info.decoder_fit(Some(&t.name)) {
                Ok(fit) if fit.decoder != manifest.output.decoder => findings.push(format!(
                    "output.decoder: the manifest says {}, the output's shape and graph fit {}",
                    manifest.output.decoder, fit.decoder
                )),
                Ok(Fit {
                    classes: Some(c), ..
                }) if c != manifest.classes.len() => findings.push(format!(
                    "classes: the manifest lists {}, the output's shape implies {c}",
                    manifest.classes.len()
                )),
                Ok(_) => {}
                Err(reason) => findings.push(format!("output.decoder: {reason}")),
            }
        }
        None => findings.push(format!(
            "output.name: no output {} in the ONNX file (it has: {})",
            manifest.output.name,
            names(&info.outputs)
        )),
    }
    findings
}

fn check_shape(findings: &mut Vec<String>, key: &str, want: &[usize], t: &TensorInfo) {
    if t.element_type != "float32" {
        findings.push(format!(
            "{key}: {} is {}, lookout feeds and reads float32",
            t.name, t.element_type
        ));
    }
    if t.shape.is_empty() {
        return;
    }
    let fits = t.shape.len() == want.len()
        && t.shape
            .iter()
            .zip(want)
            .all(|(d, w)| d.fixed().is_none_or(|v| v == *w as i64));
    if !fits {
        let want: Vec<String> = want.iter().map(ToString::to_string).collect();
        findings.push(format!(
            "{key}: the manifest says [{}], the ONNX file declares {} as [{}]",
            want.join(", "),
            t.name,
            join(&t.shape)
        ));
    }
}

/// With `input.max_batch` above 1, the tensor's first dimension must be dynamic (named): one run
/// then takes several frames.
fn check_batch(findings: &mut Vec<String>, max_batch: usize, t: &TensorInfo) {
    if max_batch <= 1 {
        return;
    }
    if let Some(Dim::Fixed(n)) = t.shape.first() {
        findings.push(format!(
            "input.max_batch: the manifest asks for up to {max_batch} frames per run, but {} has a fixed batch dimension of {n} (convert the model with a dynamic first dimension, e.g. scripts/darknet2onnx.py --dynamic-batch)",
            t.name
        ));
    }
}

fn names(list: &[TensorInfo]) -> String {
    let v: Vec<&str> = list.iter().map(|t| t.name.as_str()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// `a, b, c` of a shape.
pub fn join(shape: &[Dim]) -> String {
    shape
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads what the ONNX file at `path` declares (see the module docs for the limits).
pub fn read(path: &Path) -> Result<OnnxInfo, OnnxError> {
    let io = |error| OnnxError::Io {
        path: path.to_path_buf(),
        error,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    read_from(BufReader::new(file), len).map_err(|e| match e {
        Fail::Io(error) => io(error),
        Fail::Invalid(offset, reason) => OnnxError::Invalid {
            path: path.to_path_buf(),
            offset,
            reason,
        },
    })
}

/// A reading failure before it gets the file's path.
#[derive(Debug)]
pub enum Fail {
    /// The reader failed.
    Io(std::io::Error),
    /// Bad bytes at an offset.
    Invalid(u64, String),
}

/// [`read`] over any seekable reader of `len` bytes (the fuzz target's entry point).
pub fn read_from<R: Read + Seek>(r: R, len: u64) -> Result<OnnxInfo, Fail> {
    if len > MAX_FILE {
        return Err(Fail::Invalid(
            0,
            format!("{len} bytes, over the {MAX_FILE}-byte limit"),
        ));
    }
    let mut pb = Pb { r, pos: 0 };
    let mut info = OnnxInfo::default();
    let mut initializer_names = HashSet::new();
    while let Some((field, wire)) = pb.field(len)? {
        match (field, wire) {
            (1, 0) => info.ir_version = pb.varint(len)? as i64,
            (2, 2) => info.producer_name = pb.string(len)?,
            (3, 2) => info.producer_version = pb.string(len)?,
            (7, 2) => {
                let end = pb.sub(len)?;
                graph(&mut pb, end, &mut info, &mut initializer_names)?;
            }
            (8, 2) => {
                let end = pb.sub(len)?;
                let (mut domain, mut version) = (String::new(), 0i64);
                while let Some((f, w)) = pb.field(end)? {
                    match (f, w) {
                        (1, 2) => domain = pb.string(end)?,
                        (2, 0) => version = pb.varint(end)? as i64,
                        _ => pb.skip_value(w, end)?,
                    }
                }
                let domain = if domain.is_empty() {
                    "ai.onnx".into()
                } else {
                    domain
                };
                info.opsets.insert(domain, version);
            }
            (14, 2) => {
                let end = pb.sub(len)?;
                let (mut key, mut value) = (String::new(), String::new());
                while let Some((f, w)) = pb.field(end)? {
                    match (f, w) {
                        (1, 2) => key = pb.string(end)?,
                        (2, 2) => value = pb.string(end)?,
                        _ => pb.skip_value(w, end)?,
                    }
                }
                if info.metadata.len() >= MAX_VALUES {
                    return Err(pb.invalid("too many metadata entries"));
                }
                info.metadata.insert(key, value);
            }
            _ => pb.skip_value(wire, len)?,
        }
    }
    info.inputs.retain(|i| !initializer_names.contains(&i.name));
    if info.opsets.is_empty() && info.inputs.is_empty() && info.outputs.is_empty() {
        return Err(Fail::Invalid(
            0,
            "no graph and no opset: not an ONNX model".into(),
        ));
    }
    Ok(info)
}

fn graph<R: Read + Seek>(
    pb: &mut Pb<R>,
    end: u64,
    info: &mut OnnxInfo,
    initializer_names: &mut HashSet<String>,
) -> Result<(), Fail> {
    let mut nodes = 0usize;
    while let Some((field, wire)) = pb.field(end)? {
        match (field, wire) {
            (1, 2) => {
                nodes += 1;
                if nodes > MAX_NODES {
                    return Err(pb.invalid("too many nodes"));
                }
                let node_end = pb.sub(end)?;
                while let Some((f, w)) = pb.field(node_end)? {
                    if (f, w) == (4, 2) {
                        let op = pb.string(node_end)?;
                        if info.operators.len() < MAX_VALUES || info.operators.contains_key(&op) {
                            *info.operators.entry(op).or_default() += 1;
                        }
                    } else {
                        pb.skip_value(w, node_end)?;
                    }
                }
            }
            (5, 2) => {
                info.initializers += 1;
                if info.initializers as usize > MAX_INITIALIZERS {
                    return Err(pb.invalid("too many initializers"));
                }
                let t_end = pb.sub(end)?;
                while let Some((f, w)) = pb.field(t_end)? {
                    if (f, w) == (8, 2) {
                        initializer_names.insert(pb.string(t_end)?);
                    } else {
                        pb.skip_value(w, t_end)?;
                    }
                }
            }
            (11, 2) | (12, 2) => {
                let v_end = pb.sub(end)?;
                let value = value_info(pb, v_end)?;
                let list = if field == 11 {
                    &mut info.inputs
                } else {
                    &mut info.outputs
                };
                if list.len() >= MAX_VALUES {
                    return Err(pb.invalid("too many graph inputs or outputs"));
                }
                list.push(value);
            }
            _ => pb.skip_value(wire, end)?,
        }
    }
    Ok(())
}

fn value_info<R: Read + Seek>(pb: &mut Pb<R>, end: u64) -> Result<TensorInfo, Fail> {
    let mut t = TensorInfo {
        name: String::new(),
        element_type: String::new(),
        shape: Vec::new(),
    };
    while let Some((f, w)) = pb.field(end)? {
        match (f, w) {
            (1, 2) => t.name = pb.string(end)?,
            (2, 2) => {
                // TypeProto: tensor_type (1) -> elem_type (1), shape (2) -> dim (1).
                let type_end = pb.sub(end)?;
                while let Some((f, w)) = pb.field(type_end)? {
                    if (f, w) != (1, 2) {
                        pb.skip_value(w, type_end)?;
                        continue;
                    }
                    let tensor_end = pb.sub(type_end)?;
                    while let Some((f, w)) = pb.field(tensor_end)? {
                        match (f, w) {
                            (1, 0) => t.element_type = element_type(pb.varint(tensor_end)?),
                            (2, 2) => {
                                let shape_end = pb.sub(tensor_end)?;
                                while let Some((f, w)) = pb.field(shape_end)? {
                                    if (f, w) != (1, 2) {
                                        pb.skip_value(w, shape_end)?;
                                        continue;
                                    }
                                    if t.shape.len() >= MAX_DIMS {
                                        return Err(pb.invalid("more than 64 dimensions"));
                                    }
                                    let dim_end = pb.sub(shape_end)?;
                                    let mut dim = Dim::Named(String::new());
                                    while let Some((f, w)) = pb.field(dim_end)? {
                                        match (f, w) {
                                            (1, 0) => dim = Dim::Fixed(pb.varint(dim_end)? as i64),
                                            (2, 2) => dim = Dim::Named(pb.string(dim_end)?),
                                            _ => pb.skip_value(w, dim_end)?,
                                        }
                                    }
                                    t.shape.push(dim);
                                }
                            }
                            _ => pb.skip_value(w, tensor_end)?,
                        }
                    }
                }
            }
            _ => pb.skip_value(w, end)?,
        }
    }
    Ok(t)
}

fn element_type(code: u64) -> String {
    match code {
        1 => "float32",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "float64",
        12 => "uint32",
        13 => "uint64",
        16 => "bfloat16",
        other => return format!("type {other}"),
    }
    .to_string()
}

/// A protobuf reader over a seekable stream, every read bounded by the end of the enclosing
/// message.
struct Pb<R> {
    r: R,
    pos: u64,
}

impl<R: Read + Seek> Pb<R> {
    fn invalid(&self, reason: &str) -> Fail {
        Fail::Invalid(self.pos, reason.to_string())
    }

    /// Fills `buf` from the file (the caller has checked it fits in the enclosing message).
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), Fail> {
        self.r.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.invalid("the file ends in the middle of a value")
            } else {
                Fail::Io(e)
            }
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn byte(&mut self, end: u64) -> Result<u8, Fail> {
        if self.pos >= end {
            return Err(self.invalid("a value runs past the end of its message"));
        }
        let mut b = [0u8; 1];
        self.read_exact(&mut b)?;
        Ok(b[0])
    }

    fn varint(&mut self, end: u64) -> Result<u64, Fail> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte(end)?;
            if shift == 63 && b > 1 {
                return Err(self.invalid("a varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.invalid("a varint longer than 10 bytes"))
    }

    /// The next field's number and wire type, or `None` at `end`.
    fn field(&mut self, end: u64) -> Result<Option<(u64, u8)>, Fail> {
        if self.pos >= end {
            return Ok(None);
        }
        let key = self.varint(end)?;
        Ok(Some((key >> 3, (key & 7) as u8)))
    }

    /// The end of a length-delimited value starting here (its length read and checked).
    fn sub(&mut self, end: u64) -> Result<u64, Fail> {
        let len = self.varint(end)?;
        let sub_end = self.pos.checked_add(len).filter(|e| *e <= end);
        sub_end.ok_or_else(|| self.invalid("a length runs past the end of its message"))
    }

    fn string(&mut self, end: u64) -> Result<String, Fail> {
        let sub_end = self.sub(end)?;
        let len = sub_end - self.pos;
        if len > MAX_STRING {
            return Err(self.invalid("a string over 64 KiB"));
        }
        let mut buf = vec![0u8; len as usize];
        self.read_exact(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn skip_to(&mut self, to: u64) -> Result<(), Fail> {
        let delta = i64::try_from(to - self.pos).map_err(|_| self.invalid("a skip too long"))?;
        self.r.seek(SeekFrom::Current(delta)).map_err(Fail::Io)?;
        self.pos = to;
        Ok(())
    }

    fn skip_value(&mut self, wire: u8, end: u64) -> Result<(), Fail> {
        match wire {
            0 => self.varint(end).map(drop),
            1 | 5 => {
                let to = self.pos + if wire == 1 { 8 } else { 4 };
                if to > end {
                    return Err(self.invalid("a fixed-size value runs past the end of its message"));
                }
                self.skip_to(to)
            }
            2 => {
                let to = self.sub(end)?;
                self.skip_to(to)
            }
            other => Err(self.invalid(&format!("wire type {other} (groups are not used by ONNX)"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn read(bytes: &[u8]) -> Result<OnnxInfo, Fail> {
        read_from(std::io::Cursor::new(bytes), bytes.len() as u64)
    }

    fn reason(r: Result<OnnxInfo, Fail>) -> String {
        match r {
            Err(Fail::Invalid(_, reason)) => reason,
            other => panic!("expected an invalid file, got {other:?}"),
        }
    }

    #[test]
    fn claimed_lengths_beyond_the_file_are_refused_before_anything_is_read() {
        // graph (field 7) claiming 1 TiB, in a 10-byte file.
        let mut b = vec![(7 << 3) | 2];
        varint(1 << 40, &mut b);
        assert!(reason(read(&b)).contains("past the end"));
        // A producer name claiming 100 KiB that the file does hold.
        let mut b = vec![(2 << 3) | 2];
        varint(100 * 1024, &mut b);
        b.resize(b.len() + 100 * 1024, b'a');
        assert!(reason(read(&b)).contains("64 KiB"));
    }

    #[test]
    fn bad_varints_groups_and_empty_files_are_errors() {
        assert!(
            reason(read(&[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
            ]))
            .contains("overflows")
        );
        assert!(reason(read(&[(1 << 3) | 3])).contains("wire type 3"));
        assert!(reason(read(&[])).contains("not an ONNX model"));
    }

    #[test]
    fn shapes_names_and_opsets_are_read_and_the_decoder_fits() {
        // ModelProto { opset_import { version 13 }, graph { output { name "o", type { tensor_type
        // { elem_type 1, shape { dim 1, dim 2535, dim 85 } } } } } }
        let dim = |v: u64| {
            let mut d = vec![(1 << 3)];
            varint(v, &mut d);
            let mut out = vec![(1 << 3) | 2];
            varint(d.len() as u64, &mut out);
            out.extend(d);
            out
        };
        let mut shape = Vec::new();
        for v in [1, 2535, 85] {
            shape.extend(dim(v));
        }
        let wrap = |field: u64, body: Vec<u8>| {
            let mut out = Vec::new();
            varint((field << 3) | 2, &mut out);
            varint(body.len() as u64, &mut out);
            out.extend(body);
            out
        };
        let mut tensor = vec![(1 << 3), 1];
        tensor.extend(wrap(2, shape));
        let mut value = wrap(1, b"o".to_vec());
        value.extend(wrap(2, wrap(1, tensor)));
        let graph = wrap(12, value);
        let mut model = wrap(8, vec![(2 << 3), 13]);
        model.extend(wrap(7, graph));
        let info = read(&model).unwrap();
        assert_eq!(info.opsets["ai.onnx"], 13);
        assert_eq!(info.outputs[0].name, "o");
        assert_eq!(info.outputs[0].element_type, "float32");
        assert_eq!(
            info.outputs[0].shape,
            [Dim::Fixed(1), Dim::Fixed(2535), Dim::Fixed(85)]
        );
        let fit = info.decoder_fit(None).unwrap();
        assert_eq!((fit.decoder, fit.classes), (DecoderKind::Yolov5, Some(80)));
    }
}
