//! TLS for the pipelined read connections, checking the server as sqlx checks it for the
//! writes' connections (the same rustls and ring): under `prefer` and `require` the link
//! is encrypted and the handshake's signatures are checked, but not the certificate
//! (libpq's meaning too); under `verify-ca` the certificate must chain to a trusted root,
//! and under `verify-full` also name the host. The trusted roots are sqlx's: the webpki
//! roots and the certificates of `sslrootcert`.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// `prefer`, `require`: none of it.
    Nothing,
    /// `verify-ca`: that it chains to a trusted root.
    Chain,
    /// `verify-full`: that, and that it names the host.
    ChainAndName,
}

/// The connector for every `sslmode` the pipelines take; under `disable` tokio-postgres
/// never asks for TLS, and under `prefer` it goes on in the clear when the server has
/// none. `roots_pem`: the certificates of `sslrootcert`, trusted beside the webpki roots.
pub fn connector(check: Check, roots_pem: Option<&[u8]>) -> Result<MakeRustlsConnect, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Verifier {
        chain: match check {
            Check::Nothing => None,
            Check::Chain | Check::ChainAndName => Some(webpki(&provider, roots_pem)?),
        },
        names_checked: check == Check::ChainAndName,
        algorithms: provider.signature_verification_algorithms,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn webpki(
    provider: &Arc<CryptoProvider>,
    roots_pem: Option<&[u8]>,
) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
    let mut roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for certificate in CertificateDer::pem_slice_iter(roots_pem.unwrap_or_default()) {
        let certificate =
            certificate.map_err(|e| rustls::Error::General(format!("sslrootcert is not a PEM certificate: {e}")))?;
        roots.add(certificate)?;
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))
}

/// The server's certificate checked as far as `Check` says; the handshake's signatures
/// always, with the same algorithms the webpki check uses.
#[derive(Debug)]
struct Verifier {
    /// The webpki check of the chain (and name), or none.
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// A name mismatch is refused only under `verify-full`, as sqlx refuses it.
    names_checked: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names_checked => Ok(ServerCertVerified::assertion()),
            checked => checked,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
