//! Supervision of a node's worker threads: a worker that ends while the node is running (a
//! panic, or a loop that returned) must not leave the node running headless. The executor asks
//! [`Workers::first_gone`] on every turn; the node then reports ERROR on /diagnostics, logs why
//! and exits non-zero, so that a launch file's `respawn` brings it back.
//!
//! Fault injection for tests: `LOOKOUT_FAULT_INFER_PANIC_AFTER=N` makes the inference thread
//! panic after N frames ([`fault_infer_panic_after`]), `LOOKOUT_FAULT_RUN_FAILURES=N` makes its
//! first N inference runs fail ([`fault_run_failures`]); unset, nothing changes.
//!
//! Contract: [`Workers::first_gone`] is a few atomic loads, no allocation; joining allocates the
//! panic message.

use std::any::Any;
use std::thread::JoinHandle;

/// The text of a panic payload (`panic!` with a literal or a formatted message).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked (no message)".to_string()
    }
}

/// Test hook: the first N inference runs fail as if ONNX Runtime had returned an error
/// (`LOOKOUT_FAULT_RUN_FAILURES=N`), to exercise the session rebuild. Unset: 0. Read once at
/// start-up.
pub fn fault_run_failures() -> u64 {
    std::env::var("LOOKOUT_FAULT_RUN_FAILURES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Frames after which the inference thread panics, from `LOOKOUT_FAULT_INFER_PANIC_AFTER`
/// (tests of the supervision only). Read once at start-up.
pub fn fault_infer_panic_after() -> Option<u64> {
    std::env::var("LOOKOUT_FAULT_INFER_PANIC_AFTER")
        .ok()?
        .parse()
        .ok()
}

/// How long an interrupted replay waits before finishing its output, from
/// `LOOKOUT_FAULT_FINISH_DELAY_MS` (tests of a second Ctrl-C only: the finish is otherwise too
/// quick for a test to signal into it reliably).
pub fn fault_finish_delay() -> Option<std::time::Duration> {
    let ms: u64 = std::env::var("LOOKOUT_FAULT_FINISH_DELAY_MS")
        .ok()?
        .parse()
        .ok()?;
    Some(std::time::Duration::from_millis(ms.min(60_000)))
}

/// A frame the inference thread holds up, from `LOOKOUT_FAULT_SLOW_FRAME=N:MS` (tests of deadline
/// misses and incident capture only): the `N`th frame taken (from 1) waits `MS` ms (at most 60 s)
/// before its inference. Read once at start-up.
pub fn fault_slow_frame() -> Option<(u64, std::time::Duration)> {
    let v = std::env::var("LOOKOUT_FAULT_SLOW_FRAME").ok()?;
    let (n, ms) = v.split_once(':')?;
    let ms: u64 = ms.parse().ok()?;
    Some((
        n.parse().ok()?,
        std::time::Duration::from_millis(ms.min(60_000)),
    ))
}

/// The worker threads of a node, by name.
#[derive(Default)]
pub struct Workers {
    threads: Vec<(&'static str, JoinHandle<()>)>,
}

impl Workers {
    /// Adds a running worker.
    pub fn push(&mut self, name: &'static str, handle: JoinHandle<()>) {
        self.threads.push((name, handle));
    }

    /// The first worker (in the order added) that has ended, if any.
    pub fn first_gone(&self) -> Option<&'static str> {
        self.threads
            .iter()
            .find(|(_, h)| h.is_finished())
            .map(|(name, _)| *name)
    }

    /// Wakes every worker (they check the stop flag when woken).
    pub fn unpark_all(&self) {
        for (_, h) in &self.threads {
            h.thread().unpark();
        }
    }

    /// Joins every worker, in order; returns each one that panicked with its message.
    pub fn join_all(self) -> Vec<(&'static str, String)> {
        self.threads
            .into_iter()
            .filter_map(|(name, h)| h.join().err().map(|p| (name, panic_message(p.as_ref()))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_worker_is_seen_and_its_panic_message_kept() {
        let mut w = Workers::default();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = std::sync::Arc::clone(&stop);
        w.push(
            "alive",
            std::thread::Builder::new()
                .name("alive".into())
                .spawn(move || {
                    while !s.load(std::sync::atomic::Ordering::Relaxed) {
                        std::thread::park();
                    }
                })
                .unwrap(),
        );
        w.push(
            "dies",
            std::thread::Builder::new()
                .name("dies".into())
                .spawn(|| panic!("worker fails (expected in this test): {}", 42))
                .unwrap(),
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while w.first_gone().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(w.first_gone(), Some("dies"));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        w.unpark_all();
        let dead = w.join_all();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].0, "dies");
        assert!(dead[0].1.contains("worker fails"), "{}", dead[0].1);
    }
}
