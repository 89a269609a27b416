//! `raftkv bench`: an etcd v3 gRPC load generator.
//!
//! A run connects `conns` HTTP/2 connections (round-robin over the endpoints), checks each
//! with one serializable range, then starts `clients` tasks that each keep one call in
//! flight until the run ends: after `total` measured calls, after `duration`, or when
//! stopped. It builds its own tokio runtime (`threads` workers) on its own thread, so the
//! process that asked for the run only waits. Latencies go into per-client histograms
//! merged at the end; the process's CPU time (getrusage) over the measured phase is
//! reported with the results.

pub mod client;
pub mod hist;
pub mod options;
pub mod tls;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::Notify;

use client::{CallError, Caller, Conn, CODE_NAMES, DEADLINE_EXCEEDED, UNAVAILABLE};

/// Pause of a client after an UNAVAILABLE answer (dead connection, no leader, ...).
const UNAVAILABLE_BACKOFF: Duration = Duration::from_millis(50);
use hist::Histogram;
pub use options::{Mix, OpKind, Options, Transport};

/// Why a run could not produce results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenchError {
    /// An option is out of range or malformed.
    Invalid(String),
    /// An endpoint could not be connected to or did not answer the probe call.
    Connect(String),
    /// The runtime or its thread failed.
    Internal(String),
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchError::Invalid(m) | BenchError::Connect(m) | BenchError::Internal(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for BenchError {}

/// Errors of one gRPC code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCount {
    /// Canonical gRPC code name, e.g. `UNAVAILABLE`.
    pub code: &'static str,
    pub count: u64,
    /// The first message seen with this code.
    pub message: String,
}

/// Per-operation counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCount {
    pub ok: u64,
    pub errors: u64,
}

/// What a run measured. Only the measured phase (after warm-up) counts.
#[derive(Debug, Clone)]
pub struct Report {
    pub ok: u64,
    pub errors: u64,
    /// From the start of the measured phase to the end of its last call.
    pub elapsed: Duration,
    pub errors_by_code: Vec<ErrorCount>,
    pub per_op: [OpCount; 3],
    /// Latencies of successful calls, in nanoseconds.
    pub latency: Histogram,
    pub txn_succeeded: u64,
    pub txn_failed: u64,
    /// Process CPU time over the measured phase.
    pub cpu_user: Duration,
    pub cpu_sys: Duration,
    /// Calls completed during warm-up (not in any other figure).
    pub warmup_ops: u64,
    /// Stopped from outside before reaching its bound.
    pub interrupted: bool,
    /// (pid, CPU time over the measured phase) of each `Options::server_pids` process;
    /// None when it could not be read at the end (the process exited).
    pub servers: Vec<(u32, Option<Duration>)>,
}

impl Report {
    pub fn ops(&self) -> u64 {
        self.ok + self.errors
    }
    pub fn cpu(&self) -> Duration {
        self.cpu_user + self.cpu_sys
    }
}

/// Live counters for a progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Measured calls completed so far (ok + errors).
    pub done: u64,
    pub errors: u64,
    /// In the measured phase (false during connect and warm-up).
    pub measuring: bool,
    /// Seconds since the measured phase started (0 before).
    pub elapsed: f64,
}

struct Shared {
    stop: AtomicBool,
    stop_notify: Notify,
    measuring: AtomicBool,
    measure_start: Mutex<Option<Instant>>,
    issued: AtomicU64,
    seq: AtomicU64,
    slot: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
    warmup_done: AtomicU64,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            stop_notify: Notify::new(),
            measuring: AtomicBool::new(false),
            measure_start: Mutex::new(None),
            issued: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            slot: AtomicU64::new(0),
            done: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            warmup_done: AtomicU64::new(0),
        }
    }

    fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.stop_notify.notify_waiters();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Resolves once `request_stop` has been called (immediately if it already was).
    async fn wait_stop(&self) {
        loop {
            let n = self.stop_notify.notified();
            if self.stopped() {
                return;
            }
            n.await;
        }
    }
}

/// A run in progress on its own thread.
pub struct Handle {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Result<Report, BenchError>>,
    thread: Option<JoinHandle<()>>,
    result: Option<Result<Report, BenchError>>,
}

