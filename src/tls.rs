//! The certificate authorities both of ddsky's HTTPS clients trust (AWS Secrets Manager's in
//! `secrets`, Datadog's API in `datadog_api`), chosen in one place: the system's store where it has
//! any (a company's proxy CA counts there), else Mozilla's roots, which ddsky carries
//! (`webpki-root-certs`), so a static ddsky verifies its servers in a job image without CA
//! certificates (distroless, `FROM scratch`). A missing system store is no warning: it is the
//! normal case in such images, and the bundled roots cover it.
//!
//! Layer: edge (see `src/layers.rs`): may use the core only.

use base64::Engine as _;
use rustls::pki_types::CertificateDer;
use std::sync::{Arc, OnceLock};

/// Where the trusted roots came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The system's store (or SSL_CERT_FILE / SSL_CERT_DIR).
    System,
    /// Mozilla's roots, built into ddsky: the system has none.
    Bundled,
}

/// The roots ddsky trusts: every one parses as a trust anchor.
#[derive(Debug)]
pub struct Roots {
    pub certs: Vec<CertificateDer<'static>>,
    pub origin: Origin,
}

/// The system's certificates that parse as trust anchors when there is at least one, else the
/// bundled ones (which always parse: checked by a test).
pub fn choose(system: Vec<CertificateDer<'static>>, bundled: &[CertificateDer<'static>]) -> Roots {
    let usable = |certs: Vec<CertificateDer<'static>>| -> Vec<CertificateDer<'static>> {
        certs
            .into_iter()
            .filter(|cert| rustls::RootCertStore::empty().add(cert.clone()).is_ok())
            .collect()
    };
    let system = usable(system);
    if system.is_empty() {
        Roots {
            certs: usable(bundled.to_vec()),
            origin: Origin::Bundled,
        }
    } else {
        Roots {
            certs: system,
            origin: Origin::System,
        }
    }
}

/// The roots, read from the system once per process.
pub fn roots() -> &'static Roots {
    static ROOTS: OnceLock<Roots> = OnceLock::new();
    ROOTS.get_or_init(|| {
        // Errors are files that exist but cannot be read: the store is then what could be read.
        // Only a store the user named is worth a warning; the default one may well be absent.
        let found = rustls_native_certs::load_native_certs();
        let named = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
            .into_iter()
            .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()));
        for error in &found.errors {
            let error = crate::error_chain::one_line(error);
            if named {
                tracing::warn!("cannot read the CA certificates SSL_CERT_FILE / SSL_CERT_DIR name ({error}); fix the path or unset it");
            } else {
                tracing::debug!("reading the system's CA certificates: {error}");
            }
        }
        let roots = choose(found.certs, webpki_root_certs::TLS_SERVER_ROOT_CERTS);
        match roots.origin {
            Origin::System => tracing::debug!(
                "TLS: trusting the system's {} CA certificates",
                roots.certs.len()
            ),
            Origin::Bundled => tracing::debug!(
                "TLS: the system has no CA certificates; trusting the {} roots ddsky carries (Mozilla's)",
                roots.certs.len()
            ),
        }
        roots
    })
}

/// A rustls root store of `roots`.
pub fn root_store(roots: &Roots) -> rustls::RootCertStore {
    let mut store = rustls::RootCertStore::empty();
    store.add_parsable_certificates(roots.certs.iter().cloned());
    store
}

/// rustls on ring with safe defaults, trusting [`roots`]: `ddsky verify`'s client (hyper-rustls).
pub fn client_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let store = root_store(roots());
    match rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder.with_root_certificates(store),
        // ring supports rustls's safe defaults; TLS 1.3 alone is the fallback that cannot fail.
        Err(_) => rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("ring supports TLS 1.3")
            .with_root_certificates(store),
    }
    .with_no_client_auth()
}

/// The same roots for the AWS SDK's client, which takes PEM and not the system's store
/// (its own loading of that store warns when it is empty, and it has no fallback).
pub fn aws_trust_store() -> aws_smithy_http_client::tls::TrustStore {
    aws_smithy_http_client::tls::TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(pem(&roots().certs))
}

/// What to do when a server's certificate is not trusted.
const TRUST_FIX: &str = "if a proxy or a private CA signs it, add that CA to the system's store or name its PEM file in SSL_CERT_FILE";

