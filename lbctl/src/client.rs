//! Connecting to the daemon's `lb.v1` gRPC API, for `lbctl` and for tests.
//!
//! The API is named by a URI:
//!
//! * `unix:///run/lb/lb.sock` (the default, [`DEFAULT_API`]): the daemon's
//!   Unix socket. `unix:PATH` (gRPC's own naming) is accepted as well. No TLS:
//!   the socket's file mode (0600) is the access control.
//! * `tcp://HOST:PORT` (`tcp://[::1]:50051` for IPv6): always over TLS, since
//!   the daemon refuses plaintext TCP. The CA that signed the daemon's
//!   certificate is required; a client certificate and key are added for
//!   mutual TLS.
//!
//! Connecting is eager: [`connect`] returns once the transport is up, so "is
//! the daemon there?" is answered before any call is made, with an error that
//! says what to check.

use std::{
    error::Error as StdError,
    fmt, io,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use lb_proto::v1::load_balancer_client::LoadBalancerClient;
use tokio::net::UnixStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

use lb_api::vip::parse_port;

/// The daemon's default API address (its default `[api] listen`).
pub const DEFAULT_API: &str = "unix:///run/lb/lb.sock";

/// Environment variable that overrides [`DEFAULT_API`] (an explicit
/// `lbctl --api` overrides both).
pub const API_ENV: &str = "LB_API";

/// A Unix socket is local: if it does not answer quickly, it never will.
const UNIX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP crosses a network and includes the TLS handshake.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The API address to use when none is given: `$LB_API` if set and not
/// empty, else [`DEFAULT_API`].
pub fn default_api() -> String {
    std::env::var(API_ENV)
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_API.to_owned())
}

/// TLS settings for a `tcp://` API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM file with the CA certificate(s) that signed the daemon's
    /// certificate.
    pub ca: PathBuf,
    /// PEM client certificate, for mutual TLS (requires `key`).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Name to verify the daemon's certificate against, when it differs
    /// from the host in the URI (e.g. connecting by IP to a certificate
    /// issued for a DNS name).
    pub domain: Option<String>,
}

/// Why connecting to the API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Neither `unix:` nor `tcp://`.
    #[error("`{uri}`: unsupported API address (expected unix:///PATH or tcp://HOST:PORT)")]
    BadScheme {
        /// The address as given.
        uri: String,
    },
    /// The right scheme, but the rest does not parse.
    #[error("`{uri}`: {reason}")]
    BadUri {
        /// The address as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// TLS settings given for a Unix socket, which never uses TLS; refused
    /// rather than ignored so nobody believes the socket traffic is
    /// encrypted or the daemon authenticated.
    #[error("TLS options (--ca, --cert, --key, --tls-domain) apply to tcp:// APIs only, not {uri}")]
    TlsOverUnix {
        /// The Unix API address.
        uri: String,
    },
    /// A `tcp://` API without TLS settings: the daemon only speaks TLS on TCP.
    #[error(
        "{uri}: the API over TCP is TLS only: give --ca FILE (and --cert FILE --key FILE for mutual TLS)"
    )]
    TlsRequired {
        /// The TCP API address.
        uri: String,
    },
    /// A client certificate without its key or the other way round.
    #[error("--cert and --key go together: mutual TLS needs both")]
    IncompleteIdentity,
    /// A TLS file could not be read.
    #[error("cannot read TLS {what} {}: {source}", path.display())]
    TlsFile {
        /// "CA certificate", "client certificate" or "client key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error from the file system.
        #[source]
        source: io::Error,
    },
    /// A TLS file was read but holds no PEM block (e.g. a DER file, or the
    /// wrong file); caught here because rustls would otherwise silently
    /// trust nothing and fail every handshake with a puzzling error.
    #[error("TLS {what} {}: no PEM block in it (expected -----BEGIN ...-----)", path.display())]
    TlsNotPem {
        /// "CA certificate", "client certificate" or "client key".
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The TLS configuration was refused (bad certificate or key).
    #[error("TLS configuration refused: {0}")]
    TlsConfig(String),
    /// No file at the socket path.
    #[error("is lb-daemon running? no socket at {}", path.display())]
    NoSocket {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket exists but nobody accepts on it (a stale socket of a
    /// daemon that died, or not a socket at all).
    #[error("is lb-daemon running? nothing accepts connections on {}", path.display())]
    SocketRefused {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket (mode 0600) belongs to another user.
    #[error("permission denied on {} (the API socket is mode 0600: run as the daemon's user, usually root)", path.display())]
    SocketPermission {
        /// The socket path.
        path: PathBuf,
    },
    /// Any other transport failure (TCP refused, TLS handshake failed,
    /// timeout, ...), with the whole cause chain in one line.
    #[error("cannot connect to {uri}: {reason}")]
    Connect {
        /// The API address.
        uri: String,
        /// The cause chain, `: `-separated.
        reason: String,
    },
}

impl ClientError {
    /// Whether the error is in what the caller asked for (address syntax,
    /// option combinations) rather than in reaching the daemon; `lbctl`
    /// reports these as usage errors.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ClientError::BadScheme { .. }
                | ClientError::BadUri { .. }
                | ClientError::TlsOverUnix { .. }
                | ClientError::TlsRequired { .. }
                | ClientError::IncompleteIdentity
        )
    }
}

/// A parsed API address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiUri {
    /// A Unix socket at this path.
    Unix(PathBuf),
    /// A TCP endpoint (TLS).
    Tcp {
        /// Host name or IP literal, IPv6 without brackets.
        host: String,
        /// Port, 1..=65535.
        port: u16,
    },
}

