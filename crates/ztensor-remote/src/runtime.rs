//! The tokio runtime remote reads run on: made on first use (never at
//! import), and made again in a forked child, whose copy of the parent's
//! runtime has no threads.

use std::sync::{Arc, Mutex};

use tokio::runtime::Runtime;

/// This process's runtime, built on first use.
pub(crate) fn get() -> std::io::Result<Arc<Runtime>> {
    static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);
    let me = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((pid, rt)) = &*slot {
        if *pid == me {
            return Ok(rt.clone());
        }
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("ztensor-remote")
            .enable_all()
            .build()?,
    );
    // A parent's runtime must not be dropped in the child: dropping it
    // would wait for threads this process does not have.
    std::mem::forget(slot.replace((me, rt.clone())));
    Ok(rt)
}
