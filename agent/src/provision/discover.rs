//! What `plan` and `apply` find out when the vars leave it out: `${AccountId}` with STS
//! GetCallerIdentity (the account of the credentials that will make the calls) and
//! `${Region}` from the client's configuration (`--region`, else `AWS_REGION`, the profile).
//! `validate` never gets here: it stays offline and accepts both unfilled.

use std::collections::BTreeSet;

use aws_config::SdkConfig;

use super::ProvisionError;
use super::api::{Pacer, READ_INTERVAL, call};

/// Values for the deferred placeholders in `names` (name, value); a name it cannot find
/// (no Region configured) is left out and reported as unfilled by the next load. `sts` is
/// the STS client's configuration: the environment's endpoint (`AWS_ENDPOINT_URL_STS`,
/// `AWS_ENDPOINT_URL`), never CloudWatch's `--endpoint`.
pub(super) async fn discover(
    names: &BTreeSet<String>,
    sts: &SdkConfig,
) -> Result<Vec<(String, String)>, ProvisionError> {
    let mut found = Vec::new();
    if names.contains("Region")
        && let Some(region) = sts.region()
    {
        found.push(("Region".to_owned(), region.to_string()));
    }
    if names.contains("AccountId") {
        found.push(("AccountId".to_owned(), account_id(sts).await?));
    }
    Ok(found)
}

/// The account of the caller's credentials.
async fn account_id(sts: &SdkConfig) -> Result<String, ProvisionError> {
    let client = aws_sdk_sts::Client::new(sts);
    let mut pacer = Pacer::new(READ_INTERVAL);
    let identity = call(&mut pacer, "GetCallerIdentity", "AccountId", || {
        client.get_caller_identity().send()
    })
    .await?;
    identity.account().map(str::to_owned).ok_or(ProvisionError {
        operation: "GetCallerIdentity",
        target: "AccountId".to_owned(),
        code: "no_account".to_owned(),
        message: "the answer named no account".to_owned(),
    })
}
