//! systemd's readiness protocol (`sd_notify(3)`): one datagram with
//! `READY=1` or `STOPPING=1` to the Unix socket named by `$NOTIFY_SOCKET`.
//! A dozen lines over `UnixDatagram`, so no crate for it.

use std::os::unix::net::UnixDatagram;

/// Tells the service manager `state` (e.g. `"READY=1"`). Without
/// `$NOTIFY_SOCKET` (not started by systemd with `Type=notify`) it does
/// nothing; a failure to send is logged, never fatal, because the daemon
/// serves either way.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        tracing::warn!(cause = %e, socket = ?path, state, "sd_notify failed");
    } else {
        tracing::debug!(state, "sd_notify sent");
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    // A leading '@' names a socket in the abstract namespace (systemd uses
    // those in containers).
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt as _;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_the_state_to_a_path_and_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notify");
        let rx = UnixDatagram::bind(&p).unwrap();
        send(p.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("lb-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");

        // Nobody listening: an error for the caller to log, not a panic.
        assert!(send(dir.path().join("absent").as_os_str(), "READY=1").is_err());
    }
}
