//! One webhook POST: resolve, check the addresses, connect (TLS for https), send, read a
//! bounded answer, all under one deadline. A connection the receiver keeps open is reused for
//! the next delivery to it within [`IDLE_FOR`]: a burst of events (a busy hour of
//! activations) then costs one TCP and TLS handshake, not one each. The name is resolved and
//! checked on every delivery all the same, and an idle connection is reused only if its peer
//! is among the addresses allowed now.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::{Request, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::target::is_public_address;

/// How much of a receiver's answer is kept (Keygen keeps 2 KiB, else `RES_BODY_TOO_LARGE`).
pub const MAX_RESPONSE_BODY: usize = 2048;

/// Why a POST got no HTTP answer, named as Keygen records it in `lastResponseBody`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Tls,
    Refused,
    Reset,
    Unreachable,
    Dns,
    Eof,
    /// Every address the name resolved to is private, loopback or otherwise not public.
    AddressNotAllowed,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "REQ_TIMEOUT",
            Failure::Tls => "SSL_ERROR",
            Failure::Refused => "CONN_REFUSED",
            Failure::Reset => "CONN_RESET",
            Failure::Unreachable => "HOST_UNREACH",
            Failure::Dns => "DNS_ERROR",
            Failure::Eof => "EOF_ERROR",
            Failure::AddressNotAllowed => "ADDRESS_NOT_ALLOWED",
        }
    }

    /// Whether trying again later may help. As in Keygen, a receiver that refuses or drops
    /// the connection, or a name that no longer resolves, is given up on at once.
    pub fn retryable(self) -> bool {
        matches!(self, Failure::Timeout | Failure::Tls)
    }
}

/// An HTTP answer: status and (at most [`MAX_RESPONSE_BODY`] of) its body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("no system root certificates found: https webhooks will fail with SSL_ERROR");
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(roots).with_no_client_auth());
            Arc::new(config.unwrap_or_else(|_| {
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .expect("TLS 1.3 with ring")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            }))
        })
        .clone()
}

fn io_failure(e: &std::io::Error) -> Failure {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => Failure::Refused,
        ConnectionReset | ConnectionAborted | BrokenPipe => Failure::Reset,
        TimedOut => Failure::Timeout,
        UnexpectedEof => Failure::Eof,
        HostUnreachable | NetworkUnreachable => Failure::Unreachable,
        _ => Failure::Unreachable,
    }
}

fn hyper_failure(e: &hyper::Error) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io_failure(io);
        }
        source = err.source();
    }
    if e.is_incomplete_message() || e.is_canceled() {
        Failure::Eof
    } else {
        Failure::Reset
    }
}

