//! Mutual TLS for cluster traffic: every node presents a certificate
//! signed by the cluster's certificate authority and accepts only peers
//! that do, so cluster connections are authenticated both ways and
//! encrypted. The cluster key is still checked inside the TLS session.
//!
//! Certificates and keys are PEM files. A node's certificate names the
//! host other nodes reach it by (an IP address or DNS name in its subject
//! alternative names): a node checks the certificate of the node it
//! calls against the host of that node's cluster address.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Where a node's TLS material is.
#[derive(Clone, Debug)]
pub struct ClusterTls {
    /// This node's certificate (with its chain), PEM.
    pub cert: PathBuf,
    /// This node's private key, PEM.
    pub key: PathBuf,
    /// The certificate authority that signs every node's certificate, PEM.
    pub ca: PathBuf,
}

/// The loaded material: an acceptor for connections from other nodes and
/// a connector for connections to them.
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

/// Why the TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cluster TLS: {what} {path}: {reason}")]
pub struct TlsError {
    what: &'static str,
    path: PathBuf,
    reason: String,
}

fn error(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError {
        what,
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

impl Tls {
    pub(crate) fn load(paths: &ClusterTls) -> Result<Tls, TlsError> {
        let certs = |path: &Path, what| -> Result<Vec<CertificateDer<'static>>, TlsError> {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| error(what, path, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| error(what, path, e))?;
            if certs.is_empty() {
                return Err(error(what, path, "no certificate in the file"));
            }
            Ok(certs)
        };
        let chain = certs(&paths.cert, "certificate")?;
        let key = PrivateKeyDer::from_pem_file(&paths.key)
            .map_err(|e| error("private key", &paths.key, e))?;
        let mut roots = RootCertStore::empty();
        for ca in certs(&paths.ca, "certificate authority")? {
            roots
                .add(ca)
                .map_err(|e| error("certificate authority", &paths.ca, e))?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::clone(&roots),
            Arc::clone(&provider),
        )
        .build()
        .map_err(|e| error("certificate authority", &paths.ca, e))?;
        let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| error("certificate", &paths.cert, e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| error("certificate", &paths.cert, e))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| error("certificate", &paths.cert, e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| error("certificate", &paths.cert, e))?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    pub(crate) fn connector(&self) -> &TlsConnector {
        &self.connector
    }
}

/// The name a node's certificate must carry to be reached at `addr`
/// (`host:port`): the host, an IP address or a DNS name.
pub(crate) fn server_name(addr: &str) -> std::io::Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    ServerName::try_from(host.to_owned()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("cluster address {addr}: {e}"),
        )
    })
}
