//! A second pre-processing thread (`lookout-preprocess`) that runs a part of a frame's work
//! (bands of rows it takes from the top) while the calling thread does the rest.
//!
//! Contract: [`Helper::start`] spawns the thread. [`Helper::join`] hands the helper a borrowed
//! closure, runs the caller's own part, and blocks until the helper is done: a mutex and two
//! condition variables (futexes), so no allocation per frame. Dropping the helper ends its
//! thread. If the helper thread is gone (it panicked), its part runs on the caller.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// A borrowed closure, its lifetime erased for the trip to the helper thread.
struct Job(*mut (dyn FnMut() + Send + 'static));

// SAFETY: the pointee is `Send` (the closure type says so), and `Helper::join` does not return
// until the helper has finished with it, so the helper never uses it after the borrow ends.
unsafe impl Send for Job {}

#[derive(Default)]
struct State {
    job: Option<Job>,
    done: bool,
    quit: bool,
    /// The helper thread has ended (normally or by a panic).
    gone: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    job_ready: Condvar,
    job_done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is never held while a job runs, so it cannot be poisoned by one; recover
        // the state anyway rather than propagate a poison.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Marks the helper gone when its thread ends, also by unwinding, and wakes a waiting caller.
struct Gone<'a>(&'a Shared);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        self.0.lock().gone = true;
        self.0.job_done.notify_all();
    }
}

/// The helper thread and what it shares with the caller.
pub struct Helper {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Helper {
    /// Spawns the helper thread; `None` if the OS refuses a thread.
    pub fn start() -> Option<Self> {
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        // Through the spawner when one is entered: a model loaded at idle priority for a swap
        // must not pass that priority to the thread that pre-processes every frame after it.
        let thread = crate::core::threads::spawn("lookout-preprocess", move || {
            let shared = &*theirs;
            let _gone = Gone(shared);
            loop {
                let job = {
                    let mut s = shared.lock();
                    loop {
                        if s.quit {
                            return;
                        }
                        if let Some(job) = s.job.take() {
                            break job;
                        }
                        s = shared.job_ready.wait(s).unwrap_or_else(|p| p.into_inner());
                    }
                };
                // SAFETY: `join` keeps the closure alive and unaliased until it sees `done`,
                // which is set only after this call returns.
                unsafe { (*job.0)() };
                shared.lock().done = true;
                shared.job_done.notify_one();
            }
        })
        .ok()?;
        Some(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Runs `theirs` on the helper thread and `ours` on this one; returns when both are done.
    pub fn join(&self, theirs: &mut (dyn FnMut() + Send), ours: impl FnOnce()) {
        let ptr: *mut (dyn FnMut() + Send + '_) = theirs;
        // SAFETY: only the lifetime is erased (same fat-pointer layout); see `Job`.
        let ptr: *mut (dyn FnMut() + Send + 'static) = unsafe { std::mem::transmute(ptr) };
        let sent = {
            let mut s = self.shared.lock();
            if s.gone {
                false
            } else {
                s.job = Some(Job(ptr));
                s.done = false;
                true
            }
        };
        if sent {
            self.shared.job_ready.notify_one();
        }
        ours();
        let finished = sent && {
            let mut s = self.shared.lock();
            while !s.done && !s.gone {
                s = self
                    .shared
                    .job_done
                    .wait(s)
                    .unwrap_or_else(|p| p.into_inner());
            }
            // A job the helper never took must not be left for it.
            s.job = None;
            s.done
        };
        if !finished {
            // The helper is gone (no longer running `theirs`): do its part here. Re-running a
            // part is harmless: it only writes its own rows.
            theirs();
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.shared.lock().quit = true;
        self.shared.job_ready.notify_all();
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
        for round in 1..=50u32 {
            let mut theirs = || a.iter_mut().for_each(|v| *v += round);
            helper.join(&mut theirs, || b.iter_mut().for_each(|v| *v += 10 * round));
        }
        assert_eq!(a, vec![1275; 8]);
        assert_eq!(b, vec![12750; 8]);
        drop(helper);
    }

    #[test]
    fn a_panicking_helper_leaves_its_part_to_the_caller() {
        let helper = Helper::start().unwrap();
        let mut calls = 0;
        let mut first = true;
        let mut theirs = || {
            calls += 1;
            if std::mem::take(&mut first) {
                panic!("helper part fails once (expected in this test)");
            }
        };
        helper.join(&mut theirs, || {});
        assert_eq!(calls, 2, "ran on the helper (panicked), then on the caller");
        let mut again = 0;
        helper.join(&mut || again += 1, || {});
        assert_eq!(again, 1);
    }
}
