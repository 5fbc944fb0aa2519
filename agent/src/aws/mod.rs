//! How every AWS client of the agent is set up: region, endpoint (an explicit URL, or FIPS /
//! dual-stack among AWS's own), timeouts, proxies, and whose credentials sign the calls (the
//! default chain, i.e. the ECS task role, or a role assumed on top of it).
//!
//! Proxies need no code here: the SDK's default HTTP client (aws-smithy-http-client, on
//! behavior version 2025-08-07 and later) reads `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` /
//! `NO_PROXY` (and the lower-case forms) itself: https endpoints through a CONNECT tunnel,
//! http endpoints as absolute-form requests to the proxy. Every client below is built on
//! that client, STS's included.

mod validate;

#[cfg(test)]
mod tests;

use std::time::Duration;

use aws_config::identity::IdentityCache;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{ConfigLoader, SdkConfig};
use aws_sdk_cloudwatchlogs::config::SharedCredentialsProvider;

/// Longest wait for a TCP (and TLS) connection to an AWS endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Assumed credentials are refreshed this long before they expire (the SDK's default is 10 s,
/// less than one call's timeout: a call signed just before could arrive just after).
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// Session name of an assumed role when the config gives none (CloudTrail shows
/// `assumed-role/<role>/agent`).
pub const DEFAULT_SESSION_NAME: &str = "agent";

/// Where one sink's client calls and as whom: the keys every AWS sink's table shares.
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsKeys<'a> {
    /// AWS Region; default from the environment (`AWS_REGION`).
    pub region: Option<&'a str>,
    /// Endpoint URL used as given; default from the environment (`AWS_ENDPOINT_URL_<SERVICE>`,
    /// `AWS_ENDPOINT_URL`) or the Region's.
    pub endpoint: Option<&'a str>,
    /// FIPS endpoints; default from `AWS_USE_FIPS_ENDPOINT`.
    pub use_fips: Option<bool>,
    /// Dual-stack (IPv4 and IPv6) endpoints; default from `AWS_USE_DUALSTACK_ENDPOINT`.
    pub use_dualstack: Option<bool>,
    /// Role assumed on top of the default credentials.
    pub role_arn: Option<&'a str>,
    /// `sts:ExternalId` the role's trust policy asks for.
    pub external_id: Option<&'a str>,
    /// Session name of the assumed role.
    pub session_name: Option<&'a str>,
}

/// A role to assume.
#[derive(Debug, Clone, Copy)]
pub struct AssumeRole<'a> {
    /// `arn:aws:iam::<account>:role/<name>`.
    pub role_arn: &'a str,
    /// `sts:ExternalId`, when the trust policy asks for one.
    pub external_id: Option<&'a str>,
    /// Session name; [`DEFAULT_SESSION_NAME`] when unset.
    pub session_name: Option<&'a str>,
}

impl<'a> AwsKeys<'a> {
    /// Every bad key, each message starting with `path` (the table's key path). Pure.
    pub fn validate(&self, path: &str) -> Vec<String> {
        validate::keys(self, path)
    }

    /// The role to assume, if any.
    pub fn role(&self) -> Option<AssumeRole<'a>> {
        self.role_arn.map(|role_arn| AssumeRole {
            role_arn,
            external_id: self.external_id,
            session_name: self.session_name,
        })
    }

    /// The SDK configuration of this sink's client; every call bounded by `timeout`.
    pub async fn sdk_config(&self, timeout: Duration) -> SdkConfig {
        let base = self.loader(timeout).load().await;
        let Some(role) = self.role() else {
            return base;
        };
        // STS is reached as the environment says (AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL or
        // the Region's), never at this sink's endpoint, which belongs to another service.
        let sts = match self.endpoint {
            None => base.clone(),
            Some(_) => self.sts_loader(timeout).load().await,
        };
        assume_role(base, &sts, role).await
    }

    /// The loader of this sink's base configuration (nothing read yet): tests add
    /// `empty_test_environment()` to it.
    pub fn loader(&self, timeout: Duration) -> ConfigLoader {
        let mut loader = self.sts_loader(timeout);
        if let Some(endpoint) = self.endpoint {
            // An explicit endpoint is used as given: AWS_USE_FIPS_ENDPOINT and
            // AWS_USE_DUALSTACK_ENDPOINT choose among AWS's own endpoints and would make the
            // SDK refuse a custom one ("FIPS and custom endpoint are not supported").
            loader = loader
                .endpoint_url(endpoint)
                .use_fips(false)
                .use_dual_stack(false);
        }
        loader
    }

    /// The loader without this sink's endpoint (what STS uses).
    fn sts_loader(&self, timeout: Duration) -> ConfigLoader {
        let mut loader = base_loader(timeout);
        if let Some(region) = self.region {
            loader = loader.region(aws_config::Region::new(region.to_owned()));
        }
        if let Some(use_fips) = self.use_fips {
            loader = loader.use_fips(use_fips);
        }
        if let Some(use_dualstack) = self.use_dualstack {
            loader = loader.use_dual_stack(use_dualstack);
        }
        loader
    }
}

/// The defaults every client shares: credentials from the default chain (the ECS task role
/// in production); the SDK's own retries off, because `sinks::retry` decides; and every call
/// bounded: an attempt (and so the operation, with retries off) fails with a retryable
/// timeout after `timeout`, whether the endpoint never answers, trickles bytes or never
/// accepts the connection.
fn base_loader(timeout: Duration) -> ConfigLoader {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(timeout.min(CONNECT_TIMEOUT))
        .read_timeout(timeout)
        .operation_attempt_timeout(timeout)
        .operation_timeout(timeout)
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(timeouts)
}

/// `base` signing as `role`, assumed with `sts`'s credentials, endpoint and HTTP client (the
/// default chain's: the task role). Credentials are cached and refreshed
/// [`REFRESH_BEFORE_EXPIRY`] before they expire, by the SDK's lazy identity cache on
/// `base`'s time source; a failed AssumeRole is not cached, so the next call tries again.
pub async fn assume_role(base: SdkConfig, sts: &SdkConfig, role: AssumeRole<'_>) -> SdkConfig {
    let provider = AssumeRoleProvider::builder(role.role_arn)
        .session_name(role.session_name.unwrap_or(DEFAULT_SESSION_NAME))
        .configure(sts);
    let provider = match role.external_id {
        Some(id) => provider.external_id(id),
        None => provider,
    };
    let provider = provider.build().await;
    base.into_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .identity_cache(
            IdentityCache::lazy()
                .buffer_time(REFRESH_BEFORE_EXPIRY)
                .build(),
        )
        .build()
}
