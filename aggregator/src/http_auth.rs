//! Who may call the model manager (the HTTP port), and the TLS under it.
//!
//! The port carries what a job must not leak or let anyone forge: the global model, the
//! status the operator turns into the job's progress, and the metrics. Every route —
//! `/healthz` and `/readyz` included, so that nothing on the port answers an anonymous
//! caller (the kubelet probes the port with `tcpSocket`) — admits a request that brings
//! one of:
//!
//! | credential | routes |
//! | --- | --- |
//! | a client certificate from the job's CA (verified at the TLS handshake) | all |
//! | `Authorization: Bearer <job token>` | all |
//! | `Authorization: Bearer <scrape token>` (`--metrics-token-file`) | `/metrics` only |
//!
//! Anything else is answered `401` with `WWW-Authenticate: Bearer` and a JSON error. A
//! scrape token on another route is refused like an unknown token: it says nothing about
//! which tokens exist. With `--insecure-plaintext` there is no TLS and so no
//! certificate: only the tokens admit.
//!
//! The middleware admits or refuses; it does not decide which admitted caller may do
//! what. It records the [`Caller`] — with the certificate's name, read like a
//! participant's identity — in the request's extensions, and a route that only the
//! operator may call (`PUT /v1/participants`) checks [`Caller::is_operator`] and answers
//! `403` to anyone else.
//!
//! Under [`crate::server::Transport::MutualTls`] the port serves TLS with the gRPC
//! port's certificate. Client certificates are optional at the handshake, since the
//! operator's metrics scraper and a user with the job token have none; a certificate that
//! is presented must chain to the job's CA, or the handshake fails.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::coordinator::Coordinator;
use crate::identity::participant_from_der;
use crate::server::TlsPem;

/// The only route the scrape token opens.
pub const SCRAPE_PATH: &str = "/metrics";
/// The CN of the client certificate the operator issues itself from the job's CA
/// (participants are named after their job and site, never this).
pub const OPERATOR_CN: &str = "fedsky-operator";
/// Tokens shorter than this are refused (as the job token is).
pub const MIN_TOKEN_LEN: usize = 16;
/// How long a client may take to finish its TLS handshake: a peer that connects and says
/// nothing must not hold a task and a socket for ever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; past this the listener stops accepting until one ends,
/// so a flood of idle connections costs bounded memory.
pub const MAX_HANDSHAKES: usize = 256;

