//! TLS for peer links, like etcd's `--peer-cert-file --peer-key-file
//! --peer-trusted-ca-file --peer-client-cert-auth`.
//!
//! A member uses one certificate both to serve and, when dialing, as its client
//! certificate. Peers are verified against the trusted CA; the name checked is the host
//! part of the peer's address (an IP address or a DNS name in the certificate's SAN).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub trusted_ca_file: PathBuf,
    pub client_cert_auth: bool,
}

#[derive(Clone)]
pub struct Tls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

fn open(path: &Path, what: &str) -> Result<BufReader<File>, String> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|e| format!("open {what} {}: {e}", path.display()))
}

fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut open(path, what)?)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("read {what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {} holds no certificate", path.display()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    rustls_pemfile::private_key(&mut open(path, "key file")?)
        .map_err(|e| format!("read key file {}: {e}", path.display()))?
        .ok_or_else(|| format!("key file {} holds no private key", path.display()))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Tls {
    pub fn load(files: &TlsFiles) -> Result<Tls, String> {
        let certs = load_certs(&files.cert_file, "cert file")?;
        let key = load_key(&files.key_file)?;
        let mut roots = RootCertStore::empty();
        for ca in load_certs(&files.trusted_ca_file, "trusted CA file")? {
            roots
                .add(ca)
                .map_err(|e| format!("trusted CA {}: {e}", files.trusted_ca_file.display()))?;
        }
        let roots = Arc::new(roots);

        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?;
        let server = if files.client_cert_auth {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| format!("client certificate verifier: {e}"))?;
            server.with_client_cert_verifier(verifier)
        } else {
            server.with_no_client_auth()
        };
        let server = server
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| format!("server certificate and key: {e}"))?;

        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("client certificate and key: {e}"))?;

        Ok(Tls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// The name to verify for a `host:port` address.
pub fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = match addr.rsplit_once(':') {
        Some((h, _)) => h,
        None => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| format!("server name of {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("127.0.0.1:2380").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]:2380").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("member-1.example:2380").unwrap(),
            ServerName::DnsName(_)
        ));
    }

    #[test]
    fn missing_files_are_clear_errors() {
        let err = Tls::load(&TlsFiles {
            cert_file: "/nonexistent/cert.pem".into(),
            key_file: "/nonexistent/key.pem".into(),
            trusted_ca_file: "/nonexistent/ca.pem".into(),
            client_cert_auth: true,
        })
        .err()
        .unwrap();
        assert!(err.contains("cert file /nonexistent/cert.pem"), "{err}");
    }
}
