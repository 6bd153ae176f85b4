//! A process-wide, graceful stop on SIGINT (Ctrl-C) and SIGTERM (`kill`, a scheduler's
//! timeout).
//!
//! A batch run can take hours; killing it outright loses the batch in flight and leaves the
//! user guessing what was done. After [`install`], the first SIGINT or SIGTERM only sets a
//! flag: the batch dispatcher ([`crate::dispatch::run_batches`]) stops taking new batches once
//! it sees [`requested`], the batches already running finish, and every item never run comes
//! back as an "interrupted" error, so the run can report (and later resume) what it did.
//!
//! A second signal, of either kind, ends the process at once with exit code 130, so a user is
//! never stuck waiting for a batch that will not finish (a hung device, a huge last batch).
//!
//! The flag is global on purpose: a signal belongs to the process, not to one stage. Tests use
//! [`request_for_test`] and [`reset_for_test`] instead of sending signals.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The exit code of a forced quit (128 + SIGINT, as shells report a Ctrl-C'd command).
pub const FORCED_EXIT_CODE: i32 = 130;

#[cfg(unix)]
const SIGINT: i32 = signal_hook::consts::SIGINT;
#[cfg(unix)]
const SIGTERM: i32 = signal_hook::consts::SIGTERM;
// The C runtime's numbers elsewhere (Windows has the same two).
#[cfg(not(unix))]
const SIGINT: i32 = 2;
#[cfg(not(unix))]
const SIGTERM: i32 = 15;

/// Set by the first signal (or [`request_for_test`]); read by [`requested`].
static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The number of the signal that set [`REQUESTED`]; 0 while none has.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Whether [`install`] has registered the handlers (installing twice would register twice).
#[cfg(unix)]
static INSTALLED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

/// Registers the SIGINT and SIGTERM handlers (once; later calls do nothing). On targets
/// without Unix signals this is a no-op: the default handling (the process ends) stays.
///
/// # Errors
///
/// The operating system refused a handler (it cannot for these two signals in practice).
pub fn install() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::sync::Arc;
        let mut installed = INSTALLED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *installed {
            return Ok(());
        }
        // Set only by a real signal (not by `request_for_test`), so only a second *signal*
        // forces the exit.
        let signalled = Arc::new(AtomicBool::new(false));
        for signal in [SIGINT, SIGTERM] {
            // Registered first, so it runs before the flag setter below: on the first signal
            // `signalled` is still false and nothing exits; on the second it is true.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                FORCED_EXIT_CODE,
                Arc::clone(&signalled),
            )?;
            let signalled = Arc::clone(&signalled);
            // SAFETY: the action only does atomic loads and stores, which are
            // async-signal-safe; it neither allocates, locks, nor panics.
            unsafe {
                signal_hook::low_level::register(signal, move || {
                    // Keep the first signal's number if both kinds arrive.
                    let _ = SIGNAL.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
                    REQUESTED.store(true, Ordering::SeqCst);
                    signalled.store(true, Ordering::SeqCst);
                })?;
            }
        }
        *installed = true;
    }
    Ok(())
}

/// Whether a graceful stop has been requested: long loops check this between units of work
/// and stop taking new ones.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// The signal that requested the stop ("SIGINT" or "SIGTERM"), for the log line and the
/// manifest; `None` while no stop is requested.
pub fn signal_name() -> Option<&'static str> {
    if !requested() {
        return None;
    }
    match SIGNAL.load(Ordering::SeqCst) {
        SIGINT => Some("SIGINT"),
        SIGTERM => Some("SIGTERM"),
        _ => None,
    }
}

/// Test-only API (public so integration tests can use it): requests a stop as if SIGTERM had
/// arrived, without sending a signal. It does not arm the forced quit.
pub fn request_for_test() {
    let _ = SIGNAL.compare_exchange(0, SIGTERM, Ordering::SeqCst, Ordering::SeqCst);
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Test-only API (public so integration tests can use it): clears a requested stop, so later
/// work in the same process runs normally.
pub fn reset_for_test() {
    SIGNAL.store(0, Ordering::SeqCst);
    REQUESTED.store(false, Ordering::SeqCst);
}

/// Serialises the unit tests (of any module) that set the global flag, so they do not see each
/// other's. Code under test that must not see the flag at all opts out instead (see
/// `crate::dispatch`).
#[cfg(test)]
pub(crate) static TEST_FLAG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
pub(crate) fn lock_flag_for_test() -> std::sync::MutexGuard<'static, ()> {
    TEST_FLAG_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resets the flag even when an assertion fails, so one failure does not cascade.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            reset_for_test();
        }
    }

    #[test]
    fn request_and_reset_for_tests() {
        let _guard = lock_flag_for_test();
        let _reset = Reset;
        reset_for_test();
        assert!(!requested());
        assert_eq!(signal_name(), None);
        request_for_test();
        assert!(requested());
        assert_eq!(signal_name(), Some("SIGTERM"));
        reset_for_test();
        assert!(!requested());
        assert_eq!(signal_name(), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_real_signal_sets_the_flag_and_the_first_signal_is_kept() {
        let _guard = lock_flag_for_test();
        let _reset = Reset;
        reset_for_test();
        install().unwrap();
        install().unwrap(); // idempotent: a second install registers nothing more
        signal_hook::low_level::raise(SIGINT).unwrap();
        // The handler runs before raise returns for a signal sent to this thread.
        let start = std::time::Instant::now();
        while !requested() && start.elapsed().as_secs() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(requested());
        assert_eq!(signal_name(), Some("SIGINT"));
        // Not raised again here: a second signal would (by design) end the test process.
    }
}
