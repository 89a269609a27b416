//! What a load run does: options, their validation, the operation mix.

use std::fmt;
use std::time::Duration;

/// One kind of request the generator sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `KV/Put` of one key.
    Put,
    /// `KV/Range` over a single key (linearizable or serializable per `Options::serializable`).
    Range,
    /// `KV/Txn`: compare `mod_revision(key) < 2^62` (always true), then put the key.
    Txn,
}

impl OpKind {
    pub const ALL: [OpKind; 3] = [OpKind::Put, OpKind::Range, OpKind::Txn];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Range => "range",
            OpKind::Txn => "txn",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Which HTTP/2 client carries the calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// tonic's `Channel` + `tonic::client::Grpc` + prost codec.
    Tonic,
    /// Plain `h2` streams with hand-framed gRPC messages.
    H2,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tonic => "tonic",
            Transport::H2 => "h2",
        }
    }
}

/// A weighted choice of operations, e.g. `range:90,put:10`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    /// (kind, weight), weights > 0, kinds distinct.
    pub parts: Vec<(OpKind, u32)>,
    pub total_weight: u32,
}

impl Mix {
    pub fn parse(spec: &str) -> Result<Mix, String> {
        let mut parts: Vec<(OpKind, u32)> = Vec::new();
        let spec = spec.trim();
        if spec.is_empty() {
            return Err("workload is empty; use e.g. 'put', 'range' or 'range:90,put:10'".into());
        }
        for item in spec.split(',') {
            let item = item.trim();
            let (name, weight) = match item.split_once(':') {
                Some((n, w)) => {
                    let w: u32 = w.trim().parse().map_err(|_| {
                        format!("workload part {item:?}: weight must be a whole number")
                    })?;
                    (n.trim(), w)
                }
                None => (item, 1),
            };
            let kind = match name {
                "put" => OpKind::Put,
                "range" => OpKind::Range,
                "txn" => OpKind::Txn,
                _ => {
                    return Err(format!(
                        "unknown operation {name:?} in workload {spec:?} (known: put, range, txn)"
                    ))
                }
            };
            if weight == 0 || weight > 1_000_000 {
                return Err(format!(
                    "workload part {item:?}: weight must be 1..=1000000"
                ));
            }
            if parts.iter().any(|(k, _)| *k == kind) {
                return Err(format!(
                    "operation {name:?} appears twice in workload {spec:?}"
                ));
            }
            parts.push((kind, weight));
        }
        let total_weight = parts.iter().map(|(_, w)| w).sum();
        Ok(Mix {
            parts,
            total_weight,
        })
    }

    /// The operation for a uniform draw `r` in `0..total_weight`.
    #[inline]
    pub fn pick(&self, mut r: u32) -> OpKind {
        for &(kind, w) in &self.parts {
            if r < w {
                return kind;
            }
            r -= w;
        }
        self.parts[self.parts.len() - 1].0
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [(k, _)] = self.parts[..] {
            return f.write_str(k.name());
        }
        for (i, (k, w)) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{}", k.name(), w)?;
        }
        Ok(())
    }
}

/// Everything a run needs. Build with `Default` and set fields, then `validate`.
#[derive(Clone, Debug)]
pub struct Options {
    /// `host:port` or `http://host:port`; connections go round-robin over these.
    pub endpoints: Vec<String>,
    /// HTTP/2 connections.
    pub conns: usize,
    /// Concurrent in-flight requests (each a task looping over calls).
    pub clients: usize,
    /// Measured operations to issue (None: bounded by `duration` alone).
    pub total: Option<u64>,
    /// Measured time (None: bounded by `total` alone).
    pub duration: Option<Duration>,
    pub key_size: usize,
    pub value_size: usize,
    pub key_space: u64,
    /// Bytes every key starts with; the rest is the zero-padded decimal key number.
    pub key_prefix: Vec<u8>,
    /// Keys 0, 1, 2, ... in issue order instead of uniform random ones.
    pub sequential: bool,
    pub seed: u64,
    pub mix: Mix,
    /// Ranges (alone or in a mix) are serializable instead of linearizable.
    pub serializable: bool,
    /// Total ops/s across all clients (None: as fast as they go).
    pub rate: Option<f64>,
    /// Load run first and left out of every figure.
    pub warmup: Duration,
    /// Per-call deadline; a call past it counts as DEADLINE_EXCEEDED.
    pub timeout: Duration,
    /// Deadline for connecting and the first probe call on each connection.
    pub connect_timeout: Duration,
    /// Tokio worker threads for the generator (1: a single-threaded runtime).
    pub threads: usize,
    pub transport: Transport,
    /// Server processes (on this machine) whose CPU time over the measured phase is reported.
    pub server_pids: Vec<u32>,
    /// For `https://` endpoints.
    pub tls: super::tls::TlsOptions,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            endpoints: vec!["127.0.0.1:2379".into()],
            conns: 1,
            clients: 1,
            total: None,
            duration: None,
            key_size: 8,
            value_size: 256,
            key_space: 100_000,
            key_prefix: Vec::new(),
            sequential: false,
            seed: 1,
            mix: Mix {
                parts: vec![(OpKind::Put, 1)],
                total_weight: 1,
            },
            serializable: false,
            rate: None,
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            threads: 1,
            transport: Transport::H2,
            server_pids: Vec::new(),
            tls: Default::default(),
        }
    }
}