/// A TLS failure anywhere in `error`'s chain, in words (rustls names some of its errors only by
/// their Rust names, e.g. `UnknownIssuer`); None when the failure is not TLS's.
pub fn refusal(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let tls = crate::error_chain::find::<rustls::Error>(error)?;
    Some(describe(tls))
}

/// One rustls error in words, the cause then the fix.
pub fn describe(error: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(certificate) = error else {
        return format!("the TLS handshake failed ({error}); check that the URL is HTTPS and any proxy lets TLS through");
    };
    let why = match certificate {
        C::UnknownIssuer => {
            "no certificate authority ddsky trusts signed it (self-signed, or a private CA)"
        }
        C::BadSignature => "its signature does not verify",
        C::Expired | C::ExpiredContext { .. } => "it has expired",
        C::NotValidYet | C::NotValidYetContext { .. } => {
            "it is not valid yet (check the node's clock)"
        }
        C::Revoked => "it has been revoked",
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "it is not issued for this host name"
        }
        C::BadEncoding => "it cannot be read",
        C::UnhandledCriticalExtension => "it has a critical extension ddsky cannot check",
        _ => "",
    };
    if why.is_empty() {
        format!("the server's certificate is not trusted ({certificate}); {TRUST_FIX}")
    } else {
        format!("the server's certificate is not trusted: {why}; {TRUST_FIX}")
    }
}

/// The certificates as one PEM text (RFC 7468: base64 in lines of 64).
pub fn pem(certs: &[CertificateDer<'_>]) -> String {
    let mut out = String::new();
    for cert in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let encoded = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        for line in encoded.as_bytes().chunks(64) {
            // base64 is ASCII.
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    fn bundled() -> &'static [CertificateDer<'static>] {
        webpki_root_certs::TLS_SERVER_ROOT_CERTS
    }

    #[test]
    fn no_system_store_means_the_bundled_roots_all_of_them() {
        let roots = choose(Vec::new(), bundled());
        assert_eq!(roots.origin, Origin::Bundled);
        assert!(roots.certs.len() > 100, "{}", roots.certs.len());
        assert_eq!(
            roots.certs.len(),
            bundled().len(),
            "every bundled root parses"
        );
        assert_eq!(root_store(&roots).len(), bundled().len());
    }

    #[test]
    fn a_system_store_counts_alone_and_garbage_in_it_is_left_out() {
        // One of Mozilla's roots stands for a company's CA: only it is trusted then.
        let company = bundled()[0].clone();
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let roots = choose(vec![garbage.clone(), company.clone()], bundled());
        assert_eq!(roots.origin, Origin::System);
        assert_eq!(roots.certs, vec![company]);
        // A store of nothing usable is no store.
        let roots = choose(vec![garbage], bundled());
        assert_eq!(roots.origin, Origin::Bundled);
    }

    #[test]
    fn tls_refusals_are_words_found_deep_in_the_chain() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // How hyper-rustls hands it over: inside an io::Error, inside the client's error.
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Client(#[source] std::io::Error);
        let chain = Client(std::io::Error::other(unknown));
        let words = refusal(&chain).expect("a TLS refusal");
        assert_eq!(
            words,
            format!("the server's certificate is not trusted: no certificate authority ddsky trusts signed it (self-signed, or a private CA); {TRUST_FIX}")
        );
        assert!(!words.contains("UnknownIssuer"), "{words}");
        let expired = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        assert!(describe(&expired).contains("it has expired"));
        let other = rustls::Error::InvalidCertificate(rustls::CertificateError::InvalidPurpose);
        assert!(describe(&other).starts_with("the server's certificate is not trusted ("));
        assert!(describe(&rustls::Error::DecryptError).starts_with("the TLS handshake failed"));
        assert!(refusal(&std::io::Error::other("refused")).is_none());
    }

    #[test]
    fn pem_reads_back_as_the_same_certificates() {
        let certs = &bundled()[..3];
        let text = pem(certs);
        assert!(text.lines().all(|l| l.len() <= 64), "lines of at most 64");
        let back: Vec<_> = CertificateDer::pem_slice_iter(text.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, certs);
    }
}
