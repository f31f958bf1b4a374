//! One probe of one backend, with tokio sockets: `direct` to the backend's
//! own address, or `via-vip` to the VIP with a socket mark naming the
//! backend (the TC program `lb_probe` encapsulates such packets to it; see
//! `lb-ebpf/src/bin/lb-xdp/probe.rs`). Each returns `Ok(())` or the
//! [`Reason`] it failed, which the API and the logs show as it is
//! ("refused", "timeout", "status 503", ...).

use std::{
    io,
    net::SocketAddr,
    os::fd::{AsRawFd, RawFd},
};

use lb_api::{CheckKind, HealthCheck, Reason};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream, UdpSocket},
};

use super::machine::ProbeResult;

/// Bytes of an HTTP answer read to find its status line.
const HTTP_HEAD: usize = 1024;

/// Probes `target` as `check` says, within its timeout; every packet of the
/// probe carries socket mark `mark` when set (a `via-vip` probe).
pub async fn probe(check: &HealthCheck, target: SocketAddr, mark: Option<u32>) -> ProbeResult {
    let attempt = async {
        match &check.kind {
            CheckKind::Tcp => connect(target, mark).await.map(close_now),
            CheckKind::Http { path, expect, host } => {
                http(target, mark, path, *expect, host.as_deref()).await
            }
            CheckKind::Udp { payload, expect } => {
                udp(target, mark, payload, expect.as_deref()).await
            }
        }
    };
    tokio::time::timeout(check.timeout(), attempt)
        .await
        .unwrap_or(Err(Reason::Timeout))
}

/// Closes a probe's connection with a reset rather than FIN: the probe has
/// its answer, and a FIN would leave the socket in TIME_WAIT on this host
/// for a minute, 60,000 of them at 1,000 probes a second, each a slot the
/// kernel walks when it picks the next probe's source port.
fn close_now(s: TcpStream) {
    // Best effort: if the option cannot be set, the close is a FIN.
    let _ = s.set_zero_linger();
}

/// What a socket error says about the backend.
fn io_reason(e: io::Error) -> Reason {
    match e.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => Reason::Refused,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => Reason::Unreachable,
        io::ErrorKind::TimedOut => Reason::Timeout,
        _ => Reason::Error,
    }
}