/// Why the HTTP port's TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum HttpTlsError {
    /// A PEM file holds no usable certificate or key.
    #[error("{what} is not valid PEM")]
    Pem {
        /// Which file.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The client CA bundle holds no certificate.
    #[error("the client CA bundle holds no certificate")]
    NoClientCa,
    /// The client CA could not be used as a trust anchor.
    #[error("the client CA cannot be used")]
    ClientCa(#[source] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("the client certificate verifier cannot be built")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    /// rustls refused the certificate, key or protocol versions.
    #[error("the server certificate or key is refused")]
    Config(#[source] rustls::Error),
}

/// The HTTP port's TLS configuration: the server certificate and key of `pem` (the gRPC
/// port's), client certificates optional but verified against `pem.client_ca`, ring as
/// the crypto provider (it signs and verifies Ed25519, which the operator's job PKI uses).
pub fn tls_config(pem: &TlsPem) -> Result<Arc<ServerConfig>, HttpTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_slice_iter(&pem.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| HttpTlsError::Pem {
            what: "the server certificate",
            source,
        })?;
    let key = PrivateKeyDer::from_pem_slice(&pem.key).map_err(|source| HttpTlsError::Pem {
        what: "the server key",
        source,
    })?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&pem.client_ca) {
        let ca = ca.map_err(|source| HttpTlsError::Pem {
            what: "the client CA",
            source,
        })?;
        roots.add(ca).map_err(HttpTlsError::ClientCa)?;
    }
    if roots.is_empty() {
        return Err(HttpTlsError::NoClientCa);
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(HttpTlsError::Verifier)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(HttpTlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(HttpTlsError::Config)?;
    // axum serves HTTP/1.1 here (the workspace builds it without HTTP/2).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TCP listener that hands axum only connections whose TLS handshake succeeded. Each
/// handshake runs in a task of its own, bounded by [`HANDSHAKE_TIMEOUT`] and
/// [`MAX_HANDSHAKES`], so one slow or silent peer delays nobody; dropping the listener
/// (when the server stops) aborts those still running.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("tcp", &self.tcp)
            .field("handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// TLS over `tcp` with `config`.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> Self {
        Self {
            tcp,
            acceptor: TlsAcceptor::from(config),
            handshakes: JoinSet::new(),
        }
    }

    fn start_handshake(&mut self, tcp: TcpStream, addr: SocketAddr) {
        // Small responses (status, metrics) should not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let acceptor = self.acceptor.clone();
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Some((tls, addr)),
                // Plain HTTP, a certificate from another CA, a scanner: the caller's
                // problem, not the server's; debug only so they cannot flood the log.
                Ok(Err(e)) => {
                    tracing::debug!(remote = %addr, error = %e, "HTTP TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(remote = %addr, "HTTP TLS handshake timed out");
                    None
                }
            }
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // Cancel safe, as axum's graceful shutdown needs: `TcpListener::accept` and
        // `JoinSet::join_next` are, and a handshake once spawned lives in the set.
        loop {
            tokio::select! {
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
                accepted = self.tcp.accept(), if self.handshakes.len() < MAX_HANDSHAKES => {
                    match accepted {
                        Ok((tcp, addr)) => self.start_handshake(tcp, addr),
                        Err(e) => {
                            // Out of file descriptors and the like: back off rather than
                            // spin (what axum does for its own TcpListener).
                            tracing::warn!(error = %e, "accepting an HTTP connection failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A client certificate the TLS handshake verified against the job's CA (one that does
/// not verify fails the handshake, so no request arrives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCertificate {
    /// Who it names: its subject CN, else its first DNS or URI SAN (as a participant's
    /// identity is read); `None` when it names nobody valid.
    pub name: Option<String>,
}

impl JobCertificate {
    /// The certificate `der` (the leaf of a verified chain).
    pub fn from_der(der: &[u8]) -> Self {
        Self {
            name: participant_from_der(der).ok().map(|id| id.0),
        }
    }
}

/// The connection a request came on, as the TLS handshake left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// The client's certificate, if it presented one.
    pub certificate: Option<JobCertificate>,
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let (_, session) = stream.io().get_ref();
        Self {
            addr: *stream.remote_addr(),
            certificate: session
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|leaf| JobCertificate::from_der(leaf.as_ref())),
        }
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Self {
            addr: *stream.remote_addr(),
            certificate: None,
        }
    }
}

/// A bearer secret: compared in constant time, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Why a token file's content cannot be a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Nothing but white space.
    #[error("the token is empty")]
    Empty,
    /// Too short to resist guessing.
    #[error("the token has {0} characters; at least {MIN_TOKEN_LEN} are required")]
    TooShort(usize),
}

impl Token {
    /// A token from a file's content (surrounding white space, such as the newline a
    /// Secret's value often ends with, is not part of it).
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let t = text.trim();
        match t.chars().count() {
            0 => Err(TokenError::Empty),
            n if n < MIN_TOKEN_LEN => Err(TokenError::TooShort(n)),
            _ => Ok(Self(t.to_string())),
        }
    }

    /// Whether `candidate` is this token.
    pub fn matches(&self, candidate: &str) -> bool {
        same_secret(candidate.as_bytes(), self.0.as_bytes())
    }
}

/// Constant-time comparison, so a token cannot be guessed byte by byte from response
/// times (only its length can leak).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The credential that admitted a request (kept in its extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A client certificate from the job's CA: the operator, a participant.
    JobCertificate(JobCertificate),
    /// The job token.
    JobToken,
    /// The scrape token, on `/metrics`.
    ScrapeToken,
}

impl Caller {
    /// Whether the caller is the operator: a certificate from the job's CA named
    /// [`OPERATOR_CN`]. The job token is not: every participant holds it.
    pub fn is_operator(&self) -> bool {
        matches!(self, Self::JobCertificate(JobCertificate { name: Some(n) }) if n == OPERATOR_CN)
    }

    /// A label for logs (never a secret).
    pub fn describe(&self) -> String {
        match self {
            Self::JobCertificate(JobCertificate { name: Some(n) }) => format!("certificate {n}"),
            Self::JobCertificate(JobCertificate { name: None }) => "unnamed certificate".into(),
            Self::JobToken => "job token".into(),
            Self::ScrapeToken => "scrape token".into(),
        }
    }
}

/// Why a request was refused; every variant is a `401`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Neither a certificate nor an `Authorization` header.
    #[error(
        "authentication required: a client certificate from the job's CA or Authorization: Bearer <job token>"
    )]
    NoCredentials,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("the Authorization header must be Bearer <token>")]
    NotBearer,
    /// A bearer token that is not accepted on this route.
    #[error("invalid bearer token")]
    InvalidToken,
}

