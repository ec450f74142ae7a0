//! A counting global allocator for the allocation tests. Each test binary that uses it declares
//! `#[global_allocator] static GLOBAL: counting::Counting = counting::Counting;`.
//!
//! Two ways to arm it: [`allocations_in`] counts what one closure allocates on the calling
//! thread (other tests of the binary may run meanwhile); [`allocations_anywhere_in`] counts every
//! thread's allocations (only in a binary that runs one test at a time).
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Forwards to the system allocator, counting allocations and reallocations while armed.
pub struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ARMED_EVERYWHERE: AtomicBool = AtomicBool::new(false);

thread_local! {
    static ARMED_HERE: Cell<bool> = const { Cell::new(false) };
    /// This thread's allocations while armed here: its own count, so that tests running at
    /// the same time (the positive control allocates while armed) do not add to each other's.
    static HERE: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    if ARMED_EVERYWHERE.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
    // `try_with`: the allocator may run while thread-locals are being torn down.
    if ARMED_HERE.try_with(Cell::get).unwrap_or(false) {
        let _ = HERE.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: forwards every call unchanged to the system allocator; the counting has no effect on
// the memory returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations made by `f` on this thread.
pub fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = HERE.with(Cell::get);
    ARMED_HERE.with(|a| a.set(true));
    f();
    ARMED_HERE.with(|a| a.set(false));
    HERE.with(Cell::get) - before
}

/// Allocations made by any thread while `f` runs.
pub fn allocations_anywhere_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    ARMED_EVERYWHERE.store(true, Ordering::SeqCst);
    f();
    ARMED_EVERYWHERE.store(false, Ordering::SeqCst);
    ALLOCATIONS.load(Ordering::SeqCst) - before
}
