//! The environment variables the gateway reads, and the checks of those
//! that name things (the table, the secret, CORS origins).

use super::ConfigError;

/// Every environment variable the gateway reads (the library, its cold start
/// and its logging), besides the `api_key_env` names a config file adds for
/// local runs. The deployment template sets each one or documents why it need
/// not (checked by `tests/tests/deploy_template.rs`); a unit test checks that
/// configuration loading reads no other name.
pub const ENV_VARS: &[&str] = &[
    "CTXGATE_STORE",
    "CTXGATE_DATA_DIR",
    "CTXGATE_TABLE",
    "CTXGATE_SECRET_ID",
    "CTXGATE_CONFIG",
    "CTXGATE_LISTEN",
    "CTXGATE_CORS_ORIGINS",
    "CTXGATE_MCP_ALLOWED_HOSTS",
    "CTXGATE_JWT_ISSUER",
    "CTXGATE_JWT_AUDIENCE",
    "CTXGATE_JWT_JWKS_URL",
    "CTXGATE_METRICS",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_LAMBDA_FUNCTION_NAME",
    "OPENAI_BASE_URL",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "AWS_BEARER_TOKEN_BEDROCK",
    "RUST_LOG",
    // Traces (`trace`): read there and by the OpenTelemetry SDK, never by `Config`.
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_SERVICE_NAME",
    "OTEL_SDK_DISABLED",
];

