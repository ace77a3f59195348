//! TLS the way libpq's sslmode asks for it, with rustls: nothing verified
//! for `prefer`/`require` (unless a root certificate is given for
//! `require`), the chain for `verify-ca`, the chain and the host name for
//! `verify-full`; a client certificate when one is configured.
//!
//! rustls rather than the platform's OpenSSL: no system root store is read
//! unless `sslrootcert=system` asks for it (OpenSSL's connector parsed the
//! whole system bundle on every build, ~30 ms, most of a short command's
//! fixed cost), no libssl headers to build against, and client keys in any
//! PEM form (PKCS#1, PKCS#8, SEC1).

use super::TlsMode;
use crate::error::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::Path;
use std::sync::Arc;

/// What fkctl hands the postgres client (and the cancel request).
pub type Tls = tokio_postgres_rustls::MakeRustlsConnect;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any server certificate but still checks that the server holds
/// its key (the handshake signatures): libpq's `prefer` and `require`.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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

/// The chain, not the name: libpq's `verify-ca` (and `require` with a root
/// certificate).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The roots to verify against: a PEM file, or the system's store for
/// `sslrootcert=system`.
fn roots(path: &Path) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    if path.as_os_str() == "system" {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = store.add(cert);
        }
    } else {
        let pem = std::fs::read(path).map_err(|e| {
            Error::usage(format!("cannot read sslrootcert {}: {e}", path.display()))
        })?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| {
                Error::usage(format!(
                    "sslrootcert {} holds no usable certificate: {e}",
                    path.display()
                ))
            })?;
            // A certificate webpki cannot use as a trust anchor is skipped,
            // as OpenSSL would; none at all is an error below.
            let _ = store.add(cert);
        }
    }
    if store.is_empty() {
        return Err(Error::usage(format!(
            "sslrootcert {} holds no usable certificate",
            path.display()
        )));
    }
    Ok(store)
}

/// The client certificate chain and key, both PEM; the key may be PKCS#1,
/// PKCS#8 or SEC1 (not encrypted).
fn client_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let cert_pem = std::fs::read(cert)
        .map_err(|e| Error::usage(format!("cannot read sslcert {}: {e}", cert.display())))?;
    let chain = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::usage(format!(
                "sslcert {}: not a PEM certificate: {e}",
                cert.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(Error::usage(format!(
            "sslcert {} holds no certificate",
            cert.display()
        )));
    }
    let key_pem = std::fs::read(key)
        .map_err(|e| Error::usage(format!("cannot read sslkey {}: {e}", key.display())))?;
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| Error::usage(format!("sslkey {}: {e}", key.display())))?
        .ok_or_else(|| {
            Error::usage(format!(
                "sslkey {} holds no unencrypted private key (PEM: PKCS#1, PKCS#8 or SEC1)",
                key.display()
            ))
        })?;
    Ok((chain, key_der))
}

/// The rustls configuration for one (sslmode, sslrootcert, client certificate).
pub fn connector(
    mode: TlsMode,
    root_cert: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
) -> Result<Tls> {
    let provider = provider();
    // libpq verifies the chain for verify-ca and verify-full, and for
    // require when a root certificate is available; never otherwise.
    let verify_chain = match mode {
        TlsMode::VerifyCa | TlsMode::VerifyFull => true,
        TlsMode::Require => root_cert.is_some(),
        _ => false,
    };
    let verifier: Arc<dyn ServerCertVerifier> = if verify_chain {
        let Some(path) = root_cert else {
            return Err(Error::usage(format!(
                "sslmode={} needs a root certificate: set sslrootcert=/path/to/root.crt (or sslrootcert=system), or create ~/.postgresql/root.crt",
                if mode == TlsMode::VerifyCa { "verify-ca" } else { "verify-full" }
            )));
        };
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(path)?), provider.clone())
                .build()
                .map_err(|e| Error::usage(format!("sslrootcert {}: {e}", path.display())))?;
        if mode == TlsMode::VerifyFull {
            webpki
        } else {
            Arc::new(ChainOnly(webpki))
        }
    } else {
        Arc::new(Unverified(provider.clone()))
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match client_cert {
        Some((cert, key)) => {
            let (chain, key_der) = client_identity(cert, key)?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                Error::usage(format!(
                    "sslcert {} with sslkey {}: not a usable certificate and key: {e}",
                    cert.display(),
                    key.display()
                ))
            })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}
