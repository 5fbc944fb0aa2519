//! The rules of the shared AWS keys that types cannot express (IAM's and STS's own limits),
//! checked offline.

use super::AwsKeys;

/// Longest role ARN IAM accepts (AssumeRole's `RoleArn`).
const MAX_ROLE_ARN: usize = 2048;
/// Longest role name.
const MAX_ROLE_NAME: usize = 64;
/// AssumeRole's `RoleSessionName`: 2-64 characters.
const SESSION_NAME_LEN: std::ops::RangeInclusive<usize> = 2..=64;
/// AssumeRole's `ExternalId`: 2-1224 characters.
const EXTERNAL_ID_LEN: std::ops::RangeInclusive<usize> = 2..=1224;

/// Every bad key of `keys`, each message prefixed with `path`.
pub(super) fn keys(keys: &AwsKeys<'_>, path: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let mut check = |ok: bool, message: &str| {
        if !ok {
            errors.push(format!("{path}{message}"));
        }
    };
    if let Some(arn) = keys.role_arn {
        check(
            is_role_arn(arn),
            ".role_arn: an IAM role ARN, arn:aws:iam::<12-digit account>:role/<name> \
             (name 1-64 of [A-Za-z0-9_+=,.@-], optional /path/)",
        );
    }
    if let Some(id) = keys.external_id {
        check(
            EXTERNAL_ID_LEN.contains(&id.len())
                && id.bytes().all(|b| is_word(b) || b":/".contains(&b)),
            ".external_id: 2-1224 characters of [A-Za-z0-9_+=,.@:/-]",
        );
        check(keys.role_arn.is_some(), ".external_id: only with role_arn");
    }
    if let Some(name) = keys.session_name {
        check(
            SESSION_NAME_LEN.contains(&name.len()) && name.bytes().all(is_word),
            ".session_name: 2-64 characters of [A-Za-z0-9_+=,.@-]",
        );
        check(keys.role_arn.is_some(), ".session_name: only with role_arn");
    }
    let explicit = keys.endpoint.is_some();
    check(
        !(explicit && keys.use_fips == Some(true)),
        ".use_fips: not with endpoint (an endpoint is used as given; give the FIPS URL there)",
    );
    check(
        !(explicit && keys.use_dualstack == Some(true)),
        ".use_dualstack: not with endpoint (an endpoint is used as given; give the dual-stack \
         URL there)",
    );
    if let Some(endpoint) = keys.endpoint {
        check(
            endpoint.starts_with("https://") || endpoint.starts_with("http://"),
            ".endpoint: an http:// or https:// URL",
        );
    }
    errors
}

/// IAM's `[\w+=,.@-]`.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b)
}

/// `arn:<partition>:iam::<12 digits>:role/<optional path/><name>`.
fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else {
        return false;
    };
    let Some(path_and_name) = resource.strip_prefix("role/") else {
        return false;
    };
    let name = path_and_name.rsplit('/').next().unwrap_or_default();
    arn.len() <= MAX_ROLE_ARN
        && prefix == "arn"
        && (partition == "aws"
            || partition.strip_prefix("aws-").is_some_and(|rest| {
                !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
            }))
        && service == "iam"
        && region.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && (1..=MAX_ROLE_NAME).contains(&name.len())
        && name.bytes().all(is_word)
        && path_and_name.bytes().all(|b| is_word(b) || b == b'/')
        && !path_and_name.contains("//")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        for good in [
            "arn:aws:iam::111122223333:role/central-logging",
            "arn:aws:iam::111122223333:role/service-role/ops/Log_Writer+1=2,3.4@5",
            "arn:aws-us-gov:iam::111122223333:role/x",
            "arn:aws-cn:iam::111122223333:role/x",
        ] {
            assert!(is_role_arn(good), "{good}");
        }
        for bad in [
            "",
            "central-logging",
            "arn:aws:iam::11112222333:role/x",
            "arn:aws:iam::111122223333x:role/x",
            "arn:aws:iam:us-east-1:111122223333:role/x",
            "arn:aws:sts::111122223333:role/x",
            "arn:aws:iam::111122223333:user/x",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:iam::111122223333:role/path/",
            "arn:aws:iam::111122223333:role/a b",
            "arn:gcp:iam::111122223333:role/x",
            "arn:aws:iam::111122223333:role/a//b",
        ] {
            assert!(!is_role_arn(bad), "{bad}");
        }
        let long = format!("arn:aws:iam::111122223333:role/{}", "n".repeat(65));
        assert!(!is_role_arn(&long));
    }
}
