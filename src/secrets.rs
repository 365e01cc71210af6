//! AWS Secrets Manager as a [`SecretStore`]: the SDK's own region and credential chains, bounded in
//! time so a node off EC2 (or without a route to AWS) never hangs its setup script.
//!
//! Layer: edge (see `src/layers.rs`): may use the core only.

use crate::error_chain::{self, one_line};
use crate::key::{SecretAnswer, SecretPayload, SecretStore};
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_smithy_http_client::tls;
use std::time::Duration;
use tracing::instrument::WithSubscriber;

/// Where Metta keeps its secret, used when no region is configured anywhere.
pub const FALLBACK_REGION: &str = "us-east-1";

pub struct AwsSecretStore {
    pub region: Option<String>,
    /// Bounds everything: config loading (which may ask instance metadata), credentials and the call.
    pub timeout: Duration,
}

impl SecretStore for AwsSecretStore {
    async fn fetch(&self, secret_id: &str) -> SecretAnswer {
        // If the time runs out before the SDK resolved the region, name the likeliest one.
        let region_hint = self
            .region
            .clone()
            .or_else(|| {
                ["AWS_REGION", "AWS_DEFAULT_REGION"]
                    .iter()
                    .find_map(|v| std::env::var(v).ok().filter(|r| !r.is_empty()))
            })
            .unwrap_or_else(|| "the configured region".to_owned());
        let place = |region: &str| format!("secret {secret_id} in {region}");
        // LOG_SENSITIVE_BODIES=true makes the SDK log the response body, the secret included, before
        // ddsky has the value to redact: the SDK's logs are off for the lookup then.
        let dispatch = if sdk_logs_secrets() {
            tracing::warn!("LOG_SENSITIVE_BODIES is set: the AWS SDK's logs are off during the secret lookup so they cannot show the key");
            tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default())
        } else {
            tracing::dispatcher::get_default(tracing::Dispatch::clone)
        };
        let lookup = self.fetch_unbounded(secret_id).with_subscriber(dispatch);
        match tokio::time::timeout(self.timeout, lookup).await {
            Ok((region, payload)) => SecretAnswer { place: place(&region), payload },
            Err(_) => SecretAnswer {
                place: place(&region_hint),
                payload: Err(format!(
                    "no answer within {} (no route to AWS, or no credentials and no instance metadata); set --secret-timeout, or pass DD_API_KEY",
                    humantime::format_duration(self.timeout)
                )),
            },
        }
    }
}

impl AwsSecretStore {
    async fn fetch_unbounded(&self, secret_id: &str) -> (String, Result<SecretPayload, String>) {
        // The SDK is built without its default HTTPS client (Cargo.toml: no aws-lc-sys); every
        // client it makes, the region and credential chains' own included, gets this one.
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            // The roots both HTTPS clients trust (src/tls.rs), not the SDK's own system-store loader.
            .tls_context(
                tls::TlsContext::builder()
                    .with_trust_store(crate::tls::aws_trust_store())
                    .build()
                    .expect("a TLS context without extra server names always builds"),
            )
            .build_https();
        let load = |region: Option<Region>| {
            let loader = aws_config::defaults(BehaviorVersion::latest()).http_client(https.clone());
            match region {
                Some(region) => loader.region(region),
                None => loader,
            }
            .load()
        };
        let mut config = load(self.region.clone().map(Region::new)).await;
        if config.region().is_none() {
            // Nothing names a region (no flag, env, profile or instance metadata): Metta's own,
            // for the credential chain (STS) as much as for Secrets Manager.
            config = load(Some(Region::from_static(FALLBACK_REGION))).await;
        }
        let region = config
            .region()
            .map_or_else(|| FALLBACK_REGION.to_owned(), ToString::to_string);
        let service_config = aws_sdk_secretsmanager::config::Builder::from(&config)
            .retry_config(retry_within(config.retry_config(), self.timeout))
            .build();
        let client = aws_sdk_secretsmanager::Client::from_conf(service_config);
        tracing::debug!(secret_id, %region, "asking AWS Secrets Manager for the API key");
        let result = client.get_secret_value().secret_id(secret_id).send().await;
        let payload = match result {
            Ok(out) => match (out.secret_string(), out.secret_binary()) {
                (Some(s), _) => Ok(SecretPayload::Text(s.to_owned())),
                (None, Some(b)) => Ok(SecretPayload::Binary(b.as_ref().to_vec())),
                (None, None) => {
                    Err("the secret has neither SecretString nor SecretBinary".to_owned())
                }
            },
            Err(e) => Err(describe_error(&e)),
        };
        if let Ok(SecretPayload::Text(s)) = &payload {
            crate::redact::register(s);
        }
        (region, payload)
    }
}