/// `CTXGATE_TABLE`, checked against DynamoDB's naming rules. In Lambda on
/// DynamoDB it is required: a silent default would point at the wrong table.
pub(super) fn table_name(value: Option<String>, required: bool) -> Result<String, ConfigError> {
    let Some(name) = value else {
        if required {
            return Err(ConfigError::Env {
                var: "CTXGATE_TABLE",
                problem: "is not set; it must name the DynamoDB table".into(),
            });
        }
        return Ok("ctxgate".into());
    };
    let valid = (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !valid {
        return Err(ConfigError::Env {
            var: "CTXGATE_TABLE",
            problem: format!(
                "is '{name}', not a DynamoDB table name (3-255 letters, digits, '_', '-', '.')"
            ),
        });
    }
    Ok(name)
}

/// `CTXGATE_METRICS`: `emf`, `prometheus` or `off`; by default EMF on
/// Lambda and Prometheus in the local server. Prometheus is the local
/// server's only (a Lambda function has no `/metrics` and no registry).
pub(super) fn metrics(
    value: Option<String>,
    in_lambda: bool,
) -> Result<super::MetricsSink, ConfigError> {
    use super::MetricsSink;
    let local = cfg!(feature = "cli");
    match value.as_deref() {
        None if in_lambda || !local => Ok(MetricsSink::Emf),
        None => Ok(MetricsSink::Prometheus),
        Some("emf") => Ok(MetricsSink::Emf),
        Some("prometheus") if local => Ok(MetricsSink::Prometheus),
        Some("off") => Ok(MetricsSink::Off),
        Some(other) => Err(ConfigError::Env {
            var: "CTXGATE_METRICS",
            problem: if local {
                format!("must be 'emf', 'prometheus' or 'off', not '{other}'")
            } else {
                format!("must be 'emf' or 'off' in a Lambda function, not '{other}'")
            },
        }),
    }
}

/// `CTXGATE_SECRET_ID`: a Secrets Manager secret name or ARN.
pub(super) fn secret_id(id: String) -> Result<String, ConfigError> {
    let valid = id.len() <= 2048
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@:-".contains(&b));
    if !valid {
        return Err(ConfigError::Env {
            var: "CTXGATE_SECRET_ID",
            problem: "must be a Secrets Manager secret name or ARN (letters, digits, /_+=.@:-)"
                .into(),
        });
    }
    Ok(id)
}

/// `CTXGATE_CORS_ORIGINS`: comma-separated `*` or `http(s)://host[:port]` origins.
pub(super) fn cors_origins(list: &str) -> Result<Vec<String>, ConfigError> {
    let origins: Vec<String> = list
        .split(',')
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    for o in &origins {
        let rest = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"));
        let valid =
            o == "*" || rest.is_some_and(|r| !r.is_empty() && !r.contains(['/', ' ', '?', '#']));
        if !valid || http::HeaderValue::from_str(o).is_err() {
            return Err(ConfigError::Env {
                var: "CTXGATE_CORS_ORIGINS",
                problem: format!("has '{o}', not an origin ('*' or scheme://host[:port], no path)"),
            });
        }
    }
    Ok(origins)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::testing::cfg;

    #[test]
    fn reads_only_the_declared_environment() {
        use std::sync::Mutex;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "").unwrap();
        let path = path.to_str().unwrap().to_owned();
        let read = Mutex::new(Vec::new());
        // Two runs cover both branches: local defaults, and Lambda with every variable set.
        for lambda in [false, true] {
            let lookup = |k: &str| {
                read.lock().unwrap().push(k.to_owned());
                match k {
                    "AWS_LAMBDA_FUNCTION_NAME" if lambda => Some("f".to_owned()),
                    "CTXGATE_TABLE" if lambda => Some("ctxgate-prod".to_owned()),
                    "CTXGATE_CONFIG" if lambda => Some(path.clone()),
                    "CTXGATE_JWT_ISSUER" if lambda => Some("https://issuer.example".to_owned()),
                    "CTXGATE_JWT_AUDIENCE" if lambda => Some("api".to_owned()),
                    _ => None,
                }
            };
            Config::from_lookup(lookup).unwrap();
        }
        for name in read.into_inner().unwrap() {
            assert!(
                ENV_VARS.contains(&name.as_str()),
                "{name} is read but not in ENV_VARS"
            );
        }
    }

    #[test]
    fn metrics_default_by_place_and_refuse_what_is_not_a_sink() {
        use super::super::MetricsSink;
        assert_eq!(super::metrics(None, true).unwrap(), MetricsSink::Emf);
        let local = if cfg!(feature = "cli") {
            MetricsSink::Prometheus
        } else {
            MetricsSink::Emf
        };
        assert_eq!(super::metrics(None, false).unwrap(), local);
        assert_eq!(
            super::metrics(Some("off".into()), true).unwrap(),
            MetricsSink::Off
        );
        let err = super::metrics(Some("statsd".into()), false).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Env {
                    var: "CTXGATE_METRICS",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn lambda_cold_start_names_the_bad_variable() {
        let lambda = [("AWS_LAMBDA_FUNCTION_NAME", "f")];
        let err = cfg(&lambda).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Env {
                    var: "CTXGATE_TABLE",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("environment variable CTXGATE_TABLE is not set")
        );
        // The local server keeps its default table.
        assert_eq!(cfg(&[]).unwrap().table, "ctxgate");

        let with = |extra: (&'static str, &'static str)| {
            cfg(&[lambda[0], ("CTXGATE_TABLE", "ctxgate-prod"), extra])
        };
        for (var, value) in [
            ("CTXGATE_TABLE", "a b"),
            ("CTXGATE_TABLE", "x"),
            ("CTXGATE_SECRET_ID", "name with spaces"),
            ("CTXGATE_CORS_ORIGINS", "app.example.com"),
            ("CTXGATE_CORS_ORIGINS", "https://app.example.com/path"),
            ("CTXGATE_STORE", "postgres"),
            ("CTXGATE_CONFIG", "/nonexistent/ctxgate.toml"),
            ("CTXGATE_JWT_AUDIENCE", "api"),
        ] {
            let err = with((var, value)).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Env { var: v, .. } if *v == var),
                "{var}={value}: {err}"
            );
            assert!(err.to_string().contains(var), "{err}");
        }
        let ok = with((
            "CTXGATE_SECRET_ID",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:ctxgate-AbCdEf",
        ))
        .unwrap();
        assert!(ok.secret_id.is_some());
        let ok = with((
            "CTXGATE_CORS_ORIGINS",
            "https://a.example, http://localhost:3000",
        ))
        .unwrap();
        assert_eq!(
            ok.cors_origins,
            ["https://a.example", "http://localhost:3000"]
        );
    }
}
