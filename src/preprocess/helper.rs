//! A second pre-processing thread (`lookout-preprocess`) that takes half of a frame's rows while
//! the calling thread does the other half.
//!
//! Contract: [`Helper::start`] spawns the thread and allocates its two one-slot channels.
//! [`Helper::join`] hands the helper a borrowed closure, runs the caller's own part, and blocks
//! until the helper is done: no allocation, two futex wake-ups per frame. Dropping the helper
//! ends its thread. If the helper thread is gone (it panicked), its part runs on the caller.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

/// A borrowed closure, its lifetime erased for the trip to the helper thread.
struct Job(*mut (dyn FnMut() + Send + 'static));

// SAFETY: the pointee is `Send` (the closure type says so), and `Helper::join` does not return
// until the helper has finished with it, so the helper never uses it after the borrow ends.
unsafe impl Send for Job {}

/// The helper thread and its channels.
pub struct Helper {
    jobs: Option<Sender<Job>>,
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Helper {
    /// Spawns the helper thread; `None` if the OS refuses a thread.
    pub fn start() -> Option<Self> {
        let (jobs, job_rx) = crossbeam_channel::bounded::<Job>(1);
        let (done_tx, done) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("lookout-preprocess".into())
            .spawn(move || {
                for job in job_rx {
                    // SAFETY: `join` keeps the closure alive and unaliased until it receives on
                    // `done`, which happens only after this call returns.
                    unsafe { (*job.0)() };
                    if done_tx.send(()).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        Some(Self {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }

    /// Runs `theirs` on the helper thread and `ours` on this one; returns when both are done.
    pub fn join(&self, theirs: &mut (dyn FnMut() + Send), ours: impl FnOnce()) {
        let ptr: *mut (dyn FnMut() + Send + '_) = theirs;
        // SAFETY: only the lifetime is erased (same fat-pointer layout); see `Job`.
        let ptr: *mut (dyn FnMut() + Send + 'static) = unsafe { std::mem::transmute(ptr) };
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(Job(ptr)).is_ok());
        ours();
        if !sent || self.done.recv().is_err() {
            // The helper is gone (it dropped its end, so it no longer runs `theirs`): do its
            // part here. Re-running a part is harmless: it only writes its own rows.
            theirs();
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_parts_run_and_the_helper_ends_on_drop() {
        let helper = Helper::start().unwrap();
        let mut a = vec![0u32; 8];
        let mut b = vec![0u32; 8];
        for round in 1..=3u32 {
            let mut theirs = || a.iter_mut().for_each(|v| *v += round);
            helper.join(&mut theirs, || b.iter_mut().for_each(|v| *v += 10 * round));
        }
        assert_eq!(a, vec![6; 8]);
        assert_eq!(b, vec![60; 8]);
        drop(helper);
    }
}
