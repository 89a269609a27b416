//! The process-wide tokio runtime that runs the network edges off the GIL.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Worker threads: `RAFTKV_NATIVE_THREADS`, else 2 (the Python loop is the third busy thread).
fn worker_threads() -> usize {
    std::env::var("RAFTKV_NATIVE_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(2)
}

pub fn runtime() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(worker_threads())
            .thread_name("raftkv-net")
            .enable_all()
            .build()
            .expect("build the tokio runtime")
    })
}
