//! The engine's input and output tensors for every batch size it runs: one input buffer of
//! `batch` frames, viewed as a tensor of its first `k` frames for each `k` in `1..=batch`, and
//! one preallocated output tensor per `k`. A run of `k` frames reads frames `0..k` of the buffer
//! and writes its own output, so nothing is copied and nothing is allocated per run.
//!
//! Contract: [`BatchIo::new`] allocates everything (the input in pinned host memory for a GPU
//! provider, when it can be had). Nothing else here allocates.

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{OutputSelector, RunOptions, Session};
use ort::value::{Shape, Tensor, TensorRefMut};

use crate::core::model::Model;

/// Where the input and output tensors live: `cuda_pinned` (page-locked host memory the GPU
/// copies by DMA) or `cpu` (ordinary memory).
pub(super) const IO_MEMORY_PINNED: &str = "cuda_pinned";
pub(super) const IO_MEMORY_CPU: &str = "cpu";

/// The input buffer and its views. Field order matters: the views are dropped before the
/// buffer they point into.
pub(super) struct BatchIo {
    /// `views[k - 1]`: the first `k` frames of `input`, shaped `[k, ...]`.
    views: Vec<TensorRefMut<'static, f32>>,
    /// `[batch, ...]`: every frame slot of a run.
    input: Tensor<f32>,
    /// Values of one frame's input.
    pub(super) frame_len: usize,
    /// Values of one frame's output.
    pub(super) output_frame_len: usize,
    /// `cuda_pinned` or `cpu`.
    pub(super) io_memory: &'static str,
}

impl BatchIo {
    /// The input buffer for `batch` frames with its views, and one run options per batch size
    /// (index `k - 1`) with its preallocated output `[k, ...]`. With `pinned`, the input is in
    /// pinned host memory from the session's CUDA allocator (its copy to the device is then one
    /// direct DMA transfer, with no staging copy in the driver), falling back to ordinary memory
    /// with a warning if pinned memory cannot be had. Outputs are always in ordinary memory:
    /// ONNX Runtime 1.31 writes a CUDA node's output straight into a pinned fetch and then fails
    /// its own copy step (`GPUDataTransfer::CopyTensorAsync: dst_data != src_data`), seen on an
    /// H200.
    pub(super) fn new(
        session: &Session,
        model: &Model,
        batch: usize,
        pinned: bool,
        device_id: i32,
    ) -> Result<(Self, Vec<RunOptions<ort::session::HasSelectedOutputs>>), ort::Error> {
        let m = &model.manifest;
        let batch = batch.max(1);
        let input_shape = shape_of(batch, &m.input.shape);
        let (mut input, io_memory) = input_tensor(session, input_shape, pinned, device_id)?;
        let frame_len: usize = m.input.shape.iter().product();
        let info = input.memory_info().to_owned();
        let data = input.data_ptr_mut();
        let mut views = Vec::with_capacity(batch);
        for k in 1..=batch {
            // SAFETY: `data` points at `batch * frame_len` f32 values, allocated above by the
            // CPU allocator or CUDA's pinned host allocator (host memory described by `info`);
            // a view of the first `k <= batch` frames stays inside it. The views live in the
            // same struct as `input`, declared before it, so they are dropped first and never
            // outlive the buffer; the buffer is never reallocated.
            let view = unsafe {
                TensorRefMut::<f32>::from_raw(
                    info.clone(),
                    data,
                    Shape::new(shape_of(k, &m.input.shape)),
                )
            }?;
            views.push(view);
        }
        let mut options = Vec::with_capacity(batch);
        for k in 1..=batch {
            let output = Tensor::<f32>::new(&Allocator::default(), shape_of(k, &m.output.shape))?;
            options.push(
                RunOptions::new()?.with_outputs(
                    OutputSelector::no_default()
                        .with(m.output.name.clone())
                        .preallocate(m.output.name.clone(), output),
                ),
            );
        }
        Ok((
            Self {
                views,
                input,
                frame_len,
                output_frame_len: m.output.shape.iter().product(),
                io_memory,
            },
            options,
        ))
    }

    /// Frames one run can take.
    pub(super) fn batch(&self) -> usize {
        self.views.len()
    }

    /// The input of a run of `frames` frames (`1..=batch`).
    pub(super) fn input(&self, frames: usize) -> Option<&Tensor<f32>> {
        self.views.get(frames.wrapping_sub(1)).map(|v| &**v)
    }

    /// Frame slot `slot`'s part of the input buffer (`slot < batch`), to be filled before a run.
    pub(super) fn slot_mut(&mut self, slot: usize) -> Option<&mut [f32]> {
        if slot >= self.batch() {
            return None;
        }
        // ort's own accessors refuse pinned memory (not "CPU" to them), so the slice is made
        // from the tensor's data pointer.
        let data = self.input.data_ptr_mut().cast::<f32>();
        // SAFETY: the buffer holds `batch * frame_len` f32 values (allocated in `new` by the CPU
        // allocator or CUDA's pinned host allocator: host-addressable and aligned for f32) and
        // `slot < batch`, so the slice is inside it. The `&mut self` borrow makes it the only
        // reference; ONNX Runtime reads the buffer only inside a run, which takes the engine by
        // `&mut` too.
        Some(unsafe {
            std::slice::from_raw_parts_mut(data.add(slot * self.frame_len), self.frame_len)
        })
    }
}

/// `one` (a shape of batch 1) with `frames` as its first dimension.
fn shape_of<const N: usize>(frames: usize, one: &[usize; N]) -> [i64; N] {
    let mut s = one.map(|d| d as i64);
    if let Some(first) = s.first_mut() {
        *first = frames as i64;
    }
    s
}

/// The input tensor of `shape`, pinned when asked and possible.
fn input_tensor(
    session: &Session,
    shape: [i64; 4],
    pinned: bool,
    device_id: i32,
) -> Result<(Tensor<f32>, &'static str), ort::Error> {
    if pinned {
        let mut errors = Vec::new();
        for memory_type in [MemoryType::CPUOutput, MemoryType::CPUInput] {
            let pinned = MemoryInfo::new(
                AllocationDevice::CUDA_PINNED,
                device_id,
                AllocatorType::Device,
                memory_type,
            )
            .and_then(|info| Allocator::new(session, info))
            .and_then(|a| Tensor::<f32>::new(&a, shape));
            match pinned {
                Ok(input) => return Ok((input, IO_MEMORY_PINNED)),
                Err(e) => errors.push(format!("{memory_type:?}: {e}")),
            }
        }
        tracing::warn!(
            errors = %errors.join("; "),
            "no pinned host memory from ONNX Runtime: frames are copied to the GPU from ordinary memory"
        );
    }
    Ok((
        Tensor::<f32>::new(&Allocator::default(), shape)?,
        IO_MEMORY_CPU,
    ))
}