impl Handle {
    pub fn progress(&self) -> Progress {
        let start = *self
            .shared
            .measure_start
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Progress {
            done: self.shared.done.load(Ordering::Relaxed),
            errors: self.shared.errors.load(Ordering::Relaxed),
            measuring: self.shared.measuring.load(Ordering::Relaxed),
            elapsed: start.map_or(0.0, |s| s.elapsed().as_secs_f64()),
        }
    }

    /// Ask the run to end early: no new calls start; calls in flight finish or time out.
    pub fn stop(&self) {
        self.shared.request_stop();
    }

    /// Wait up to `d` for the run to end; Some(result) once it has (and on every later call).
    pub fn wait_timeout(&mut self, d: Duration) -> Option<Result<Report, BenchError>> {
        if self.result.is_none() {
            match self.rx.recv_timeout(d) {
                Ok(r) => self.result = Some(r),
                Err(mpsc::RecvTimeoutError::Timeout) => return None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.result = Some(Err(BenchError::Internal(
                        "the load generator thread died".into(),
                    )))
                }
            }
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
        self.result.clone()
    }

    /// Wait for the end of the run.
    pub fn wait(mut self) -> Result<Report, BenchError> {
        loop {
            if let Some(r) = self.wait_timeout(Duration::from_secs(3600)) {
                return r;
            }
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.shared.request_stop();
            let _ = t.join();
        }
    }
}

/// Validate `opts` and start the run on a new thread.
pub fn start(mut opts: Options) -> Result<Handle, BenchError> {
    opts.validate().map_err(BenchError::Invalid)?;
    let tls = if opts.endpoints.iter().any(|e| e.starts_with("https://")) {
        Some(tls::client_config(&opts.tls).map_err(BenchError::Invalid)?)
    } else {
        None
    };
    let shared = Arc::new(Shared::new());
    let (tx, rx) = mpsc::channel();
    let sh = shared.clone();
    let thread = std::thread::Builder::new()
        .name("raftkv-bench".into())
        .spawn(move || {
            let rt = if opts.threads == 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(opts.threads)
                    .thread_name("raftkv-bench-worker")
                    .enable_all()
                    .build()
            };
            let result = match rt {
                Ok(rt) => {
                    let r = rt.block_on(drive(Arc::new(opts), tls, sh));
                    rt.shutdown_timeout(Duration::from_millis(100));
                    r
                }
                Err(e) => Err(BenchError::Internal(format!(
                    "cannot build the tokio runtime: {e}"
                ))),
            };
            let _ = tx.send(result);
        })
        .map_err(|e| {
            BenchError::Internal(format!("cannot start the load generator thread: {e}"))
        })?;
    Ok(Handle {
        shared,
        rx,
        thread: Some(thread),
        result: None,
    })
}

/// Run to the end on the calling thread's behalf (blocks).
pub fn run(opts: Options) -> Result<Report, BenchError> {
    start(opts)?.wait()
}

/// CPU time (user, system) of the whole process so far.
fn process_cpu() -> (Duration, Duration) {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is always valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return (Duration::ZERO, Duration::ZERO);
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// Keys `prefix + zero-padded decimal number`, all `key_size` bytes long. Small key
/// spaces are laid out once in one buffer so each call's key is a reference-count bump.
struct Keys {
    table: Option<Bytes>,
    prefix: Vec<u8>,
    size: usize,
}

const KEY_TABLE_MAX: u64 = 64 << 20;

impl Keys {
    fn new(opts: &Options) -> Keys {
        let mut k = Keys {
            table: None,
            prefix: opts.key_prefix.clone(),
            size: opts.key_size,
        };
        let bytes = opts.key_space.saturating_mul(opts.key_size as u64);
        if bytes <= KEY_TABLE_MAX {
            let mut buf = BytesMut::with_capacity(bytes as usize);
            for i in 0..opts.key_space {
                k.write(i, &mut buf);
            }
            k.table = Some(buf.freeze());
        }
        k
    }

    fn write(&self, i: u64, buf: &mut BytesMut) {
        buf.put_slice(&self.prefix);
        let width = self.size - self.prefix.len();
        let mut digits = [b'0'; 20];
        let mut v = i;
        let mut n = 0;
        loop {
            digits[19 - n] = b'0' + (v % 10) as u8;
            v /= 10;
            n += 1;
            if v == 0 {
                break;
            }
        }
        buf.put_bytes(b'0', width - n);
        buf.put_slice(&digits[20 - n..]);
    }

    #[inline]
    fn get(&self, i: u64, scratch: &mut BytesMut) -> Bytes {
        match &self.table {
            Some(t) => {
                let at = i as usize * self.size;
                t.slice(at..at + self.size)
            }
            None => {
                scratch.reserve(self.size);
                self.write(i, scratch);
                scratch.split().freeze()
            }
        }
    }
}

/// SplitMix64: small, fast, good enough to spread keys and pick operations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        r.next();
        r
    }

    #[inline]
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    #[inline]
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

