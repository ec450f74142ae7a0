//! Real-time settings of a thread: CPU affinity and SCHED_FIFO priority, or the background
//! priority of a helper that must not compete with the frame path (Linux).
//!
//! Applied by each thread to itself at start. The OS may refuse (no CAP_SYS_NICE, a CPU that does
//! not exist, a container's cgroup): then the refusal is logged once and the thread runs with the
//! normal scheduler; it is never fatal.
//!
//! Contract: one system call each, at thread start; no allocation except the log line.

use crate::config::ThreadConfig;

/// What applying a [`ThreadConfig`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Affinity set (false: none asked, or refused).
    pub affinity: bool,
    /// SCHED_FIFO set (false: none asked, or refused).
    pub fifo: bool,
}

/// Applies `config` to the calling thread, logging each refusal once (here: once per thread).
pub fn apply(thread: &str, config: &ThreadConfig) -> Applied {
    let mut applied = Applied {
        affinity: false,
        fifo: false,
    };
    if !config.cpu_affinity.is_empty() {
        // SAFETY: `cpu_set_t` is a plain bit array; zeroed is its empty value, CPU_SET only
        // writes inside it (CPUs are validated to 0..1024 = CPU_SETSIZE at start-up), and
        // sched_setaffinity(0, ..) reads `size_of::<cpu_set_t>()` bytes of it for this thread.
        let rc = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for cpu in &config.cpu_affinity {
                libc::CPU_SET(*cpu as usize, &mut set);
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        if rc == 0 {
            applied.affinity = true;
        } else {
            tracing::warn!(thread, cpus = ?config.cpu_affinity, error = %std::io::Error::last_os_error(), "CPU affinity refused; running on any CPU");
        }
    }
    if config.sched_fifo_priority > 0 {
        let param = libc::sched_param {
            sched_priority: config.sched_fifo_priority as i32,
        };
        // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 is this thread.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
        if rc == 0 {
            applied.fifo = true;
        } else {
            tracing::warn!(thread, priority = config.sched_fifo_priority, error = %std::io::Error::last_os_error(), "SCHED_FIFO refused (needs CAP_SYS_NICE or an rtprio limit); running with the normal scheduler");
        }
    }
    applied
}

/// Lowers the calling thread to the lowest normal priority (nice 19), for work that only has to
/// keep ahead (reading a bag) and must not take a core from the frame being processed. Returns
/// whether the OS agreed; a refusal is logged at debug level and changes nothing else.
pub fn background(thread: &str) -> bool {
    nice(thread, 19)
}

/// Sets the calling thread's nice value (0 normal .. 19 lowest): under CFS a thread at nice 10
/// gets about a tenth of a core another thread at nice 0 wants, and all the time nobody wants.
/// Threads it starts inherit the value, and an unprivileged thread cannot lower it again.
/// Returns whether the OS agreed; a refusal is logged at debug level and changes nothing else.
pub fn nice(thread: &str, value: i32) -> bool {
    // SAFETY: gettid has no preconditions and returns the calling thread's id.
    let tid = unsafe { libc::gettid() };
    // SAFETY: a plain system call on this thread's id; no memory is passed. On Linux,
    // PRIO_PROCESS with a thread id sets that one thread's nice value.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, value) };
    if rc != 0 {
        tracing::debug!(thread, value, error = %std::io::Error::last_os_error(), "changing the thread's nice value refused");
    }
    rc == 0
}

/// Puts the calling thread under `SCHED_IDLE`: it runs only on CPU time no other thread wants
/// (the shadow model, a model being loaded for a swap). An unprivileged thread cannot leave it
/// again, and threads it starts inherit it (see [`crate::core::threads`]). Returns whether the
/// OS agreed; a refusal is logged once here as WARN and changes nothing else.
pub fn idle_priority(thread: &str) -> bool {
    // SAFETY: sched_param is a plain struct (priority 0 is the only valid one for SCHED_IDLE);
    // sched_setscheduler(0, ..) changes only the calling thread and reads the struct.
    let rc = unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param)
    };
    if rc != 0 {
        tracing::warn!(thread, error = %std::io::Error::last_os_error(), "SCHED_IDLE refused; the thread runs at normal priority");
    }
    rc == 0
}

/// Returns the heap's free pages to the OS (glibc `malloc_trim`): loading a model frees tens of
/// MB in the middle of the heap (parsed copies of the graph and weights) that the allocator
/// would otherwise keep resident for the life of the process. Call after start-up, never per
/// frame (it walks the heap). Does nothing where the C library is not glibc.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only hands free heap pages back to the OS; it takes no pointers and
    // is thread-safe (it locks each arena).
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_asked_nothing_done() {
        assert_eq!(
            apply("t", &ThreadConfig::default()),
            Applied {
                affinity: false,
                fifo: false
            }
        );
    }

    /// Applies `config` in a fresh thread (so the test runner's thread is not changed).
    fn apply_in_thread(config: ThreadConfig) -> Applied {
        std::thread::Builder::new()
            .name("rt-test".into())
            .spawn(move || apply("rt-test", &config))
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn background_lowers_only_the_calling_thread() {
        let niceness = || {
            // SAFETY: gettid/getpriority take no memory; errno is not consulted (19 and 0 are
            // not the -1 error value).
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        };
        let before = niceness();
        let (lowered, after) = std::thread::Builder::new()
            .name("rt-test".into())
            .spawn(move || (background("rt-test"), niceness()))
            .unwrap()
            .join()
            .unwrap();
        assert!(lowered);
        assert_eq!(after, 19);
        assert_eq!(niceness(), before, "the caller's priority must not change");
    }

    #[test]
    fn affinity_to_cpu_zero_is_accepted() {
        let cfg = ThreadConfig {
            cpu_affinity: vec![0],
            sched_fifo_priority: 0,
        };
        assert!(apply_in_thread(cfg).affinity);
    }

    #[test]
    fn a_refused_setting_is_not_fatal() {
        // CPU 1023 does not exist here: refused, logged, and the call returns normally.
        let cfg = ThreadConfig {
            cpu_affinity: vec![1023],
            sched_fifo_priority: 0,
        };
        assert!(!apply_in_thread(cfg).affinity);
    }
}
