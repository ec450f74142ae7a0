//! Real-time settings of a thread: CPU affinity and SCHED_FIFO priority (Linux).
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
