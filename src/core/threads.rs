//! The threads the detector starts for itself (ONNX Runtime's intra-op pool, the pre-processing
//! helper), and where they take their scheduling from.
//!
//! On Linux a new thread inherits its creator's scheduling policy and nice value. A model loaded
//! in the background for a hot swap is built on `lookout-load`, which runs at nice 19 so that the
//! load takes little of the cores inference wants. The threads that model's session and
//! pre-processor start must not inherit that: after the swap they run every frame, and an
//! unprivileged process cannot raise a thread's priority again. While a [`SpawnerGuard`] is held
//! on a thread, [`spawn`] there hands the start to the `lookout-spawn` thread ([`Spawner`]),
//! which runs at the priority the process started with.
//!
//! ```
//! use std::sync::atomic::AtomicBool;
//! use std::sync::Arc;
//! use lookout::core::threads::{spawn, Spawner};
//!
//! let stop = Arc::new(AtomicBool::new(false));
//! let (spawner, factory) = Spawner::start(Arc::clone(&stop)).unwrap();
//! let guard = spawner.enter();
//! let worker = spawn("lookout-doc", || ()).unwrap(); // started by lookout-spawn
//! worker.join().unwrap();
//! drop(guard);
//! stop.store(true, std::sync::atomic::Ordering::Relaxed);
//! factory.join().unwrap();
//! ```
//!
//! Contract: [`spawn`] allocates (the thread, its name, the request) and blocks until the thread
//! exists; it is for start-up and model loading, never for the per-frame path. It fails when the
//! OS refuses a thread or the `lookout-spawn` thread has stopped.

use std::cell::RefCell;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// Stack of every thread started here: glibc's default for a pthread (what ONNX Runtime's own
/// threads get), not Rust's 2 MiB. Address space, not resident memory.
const STACK_BYTES: usize = 8 << 20;

type Work = Box<dyn FnOnce() + Send + 'static>;

struct Request {
    name: String,
    work: Work,
    reply: Sender<io::Result<JoinHandle<()>>>,
}

/// Starts threads on `lookout-spawn` for the threads that [`enter`](Self::enter) it.
#[derive(Clone)]
pub struct Spawner {
    requests: Sender<Request>,
}

/// While it lives, [`spawn`] on this thread goes through its [`Spawner`].
pub struct SpawnerGuard {
    before: Option<Spawner>,
}

thread_local! {
    static VIA: RefCell<Option<Spawner>> = const { RefCell::new(None) };
}

impl Spawner {
    /// Starts `lookout-spawn` on the calling thread's scheduling (call it from a thread at the
    /// process's normal priority); it ends when `stop` is set. Returns the spawner and the
    /// thread's handle.
    pub fn start(stop: Arc<AtomicBool>) -> io::Result<(Self, JoinHandle<()>)> {
        // A rendezvous: a request is either taken by `lookout-spawn` or fails as disconnected
        // once it has stopped; none can be left in a buffer with its requester waiting.
        let (requests, incoming) = crossbeam_channel::bounded(0);
        let handle = std::thread::Builder::new()
            .name("lookout-spawn".into())
            .spawn(move || serve(&incoming, &stop))?;
        Ok((Self { requests }, handle))
    }

    /// Routes [`spawn`] on the calling thread through this spawner until the guard is dropped.
    pub fn enter(&self) -> SpawnerGuard {
        let before = VIA.with(|v| v.borrow_mut().replace(self.clone()));
        SpawnerGuard { before }
    }

    fn spawn(&self, name: &str, work: Work) -> io::Result<JoinHandle<()>> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let stopped = || io::Error::other("the lookout-spawn thread has stopped");
        self.requests
            .send(Request {
                name: name.to_string(),
                work,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }
}

impl Drop for SpawnerGuard {
    fn drop(&mut self) {
        let before = self.before.take();
        VIA.with(|v| *v.borrow_mut() = before);
    }
}

fn serve(incoming: &Receiver<Request>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match incoming.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => {
                let started = start_here(&r.name, r.work);
                // The requester waits on this bounded(1) reply; it never fills.
                let _ = r.reply.try_send(started);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn start_here(name: &str, work: Work) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(STACK_BYTES)
        .spawn(work)
}

/// Starts a thread named `name` running `work`: on `lookout-spawn` when the calling thread holds
/// a [`SpawnerGuard`], else on the calling thread (inheriting its scheduling).
pub fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    let via = VIA.with(|v| v.borrow().clone());
    match via {
        Some(spawner) => spawner.spawn(name, Box::new(work)),
        None => start_here(name, Box::new(work)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice() -> i32 {
        // SAFETY: getpriority reads this thread's nice value (PRIO_PROCESS with a thread id is
        // one thread on Linux); no memory is passed.
        unsafe {
            let tid = libc::gettid();
            libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t)
        }
    }

    #[test]
    fn threads_started_through_the_spawner_keep_its_priority_not_the_callers() {
        let stop = Arc::new(AtomicBool::new(false));
        let (spawner, factory) = Spawner::start(Arc::clone(&stop)).unwrap();
        let normal = nice();
        let (direct, routed) = std::thread::Builder::new()
            .name("threads-test".into())
            .spawn(move || {
                assert!(crate::runtime::realtime::background("threads-test"));
                let child_nice = |guard: Option<SpawnerGuard>| {
                    let (tx, rx) = crossbeam_channel::bounded(1);
                    spawn("threads-child", move || {
                        let _ = tx.send(nice());
                    })
                    .unwrap()
                    .join()
                    .unwrap();
                    drop(guard);
                    rx.recv().unwrap()
                };
                let direct = child_nice(None);
                let routed = child_nice(Some(spawner.enter()));
                (direct, routed)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(direct, 19, "a thread started directly inherits nice 19");
        assert_eq!(
            routed, normal,
            "a routed thread has the spawner's nice value"
        );
        stop.store(true, Ordering::Relaxed);
        factory.join().unwrap();
    }

    #[test]
    fn a_stopped_spawner_is_an_error_not_a_hang() {
        let stop = Arc::new(AtomicBool::new(true));
        let (spawner, factory) = Spawner::start(stop).unwrap();
        factory.join().unwrap();
        let _guard = spawner.enter();
        assert!(spawn("threads-child", || ()).is_err());
    }
}
