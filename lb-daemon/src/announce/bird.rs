//! BIRD 2 as the speaker: the include file we render for it, and its
//! control socket (the protocol `birdc` speaks), which we talk directly so
//! every reply code is checked here instead of scraped from a tool's output.
//!
//! The control protocol (BIRD's `doc/reply_codes`): the server greets with
//! `0001 BIRD x.y.z ready.`; a command is one line; a reply is lines of
//! `CODE-text` (more follows), ` text` (continues the previous code) and ends
//! with one `CODE text` line. Codes 0xxx are successes (0003 Reconfigured,
//! 0004 Reconfiguration in progress, ...), 1xxx/2xxx table rows and headers,
//! 8xxx run-time errors, 9xxx syntax errors.

use std::{fmt::Write as _, net::IpAddr, path::Path, time::Duration};

use thiserror::Error;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::UnixStream,
};

use crate::config::BgpConfig;

/// How long one exchange with BIRD may take: it is local and answers in
/// milliseconds; a reconfiguration that takes longer is reported, not waited
/// for forever.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Names of what the include file defines (bird.conf must not reuse them).
pub const STATIC_V4: &str = "lb_vips4";
/// The IPv6 VIP routes' protocol.
pub const STATIC_V6: &str = "lb_vips6";
/// The BFD protocol.
pub const BFD: &str = "lb_bfd";

/// The BGP protocol name of the `i`-th peer (0-based): `lb_peer1`, ...
pub fn peer_protocol(i: usize) -> String {
    format!("lb_peer{}", i + 1)
}

/// Talking to BIRD failed.
#[derive(Debug, Error)]
pub enum BirdError {
    /// The socket could not be reached or the exchange broke off.
    #[error("control socket {socket}: {source}")]
    Io {
        /// The socket path.
        socket: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// BIRD answered with an error code (8xxx/9xxx).
    #[error("BIRD refused `{command}`: {code} {text}")]
    Refused {
        /// The command sent.
        command: String,
        /// BIRD's reply code.
        code: u16,
        /// Its text (e.g. the file and line of a configuration error).
        text: String,
    },
    /// Something that is not BIRD's protocol came back.
    #[error("control socket {socket}: unexpected reply {line:?}")]
    Protocol {
        /// The socket path.
        socket: String,
        /// The line.
        line: String,
    },
}

/// One reply: its lines as (code, text), continuation lines carrying the
/// code they continue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Every line of the reply.
    pub lines: Vec<(u16, String)>,
}

impl Reply {
    /// The code of the last line (what the reply means).
    pub fn code(&self) -> u16 {
        self.lines.last().map_or(0, |l| l.0)
    }
}

/// Parses one reply line: `Some((code, text, last))`, or `None` if it is
/// not a reply line. A continuation (` text`) has code `None`.
fn parse_line(line: &str) -> Option<(Option<u16>, &str, bool)> {
    if let Some(rest) = line.strip_prefix(' ') {
        return Some((None, rest, false));
    }
    let (code, rest) = (line.get(..4)?, line.get(4..)?);
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code = code.parse().ok()?;
    match rest.as_bytes().first() {
        Some(b'-') => Some((Some(code), &rest[1..], false)),
        Some(b' ') => Some((Some(code), &rest[1..], true)),
        None => Some((Some(code), "", true)),
        _ => None,
    }
}

/// A connection to BIRD's control socket.
pub struct Control {
    socket: String,
    stream: BufReader<UnixStream>,
}

impl Control {
    /// Connects and reads the greeting.
    pub async fn connect(socket: &Path) -> Result<Self, BirdError> {
        let name = socket.display().to_string();
        let io = |source| BirdError::Io {
            socket: name.clone(),
            source,
        };
        let stream = tokio::time::timeout(TIMEOUT, UnixStream::connect(socket))
            .await
            .map_err(|_| io(std::io::ErrorKind::TimedOut.into()))?
            .map_err(io)?;
        let mut c = Self {
            socket: name.clone(),
            stream: BufReader::new(stream),
        };
        let hello = c.read_reply().await?;
        if hello.code() != 1 {
            return Err(BirdError::Protocol {
                socket: name,
                line: format!("{hello:?}"),
            });
        }
        Ok(c)
    }

