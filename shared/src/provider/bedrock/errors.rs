//! Bedrock's error answers, classified like other providers' failures: the
//! exception type comes from `x-amzn-ErrorType` (else the body's `__type`,
//! else the status). Nothing of AWS's message reaches a client or a log but
//! a field path: it names accounts, roles and ARNs.

use http::HeaderMap;
use serde_json::Value;

use crate::provider::{ProviderError, resilience};

/// What a failed call is missing, for an access-denied model.
pub const ACCESS_MISSING: &str = "enable access to the model in the Bedrock console (Model access) for this account and region, and allow the gateway's IAM role bedrock:InvokeModel and bedrock:InvokeModelWithResponseStream on the model or inference profile";

/// What a failed call is missing, for a model Bedrock does not know.
pub fn not_found_missing(region: &str) -> String {
    format!(
        "no such model or inference profile in {region}: check the id (an inference profile id such as us.<model id> where the model requires one) and that the model is offered in the region"
    )
}

/// The exception's short name: `ThrottlingException` from
/// `ThrottlingException:http://internal.amazon.com/...` or from a body's
/// `com.amazon...#ThrottlingException`.
pub fn error_type(headers: &HeaderMap, body: Option<&Value>) -> Option<String> {
    let from_header = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(':').next().unwrap_or(v));
    let from_body = || {
        let t = body?.get("__type")?.as_str()?;
        Some(
            t.rsplit('#')
                .next()
                .unwrap_or(t)
                .split(':')
                .next()
                .unwrap_or(t),
        )
    };
    from_header
        .or_else(from_body)
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_alphanumeric()))
        .map(str::to_owned)
}

/// The field a `ValidationException` names, when its message has one in a
/// form AWS uses (`... at 'inferenceConfig.maxTokens' failed to satisfy
/// constraint`, or `...errors: messages.1.content: ...`); only a path of
/// letters, digits, dots and brackets is kept, never the quoted value.
pub fn validation_field(message: &str) -> Option<String> {
    let is_path = |s: &str| {
        (1..=64).contains(&s.len())
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'[' | b']' | b'_'))
    };
    if let Some((_, rest)) = message.split_once(" at '")
        && let Some((path, _)) = rest.split_once('\'')
        && is_path(path)
    {
        return Some(path.to_owned());
    }
    let after = message.split_once("errors: ").map_or(message, |(_, r)| r);
    let (path, _) = after.split_once(':')?;
    (is_path(path) && path.contains('.')).then(|| path.to_owned())
}

/// A Bedrock error answer as a provider failure, for `model` in `region`.
pub fn classify(
    provider: &str,
    model: &str,
    region: &str,
    status: u16,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> ProviderError {
    let p = || provider.to_owned();
    let kind = error_type(headers, body);
    let message = body
        .and_then(|b| b.get("message").or_else(|| b.get("Message")))
        .and_then(Value::as_str)
        .unwrap_or_default();
    tracing::warn!(
        provider,
        status,
        reason = kind.as_deref().unwrap_or("-"),
        "upstream error"
    );
    let wait = resilience::wait_hint(headers);
    let unavailable = |status| ProviderError::Unavailable {
        provider: p(),
        status,
        wait,
    };
    let not_found = || ProviderError::ModelUnavailable {
        provider: p(),
        model: model.to_owned(),
        status: 404,
        missing: not_found_missing(region),
    };
    match kind.as_deref() {
        Some(
            "ThrottlingException" | "ModelNotReadyException" | "ServiceQuotaExceededException",
        ) => ProviderError::RateLimited {
            provider: p(),
            retry_after: None,
            wait,
        },
        Some("AccessDeniedException") => ProviderError::ModelUnavailable {
            provider: p(),
            model: model.to_owned(),
            status: 403,
            missing: ACCESS_MISSING.to_owned(),
        },
        Some("ResourceNotFoundException") => not_found(),
        Some("ValidationException") => {
            let lower = message.to_ascii_lowercase();
            if lower.contains("model identifier") || lower.contains("model id is invalid") {
                return not_found();
            }
            if lower.contains("inference profile") {
                return ProviderError::RejectedField {
                    provider: p(),
                    param: "model".into(),
                    message: format!(
                        "model '{model}' is only served through an inference profile: use its profile id (us., eu., apac. or global. before the model id)"
                    ),
                };
            }
            match validation_field(message) {
                Some(param) => ProviderError::RejectedField {
                    provider: p(),
                    message: format!("Bedrock refused the value of {param}"),
                    param,
                },
                None => ProviderError::Rejected {
                    provider: p(),
                    status: 400,
                },
            }
        }
        Some("ModelTimeoutException") => ProviderError::Timeout { provider: p() },
        Some(
            "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException"
            | "IncompleteSignatureException"
            | "MissingAuthenticationTokenException",
        ) => ProviderError::Auth { provider: p() },
        Some("ServiceUnavailableException") => unavailable(503),
        Some("InternalServerException") => unavailable(500),
        Some("ModelErrorException") => unavailable(424),
        _ => match status {
            401 | 403 => ProviderError::Auth { provider: p() },
            404 => not_found(),
            429 => ProviderError::RateLimited {
                provider: p(),
                retry_after: None,
                wait,
            },
            400..=499 => ProviderError::Rejected {
                provider: p(),
                status,
            },
            _ => unavailable(status),
        },
    }
}
