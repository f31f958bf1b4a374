//! One probe of one backend, as a small state machine over a non-blocking
//! socket: `direct` to the backend's own address, or `via-vip` to the VIP
//! with a socket mark naming the backend (the TC program `lb_probe`
//! encapsulates such packets to it; see `lb-ebpf/src/bin/lb-xdp/probe.rs`).
//! The engine ([`super::engine`]) starts probes, polls their sockets in
//! batches and hands each [`Probe::advance`] what `poll(2)` saw; a probe
//! ends in `Ok(())` or the [`Reason`] it failed, which the API and the logs
//! show as it is ("refused", "timeout", "status 503", ...).
//!
//! Why not async sockets: a probe is a handful of system calls, and with
//! 1,000 of them a second the runtime's share (registering and
//! deregistering each socket with epoll, a wake-up per readiness event, a
//! timer per timeout) cost as much as the probe itself. Here a socket is
//! never registered anywhere: it is created, connected, polled with the
//! others in flight (one `poll` per batch) and closed.

use std::{
    io::{self, Read as _, Write as _},
    net::SocketAddr,
    os::fd::{AsRawFd, RawFd},
    sync::Arc,
    time::{Duration, Instant},
};

use lb_api::{CheckKind, HealthCheck, Reason};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::machine::ProbeResult;

/// Bytes of an HTTP answer read to find its status line.
const HTTP_HEAD: usize = 1024;

/// What every probe of one backend does, built once when its prober
/// starts: the check, where the probe goes, its socket mark and the bytes
/// it sends.
#[derive(Debug)]
pub struct Plan {
    /// The check, as this backend is probed.
    pub check: HealthCheck,
    /// The backend's address and check port (`direct`) or the VIP's
    /// (`via-vip`).
    pub target: SocketAddr,
    /// The socket mark of a `via-vip` probe.
    pub mark: Option<u32>,
    /// The HTTP request or the UDP payload (nothing for TCP).
    send: Box<[u8]>,
}

impl Plan {
    /// The plan of `check` probing `target` (marked `mark`).
    pub fn new(check: HealthCheck, target: SocketAddr, mark: Option<u32>) -> Plan {
        let send = match &check.kind {
            CheckKind::Tcp => Vec::new(),
            CheckKind::Http { path, host, .. } => match host {
                Some(host) => request(path, host),
                None => request(path, &target),
            }
            .into_bytes(),
            CheckKind::Udp { payload, .. } => payload.as_bytes().to_vec(),
        };
        Plan {
            check,
            target,
            mark,
            send: send.into_boxed_slice(),
        }
    }
}

/// A probe in flight: its socket, what it waits for and until when.
pub struct Probe {
    sock: Socket,
    plan: Arc<Plan>,
    step: Step,
    /// When it fails with [`Reason::Timeout`] if it has not ended.
    pub deadline: Instant,
}

/// What a probe waits for.
enum Step {
    /// A TCP connect in progress: the socket turns writable when it ends.
    Connecting,
    /// HTTP: the request is sent; the answer's first bytes so far.
    Reading { head: Vec<u8> },
    /// UDP: the datagram is sent; waiting for the reply (or an ICMP error).
    Awaiting,
}

/// Where a probe is after a step.
pub enum Progress {
    /// Still waiting (poll its socket for [`Probe::events`]).
    Pending(Probe),
    /// Ended.
    Done(ProbeResult),
}

