//! TLS for `https://` endpoints (h2 transport), with etcdctl's options: `--cacert`,
//! `--cert`/`--key` (client certificate) and `--insecure-skip-tls-verify`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Where the TLS material comes from (all optional; see `client_config`).
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// PEM file of CA certificates that server certificates must chain to.
    pub ca_file: Option<String>,
    /// PEM client certificate (chain) and its private key, for servers that ask for one.
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// Accept any server certificate (still encrypts; never for anything but tests).
    pub insecure_skip_verify: bool,
}

impl TlsOptions {
    pub fn any(&self) -> bool {
        self.ca_file.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.insecure_skip_verify
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem(path: &str, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {path}: cannot read: {e}"))
}

fn certs_in(path: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_pem(path, what)?;
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {path}: bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} {path}: no certificate in it"));
    }
    Ok(certs)
}

fn key_in(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read_pem(path, "key")?;
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| format!("key {path}: bad PEM: {e}"))?
        .ok_or_else(|| format!("key {path}: no private key in it"))
}

/// Accepts every server certificate; handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client configuration for `https://` endpoints (ALPN `h2`).
pub fn client_config(o: &TlsOptions) -> Result<Arc<ClientConfig>, String> {
    if o.ca_file.is_none() && !o.insecure_skip_verify {
        return Err(
            "https endpoints need --cacert FILE (or --insecure-skip-tls-verify for tests)".into(),
        );
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = if o.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider())))
    } else {
        let path = o.ca_file.as_deref().unwrap_or_default();
        let mut roots = RootCertStore::empty();
        for c in certs_in(path, "CA file")? {
            roots
                .add(c)
                .map_err(|e| format!("CA file {path}: unusable certificate: {e}"))?;
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match (&o.cert_file, &o.key_file) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(certs_in(c, "certificate")?, key_in(k)?)
            .map_err(|e| format!("client certificate {c} and key {k}: {e}"))?,
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("give both --cert and --key, or neither".into()),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The name to verify for `host` (an IP address or a DNS name).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| format!("server name {host:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_a_ca_or_skip_verify() {
        let err = client_config(&TlsOptions::default()).unwrap_err();
        assert!(err.contains("--cacert"), "{err}");
        let skip = TlsOptions {
            insecure_skip_verify: true,
            ..Default::default()
        };
        assert_eq!(
            client_config(&skip).unwrap().alpn_protocols,
            vec![b"h2".to_vec()]
        );
        let half = TlsOptions {
            insecure_skip_verify: true,
            cert_file: Some("/nonexistent".into()),
            ..Default::default()
        };
        assert!(client_config(&half)
            .unwrap_err()
            .contains("both --cert and --key"));
        let missing = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        assert!(client_config(&missing).unwrap_err().contains("cannot read"));
    }

    #[test]
    fn server_names() {
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("[::1]").is_ok());
        assert!(server_name("localhost").is_ok());
    }
}