/// Digits needed to write `n - 1` in decimal (at least 1).
pub fn digits_for(n: u64) -> usize {
    let mut v = n.saturating_sub(1);
    let mut d = 1;
    while v >= 10 {
        v /= 10;
        d += 1;
    }
    d
}

pub const MAX_VALUE_SIZE: usize = 64 << 20;

impl Options {
    /// Check every option; the message names the option and what is allowed.
    pub fn validate(&mut self) -> Result<(), String> {
        if self.endpoints.is_empty() || self.endpoints.iter().any(|e| e.trim().is_empty()) {
            return Err(
                "endpoints: give at least one host:port (empty entries are not allowed)".into(),
            );
        }
        for e in &mut self.endpoints {
            *e = normalize_endpoint(e)?;
        }
        let https = self.endpoints.iter().any(|e| e.starts_with("https://"));
        if https && self.transport == Transport::Tonic {
            return Err("https endpoints need the h2 transport".into());
        }
        if !https && self.tls.any() {
            return Err("TLS options given but no endpoint is https://".into());
        }
        if self.conns == 0 || self.conns > 1024 {
            return Err(format!("conns must be 1..=1024, got {}", self.conns));
        }
        // Each client keeps its own latency histogram (a few KiB): cap the total memory.
        if self.clients == 0 || self.clients > 10_000 {
            return Err(format!("clients must be 1..=10000, got {}", self.clients));
        }
        if self.total.is_none() && self.duration.is_none() {
            return Err(
                "give total operations or a duration (or both); a run must end by itself".into(),
            );
        }
        if self.total == Some(0) {
            return Err("total must be at least 1".into());
        }
        if let Some(d) = self.duration {
            if d.is_zero() || d > Duration::from_secs(7 * 24 * 3600) {
                return Err("duration must be more than 0 and at most a week".into());
            }
        }
        if self.key_space == 0 {
            return Err("key space must be at least 1".into());
        }
        if self.key_size == 0 || self.key_size > 1 << 20 {
            return Err(format!(
                "key size must be 1..=1048576 bytes, got {}",
                self.key_size
            ));
        }
        let digits = digits_for(self.key_space);
        if self.key_prefix.len() + digits > self.key_size {
            return Err(format!(
                "key size {} is too small for prefix {:?} ({} bytes) plus {} digits for key space {}",
                self.key_size,
                String::from_utf8_lossy(&self.key_prefix),
                self.key_prefix.len(),
                digits,
                self.key_space
            ));
        }
        if self.value_size > MAX_VALUE_SIZE {
            return Err(format!("value size must be at most {MAX_VALUE_SIZE} bytes"));
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err(format!("rate must be a positive number of ops/s, got {r}"));
            }
        }
        if self.warmup > Duration::from_secs(24 * 3600) {
            return Err("warmup must be at most a day".into());
        }
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err("timeout and connect timeout must be more than 0".into());
        }
        if self.threads == 0 || self.threads > 64 {
            return Err(format!("threads must be 1..=64, got {}", self.threads));
        }
        if self.mix.parts.is_empty() {
            return Err("workload is empty".into());
        }
        for &pid in &self.server_pids {
            if process_cpu_of(pid).is_none() {
                return Err(format!(
                    "server pid {pid}: no such process (or /proc is unreadable)"
                ));
            }
        }
        Ok(())
    }
}