impl Probe {
    /// Starts a probe as `plan` says, on a socket from `idle` if one is
    /// there (TCP); every packet of it carries the plan's socket mark, if
    /// any. Its deadline is `now` plus the check's timeout.
    pub fn start(plan: Arc<Plan>, now: Instant, idle: &mut IdleSockets) -> Progress {
        let deadline = now + plan.check.timeout();
        let sock = match plan.check.kind {
            CheckKind::Udp { .. } => open(plan.target, plan.mark, true),
            _ => idle.take(plan.target, plan.mark),
        };
        let sock = match sock {
            Ok(s) => s,
            Err(e) => return Progress::Done(Err(io_reason(e))),
        };
        let connected = match sock.connect(&SockAddr::from(plan.target)) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => false,
            Err(e) => return Progress::Done(Err(io_reason(e))),
        };
        let probe = Probe {
            sock,
            plan,
            step: Step::Connecting,
            deadline,
        };
        if connected {
            // UDP always; TCP to a local address sometimes.
            probe.connected(idle)
        } else {
            Progress::Pending(probe)
        }
    }

    /// Its socket, to poll.
    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// What to poll its socket for.
    pub fn events(&self) -> libc::c_short {
        match self.step {
            Step::Connecting => libc::POLLOUT,
            Step::Reading { .. } | Step::Awaiting => libc::POLLIN,
        }
    }

    /// One step, given what `poll` returned for its socket (`revents`); a
    /// TCP socket whose probe got its answer goes back to `idle`.
    pub fn advance(mut self, revents: libc::c_short, idle: &mut IdleSockets) -> Progress {
        match &mut self.step {
            Step::Connecting => {
                // Writable and nothing else: connected (no system call to
                // ask). A failed connect shows as POLLERR (and often
                // POLLHUP); the error itself is the socket's pending error.
                if revents & (libc::POLLERR | libc::POLLHUP) == 0 {
                    return self.connected(idle);
                }
                match self.sock.take_error() {
                    Ok(None) => Progress::Done(Err(Reason::Refused)),
                    Ok(Some(e)) | Err(e) => Progress::Done(Err(io_reason(e))),
                }
            }
            Step::Reading { head } => {
                let mut buf = [0u8; HTTP_HEAD];
                let room = HTTP_HEAD - head.len();
                match (&self.sock).read(&mut buf[..room]) {
                    Ok(n) => {
                        head.extend_from_slice(&buf[..n]);
                        // The status line complete, the buffer full or the
                        // peer closed: judge what came.
                        if n == 0 || head.contains(&b'\n') || head.len() == HTTP_HEAD {
                            let result = match (status_code(head), &self.plan.check.kind) {
                                (Some(code), CheckKind::Http { expect, .. }) if code == *expect => {
                                    Ok(())
                                }
                                (Some(code), _) => Err(Reason::Status(code)),
                                (None, _) => Err(Reason::BadReply),
                            };
                            idle.give(self.sock, self.plan.target, self.plan.mark);
                            Progress::Done(result)
                        } else {
                            Progress::Pending(self)
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Progress::Pending(self),
                    Err(e) => Progress::Done(Err(io_reason(e))),
                }
            }
            Step::Awaiting => {
                let mut buf = [0u8; 2048];
                match (&self.sock).read(&mut buf) {
                    Ok(n) => Progress::Done(match &self.plan.check.kind {
                        CheckKind::Udp {
                            expect: Some(e), ..
                        } if !contains(&buf[..n], e.as_bytes()) => Err(Reason::BadReply),
                        _ => Ok(()),
                    }),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Progress::Pending(self),
                    Err(e) => Progress::Done(Err(io_reason(e))),
                }
            }
        }
    }

    /// The probe ran out of time: its socket is closed (with a reset, if a
    /// connection was made: see [`open`]) and it fails with
    /// [`Reason::Timeout`].
    pub fn expire(self) -> ProbeResult {
        Err(Reason::Timeout)
    }

    /// The connection is made (TCP) or the socket connected (UDP): a TCP
    /// check has its answer, HTTP sends its request, UDP its datagram.
    fn connected(mut self, idle: &mut IdleSockets) -> Progress {
        self.step = match self.plan.check.kind {
            CheckKind::Tcp => {
                idle.give(self.sock, self.plan.target, self.plan.mark);
                return Progress::Done(Ok(()));
            }
            CheckKind::Http { .. } => Step::Reading {
                head: Vec::with_capacity(256),
            },
            CheckKind::Udp { .. } => Step::Awaiting,
        };
        match send_all(&self.sock, &self.plan.send) {
            Ok(()) => Progress::Pending(self),
            Err(e) => Progress::Done(Err(io_reason(e))),
        }
    }
}

/// Idle TCP sockets, kept for the next probe instead of closed: creating
/// and closing a socket (a file, an inode, a dentry each time) was a third
/// of a probe's kernel time. A probe that got its answer hands its socket
/// back here, which dissolves the connection at once with
/// `connect(AF_UNSPEC)` (the kernel's `tcp_disconnect`: a reset to the
/// backend, queues purged, the source port released), and the next probe
/// connects it again from a new source port. A socket whose probe failed
/// or timed out is closed, never reused.
#[derive(Default)]
pub struct IdleSockets {
    v4: Vec<(Socket, Option<u32>)>,
    v6: Vec<(Socket, Option<u32>)>,
}

impl IdleSockets {
    /// At most this many idle sockets per family: about the probes that
    /// end together; more are closed.
    pub const MAX: usize = 64;

    /// A socket for `target` marked `mark`: an idle one (its mark changed
    /// if it had another) or a new one.
    fn take(&mut self, target: SocketAddr, mark: Option<u32>) -> io::Result<Socket> {
        let list = if target.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        };
        match list.pop() {
            Some((sock, had)) => {
                if had != mark {
                    // 0 is no mark: a via-vip socket reused for a direct probe.
                    sock.set_mark(mark.unwrap_or(0))?;
                }
                Ok(sock)
            }
            None => open(target, mark, false),
        }
    }

    /// Takes back the socket of a probe that got its answer.
    fn give(&mut self, sock: Socket, target: SocketAddr, mark: Option<u32>) {
        let list = if target.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        };
        if list.len() < Self::MAX && disconnect(&sock).is_ok() {
            list.push((sock, mark));
        }
        // Otherwise dropped: closed with a reset (see `open`).
    }

    /// Idle sockets now (IPv4, IPv6).
    pub fn len(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }
}