    async fn read_reply(&mut self) -> Result<Reply, BirdError> {
        let mut reply = Reply::default();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(TIMEOUT, self.stream.read_line(&mut line))
                .await
                .map_err(|_| BirdError::Io {
                    socket: self.socket.clone(),
                    source: std::io::ErrorKind::TimedOut.into(),
                })?
                .map_err(|source| BirdError::Io {
                    socket: self.socket.clone(),
                    source,
                })?;
            if n == 0 {
                return Err(BirdError::Io {
                    socket: self.socket.clone(),
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                });
            }
            let line = line.trim_end_matches(['\n', '\r']);
            let Some((code, text, last)) = parse_line(line) else {
                return Err(BirdError::Protocol {
                    socket: self.socket.clone(),
                    line: line.to_owned(),
                });
            };
            let code = code.or(reply.lines.last().map(|l| l.0)).unwrap_or(0);
            reply.lines.push((code, text.to_owned()));
            if last {
                return Ok(reply);
            }
        }
    }

    /// Sends one command and returns its reply; an 8xxx/9xxx reply is an
    /// error.
    pub async fn command(&mut self, command: &str) -> Result<Reply, BirdError> {
        let io = |source| BirdError::Io {
            socket: self.socket.clone(),
            source,
        };
        let s = self.stream.get_mut();
        s.write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(io)?;
        let reply = self.read_reply().await?;
        if let Some((code, text)) = reply.lines.iter().find(|(c, _)| *c >= 8000) {
            return Err(BirdError::Refused {
                command: command.to_owned(),
                code: *code,
                text: text.clone(),
            });
        }
        Ok(reply)
    }
}

/// Makes BIRD re-read its configuration (ours included). Returns BIRD's
/// verdict line (`Reconfigured`, `Reconfiguration in progress`, ...).
pub async fn configure(socket: &Path) -> Result<String, BirdError> {
    let mut c = Control::connect(socket).await?;
    let reply = c.command("configure").await?;
    Ok(reply.lines.last().map(|l| l.1.clone()).unwrap_or_default())
}

/// Checks that BIRD answers on `socket` (`lb-daemon check`).
pub async fn probe(socket: &Path) -> Result<(), BirdError> {
    Control::connect(socket).await.map(drop)
}

/// One BGP session as `show protocols` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolRow {
    /// Protocol name (`lb_peer1`).
    pub name: String,
    /// `up`, `start`, `down`, ...
    pub state: String,
    /// Since when (BIRD's format).
    pub since: String,
    /// The BGP state (`Established`, `Active`, `Connect`, ...) and its
    /// last error, if any.
    pub info: String,
}

/// Reads `show protocols` and returns its rows.
pub async fn protocols(socket: &Path) -> Result<Vec<ProtocolRow>, BirdError> {
    let mut c = Control::connect(socket).await?;
    let reply = c.command("show protocols").await?;
    Ok(parse_protocols(&reply))
}

/// Rows (code 1002) of a `show protocols` reply: name, protocol, table,
/// state, since (one or two words), info.
fn parse_protocols(reply: &Reply) -> Vec<ProtocolRow> {
    reply
        .lines
        .iter()
        .filter(|(c, _)| *c == 1002)
        .filter_map(|(_, text)| {
            let w: Vec<&str> = text.split_whitespace().collect();
            let (name, state) = (w.first()?, w.get(3)?);
            // "since" is a time, or a date and a time: the info starts
            // with the first word that is neither.
            let looks_time = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || b"-:.".contains(&b));
            let rest = w.get(4..).unwrap_or_default();
            let n_since = rest.iter().take_while(|s| looks_time(s)).count();
            Some(ProtocolRow {
                name: name.to_string(),
                state: state.to_string(),
                since: rest[..n_since].join(" "),
                info: rest[n_since..].join(" "),
            })
        })
        .collect()
}