/// CPU time (user + system) of process `pid` so far, from `/proc/PID/stat`.
pub fn process_cpu_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at the state (field 3);
    // utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let tck = if tck > 0 { tck as u64 } else { 100 };
    Some(Duration::from_secs_f64((utime + stime) as f64 / tck as f64))
}

/// `host:port` → `http://host:port`; `http://` and `https://` kept; anything else is
/// refused clearly.
pub fn normalize_endpoint(e: &str) -> Result<String, String> {
    let e = e.trim().trim_end_matches('/');
    let (scheme, rest) = if let Some(r) = e.strip_prefix("http://") {
        ("http", r)
    } else if let Some(r) = e.strip_prefix("https://") {
        ("https", r)
    } else if e.starts_with("unix:") || e.starts_with("unixs:") {
        return Err(format!(
            "endpoint {e:?}: unix sockets are not supported (use host:port, http:// or https://)"
        ));
    } else if e.contains("://") {
        return Err(format!(
            "endpoint {e:?}: unknown scheme (use host:port or http://host:port)"
        ));
    } else {
        ("http", e)
    };
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("endpoint {e:?}: expected host:port"))?;
    if host.is_empty() || rest.contains('/') {
        return Err(format!("endpoint {e:?}: expected host:port"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(format!("{scheme}://{host}:{p}")),
        _ => Err(format!("endpoint {e:?}: port must be 1..=65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_picks_by_weight() {
        let m = Mix::parse("range:90, put:10").unwrap();
        assert_eq!(m.total_weight, 100);
        assert_eq!(m.pick(0), OpKind::Range);
        assert_eq!(m.pick(89), OpKind::Range);
        assert_eq!(m.pick(90), OpKind::Put);
        assert_eq!(m.pick(99), OpKind::Put);
        assert_eq!(m.to_string(), "range:90,put:10");
        assert_eq!(Mix::parse("put").unwrap().to_string(), "put");
        assert_eq!(Mix::parse("txn").unwrap().parts, vec![(OpKind::Txn, 1)]);
    }

    #[test]
    fn mix_rejects_bad_specs() {
        for (spec, needle) in [
            ("", "empty"),
            ("get", "unknown operation"),
            ("put:x", "whole number"),
            ("put:0", "1..="),
            ("put,put:2", "twice"),
        ] {
            let err = Mix::parse(spec).unwrap_err();
            assert!(err.contains(needle), "{spec:?}: {err}");
        }
    }

    #[test]
    fn endpoints_normalize() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            normalize_endpoint("http://localhost:1/").unwrap(),
            "http://localhost:1"
        );
        assert_eq!(normalize_endpoint("https://x:1").unwrap(), "https://x:1");
        assert!(normalize_endpoint("unix:/a")
            .unwrap_err()
            .contains("unix sockets"));
        assert!(normalize_endpoint("localhost")
            .unwrap_err()
            .contains("host:port"));
        assert!(normalize_endpoint("x:99999").unwrap_err().contains("port"));
    }

    #[test]
    fn validation_names_the_option() {
        let mut o = Options {
            total: Some(10),
            ..Default::default()
        };
        assert!(o.validate().is_ok());
        let mut o = Options::default();
        assert!(o.validate().unwrap_err().contains("duration"));
        let mut o = Options {
            total: Some(1),
            key_size: 4,
            ..Default::default()
        };
        assert!(o
            .validate()
            .unwrap_err()
            .contains("key size 4 is too small"));
        let mut o = Options {
            total: Some(1),
            clients: 0,
            ..Default::default()
        };
        assert!(o.validate().unwrap_err().contains("clients"));
        let mut o = Options {
            total: Some(1),
            server_pids: vec![u32::MAX],
            ..Default::default()
        };
        assert!(o.validate().unwrap_err().contains("no such process"));
        assert!(process_cpu_of(std::process::id()).is_some());
        assert_eq!(digits_for(100_000), 5);
        assert_eq!(digits_for(1), 1);
        assert_eq!(digits_for(11), 2);
    }
}
