//! The accept loop: HTTP/1.1 connections with timeouts and caps, so that idle or slow clients
//! cannot exhaust the process's file descriptors, and a graceful drain on shutdown.
//!
//! `axum::serve` keeps every connection for as long as the client likes; a client holding a
//! thousand idle sockets made the server stop accepting altogether (`Too many open files`).
//! Here every connection must send a complete request head within `header_timeout` (which also
//! bounds how long a keep-alive connection may sit idle), each client address may hold at most
//! `per_ip` connections and the process at most `max`; excess connections are closed at once,
//! so the accept loop never stalls behind them.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// How connections are bounded.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections, all clients together.
    pub max: usize,
    /// Open connections from one client address (0: no per-address cap, for a proxy in front).
    pub per_ip: usize,
    /// Time to send a request's head, counted from the connection's start or the end of the
    /// previous response: both a slow-header and an idle keep-alive timeout.
    pub header_timeout: Duration,
    /// How long shutdown waits for in-flight requests before closing what is left.
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max: 4096,
            per_ip: 256,
            header_timeout: Duration::from_secs(20),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// Caps `max` below the open-file limit, leaving room for database connections, files and
    /// the listener itself.
    pub fn within_file_limit(mut self, open_files: u64) -> Self {
        let room = open_files.saturating_sub(128).max(16);
        self.max = self.max.min(usize::try_from(room).unwrap_or(usize::MAX));
        self
    }
}

/// Raises the soft open-file limit to the hard one (the common default soft limit, 1,024, is
/// far below what a server should hold); returns the limit now in force.
pub fn raise_open_file_limit() -> u64 {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut limit = getrlimit(Resource::Nofile);
        let before = limit.current;
        if limit.current < limit.maximum {
            limit.current = limit.maximum;
            if setrlimit(Resource::Nofile, limit).is_err() {
                limit.current = before;
            }
        }
        limit.current.unwrap_or(u64::MAX)
    }
    #[cfg(not(unix))]
    u64::MAX
}

/// Who holds connections: a count in total and per client address.
#[derive(Clone)]
struct Tracker {
    open: Arc<Mutex<(usize, HashMap<IpAddr, usize>)>>,
    metrics: Arc<Metrics>,
}

/// One admitted connection; dropping it gives the slot back.
struct Slot {
    tracker: Tracker,
    ip: IpAddr,
}

impl Tracker {
    fn new(metrics: Arc<Metrics>) -> Self {
        Tracker { open: Arc::default(), metrics }
    }

    fn admit(&self, ip: IpAddr, limits: &Limits) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, by_ip) = &mut *open;
        let mine = by_ip.get(&ip).copied().unwrap_or(0);
        if *total >= limits.max || (limits.per_ip > 0 && mine >= limits.per_ip) {
            return None;
        }
        *total += 1;
        by_ip.insert(ip, mine + 1);
        self.metrics.connections_open.store(*total as u64, Ordering::Relaxed);
        Some(Slot { tracker: self.clone(), ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.tracker.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, by_ip) = &mut *open;
        *total -= 1;
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
        self.tracker.metrics.connections_open.store(*total as u64, Ordering::Relaxed);
    }
}

/// Turns a raw TCP connection into the stream HTTP is spoken on (TLS, or the socket itself).
pub trait Handshake: Clone + Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn handshake(&self, tcp: TcpStream) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

/// Plain HTTP.
#[derive(Clone)]
pub struct Plain;

impl Handshake for Plain {
    type Stream = TcpStream;
    async fn handshake(&self, tcp: TcpStream) -> std::io::Result<TcpStream> {
        Ok(tcp)
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish for up to `limits.shutdown_timeout`, and returns.
pub async fn serve<H: Handshake>(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    handshake: H,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let tracker = Tracker::new(metrics.clone());
    // Every connection task holds a receiver: `drain_tx.closed()` resolves when all are gone.
    let (drain_tx, drain_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors (or a connection reset before accept): the
                    // pending connection stays queued; pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = tracker.admit(peer.ip(), &limits) else {
            // Closed at once: the client sees a reset rather than a stalled server.
            metrics.connections_refused.inc();
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let handshake = handshake.clone();
        let header_timeout = limits.header_timeout;
        let drain = drain_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            // A TLS handshake is bounded by the same timeout as a request head.
            let stream = match tokio::time::timeout(header_timeout, handshake.handshake(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "handshake failed");
                    return;
                }
                Err(_) => return,
            };
            connection(stream, peer, app, header_timeout, drain).await;
        });
    }
    drop(listener);
    let _ = drain_tx.send(true);
    drop(drain_rx);
    if tokio::time::timeout(limits.shutdown_timeout, drain_tx.closed()).await.is_err() {
        tracing::warn!(
            deadline_secs = limits.shutdown_timeout.as_secs(),
            "requests still running at the shutdown deadline are cut off"
        );
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    mut drain: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    if *drain.borrow() {
        conn.as_mut().graceful_shutdown();
    }
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            return;
        }
        _ = drain.changed() => {}
    }
    // Shutting down: finish the request in flight (if any), then close.
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_address_and_in_total() {
        let limits = Limits { max: 3, per_ip: 2, ..Limits::default() };
        let t = Tracker::new(Arc::default());
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = t.admit(a, &limits).unwrap();
        let _a2 = t.admit(a, &limits).unwrap();
        assert!(t.admit(a, &limits).is_none(), "per address");
        let _b1 = t.admit(b, &limits).unwrap();
        assert!(t.admit(b, &limits).is_none(), "in total");
        drop(a1);
        assert!(t.admit(b, &limits).is_some());
    }

    #[test]
    fn the_cap_stays_below_the_file_limit() {
        assert_eq!(Limits::default().within_file_limit(1024).max, 896);
        assert_eq!(Limits::default().within_file_limit(1 << 20).max, 4096);
    }
}