/// The include file for `announced` (the VIP addresses to announce), from
/// the `[bgp]` settings. The same inputs give the same bytes, so an
/// unchanged file is recognised and BIRD is not asked to reload it.
pub fn render(cfg: &BgpConfig, announced: &[IpAddr], note: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Generated by lb-daemon ([bgp] in its configuration): do not edit,\n\
         # it is rewritten whenever the set of VIPs this node can serve changes.\n\
         # {note}"
    );
    for (name, family, v4) in [(STATIC_V4, "ipv4", true), (STATIC_V6, "ipv6", false)] {
        let _ = writeln!(s, "protocol static {name} {{\n    {family};");
        for a in announced.iter().filter(|a| a.is_ipv4() == v4) {
            let len = if v4 { 32 } else { 128 };
            // Never installed in a kernel table here (only exported over
            // BGP with this node as next hop): blackhole is a destination
            // that needs no gateway.
            let _ = writeln!(s, "    route {a}/{len} blackhole;");
        }
        let _ = writeln!(s, "}}");
    }
    if cfg.bfd {
        let _ = writeln!(
            s,
            "protocol bfd {BFD} {{\n    interface \"*\" {{\n        min rx interval {i} ms;\n        \
             min tx interval {i} ms;\n        multiplier {m};\n    }};\n}}",
            i = cfg.bfd_interval_ms,
            m = cfg.bfd_multiplier
        );
    }
    for (i, p) in cfg.peers.iter().enumerate() {
        let (family, table) = if p.address.is_ipv4() {
            ("ipv4", STATIC_V4)
        } else {
            ("ipv6", STATIC_V6)
        };
        let keepalive = (cfg.hold_time / 3).max(1);
        let _ = writeln!(
            s,
            "protocol bgp {name} {{\n    local as {local};\n    neighbor {addr} as {asn};\n    \
             hold time {hold};\n    keepalive time {keepalive};\n    \
             # a restarted router or speaker is back in seconds, not minutes\n    \
             connect retry time 2;\n    error wait time 1, 10;\n    bfd {bfd};\n    \
             {family} {{\n        import none;\n        export where proto = \"{table}\";\n    }};\n}}",
            name = peer_protocol(i),
            local = cfg.local_asn,
            addr = p.address,
            asn = p.asn,
            hold = cfg.hold_time,
            keepalive = if cfg.hold_time == 0 { 0 } else { keepalive },
            bfd = if cfg.bfd { "on" } else { "off" },
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> Reply {
        let mut r = Reply::default();
        for line in text.lines() {
            let (code, t, _) = parse_line(line).unwrap();
            let code = code.or(r.lines.last().map(|l| l.0)).unwrap();
            r.lines.push((code, t.to_owned()));
        }
        r
    }

    #[test]
    fn reply_lines() {
        assert_eq!(
            parse_line("0001 BIRD 2.0.12 ready."),
            Some((Some(1), "BIRD 2.0.12 ready.", true))
        );
        assert_eq!(
            parse_line("0002-Reading configuration from /x"),
            Some((Some(2), "Reading configuration from /x", false))
        );
        assert_eq!(parse_line(" more"), Some((None, "more", false)));
        assert_eq!(parse_line("0000"), Some((Some(0), "", true)));
        assert_eq!(parse_line("hello"), None);
        assert_eq!(parse_line("12a4 x"), None);
    }

    #[test]
    fn protocols_table() {
        let r = reply(
            "2002-Name       Proto      Table      State  Since         Info\n\
             1002-device1    Device     ---        up     09:41:02.113  \n\
             1002-lb_peer1   BGP        ---        up     09:41:03.250  Established   \n\
             1002-lb_peer2   BGP        ---        start  2026-11-30 09:41:03  Active        Socket: Connection refused\n\
             0000 \n",
        );
        let rows = parse_protocols(&r);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (
                rows[1].name.as_str(),
                rows[1].state.as_str(),
                rows[1].info.as_str()
            ),
            ("lb_peer1", "up", "Established")
        );
        assert_eq!(rows[2].since, "2026-11-30 09:41:03");
        assert_eq!(rows[2].info, "Active Socket: Connection refused");
        assert_eq!(rows[0].info, "");
    }

    #[test]
    fn rendered_file() {
        let cfg: crate::config::Config =
            "[dataplane]\ninterface = \"eth0\"\ngateway_mac = \"02:00:00:00:00:01\"\n\
            [bgp]\nlocal_asn = 65001\n[[bgp.peer]]\naddress = \"198.18.2.1\"\nasn = 65000\n\
            [[bgp.peer]]\naddress = \"fd00:2::1\"\nasn = 65000\n"
                .parse()
                .unwrap();
        let cfg = cfg.bgp.unwrap();
        let a: Vec<IpAddr> = vec![
            "198.18.100.10".parse().unwrap(),
            "fd00:100::10".parse().unwrap(),
        ];
        let f = render(&cfg, &a, "2 announced");
        assert!(
            f.contains(
                "protocol static lb_vips4 {\n    ipv4;\n    route 198.18.100.10/32 blackhole;\n}"
            ),
            "{f}"
        );
        assert!(f.contains("route fd00:100::10/128 blackhole;"), "{f}");
        assert!(
            f.contains("min rx interval 100 ms;") && f.contains("multiplier 3;"),
            "{f}"
        );
        assert!(
            f.contains(
                "protocol bgp lb_peer1 {\n    local as 65001;\n    neighbor 198.18.2.1 as 65000;"
            ),
            "{f}"
        );
        assert!(
            f.contains("hold time 9;") && f.contains("keepalive time 3;") && f.contains("bfd on;"),
            "{f}"
        );
        assert!(
            f.contains("ipv6 {\n        import none;\n        export where proto = \"lb_vips6\";"),
            "{f}"
        );
        assert_eq!(f, render(&cfg, &a, "2 announced"), "deterministic");
        let none = render(&cfg, &[], "0 announced");
        assert!(!none.contains("route "), "{none}");
    }
}