impl Denied {
    /// A stable label for logs.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoCredentials => "missing_credentials",
            Self::NotBearer => "not_bearer",
            Self::InvalidToken => "bad_token",
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3).
    fn challenge(self) -> &'static str {
        match self {
            Self::NoCredentials => "Bearer realm=\"fedsky-aggregator\"",
            Self::NotBearer => "Bearer realm=\"fedsky-aggregator\", error=\"invalid_request\"",
            Self::InvalidToken => "Bearer realm=\"fedsky-aggregator\", error=\"invalid_token\"",
        }
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        let mut resp = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(self.challenge()),
        );
        resp
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive,
/// RFC 7235 §2.1).
fn bearer(value: &[u8]) -> Result<&str, Denied> {
    let value = std::str::from_utf8(value).map_err(|_| Denied::NotBearer)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(Denied::NotBearer)?;
    let token = token.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() {
        Ok(token)
    } else {
        Err(Denied::NotBearer)
    }
}

/// The route policy, pure: whether a request for `path` on a connection with (or
/// without) a job certificate and with the given `Authorization` header value is
/// admitted, and by what.
pub fn authorize(
    path: &str,
    certificate: Option<&JobCertificate>,
    authorization: Option<&[u8]>,
    is_job_token: impl Fn(&str) -> bool,
    scrape_token: Option<&Token>,
) -> Result<Caller, Denied> {
    if let Some(cert) = certificate {
        return Ok(Caller::JobCertificate(cert.clone()));
    }
    let token = bearer(authorization.ok_or(Denied::NoCredentials)?)?;
    // Both comparisons always run, so the time taken does not say which token was close.
    let job = is_job_token(token);
    let scrape = scrape_token.is_some_and(|s| s.matches(token));
    if job {
        Ok(Caller::JobToken)
    } else if scrape && path == SCRAPE_PATH {
        Ok(Caller::ScrapeToken)
    } else {
        Err(Denied::InvalidToken)
    }
}

/// What the middleware checks requests against.
#[derive(Debug, Clone)]
pub struct HttpAuth {
    core: Coordinator,
    scrape_token: Option<Token>,
}

impl HttpAuth {
    /// The job token of `core`, and `scrape_token` for `/metrics`.
    pub fn new(core: Coordinator, scrape_token: Option<Token>) -> Self {
        Self { core, scrape_token }
    }
}

