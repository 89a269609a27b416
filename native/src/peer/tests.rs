use std::io::{Read, Write};
use std::os::unix::io::RawFd;
use std::time::{Duration, Instant};

use super::*;

fn opts(member: u64) -> PeerOptions {
    let mut o = PeerOptions::new(member, 0xc1, "127.0.0.1:0");
    o.backoff_initial = Duration::from_millis(10);
    o.backoff_max = Duration::from_millis(50);
    o
}

/// Block on the eventfd (poll, bounded) until `done` holds.
fn wait_until(fd: RawFd, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out waiting for {what}");
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(100) as i32) };
    }
}

#[test]
fn jitter_stays_within_half_and_full() {
    let mut j = Jitter::new(42);
    let d = Duration::from_millis(100);
    for _ in 0..1000 {
        let s = j.spread(d);
        assert!(s >= d / 2 && s <= d, "{s:?}");
    }
    let mut a = Jitter::new(7);
    let mut b = Jitter::new(7);
    assert_eq!(a.next(), b.next());
}

#[test]
fn two_transports_exchange_in_order() {
    let a = PeerTransport::start(opts(1), &[]).unwrap();
    let b = PeerTransport::start(opts(2), &[(1, a.local_addr().to_string())]).unwrap();
    a.add_peer(2, b.local_addr().to_string()).unwrap();
    let msgs: Vec<Vec<u8>> = (0u32..500).map(|i| i.to_le_bytes().repeat(10)).collect();
    for chunk in msgs.chunks(50) {
        let batch: Vec<(u64, &[u8])> = chunk.iter().map(|m| (1u64, m.as_slice())).collect();
        b.send_batch(&batch).unwrap();
    }
    let mut got = Vec::new();
    wait_until(a.notify_fd(), "500 frames", || {
        got.extend(a.take_received());
        got.len() >= 500
    });
    assert!(got.iter().all(|(from, _)| *from == 2));
    let bodies: Vec<Vec<u8>> = got.into_iter().map(|(_, b)| b.to_vec()).collect();
    assert_eq!(bodies, msgs);
    let s = b.stats();
    let p = s.peers.iter().find(|p| p.id == 1).unwrap();
    assert_eq!(p.frames_sent, 500);
    assert!(p.writes <= 10 + 1, "{p:?}");
    a.close();
    b.close();
}

#[test]
fn unknown_peer_and_oversized_messages() {
    let a = PeerTransport::start(opts(1), &[]).unwrap();
    let out = a.send_batch(&[(9, b"x".as_slice())]).unwrap();
    assert_eq!(
        out,
        SendOutcome {
            queued: 0,
            dropped: 1
        }
    );
    assert_eq!(a.take_unreachable(), vec![9]);
    let big = vec![0u8; a.max_frame() + 1];
    assert!(matches!(
        a.send_batch(&[(9, big.as_slice())]),
        Err(PeerError::Invalid(_))
    ));
    a.close();
    assert_eq!(a.send_batch(&[]), Err(PeerError::Closed));
}

#[test]
fn garbage_from_a_raw_socket_closes_only_that_connection() {
    let a = PeerTransport::start(opts(1), &[]).unwrap();
    let mut raw = std::net::TcpStream::connect(a.local_addr()).unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        .unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sink = Vec::new();
    // The transport closes the connection: EOF (or a reset) ends the read.
    let _ = raw.read_to_end(&mut sink);
    let mut events = Vec::new();
    wait_until(a.notify_fd(), "a rejected event", || {
        events.extend(a.take_events());
        events.iter().any(|e| e.kind == "rejected")
    });
    let e = events.iter().find(|e| e.kind == "rejected").unwrap();
    assert!(e.detail.contains("oversized frame"), "{e:?}");

    // Still serving.
    let b = PeerTransport::start(opts(2), &[(1, a.local_addr().to_string())]).unwrap();
    b.send_batch(&[(1, b"after garbage".as_slice())]).unwrap();
    let mut got = Vec::new();
    wait_until(a.notify_fd(), "a frame", || {
        got.extend(a.take_received());
        !got.is_empty()
    });
    assert_eq!(&got[0].1[..], b"after garbage");
    b.close();
    a.close();
}

#[test]
fn wrong_cluster_is_refused_on_both_sides() {
    let a = PeerTransport::start(opts(1), &[]).unwrap();
    let mut o = opts(2);
    o.cluster_id = 0xbad;
    let b = PeerTransport::start(o, &[(1, a.local_addr().to_string())]).unwrap();
    let mut ev_a = Vec::new();
    wait_until(a.notify_fd(), "refusal", || {
        ev_a.extend(a.take_events());
        ev_a.iter().any(|e| e.kind == "rejected")
    });
    let mut ev_b = Vec::new();
    wait_until(b.notify_fd(), "connect failure", || {
        ev_b.extend(b.take_events());
        ev_b.iter().any(|e| e.kind == "connect_failed")
    });
    let ra = ev_a.iter().find(|e| e.kind == "rejected").unwrap();
    assert!(ra.detail.contains("cluster id mismatch"), "{ra:?}");
    assert_eq!(ra.peer, 2);
    let rb = ev_b.iter().find(|e| e.kind == "connect_failed").unwrap();
    assert!(rb.detail.contains("cluster id mismatch"), "{rb:?}");
    b.close();
    a.close();
}
