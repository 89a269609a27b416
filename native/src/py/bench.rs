//! Bindings for `crate::bench`: `run_bench(endpoints, **options) -> dict`.

use std::time::Duration;

use pyo3::exceptions::{PyConnectionError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::bench::{self, BenchError, Mix, OpKind, Options, Report, Transport};

fn bench_err(e: BenchError) -> PyErr {
    match e {
        BenchError::Invalid(m) => PyValueError::new_err(m),
        BenchError::Connect(m) => PyConnectionError::new_err(m),
        BenchError::Internal(m) => PyRuntimeError::new_err(m),
    }
}

fn seconds(name: &str, v: f64, allow_zero: bool) -> PyResult<Duration> {
    if !v.is_finite() || v < 0.0 || (!allow_zero && v == 0.0) {
        let want = if allow_zero {
            "0 or more"
        } else {
            "more than 0"
        };
        return Err(PyValueError::new_err(format!(
            "{name} must be {want} seconds, got {v}"
        )));
    }
    Duration::try_from_secs_f64(v)
        .map_err(|_| PyValueError::new_err(format!("{name}: {v} seconds is out of range")))
}

/// Histogram bounds on a 1-2-5 series (in ns) from the first bound >= min to the first
/// bound >= max, so every value falls in some row.
fn bounds_125(min: u64, max: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut decade: u64 = 1_000; // 1 µs
    'outer: loop {
        for m in [1, 2, 5] {
            let b = decade * m;
            if b >= min || !out.is_empty() {
                out.push(b);
            }
            if b >= max || out.len() > 40 {
                break 'outer;
            }
        }
        decade = decade.saturating_mul(10);
    }
    out
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn report_dict<'py>(py: Python<'py>, opts: &Options, r: &Report) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let o = PyDict::new(py);
    o.set_item("endpoints", opts.endpoints.clone())?;
    o.set_item("conns", opts.conns)?;
    o.set_item("clients", opts.clients)?;
    o.set_item("total", opts.total)?;
    o.set_item("duration_s", opts.duration.map(|d| d.as_secs_f64()))?;
    o.set_item("key_size", opts.key_size)?;
    o.set_item("value_size", opts.value_size)?;
    o.set_item("key_space", opts.key_space)?;
    o.set_item("key_prefix", String::from_utf8_lossy(&opts.key_prefix))?;
    o.set_item("sequential_keys", opts.sequential)?;
    o.set_item("seed", opts.seed)?;
    o.set_item("workload", opts.mix.to_string())?;
    o.set_item("consistency", if opts.serializable { "s" } else { "l" })?;
    o.set_item("rate", opts.rate)?;
    o.set_item("warmup_s", opts.warmup.as_secs_f64())?;
    o.set_item("timeout_s", opts.timeout.as_secs_f64())?;
    o.set_item("threads", opts.threads)?;
    o.set_item("transport", opts.transport.name())?;
    o.set_item("server_pids", opts.server_pids.clone())?;
    o.set_item("cacert", opts.tls.ca_file.clone())?;
    o.set_item("cert", opts.tls.cert_file.clone())?;
    o.set_item("insecure_skip_tls_verify", opts.tls.insecure_skip_verify)?;
    d.set_item("options", o)?;

    let secs = r.elapsed.as_secs_f64();
    d.set_item("ops", r.ops())?;
    d.set_item("ok", r.ok)?;
    d.set_item("errors", r.errors)?;
    d.set_item("elapsed_s", secs)?;
    d.set_item(
        "ops_per_s",
        if secs > 0.0 { r.ok as f64 / secs } else { 0.0 },
    )?;
    let by_code = PyDict::new(py);
    let messages = PyDict::new(py);
    for e in &r.errors_by_code {
        by_code.set_item(e.code, e.count)?;
        messages.set_item(e.code, &e.message)?;
    }
    d.set_item("errors_by_code", by_code)?;
    d.set_item("error_messages", messages)?;

    let per_op = PyDict::new(py);
    for (kind, _) in &opts.mix.parts {
        let c = r.per_op[kind.index()];
        let x = PyDict::new(py);
        x.set_item("ok", c.ok)?;
        x.set_item("errors", c.errors)?;
        per_op.set_item(kind.name(), x)?;
    }
    d.set_item("per_op", per_op)?;
    if opts.mix.parts.iter().any(|(k, _)| *k == OpKind::Txn) {
        let t = PyDict::new(py);
        t.set_item("succeeded", r.txn_succeeded)?;
        t.set_item("failed", r.txn_failed)?;
        d.set_item("txn", t)?;
    }

    let h = &r.latency;
    let lat = PyDict::new(py);
    lat.set_item("count", h.count())?;
    lat.set_item("mean", h.mean() / 1e6)?;
    lat.set_item("stddev", h.stddev() / 1e6)?;
    lat.set_item("min", ms(h.min()))?;
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)] {
        lat.set_item(name, ms(h.quantile(q)))?;
    }
    lat.set_item("max", ms(h.max()))?;
    d.set_item("latency_ms", lat)?;
    let rows = PyList::empty(py);
    if h.count() > 0 {
        let bounds = bounds_125(h.min(), h.max());
        for (b, n) in bounds.iter().zip(h.bins(&bounds)) {
            let row = PyDict::new(py);
            row.set_item("le_ms", ms(*b))?;
            row.set_item("count", n)?;
            rows.append(row)?;
        }
    }
    d.set_item("histogram", rows)?;

    let cpu = PyDict::new(py);
    let total = r.cpu().as_secs_f64();
    cpu.set_item("user_s", r.cpu_user.as_secs_f64())?;
    cpu.set_item("sys_s", r.cpu_sys.as_secs_f64())?;
    cpu.set_item("total_s", total)?;
    cpu.set_item(
        "us_per_op",
        if r.ops() > 0 {
            total * 1e6 / r.ops() as f64
        } else {
            0.0
        },
    )?;
    cpu.set_item("cores", if secs > 0.0 { total / secs } else { 0.0 })?;
    d.set_item("cpu", cpu)?;
    let servers = PyList::empty(py);
    for (pid, cpu) in &r.servers {
        let x = PyDict::new(py);
        let secs_cpu = cpu.map(|c| c.as_secs_f64());
        x.set_item("pid", pid)?;
        x.set_item("cpu_s", secs_cpu)?;
        x.set_item(
            "us_per_op",
            secs_cpu
                .filter(|_| r.ops() > 0)
                .map(|c| c * 1e6 / r.ops() as f64),
        )?;
        x.set_item("cores", secs_cpu.filter(|_| secs > 0.0).map(|c| c / secs))?;
        servers.append(x)?;
    }
    d.set_item("servers", servers)?;
    d.set_item("warmup_ops", r.warmup_ops)?;
    d.set_item("interrupted", r.interrupted)?;
    Ok(d)
}

