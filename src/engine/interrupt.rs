//! A request to stop, owned by whoever drives runs (the binary's signal
//! handler, a watch loop, a test) and handed to each run; nothing global.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

type Callback = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Inner {
    set: AtomicBool,
    next_id: AtomicU64,
    /// What to do the moment it is triggered (cancel statements in flight).
    on_trigger: Mutex<Vec<(u64, Callback)>>,
}

/// A cheap, cloneable stop flag with callbacks for the moment it is set.
#[derive(Clone, Default)]
pub struct Interrupt(Arc<Inner>);

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupt")
            .field("set", &self.is_set())
            .finish()
    }
}

impl Interrupt {
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// Asks every run holding this handle to stop, and runs the callbacks.
    pub fn trigger(&self) {
        self.0.set.store(true, Ordering::SeqCst);
        let callbacks = self.0.on_trigger.lock().unwrap_or_else(|p| p.into_inner());
        for (_, cb) in callbacks.iter() {
            cb();
        }
    }

    pub fn is_set(&self) -> bool {
        self.0.set.load(Ordering::SeqCst)
    }

    /// Clears the flag, so the next run (watch) starts afresh.
    pub fn reset(&self) {
        self.0.set.store(false, Ordering::SeqCst);
    }

    /// Runs `cb` when triggered, until the returned guard is dropped.
    pub fn on_trigger(&self, cb: impl Fn() + Send + Sync + 'static) -> TriggerGuard {
        let id = self.0.next_id.fetch_add(1, Ordering::SeqCst);
        self.0
            .on_trigger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, Box::new(cb)));
        TriggerGuard {
            interrupt: self.clone(),
            id,
        }
    }
}

/// Removes its callback from the interrupt when dropped.
pub struct TriggerGuard {
    interrupt: Interrupt,
    id: u64,
}

impl Drop for TriggerGuard {
    fn drop(&mut self) {
        self.interrupt
            .0
            .on_trigger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn callbacks_run_while_registered_and_handles_are_independent() {
        let a = Interrupt::new();
        let b = Interrupt::new();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let guard = a.on_trigger(move || {
            h.fetch_add(1, Ordering::SeqCst);
        });
        b.trigger();
        assert!(!a.is_set());
        a.trigger();
        assert!(a.is_set());
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        drop(guard);
        a.reset();
        a.trigger();
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }
}