#[derive(Default)]
struct ClientStats {
    latency: Histogram,
    per_op: [OpCount; 3],
    errors: Vec<(u32, u64, String)>,
    txn_succeeded: u64,
    txn_failed: u64,
}

impl ClientStats {
    fn error(&mut self, e: CallError) {
        match self.errors.iter_mut().find(|(c, _, _)| *c == e.code) {
            Some(entry) => entry.1 += 1,
            None => self.errors.push((e.code, 1, e.message)),
        }
    }
}

struct Job {
    opts: Arc<Options>,
    keys: Arc<Keys>,
    value: Bytes,
    shared: Arc<Shared>,
    t0: Instant,
}

async fn client_loop(job: Arc<Job>, conn: Conn, id: u64) -> ClientStats {
    let opts = &*job.opts;
    let sh = &*job.shared;
    let mut caller = Caller::new(&conn);
    let mut rng = Rng::new(opts.seed, id);
    let mut scratch = BytesMut::new();
    let mut st = ClientStats::default();
    let single = opts.mix.parts.len() == 1;
    let rearm = opts.timeout + opts.timeout / 10;
    let deadline = tokio::time::sleep(rearm);
    tokio::pin!(deadline);
    loop {
        if sh.stopped() {
            break;
        }
        let measured = sh.measuring.load(Ordering::Acquire);
        if measured {
            if let Some(total) = opts.total {
                if sh.issued.fetch_add(1, Ordering::Relaxed) >= total {
                    break;
                }
            }
        }
        if let Some(rate) = opts.rate {
            let slot = sh.slot.fetch_add(1, Ordering::Relaxed);
            let at = job.t0 + Duration::from_secs_f64(slot as f64 / rate);
            if at > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = sh.wait_stop() => break,
                }
            }
        }
        let kind = if single {
            opts.mix.parts[0].0
        } else {
            opts.mix
                .pick(rng.below(u64::from(opts.mix.total_weight)) as u32)
        };
        let n = if opts.sequential {
            sh.seq.fetch_add(1, Ordering::Relaxed) % opts.key_space
        } else {
            rng.below(opts.key_space)
        };
        let key = job.keys.get(n, &mut scratch);
        let began = Instant::now();
        // One timer per client, re-armed only when it would fire less than `timeout` after
        // this call starts: a call times out after between `timeout` and 1.1 x `timeout`,
        // and most calls pay no timer registration at all.
        if deadline.deadline() < (began + opts.timeout).into() {
            deadline.as_mut().reset((began + rearm).into());
        }
        let res = tokio::select! {
            biased;
            r = caller.call(kind, &key, &job.value, opts.serializable) => r,
            _ = deadline.as_mut() => {
                // The deadline passed while this call was in flight; it ran >= timeout.
                Err(CallError {
                    code: DEADLINE_EXCEEDED,
                    message: format!("no answer within {:?} (client-side timeout)", opts.timeout),
                })
            }
        };
        let took = began.elapsed();
        if !measured {
            sh.warmup_done.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let c = &mut st.per_op[kind.index()];
        match res {
            Ok(ok) => {
                c.ok += 1;
                st.latency.record(took.as_nanos() as u64);
                if kind == OpKind::Txn {
                    if ok.succeeded {
                        st.txn_succeeded += 1;
                    } else {
                        st.txn_failed += 1;
                    }
                }
            }
            Err(e) => {
                c.errors += 1;
                sh.errors.fetch_add(1, Ordering::Relaxed);
                let unavailable = e.code == UNAVAILABLE;
                st.error(e);
                if unavailable {
                    // The connection is gone or refusing: back off instead of spinning.
                    sh.done.fetch_add(1, Ordering::Relaxed);
                    tokio::select! {
                        _ = tokio::time::sleep(UNAVAILABLE_BACKOFF) => {}
                        _ = sh.wait_stop() => break,
                    }
                    continue;
                }
            }
        }
        sh.done.fetch_add(1, Ordering::Relaxed);
    }
    st
}