/// Dissolves a TCP socket's connection so it can connect again
/// (`connect(2)` to an `AF_UNSPEC` address).
fn disconnect(sock: &Socket) -> io::Result<()> {
    // SAFETY: a zeroed sockaddr (family AF_UNSPEC) of its own size, on a
    // socket we own.
    let rc = unsafe {
        let addr: libc::sockaddr = std::mem::zeroed();
        libc::connect(
            sock.as_raw_fd(),
            &addr,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A non-blocking socket for `target`, marked before its first packet when
/// `mark` is set (`SO_MARK` needs CAP_NET_ADMIN, which the daemon has).
///
/// A TCP socket lingers 0: closed while connected, it resets the connection
/// rather than sending a FIN, which would leave it in TIME_WAIT on this
/// host for a minute (60,000 of them at 1,000 probes a second, each a slot
/// the kernel walks when it picks the next probe's source port).
fn open(target: SocketAddr, mark: Option<u32>, udp: bool) -> io::Result<Socket> {
    let (ty, proto) = if udp {
        (Type::DGRAM, Protocol::UDP)
    } else {
        (Type::STREAM, Protocol::TCP)
    };
    let sock = Socket::new(Domain::for_address(target), ty.nonblocking(), Some(proto))?;
    if let Some(m) = mark {
        sock.set_mark(m)?;
    }
    if !udp {
        sock.set_linger(Some(Duration::ZERO))?;
    }
    Ok(sock)
}

/// Sends `buf` whole in one call: a request or datagram this small always
/// fits a fresh socket's buffer, so a short write means something is wrong.
fn send_all(sock: &Socket, buf: &[u8]) -> io::Result<()> {
    match (&*sock).write(buf)? {
        n if n == buf.len() => Ok(()),
        _ => Err(io::Error::other("short write")),
    }
}

/// Polls `fds` without blocking (`timeout` zero) or up to `timeout`;
/// returns how many have events. Interrupted: none.
pub fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if rc >= 0 {
        Ok(rc as usize)
    } else {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            Ok(0)
        } else {
            Err(e)
        }
    }
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

/// The request of an HTTP check: HTTP/1.0, one request per connection (no
/// keep-alive: a probe must see a server that still accepts connections,
/// not a socket it kept).
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

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Runs one probe to its end, alone (blocking): what the engine does for
/// many at once, for tests.
#[cfg(test)]
pub fn run_one(check: &HealthCheck, target: SocketAddr, mark: Option<u32>) -> ProbeResult {
    run_with(check, target, mark, &mut IdleSockets::default())
}

/// [`run_one`] with the engine's idle sockets.
#[cfg(test)]
pub fn run_with(
    check: &HealthCheck,
    target: SocketAddr,
    mark: Option<u32>,
    idle: &mut IdleSockets,
) -> ProbeResult {
    let plan = Arc::new(Plan::new(check.clone(), target, mark));
    let mut p = match Probe::start(plan, Instant::now(), idle) {
        Progress::Done(r) => return r,
        Progress::Pending(p) => p,
    };
    loop {
        let left = p.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return p.expire();
        }
        let mut fd = [libc::pollfd {
            fd: p.fd(),
            events: p.events(),
            revents: 0,
        }];
        match poll(&mut fd, left.min(Duration::from_millis(10))) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(e) => return Err(io_reason(e)),
        }
        p = match p.advance(fd[0].revents, idle) {
            Progress::Done(r) => return r,
            Progress::Pending(p) => p,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, UdpSocket},
    };

    /// One probe, run on a blocking thread while the test's servers run on
    /// the runtime.
    async fn probe(check: &HealthCheck, target: SocketAddr, mark: Option<u32>) -> ProbeResult {
        let check = check.clone();
        tokio::task::spawn_blocking(move || run_one(&check, target, mark))
            .await
            .unwrap()
    }

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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

    /// A socket whose probe got its answer is reused, each time from a new
    /// source port (the backend sees a new connection, and the previous one
    /// reset); one whose probe failed is closed, not kept.
    #[test]
    fn answered_probes_reuse_their_socket_from_new_source_ports() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut peers = Vec::new();
            for _ in 0..6 {
                let (mut s, peer) = l.accept().unwrap();
                peers.push(peer.port());
                // Answer HTTP probes, say nothing to TCP ones.
                let mut buf = [0u8; 512];
                if let Ok(n) = std::io::Read::read(&mut s, &mut buf)
                    && n > 0
                {
                    let _ = std::io::Write::write_all(&mut s, b"HTTP/1.0 200 OK\r\n\r\n");
                }
            }
            peers
        });
        let idle = &mut IdleSockets::default();
        let tcp = check(CheckKind::Tcp);
        let http = http_check(200);
        for c in [&tcp, &http, &tcp, &http, &http, &tcp] {
            assert_eq!(run_with(c, addr, None, idle), Ok(()));
            assert_eq!(idle.len(), (1, 0), "one socket, back after each probe");
        }
        let mut peers = server.join().unwrap();
        peers.sort_unstable();
        peers.dedup();
        assert_eq!(peers.len(), 6, "a new source port each time");
        // Refused: the socket is not kept.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        assert_eq!(run_with(&tcp, closed, None, idle), Err(Reason::Refused));
        assert_eq!(idle.len(), (0, 0));
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