/// Whether the AWS SDK would log request and response bodies of operations marked sensitive.
fn sdk_logs_secrets() -> bool {
    std::env::var("LOG_SENSITIVE_BODIES").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The SDK's retries, their backoff scaled to the lookup's time bound. By default a retry may wait up
/// to 1 s, then 2 s, so a refused connection could outlast a short --secret-timeout and be reported
/// as "no answer" instead of what it is; capped at an eighth of the bound, all attempts fit in it.
fn retry_within(configured: Option<&RetryConfig>, timeout: Duration) -> RetryConfig {
    let retry = configured.cloned().unwrap_or_else(RetryConfig::standard);
    let cap = retry.max_backoff().min(timeout / 8);
    retry.with_max_backoff(cap)
}

/// One line: the AWS error code and what it usually means on a SkyPilot node.
fn describe_error(e: &SdkError<GetSecretValueError>) -> String {
    if let SdkError::ServiceError(service) = e {
        let err = service.err();
        let code = err.code().unwrap_or("UnknownError");
        let hint = match code {
            "ResourceNotFoundException" => "no secret of that name in this region; create it, or set --secret-id / --aws-region",
            "AccessDeniedException" => "the instance role lacks secretsmanager:GetSecretValue on it",
            "DecryptionFailure" => "the instance role cannot decrypt it (kms:Decrypt on the secret's KMS key)",
            "UnrecognizedClientException" | "InvalidSignatureException" | "ExpiredTokenException" => "the AWS credentials are not valid",
            "InvalidRequestException" => "the secret is scheduled for deletion or otherwise unusable",
            _ => "see the AWS error code",
        };
        return format!("{code} ({hint})");
    }
    let sdk = e;
    let e: &(dyn std::error::Error + 'static) = e;
    if let Some(credentials) = error_chain::find::<CredentialsError>(e) {
        let metadata_off = std::env::var("AWS_EC2_METADATA_DISABLED")
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
        return describe_credentials(credentials, metadata_off);
    }
    if let Some(refusal) = crate::tls::refusal(e) {
        return format!("cannot reach the Secrets Manager endpoint: {refusal}");
    }
    // The SDK's own wrapper ("dispatch failure") says less than ddsky's words do.
    let cause = e.source().map_or_else(|| one_line(e), one_line);
    match sdk {
        SdkError::ResponseError(_) => format!(
            "Secrets Manager's answer could not be read ({cause}); check AWS_ENDPOINT_URL and any proxy in between, or pass DD_API_KEY"
        ),
        SdkError::ConstructionFailure(_) => format!(
            "the request for the secret could not be made ({cause}); check --aws-region and --secret-id, or pass DD_API_KEY"
        ),
        _ => format!(
            "cannot reach the Secrets Manager endpoint ({cause}); check the node's route to AWS (or AWS_ENDPOINT_URL), or pass DD_API_KEY"
        ),
    }
}

/// Why the SDK's credential chain gave nothing, in words.
/// `metadata_off`: AWS_EC2_METADATA_DISABLED, so no instance role was asked for.
fn describe_credentials(error: &CredentialsError, metadata_off: bool) -> String {
    match error {
        CredentialsError::CredentialsNotLoaded(_) => {
            let role = if metadata_off {
                "instance metadata off (AWS_EC2_METADATA_DISABLED)"
            } else {
                "no instance role"
            };
            format!("no AWS credentials on this node: {role} and no AWS_* variables or profile; attach an instance role or pass DD_API_KEY")
        }
        CredentialsError::ProviderTimedOut(_) => "the AWS credentials did not load in time (instance metadata slow or unreachable); attach an instance role, raise --secret-timeout, or pass DD_API_KEY".to_owned(),
        other => format!(
            "cannot load AWS credentials ({}); fix the AWS profile or instance role, or pass DD_API_KEY",
            one_line(other)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_secretsmanager::error::ConnectorError;

    fn dispatch_failure(source: ConnectorError) -> SdkError<GetSecretValueError> {
        SdkError::dispatch_failure(source)
    }

    /// How hyper's client error wraps a connect failure (its Display names the kind only).
    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct ClientError(#[source] std::io::Error);

    #[test]
    fn no_credentials_is_said_in_words() {
        // As the SDK hands it over: the identity resolver's error inside a dispatch failure.
        let e = dispatch_failure(ConnectorError::other(
            Box::new(CredentialsError::not_loaded(
                "no providers in chain provided credentials",
            )),
            None,
        ));
        let line = describe_error(&e);
        assert!(
            line.starts_with("no AWS credentials on this node: ")
                && line.ends_with(" and no AWS_* variables or profile; attach an instance role or pass DD_API_KEY"),
            "{line}"
        );
        let not_loaded = CredentialsError::not_loaded("none");
        assert_eq!(
            describe_credentials(&not_loaded, true),
            "no AWS credentials on this node: instance metadata off (AWS_EC2_METADATA_DISABLED) and no AWS_* variables or profile; attach an instance role or pass DD_API_KEY"
        );
        assert_eq!(
            describe_credentials(&not_loaded, false),
            "no AWS credentials on this node: no instance role and no AWS_* variables or profile; attach an instance role or pass DD_API_KEY"
        );
        let broken = CredentialsError::invalid_configuration("profile default: no region");
        let line = describe_credentials(&broken, false);
        assert!(line.starts_with("cannot load AWS credentials ("), "{line}");
        assert!(line.contains("profile default: no region"), "{line}");
        assert!(!line.contains("InvalidConfiguration"), "{line}");
    }

    #[test]
    fn an_unreachable_endpoint_names_the_cause_once_without_debug_forms() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = dispatch_failure(ConnectorError::io(Box::new(ClientError(refused))));
        let line = describe_error(&e);
        assert!(
            line.starts_with("cannot reach the Secrets Manager endpoint (io error: client error (Connect): connection refused); check"),
            "{line}"
        );
        assert!(
            !line.contains("DispatchFailure") && !line.contains(" { "),
            "{line}"
        );
    }

    #[test]
    fn a_refused_certificate_is_said_in_words() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let e = dispatch_failure(ConnectorError::io(Box::new(ClientError(
            std::io::Error::other(unknown),
        ))));
        let line = describe_error(&e);
        assert!(
            line.starts_with("cannot reach the Secrets Manager endpoint: the server's certificate is not trusted: no certificate authority ddsky trusts signed it"),
            "{line}"
        );
    }

    #[test]
    fn retries_fit_in_the_time_bound() {
        let retry = retry_within(None, Duration::from_secs(3));
        assert_eq!(retry.max_attempts(), 3);
        assert_eq!(retry.max_backoff(), Duration::from_millis(375));
        let configured = RetryConfig::standard()
            .with_max_attempts(5)
            .with_max_backoff(Duration::from_millis(100));
        let retry = retry_within(Some(&configured), Duration::from_secs(10));
        assert_eq!(
            (retry.max_attempts(), retry.max_backoff()),
            (5, Duration::from_millis(100))
        );
    }
}