/// Connect every connection and make one probe call on each; the first failure ends the run.
async fn connect_all(
    opts: &Options,
    tls: Option<&Arc<rustls::ClientConfig>>,
    probe_key: &Bytes,
) -> Result<Vec<Conn>, BenchError> {
    let futs = (0..opts.conns).map(|i| {
        let ep = opts.endpoints[i % opts.endpoints.len()].clone();
        async move {
            let fail = |m: String| BenchError::Connect(format!("endpoint {ep}: {m}"));
            let conn = Conn::connect(opts.transport, &ep, tls, opts.connect_timeout)
                .await
                .map_err(fail)?;
            let mut caller = Caller::new(&conn);
            match tokio::time::timeout(
                opts.connect_timeout,
                caller.call(OpKind::Range, probe_key, &Bytes::new(), true),
            )
            .await
            {
                Ok(Ok(_)) => Ok(conn),
                Ok(Err(e)) => Err(fail(format!(
                    "probe call (serializable Range) failed: {}: {}",
                    CODE_NAMES[e.code as usize], e.message
                ))),
                Err(_) => Err(fail(format!(
                    "probe call (serializable Range) got no answer within {:?}",
                    opts.connect_timeout
                ))),
            }
        }
    });
    futures::future::try_join_all(futs).await
}