/// axum middleware enforcing [`authorize`] on every route (see the module doc).
pub async fn require(State(auth): State<HttpAuth>, mut req: Request, next: Next) -> Response {
    // Served without connect info (a router used directly): no certificate to trust.
    let peer = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0.clone());
    let decision = authorize(
        req.uri().path(),
        peer.as_ref().and_then(|p| p.certificate.as_ref()),
        req.headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
        |t| auth.core.token_matches(t),
        auth.scrape_token.as_ref(),
    );
    match decision {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(denied) => {
            let remote = peer.as_ref().map(|p| p.addr);
            // A wrong token is someone trying; a bare request is a probe or a scanner.
            if denied == Denied::InvalidToken {
                tracing::warn!(
                    reason = denied.reason(),
                    path = req.uri().path(),
                    ?remote,
                    "refused HTTP request"
                );
            } else {
                tracing::debug!(
                    reason = denied.reason(),
                    path = req.uri().path(),
                    ?remote,
                    "refused HTTP request"
                );
            }
            denied.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = "job-token-0123456789";
    const SCRAPE: &str = "scrape-token-0123456789";
    const ROUTES: &[&str] = &[
        "/v1/status",
        "/v1/versions",
        "/v1/versions/latest",
        "/v1/versions/3/model",
        "/metrics",
        "/healthz",
        "/readyz",
        "/unknown",
    ];

    fn cert(name: &str) -> JobCertificate {
        JobCertificate {
            name: Some(name.into()),
        }
    }

    fn check(
        path: &str,
        cert: Option<&JobCertificate>,
        auth: Option<&str>,
    ) -> Result<Caller, Denied> {
        let scrape = Token::parse(SCRAPE).expect("scrape token");
        authorize(
            path,
            cert,
            auth.map(str::as_bytes),
            |t| t == JOB,
            Some(&scrape),
        )
    }

    #[test]
    fn a_job_certificate_or_the_job_token_opens_every_route() {
        let participant = cert("xray-hospital-a-0");
        for path in ROUTES {
            assert_eq!(
                check(path, Some(&participant), None),
                Ok(Caller::JobCertificate(participant.clone())),
                "{path}"
            );
            let job = format!("Bearer {JOB}");
            assert_eq!(
                check(path, None, Some(&job)),
                Ok(Caller::JobToken),
                "{path}"
            );
            // The scheme is case-insensitive; surrounding blanks are not the token.
            let lower = format!("bearer  {JOB} ");
            assert_eq!(
                check(path, None, Some(&lower)),
                Ok(Caller::JobToken),
                "{path}"
            );
        }
    }

    #[test]
    fn the_scrape_token_opens_metrics_only() {
        let scrape = format!("Bearer {SCRAPE}");
        for path in ROUTES {
            let want = if *path == SCRAPE_PATH {
                Ok(Caller::ScrapeToken)
            } else {
                Err(Denied::InvalidToken)
            };
            assert_eq!(check(path, None, Some(&scrape)), want, "{path}");
        }
        // No scrape token configured: it opens nothing.
        let none = authorize(
            "/metrics",
            None,
            Some(scrape.as_bytes()),
            |t| t == JOB,
            None,
        );
        assert_eq!(none, Err(Denied::InvalidToken));
    }

    #[test]
    fn anything_else_is_refused() {
        for path in ROUTES {
            assert_eq!(
                check(path, None, None),
                Err(Denied::NoCredentials),
                "{path}"
            );
            for bad in [
                "Bearer wrong-token-0123456789",
                &format!("Bearer {JOB}x"),
                &format!("Bearer {}", &JOB[1..]),
            ] {
                assert_eq!(
                    check(path, None, Some(bad)),
                    Err(Denied::InvalidToken),
                    "{bad}"
                );
            }
            for malformed in [
                "",
                "Bearer",
                "Bearer ",
                JOB,
                &format!("Basic {JOB}"),
                &format!("Token {JOB}"),
            ] {
                assert_eq!(
                    check(path, None, Some(malformed)),
                    Err(Denied::NotBearer),
                    "{malformed:?}"
                );
            }
        }
        let not_utf8 = authorize("/metrics", None, Some(b"Bearer \xff\xfe"), |_| true, None);
        assert_eq!(not_utf8, Err(Denied::NotBearer));
    }

    #[test]
    fn only_the_operator_certificate_is_the_operator() {
        let job = format!("Bearer {JOB}");
        let operator = check("/v1/participants", Some(&cert(OPERATOR_CN)), None);
        assert!(operator.expect("admitted").is_operator());
        for caller in [
            check("/v1/participants", Some(&cert("xray-hospital-a-0")), None),
            check(
                "/v1/participants",
                Some(&JobCertificate { name: None }),
                None,
            ),
            check("/v1/participants", None, Some(&job)),
        ] {
            let caller = caller.expect("admitted");
            assert!(!caller.is_operator(), "{caller:?}");
        }
    }

    #[test]
    fn tokens_are_trimmed_long_enough_and_hidden() {
        let t = Token::parse(&format!("{SCRAPE}\n")).expect("token");
        assert!(t.matches(SCRAPE));
        assert!(!t.matches(&SCRAPE[..SCRAPE.len() - 1]));
        assert!(!t.matches(&format!("{SCRAPE}0")));
        assert!(!t.matches(""));
        assert_eq!(Token::parse(" \n"), Err(TokenError::Empty));
        assert_eq!(Token::parse("short"), Err(TokenError::TooShort(5)));
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }

    #[test]
    fn refusals_are_401_with_a_bearer_challenge_and_json() {
        for denied in [
            Denied::NoCredentials,
            Denied::NotBearer,
            Denied::InvalidToken,
        ] {
            let resp = denied.into_response();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
            let challenge = resp.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .expect("ascii");
            assert!(challenge.starts_with("Bearer "), "{challenge}");
            assert_eq!(
                resp.headers()[header::CONTENT_TYPE],
                "application/json",
                "{denied:?}"
            );
        }
    }
}
