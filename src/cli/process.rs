//! What the process sets up before any command runs: logging, the runtime,
//! and the signals that stop it.

/// Waits for SIGINT or SIGTERM; gives its name and the shell's exit code
/// for it. Never returns if the handlers cannot be installed.
pub async fn termination_signal() -> (&'static str, u8) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => ("SIGINT", 130),
        _ = terminate.recv() => ("SIGTERM", 143),
    }
}

/// One thread: a single-threaded event loop. More: a work-stealing runtime
/// with that many workers. 0: one worker per core.
pub fn build_runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    match worker_threads {
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        0 => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    }
}

/// A single-threaded runtime on a thread of its own: a node serves its
/// readers there, beside the thread that runs its replication (see
/// `NodeConfig::readers`). Dropping it ends its tasks.
pub struct ReadersRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ReadersRuntime {
    pub fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new().name("gavel-readers".into()).spawn(move || {
            yield_to_replication();
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })?;
        Ok(ReadersRuntime { handle, stop: Some(stop) })
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

/// How much nicer the readers' thread is than the replication's: when both
/// want a core, the scheduler gives the replication's about nine tenths of
/// it (weights 1,024 and 110 ten steps apart), so a bid waits less on the
/// watchers' work; alone, the readers still have a whole core. The HTTP
/// API runs there too: its bids' own HTTP work yields with the readers,
/// their replication does not.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const READERS_NICER_BY: libc::c_int = 10;

/// Lowers the calling thread's scheduling priority by [`READERS_NICER_BY`]
/// (the kernel stops at 19). On Linux `nice` changes the calling thread
/// alone; elsewhere it would lower the whole process, so it does nothing
/// there. A failure costs only the isolation, so it is logged, not fatal.
fn yield_to_replication() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: errno is the calling thread's own; nice takes and returns
        // a plain integer. It returns the new value, which may be -1: only
        // errno tells a failure.
        let failed = unsafe {
            *libc::__errno_location() = 0;
            libc::nice(READERS_NICER_BY) == -1 && *libc::__errno_location() != 0
        };
        if failed {
            tracing::warn!(error = %std::io::Error::last_os_error(), "could not lower the readers' thread's priority");
        }
    }
}

impl Drop for ReadersRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Logs go to stderr; stdout carries the program's answers.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour).init();
}