/// POSTs `body` with `headers` to `url` and waits at most `timeout` for the whole exchange.
pub async fn post(
    url: &Uri,
    headers: &[(&'static str, String)],
    body: Bytes,
    allow_insecure: bool,
    timeout: Duration,
) -> Result<Answer, Failure> {
    match tokio::time::timeout(timeout, exchange(url, headers, body, allow_insecure)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Timeout),
    }
}

/// How long an idle connection is kept for the next delivery to the same receiver: under the
/// shortest keep-alive common servers grant (Node's 5 s), so a receiver rarely closes one just
/// as it is reused.
const IDLE_FOR: Duration = Duration::from_secs(4);
/// Idle connections kept per receiver (scheme, host, port).
const IDLE_PER_TARGET: usize = 8;

type Target = (bool, String, u16);

struct Idle {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

fn idle() -> &'static Mutex<HashMap<Target, Vec<Idle>>> {
    static IDLE: OnceLock<Mutex<HashMap<Target, Vec<Idle>>>> = OnceLock::new();
    IDLE.get_or_init(Mutex::default)
}

/// An idle connection to `target` whose peer is one of `allowed`, if any is still open.
fn take_idle(target: &Target, allowed: &[SocketAddr]) -> Option<(SocketAddr, SendRequest<Full<Bytes>>)> {
    let mut pool = idle().lock().unwrap_or_else(|e| e.into_inner());
    // Dropping a sender ends its connection: expired ones go now, whoever they were for.
    pool.retain(|_, conns| {
        conns.retain(|c| c.since.elapsed() < IDLE_FOR && !c.sender.is_closed());
        !conns.is_empty()
    });
    let conns = pool.get_mut(target)?;
    let i = conns.iter().rposition(|c| allowed.contains(&c.addr))?;
    let c = conns.swap_remove(i);
    Some((c.addr, c.sender))
}

fn keep_idle(target: Target, addr: SocketAddr, sender: SendRequest<Full<Bytes>>) {
    let mut pool = idle().lock().unwrap_or_else(|e| e.into_inner());
    let conns = pool.entry(target).or_default();
    if conns.len() < IDLE_PER_TARGET {
        conns.push(Idle { addr, sender, since: Instant::now() });
    }
}

async fn exchange(
    url: &Uri,
    headers: &[(&'static str, String)],
    body: Bytes,
    allow_insecure: bool,
) -> Result<Answer, Failure> {
    let https = url.scheme_str() == Some("https");
    let host = url.host().ok_or(Failure::Dns)?.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addrs: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port)).await.map_err(|_| Failure::Dns)?.collect(),
    };
    if addrs.is_empty() {
        return Err(Failure::Dns);
    }
    let allowed: Vec<SocketAddr> = addrs.into_iter().filter(|a| allow_insecure || is_public_address(a.ip())).collect();
    if allowed.is_empty() {
        return Err(Failure::AddressNotAllowed);
    }
    let path = url.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let authority = url.authority().map(|a| a.as_str()).unwrap_or(&host);
    let request = || {
        let mut request = Request::post(path).header("host", authority);
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        request.body(Full::new(body.clone())).map_err(|_| Failure::Reset)
    };
    let target: Target = (https, host.clone(), port);
    // An idle connection first; if it turns out closed before the request went out, a new one.
    if let Some((addr, mut sender)) = take_idle(&target, &allowed) {
        if sender.ready().await.is_ok() {
            match send(&mut sender, request()?).await {
                Ok((answer, reusable)) => {
                    if reusable {
                        keep_idle(target, addr, sender);
                    }
                    return Ok(answer);
                }
                Err(Some(f)) => return Err(f),
                Err(None) => {}
            }
        }
    }
    let mut last = Failure::Unreachable;
    let mut stream = None;
    for addr in allowed {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                stream = Some((s, addr));
                break;
            }
            Err(e) => last = io_failure(&e),
        }
    }
    let (stream, addr) = stream.ok_or(last)?;
    let _ = stream.set_nodelay(true);
    let mut sender = if https {
        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|_| Failure::Dns)?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()).connect(name, stream).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                Failure::Tls
            } else {
                io_failure(&e)
            }
        })?;
        handshake(TokioIo::new(tls)).await?
    } else {
        handshake(TokioIo::new(stream)).await?
    };
    match send(&mut sender, request()?).await {
        Ok((answer, reusable)) => {
            if reusable {
                keep_idle(target, addr, sender);
            }
            Ok(answer)
        }
        Err(f) => Err(f.unwrap_or(Failure::Reset)),
    }
}

/// An HTTP/1.1 connection over `io`, driven by a task of its own until it closes (the
/// receiver hangs up, or its sender is dropped).
async fn handshake<IO>(io: IO) -> Result<SendRequest<Full<Bytes>>, Failure>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(|e| hyper_failure(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends `request` on `sender` and reads a bounded answer, saying whether the connection may
/// serve another request. `Err(None)`: the request never went out (the connection was closed),
/// so sending it on a new one is safe.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(Answer, bool), Option<Failure>> {
    let response =
        sender.send_request(request).await.map_err(|e| if e.is_canceled() { None } else { Some(hyper_failure(&e)) })?;
    let keep_alive = !response
        .headers()
        .get(axum::http::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let status = response.status().as_u16();
    // Read one byte past the limit to tell "exactly the limit" from "too large". Only a body
    // read to its end leaves the connection fit for another request.
    let (body, whole) = match Limited::new(response.into_body(), MAX_RESPONSE_BODY + 1).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            if bytes.len() > MAX_RESPONSE_BODY {
                ("RES_BODY_TOO_LARGE".to_string(), false)
            } else {
                (String::from_utf8_lossy(&bytes).into_owned(), true)
            }
        }
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            ("RES_BODY_TOO_LARGE".to_string(), false)
        }
        Err(_) => (String::new(), false),
    };
    Ok((Answer { status, body }, whole && keep_alive && !sender.is_closed()))
}
