//! The HTTP client for the clouds' REST APIs (GCP, OpenStack) and how its failures read.

use crate::Cloud;
use crate::auth::AuthError;
use std::time::Duration;

/// Limit of one request, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A client with rustls, the system's roots, fedsky's timeouts and, for a private cloud,
/// one more CA certificate (PEM).
pub fn client(extra_ca_pem: Option<&str>) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(10))
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("fedsky/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = extra_ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes())? {
            b = b.add_root_certificate(cert);
        }
    }
    b.build()
}

/// A transport failure as an [`AuthError`]: unreachable for connection and timeout
/// errors, a failed call otherwise.
pub fn transport_error(
    cloud: Cloud,
    operation: &'static str,
    endpoint: &str,
    e: &reqwest::Error,
) -> AuthError {
    // reqwest's Display includes the URL, which never carries secrets here (tokens travel
    // in headers and bodies).
    let detail = error_chain(e);
    if e.is_connect() || e.is_timeout() || e.is_request() {
        AuthError::Unreachable {
            cloud,
            endpoint: endpoint.to_string(),
            operation,
            detail,
        }
    } else {
        AuthError::Failed {
            cloud,
            endpoint: endpoint.to_string(),
            operation,
            detail,
        }
    }
}

/// An error with its sources, `a: b: c`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// At most `max` characters of a response body, for error messages.
pub fn excerpt(body: &str, max: usize) -> String {
    let body = body.trim();
    match body.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_string(),
    }
}