async fn drive(
    opts: Arc<Options>,
    tls: Option<Arc<rustls::ClientConfig>>,
    shared: Arc<Shared>,
) -> Result<Report, BenchError> {
    let keys = Arc::new(Keys::new(&opts));
    let probe_key = keys.get(0, &mut BytesMut::new());
    let conns = tokio::select! {
        r = connect_all(&opts, tls.as_ref(), &probe_key) => r?,
        _ = shared.wait_stop() => return Err(BenchError::Connect("stopped while connecting".into())),
    };
    let value = {
        let mut v = BytesMut::with_capacity(opts.value_size);
        let mut rng = Rng::new(opts.seed, u64::MAX);
        for _ in 0..opts.value_size {
            v.put_u8(b'a' + (rng.below(26) as u8));
        }
        v.freeze()
    };
    let t0 = Instant::now();
    let job = Arc::new(Job {
        opts: opts.clone(),
        keys,
        value,
        shared: shared.clone(),
        t0,
    });

    let servers_cpu = || -> Vec<Option<Duration>> {
        opts.server_pids
            .iter()
            .map(|&p| options::process_cpu_of(p))
            .collect()
    };
    let mut servers0 = Vec::new();
    let mut begin_measuring = |sh: &Shared| {
        servers0 = servers_cpu();
        let cpu = process_cpu();
        let now = Instant::now();
        *sh.measure_start.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        sh.measuring.store(true, Ordering::Release);
        (cpu, now)
    };
    let mut mark = None;
    if opts.warmup.is_zero() {
        mark = Some(begin_measuring(&shared));
    }
    let handles: Vec<_> = (0..opts.clients)
        .map(|i| {
            tokio::spawn(client_loop(
                job.clone(),
                conns[i % conns.len()].clone(),
                i as u64,
            ))
        })
        .collect();
    let mut all = Box::pin(futures::future::join_all(handles));
    let mut finished = None;
    if mark.is_none() {
        tokio::select! {
            r = &mut all => finished = Some(r),
            _ = tokio::time::sleep(opts.warmup) => {}
            _ = shared.wait_stop() => {}
        }
        // Even when stopped during warm-up the measured phase "starts" (empty).
        mark = Some(begin_measuring(&shared));
    }
    let ((cpu_u0, cpu_s0), measure_start) = mark.expect("set above");
    if finished.is_none() {
        if let Some(d) = opts.duration {
            tokio::select! {
                r = &mut all => finished = Some(r),
                _ = tokio::time::sleep(d) => shared.request_stop(),
                _ = shared.wait_stop() => {}
            }
        }
    }
    let interrupted_before = shared.stopped();
    let results = match finished {
        Some(r) => r,
        None => all.await,
    };
    let elapsed = measure_start.elapsed();
    let (cpu_u1, cpu_s1) = process_cpu();
    let servers1 = servers_cpu();
    let servers = opts
        .server_pids
        .iter()
        .zip(servers0.iter().zip(&servers1))
        .map(|(&pid, (a, b))| (pid, a.zip(*b).map(|(a, b)| b.saturating_sub(a))))
        .collect();
    let interrupted = interrupted_before && {
        // A stop set by our own duration timer is the normal end, not an interruption.
        let by_timer = opts.duration.is_some_and(|d| elapsed >= d);
        !by_timer
    };

    let mut report = Report {
        ok: 0,
        errors: 0,
        elapsed,
        errors_by_code: Vec::new(),
        per_op: [OpCount::default(); 3],
        latency: Histogram::new(),
        txn_succeeded: 0,
        txn_failed: 0,
        cpu_user: cpu_u1.saturating_sub(cpu_u0),
        cpu_sys: cpu_s1.saturating_sub(cpu_s0),
        warmup_ops: shared.warmup_done.load(Ordering::Relaxed),
        interrupted,
        servers,
    };
    let mut codes: Vec<(u32, u64, String)> = Vec::new();
    for r in results {
        let st = r.map_err(|e| BenchError::Internal(format!("a client task failed: {e}")))?;
        report.latency.merge(&st.latency);
        for (i, c) in st.per_op.iter().enumerate() {
            report.per_op[i].ok += c.ok;
            report.per_op[i].errors += c.errors;
            report.ok += c.ok;
            report.errors += c.errors;
        }
        report.txn_succeeded += st.txn_succeeded;
        report.txn_failed += st.txn_failed;
        for (code, n, msg) in st.errors {
            match codes.iter_mut().find(|(c, _, _)| *c == code) {
                Some(e) => e.1 += n,
                None => codes.push((code, n, msg)),
            }
        }
    }
    codes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    report.errors_by_code = codes
        .into_iter()
        .map(|(c, n, m)| ErrorCount {
            code: CODE_NAMES[c.min(16) as usize],
            count: n,
            message: m,
        })
        .collect();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_size_decimal() {
        let opts = Options {
            key_size: 8,
            key_space: 1000,
            key_prefix: b"b/".to_vec(),
            ..Default::default()
        };
        let k = Keys::new(&opts);
        let mut s = BytesMut::new();
        assert_eq!(&k.get(0, &mut s)[..], b"b/000000");
        assert_eq!(&k.get(999, &mut s)[..], b"b/000999");
        let big = Keys {
            table: None,
            prefix: b"p".to_vec(),
            size: 6,
        };
        assert_eq!(&big.get(42, &mut s)[..], b"p00042");
    }

    #[test]
    fn rng_is_seeded_and_in_range() {
        let mut a = Rng::new(7, 1);
        let mut b = Rng::new(7, 1);
        let mut c = Rng::new(7, 2);
        let xs: Vec<u64> = (0..100).map(|_| a.below(10)).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.below(10)).collect();
        let zs: Vec<u64> = (0..100).map(|_| c.below(10)).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert!(xs.iter().all(|&x| x < 10));
    }

    #[test]
    fn unreachable_endpoint_fails_fast() {
        // Port 1 on loopback: nothing listens there, the connect is refused at once.
        let opts = Options {
            endpoints: vec!["127.0.0.1:1".into()],
            total: Some(10),
            connect_timeout: Duration::from_secs(2),
            ..Default::default()
        };
        let began = Instant::now();
        let err = run(opts).unwrap_err();
        assert!(matches!(err, BenchError::Connect(_)), "{err:?}");
        assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
        assert!(began.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn invalid_options_are_refused_before_starting() {
        let err = run(Options {
            total: Some(1),
            conns: 0,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            err,
            BenchError::Invalid("conns must be 1..=1024, got 0".into())
        );
    }
}
