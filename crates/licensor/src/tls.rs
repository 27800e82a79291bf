//! HTTPS without a proxy: a certificate chain and key in PEM files, re-read on SIGHUP and when
//! either file changes (checked every two seconds), so a renewed certificate (certbot, an ACME
//! client, a secrets manager) is served without a restart. A file that fails to load leaves
//! the previous certificate in service and is logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;

/// How often the files are checked for changes.
const WATCH_EVERY: Duration = Duration::from_secs(2);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a chain and its private key.
fn load(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no certificate", cert.display());
    }
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("{} is not a PEM private key", key.display()))?;
    let signer =
        provider().key_provider.load_private_key(key).map_err(|e| anyhow::anyhow!("unsupported private key: {e}"))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|e| anyhow::anyhow!("the key does not match the certificate: {e}"))?;
    Ok(certified)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The certificate in service, swapped on reload.
#[derive(Debug)]
struct Current {
    cert: PathBuf,
    key: PathBuf,
    served: RwLock<Arc<CertifiedKey>>,
    stamps: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.served.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The TLS side of the listener.
#[derive(Clone)]
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    current: Arc<Current>,
}

impl Tls {
    pub fn new(cert: &Path, key: &Path) -> anyhow::Result<Tls> {
        let current = Arc::new(Current {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            served: RwLock::new(Arc::new(load(cert, key)?)),
            stamps: Mutex::new((modified(cert), modified(key))),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)), current })
    }

    /// Re-reads the files; on failure the served certificate stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let c = &self.current;
        let fresh = load(&c.cert, &c.key)?;
        *c.served.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        *c.stamps.lock().unwrap_or_else(|e| e.into_inner()) = (modified(&c.cert), modified(&c.key));
        tracing::info!(cert = %c.cert.display(), "TLS certificate reloaded");
        Ok(())
    }

    fn changed(&self) -> bool {
        let c = &self.current;
        *c.stamps.lock().unwrap_or_else(|e| e.into_inner()) != (modified(&c.cert), modified(&c.key))
    }

    /// Reloads on SIGHUP and when the files change, until the process ends.
    pub fn watch(&self) {
        let tls = self.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(WATCH_EVERY);
            loop {
                #[cfg(unix)]
                let signalled = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await.is_some(),
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let signalled = std::future::pending::<bool>();
                let reload = tokio::select! {
                    _ = tick.tick() => tls.changed(),
                    s = signalled => s,
                };
                if reload {
                    if let Err(e) = tls.reload() {
                        tracing::error!(error = %format!("{e:#}"), "TLS certificate not reloaded; the previous one stays in service");
                    }
                }
            }
        });
    }
}

impl crate::server::Handshake for Tls {
    type Stream = tokio_rustls::server::TlsStream<TcpStream>;
    async fn handshake(&self, tcp: TcpStream) -> std::io::Result<Self::Stream> {
        self.acceptor.accept(tcp).await
    }
}

/// A client for `licensor healthcheck` that trusts exactly the certificate in `cert` (the one
/// the server is configured with), whatever name it was issued for: the check connects to a
/// loopback address that the certificate need not name.
pub fn pinned_client(cert: &Path) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let pinned: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read {}", cert.display()))?
        .collect::<Result<_, _>>()?;
    let provider = provider();
    let verifier = Arc::new(Pinned { pinned, provider: provider.clone() });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[derive(Debug)]
struct Pinned {
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self.pinned.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("the server presented another certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