impl ApiUri {
    /// `host:port` with IPv6 literals in brackets, as a URI authority.
    fn authority(host: &str, port: u16) -> String {
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }
}

impl fmt::Display for ApiUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiUri::Unix(p) => write!(f, "unix://{}", p.display()),
            ApiUri::Tcp { host, port } => write!(f, "tcp://{}", Self::authority(host, *port)),
        }
    }
}

impl FromStr for ApiUri {
    type Err = ClientError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| ClientError::BadUri {
            uri: s.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rest) = s.strip_prefix("unix:") {
            // `unix:///abs` (URI form, as the daemon's config writes it) or
            // `unix:path` (gRPC's form). `unix://host/...` has an authority,
            // which a socket path cannot have.
            let path = match rest.strip_prefix("//") {
                Some(p) if p.starts_with('/') => p,
                Some(_) => return Err(bad("a socket path must be absolute: unix:///PATH")),
                None => rest,
            };
            if path.is_empty() {
                return Err(bad("no socket path"));
            }
            return Ok(ApiUri::Unix(PathBuf::from(path)));
        }
        let Some(rest) = s.strip_prefix("tcp://") else {
            return Err(ClientError::BadScheme { uri: s.to_owned() });
        };
        let hostport = rest.strip_suffix('/').unwrap_or(rest);
        if hostport.contains(['/', '?', '#', '@']) {
            return Err(bad("expected tcp://HOST:PORT, without path or user"));
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, port) = v6
                .split_once("]:")
                .ok_or_else(|| bad("expected tcp://[IPV6]:PORT"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("not an IPv6 address in brackets"));
            }
            (host, port)
        } else {
            let (host, port) = hostport
                .rsplit_once(':')
                .ok_or_else(|| bad("no port: expected tcp://HOST:PORT"))?;
            if host.contains(':') {
                return Err(bad("IPv6 addresses go in brackets: tcp://[::1]:50051"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(bad("no host: expected tcp://HOST:PORT"));
        }
        let port = parse_port(port).map_err(|e| bad(&e.to_string()))?;
        if port == 0 {
            return Err(bad("port 0 cannot be connected to"));
        }
        Ok(ApiUri::Tcp {
            host: host.to_owned(),
            port,
        })
    }
}

/// Connects to the API at `api` (see the module docs for the forms).
///
/// `tls` is required for `tcp://` and refused for `unix:`. The returned
/// client shares one HTTP/2 connection; clone it to issue calls
/// concurrently.
pub async fn connect(
    api: &str,
    tls: Option<&ClientTls>,
) -> Result<LoadBalancerClient<Channel>, ClientError> {
    Ok(LoadBalancerClient::new(connect_channel(api, tls).await?))
}

/// [`connect`]'s transport, for the daemon's other services on the same
/// socket (`lb.v1.Announcer`).
pub async fn connect_channel(api: &str, tls: Option<&ClientTls>) -> Result<Channel, ClientError> {
    let channel = match api.parse::<ApiUri>()? {
        ApiUri::Unix(path) => {
            if tls.is_some() {
                return Err(ClientError::TlsOverUnix {
                    uri: api.to_owned(),
                });
            }
            connect_unix(api, path).await?
        }
        ApiUri::Tcp { host, port } => {
            let tls = tls.ok_or_else(|| ClientError::TlsRequired {
                uri: api.to_owned(),
            })?;
            connect_tcp(api, &host, port, tls).await?
        }
    };
    Ok(channel)
}

async fn connect_unix(api: &str, path: PathBuf) -> Result<Channel, ClientError> {
    // The connector's io::Error is buried under several transport error
    // layers by the time connect() returns; keep its kind here so the
    // common cases get a precise message.
    let failure: Arc<Mutex<Option<io::ErrorKind>>> = Arc::default();
    let connector = {
        let path = path.clone();
        let failure = failure.clone();
        tower::service_fn(move |_: Uri| {
            let path = path.clone();
            let failure = failure.clone();
            async move {
                match UnixStream::connect(&path).await {
                    Ok(stream) => Ok(TokioIo::new(stream)),
                    Err(e) => {
                        if let Ok(mut slot) = failure.lock() {
                            *slot = Some(e.kind());
                        }
                        Err(e)
                    }
                }
            }
        })
    };
    // The URI only fills the :authority header; the connector ignores it.
    let endpoint = Endpoint::from_static("http://[::]:50051").connect_timeout(UNIX_CONNECT_TIMEOUT);
    match endpoint.connect_with_connector(connector).await {
        Ok(channel) => Ok(channel),
        Err(e) => {
            let kind = failure.lock().ok().and_then(|k| *k);
            Err(match kind {
                Some(io::ErrorKind::NotFound) => ClientError::NoSocket { path },
                Some(io::ErrorKind::ConnectionRefused) => ClientError::SocketRefused { path },
                Some(io::ErrorKind::PermissionDenied) => ClientError::SocketPermission { path },
                _ => ClientError::Connect {
                    uri: api.to_owned(),
                    reason: error_chain(&e),
                },
            })
        }
    }
}

async fn connect_tcp(
    api: &str,
    host: &str,
    port: u16,
    tls: &ClientTls,
) -> Result<Channel, ClientError> {
    let ca = read_pem(&tls.ca, "CA certificate")?;
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let cert = read_pem(cert, "client certificate")?;
            let key = read_pem(key, "client key")?;
            config = config.identity(Identity::from_pem(cert, key));
        }
        (None, None) => {}
        _ => return Err(ClientError::IncompleteIdentity),
    }
    if let Some(domain) = &tls.domain {
        config = config.domain_name(domain.clone());
    }
    let uri = format!("https://{}", ApiUri::authority(host, port));
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| ClientError::BadUri {
            uri: api.to_owned(),
            reason: error_chain(&e),
        })?
        .connect_timeout(TCP_CONNECT_TIMEOUT)
        .tls_config(config)
        .map_err(|e| ClientError::TlsConfig(error_chain(&e)))?;
    endpoint.connect().await.map_err(|e| ClientError::Connect {
        uri: api.to_owned(),
        reason: error_chain(&e),
    })
}