/// Sets `SO_MARK` (needs CAP_NET_ADMIN, which the daemon has).
fn set_mark(fd: RawFd, mark: u32) -> io::Result<()> {
    // SAFETY: a plain setsockopt on a socket we own, with a 4-byte value.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MARK,
            (&mark as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A TCP connection to `target`, marked before the SYN when `mark` is set.
async fn connect(target: SocketAddr, mark: Option<u32>) -> Result<TcpStream, Reason> {
    let s = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(io_reason)?;
    if let Some(m) = mark {
        set_mark(s.as_raw_fd(), m).map_err(io_reason)?;
    }
    s.connect(target).await.map_err(io_reason)
}

/// HTTP/1.0 GET, one request per connection (no keep-alive: a probe must
/// see a server that still accepts connections, not a socket it kept).
async fn http(
    target: SocketAddr,
    mark: Option<u32>,
    path: &str,
    expect: u16,
    host: Option<&str>,
) -> ProbeResult {
    let mut s = connect(target, mark).await?;
    let req = match host {
        Some(host) => request(path, &host),
        None => request(path, &target),
    };
    s.write_all(req.as_bytes()).await.map_err(io_reason)?;
    let mut buf = [0u8; HTTP_HEAD];
    let mut len = 0;
    // Read until the status line is complete (or the peer closes).
    loop {
        let n = s.read(&mut buf[len..]).await.map_err(io_reason)?;
        len += n;
        if n == 0 || buf[..len].contains(&b'\n') || len == HTTP_HEAD {
            break;
        }
    }
    close_now(s);
    match status_code(&buf[..len]) {
        Some(code) if code == expect => Ok(()),
        Some(code) => Err(Reason::Status(code)),
        None => Err(Reason::BadReply),
    }
}

/// The request of an HTTP check.
fn request(path: &str, host: &dyn std::fmt::Display) -> String {
    format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: lb-health\r\nConnection: close\r\n\r\n"
    )
}

/// The status of an HTTP/1.x answer: `HTTP/1.1 200 OK`.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// One datagram; a reply (containing `expect`, if set) is a pass. The
/// socket is connected, so an ICMP port unreachable comes back as
/// "refused" instead of waiting for the timeout.
async fn udp(
    target: SocketAddr,
    mark: Option<u32>,
    payload: &str,
    expect: Option<&str>,
) -> ProbeResult {
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = UdpSocket::bind(local).await.map_err(io_reason)?;
    if let Some(m) = mark {
        set_mark(s.as_raw_fd(), m).map_err(io_reason)?;
    }
    s.connect(target).await.map_err(io_reason)?;
    s.send(payload.as_bytes()).await.map_err(io_reason)?;
    let mut buf = vec![0u8; 2048];
    let n = s.recv(&mut buf).await.map_err(io_reason)?;
    match expect {
        Some(e) if !contains(&buf[..n], e.as_bytes()) => Err(Reason::BadReply),
        _ => Ok(()),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn check(kind: CheckKind) -> HealthCheck {
        let mut c = HealthCheck::new(kind);
        c.timeout_ms = 300;
        c
    }

    fn http_check(expect: u16) -> HealthCheck {
        check(CheckKind::Http {
            path: "/healthz".into(),
            expect,
            host: Some("svc.example".into()),
        })
    }

    /// An HTTP server on loopback answering every connection with `answer`;
    /// returns its address and a receiver of the requests it got.
    async fn server(answer: &'static str) -> (SocketAddr, tokio::sync::mpsc::Receiver<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = vec![0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let _ = tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .await;
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        (addr, rx)
    }

    /// A loopback port nothing listens on.
    async fn closed_port() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    }

    #[tokio::test]
    async fn http_passes_on_the_expected_status_only() {
        let (ok, mut req) = server("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        assert_eq!(probe(&http_check(200), ok, None).await, Ok(()));
        let got = req.recv().await.unwrap();
        assert!(got.starts_with("GET /healthz HTTP/1.0\r\n"), "{got}");
        assert!(got.contains("\r\nHost: svc.example\r\n"), "{got}");
        let (sick, _) = server("HTTP/1.0 503 Service Unavailable\r\n\r\n").await;
        assert_eq!(
            probe(&http_check(200), sick, None).await,
            Err(Reason::Status(503))
        );
        assert_eq!(probe(&http_check(503), sick, None).await, Ok(()));
        let (junk, _) = server("SSH-2.0-OpenSSH\r\n").await;
        assert_eq!(
            probe(&http_check(200), junk, None).await,
            Err(Reason::BadReply)
        );
        assert_eq!(
            probe(&http_check(200), closed_port().await, None).await,
            Err(Reason::Refused)
        );
    }

    #[tokio::test]
    async fn tcp_connect_and_timeout() {
        let (ok, _) = server("").await;
        assert_eq!(probe(&check(CheckKind::Tcp), ok, None).await, Ok(()));
        assert_eq!(
            probe(&check(CheckKind::Tcp), closed_port().await, None).await,
            Err(Reason::Refused)
        );
        // Accepts, never answers: an HTTP probe times out.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = l.local_addr().unwrap();
        let t = std::time::Instant::now();
        assert_eq!(
            probe(&http_check(200), silent, None).await,
            Err(Reason::Timeout)
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        drop(l);
    }

    #[tokio::test]
    async fn udp_reply_expected_bytes_and_refused() {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = s.recv_from(&mut buf).await {
                let mut reply = b"backend-1:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = s.send_to(&reply, peer).await;
            }
        });
        let udp = |expect: Option<&str>| {
            check(CheckKind::Udp {
                payload: "ping".into(),
                expect: expect.map(str::to_owned),
            })
        };
        assert_eq!(probe(&udp(None), addr, None).await, Ok(()));
        assert_eq!(probe(&udp(Some("1:ping")), addr, None).await, Ok(()));
        assert_eq!(
            probe(&udp(Some("pong")), addr, None).await,
            Err(Reason::BadReply)
        );
        let closed = {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            s.local_addr().unwrap()
        };
        assert_eq!(probe(&udp(None), closed, None).await, Err(Reason::Refused));
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code(b"HTTP/1.0 200"), Some(200));
        assert_eq!(status_code(b"HTTP/2 200\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 20\r\n"), None);
        assert_eq!(status_code(b""), None);
    }
}