/// Run an etcd v3 load test and return its report (see `_native.pyi` for the fields).
/// Blocks without the GIL; calls `progress(done, errors, elapsed_s, measuring)` about 10
/// times a second; Ctrl-C (or an exception from `progress`) stops the run and is re-raised.
#[pyfunction]
#[pyo3(signature = (
    endpoints, *, conns=1, clients=1, total=None, duration=None, key_size=8, value_size=256,
    key_space=100_000, key_prefix="", sequential=false, seed=1, workload="put",
    consistency="l", rate=None, warmup=0.0, timeout=10.0, connect_timeout=3.0, threads=1,
    transport="h2", server_pids=Vec::new(), cacert=None, cert=None, key=None,
    insecure_skip_tls_verify=false, progress=None
))]
#[allow(clippy::too_many_arguments)]
fn run_bench<'py>(
    py: Python<'py>,
    endpoints: Vec<String>,
    conns: usize,
    clients: usize,
    total: Option<u64>,
    duration: Option<f64>,
    key_size: usize,
    value_size: usize,
    key_space: u64,
    key_prefix: &str,
    sequential: bool,
    seed: u64,
    workload: &str,
    consistency: &str,
    rate: Option<f64>,
    warmup: f64,
    timeout: f64,
    connect_timeout: f64,
    threads: usize,
    transport: &str,
    server_pids: Vec<u32>,
    cacert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    insecure_skip_tls_verify: bool,
    progress: Option<PyObject>,
) -> PyResult<Bound<'py, PyDict>> {
    let serializable = match consistency {
        "l" | "linearizable" => false,
        "s" | "serializable" => true,
        other => {
            return Err(PyValueError::new_err(format!(
                "consistency must be 'l' (linearizable) or 's' (serializable), got {other:?}"
            )))
        }
    };
    let transport = match transport {
        "h2" => Transport::H2,
        "tonic" => Transport::Tonic,
        other => {
            return Err(PyValueError::new_err(format!(
                "transport must be 'h2' or 'tonic', got {other:?}"
            )))
        }
    };
    let opts = Options {
        endpoints,
        conns,
        clients,
        total,
        duration: duration
            .map(|d| seconds("duration", d, false))
            .transpose()?,
        key_size,
        value_size,
        key_space,
        key_prefix: key_prefix.as_bytes().to_vec(),
        sequential,
        seed,
        mix: Mix::parse(workload).map_err(PyValueError::new_err)?,
        serializable,
        rate,
        warmup: seconds("warmup", warmup, true)?,
        timeout: seconds("timeout", timeout, false)?,
        connect_timeout: seconds("connect timeout", connect_timeout, false)?,
        threads,
        transport,
        server_pids,
        tls: bench::tls::TlsOptions {
            ca_file: cacert,
            cert_file: cert,
            key_file: key,
            insecure_skip_verify: insecure_skip_tls_verify,
        },
    };
    let mut shown = opts.clone();
    shown.validate().map_err(PyValueError::new_err)?;
    let mut handle = bench::start(opts).map_err(bench_err)?;
    let mut pending: Option<PyErr> = None;
    let result = loop {
        let r = py.allow_threads(|| handle.wait_timeout(Duration::from_millis(100)));
        if let Some(r) = r {
            break r;
        }
        if pending.is_some() {
            continue;
        }
        if let Err(e) = py.check_signals() {
            handle.stop();
            pending = Some(e);
            continue;
        }
        if let Some(cb) = &progress {
            let p = handle.progress();
            if let Err(e) = cb.call1(py, (p.done, p.errors, p.elapsed, p.measuring)) {
                handle.stop();
                pending = Some(e);
            }
        }
    };
    if let Some(e) = pending {
        return Err(e);
    }
    let report = result.map_err(bench_err)?;
    if let Some(cb) = &progress {
        let p = handle.progress();
        cb.call1(py, (p.done, p.errors, report.elapsed.as_secs_f64(), true))?;
    }
    report_dict(py, &shown, &report)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run_bench, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::bounds_125;

    #[test]
    fn bounds_cover_min_to_max() {
        assert_eq!(
            bounds_125(300_000, 1_500_000),
            vec![500_000, 1_000_000, 2_000_000]
        );
        assert_eq!(bounds_125(0, 0), vec![1_000]);
        let b = bounds_125(1_000, 10_000_000_000);
        assert_eq!(*b.first().unwrap(), 1_000);
        assert!(*b.last().unwrap() >= 10_000_000_000);
    }
}