fn read_pem(path: &Path, what: &'static str) -> Result<Vec<u8>, ClientError> {
    let bytes = std::fs::read(path).map_err(|source| ClientError::TlsFile {
        what,
        path: path.to_owned(),
        source,
    })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(ClientError::TlsNotPem {
            what,
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// An error and its causes on one line, `: `-separated. The outermost
/// transport error says only "transport error", so it is left out when a
/// cause follows; a cause already quoted by the previous message is not
/// repeated.
pub fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        let repeated = parts.last().is_some_and(|last| last.contains(&text));
        if !text.is_empty() && !repeated {
            parts.push(text);
        }
        cur = err.source();
    }
    if parts.len() > 1 && parts[0] == "transport error" {
        parts.remove(0);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> ApiUri {
        ApiUri::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parses_api_uris() {
        let ok: &[(&str, ApiUri)] = &[
            (
                "unix:///run/lb/lb.sock",
                ApiUri::Unix("/run/lb/lb.sock".into()),
            ),
            ("unix:/tmp/x.sock", ApiUri::Unix("/tmp/x.sock".into())),
            ("unix:rel.sock", ApiUri::Unix("rel.sock".into())),
            ("tcp://127.0.0.1:50051", tcp("127.0.0.1", 50051)),
            ("tcp://[::1]:50051", tcp("::1", 50051)),
            ("tcp://[2001:db8::1]:443/", tcp("2001:db8::1", 443)),
            ("tcp://lb1.example.net:50051", tcp("lb1.example.net", 50051)),
        ];
        for (s, want) in ok {
            assert_eq!(&s.parse::<ApiUri>().unwrap(), want, "{s}");
        }
        assert_eq!(
            ApiUri::from_str(DEFAULT_API).unwrap().to_string(),
            DEFAULT_API
        );
        assert_eq!(tcp("::1", 5).to_string(), "tcp://[::1]:5");
    }

    #[test]
    fn refuses_bad_api_uris() {
        for s in [
            "http://127.0.0.1:50051",
            "https://lb:1",
            "/run/lb/lb.sock",
            "",
            "grpc://x:1",
        ] {
            let e = s.parse::<ApiUri>().unwrap_err();
            assert!(matches!(e, ClientError::BadScheme { .. }), "{s}: {e:?}");
            assert!(e.to_string().contains("unix:///PATH or tcp://HOST:PORT"));
            assert!(e.is_usage());
        }
        for s in [
            "unix://",
            "unix:",
            "unix://host/run/lb.sock",
            "tcp://127.0.0.1",
            "tcp://127.0.0.1:",
            "tcp://127.0.0.1:0",
            "tcp://127.0.0.1:65536",
            "tcp://127.0.0.1:http",
            "tcp://::1:50051",
            "tcp://[::1]50051",
            "tcp://[1.2.3.4]:50051",
            "tcp://:50051",
            "tcp://h:1/path",
            "tcp://user@h:1",
        ] {
            let e = s.parse::<ApiUri>().unwrap_err();
            assert!(matches!(e, ClientError::BadUri { .. }), "{s}: {e:?}");
        }
    }

    #[tokio::test]
    async fn connect_explains_a_missing_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.sock");
        let api = format!("unix://{}", path.display());
        let e = connect(&api, None).await.unwrap_err();
        assert!(
            matches!(&e, ClientError::NoSocket { path: p } if *p == path),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!("is lb-daemon running? no socket at {}", path.display())
        );
        assert!(!e.is_usage());
    }

    #[tokio::test]
    async fn connect_explains_a_dead_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stale.sock");
        // The socket file of a daemon that died: bound once, nobody accepts.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let e = connect(&format!("unix://{}", path.display()), None)
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::SocketRefused { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn connect_checks_tls_settings() {
        let tls = ClientTls {
            ca: "/nonexistent/ca.pem".into(),
            ..Default::default()
        };
        let e = connect("unix:///run/lb/lb.sock", Some(&tls))
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::TlsOverUnix { .. }), "{e:?}");
        let e = connect("tcp://127.0.0.1:1", None).await.unwrap_err();
        assert!(matches!(e, ClientError::TlsRequired { .. }), "{e:?}");
        let e = connect("tcp://127.0.0.1:1", Some(&tls)).await.unwrap_err();
        assert!(
            matches!(
                &e,
                ClientError::TlsFile {
                    what: "CA certificate",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("cannot read TLS CA certificate /nonexistent/ca.pem: "),
            "{e}"
        );

        let dir = tempfile::tempdir().unwrap();
        let der = dir.path().join("ca.der");
        std::fs::write(&der, [0x30, 0x82, 0x01]).unwrap();
        let tls = ClientTls {
            ca: der,
            ..Default::default()
        };
        let e = connect("tcp://127.0.0.1:1", Some(&tls)).await.unwrap_err();
        assert!(matches!(e, ClientError::TlsNotPem { .. }), "{e:?}");

        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let tls = ClientTls {
            ca: pem,
            cert: Some("/nonexistent/cert.pem".into()),
            ..Default::default()
        };
        let e = connect("tcp://127.0.0.1:1", Some(&tls)).await.unwrap_err();
        assert!(matches!(e, ClientError::IncompleteIdentity), "{e:?}");
    }

    #[test]
    fn error_chain_joins_causes() {
        #[derive(Debug)]
        struct Outer(io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("transport error")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
        assert_eq!(error_chain(&e), "timed out");
        let plain = io::Error::other("boom");
        assert_eq!(error_chain(&plain), "boom");
    }
}
