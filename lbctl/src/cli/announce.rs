//! `lbctl announce list` and `lbctl node drain|undrain`: the daemon's
//! `lb.v1.Announcer` service (what this node announces over BGP, and why).
//!
//! `announce list --json` prints one object:
//! `{"drained":B,"speaker":"bird","speaker_error":"","config_file":"…",
//! "announcements":[{"prefix":"198.18.100.10/32","state":"announced"|"withdrawn","reason":"…"}…],
//! "peers":[{"name":"lb_peer1","address":"198.18.2.1","asn":N,"state":"up","since":"…","info":"Established"}…]}`.
//! `node drain|undrain` print the announcements after the change, as the
//! table does; they exit 1 when the speaker did not take the change (the
//! drain is recorded and retried by the daemon).

use std::io::Write;

use lb_proto::v1::{
    Announcement, DrainNodeRequest, ListAnnouncementsRequest, ListAnnouncementsResponse,
    UndrainNodeRequest, announcer_client::AnnouncerClient,
};
use serde::Serialize;

use super::{
    CliError,
    args::{AnnounceCommand, Args, NodeCommand},
    commands::emit,
};
use crate::client;

fn state(a: &Announcement) -> &'static str {
    if a.announced {
        "announced"
    } else {
        "withdrawn"
    }
}

#[derive(Serialize)]
struct AnnouncementJson<'a> {
    prefix: &'a str,
    state: &'static str,
    reason: &'a str,
}

#[derive(Serialize)]
struct PeerJson<'a> {
    name: &'a str,
    address: &'a str,
    asn: u32,
    state: &'a str,
    since: &'a str,
    info: &'a str,
}

#[derive(Serialize)]
struct ListJson<'a> {
    drained: bool,
    speaker: &'a str,
    speaker_error: &'a str,
    config_file: &'a str,
    announcements: Vec<AnnouncementJson<'a>>,
    peers: Vec<PeerJson<'a>>,
}

/// `announce list --json`.
pub fn list_json(r: &ListAnnouncementsResponse) -> String {
    let v = ListJson {
        drained: r.drained,
        speaker: &r.speaker,
        speaker_error: &r.speaker_error,
        config_file: &r.config_file,
        announcements: r
            .announcements
            .iter()
            .map(|a| AnnouncementJson {
                prefix: &a.prefix,
                state: state(a),
                reason: &a.reason,
            })
            .collect(),
        peers: r
            .peers
            .iter()
            .map(|p| PeerJson {
                name: &p.name,
                address: &p.address,
                asn: p.asn,
                state: &p.state,
                since: &p.since,
                info: &p.info,
            })
            .collect(),
    };
    serde_json::to_string(&v).expect("serialisable")
}

fn announcements_table(list: &[Announcement]) -> String {
    let w = list
        .iter()
        .map(|a| a.prefix.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut s = format!("{:<w$}  {:<9}  REASON\n", "PREFIX", "STATE");
    if list.is_empty() {
        s.push_str("(no VIPs)\n");
    }
    for a in list {
        s.push_str(&format!(
            "{:<w$}  {:<9}  {}\n",
            a.prefix,
            state(a),
            a.reason
        ));
    }
    s
}

/// `announce list`.
pub fn list_table(r: &ListAnnouncementsResponse) -> String {
    let mut s = announcements_table(&r.announcements);
    s.push_str(&format!(
        "\nnode: {}   speaker: {} ({})   file: {}\n",
        if r.drained { "DRAINED" } else { "active" },
        r.speaker,
        if r.speaker_error.is_empty() {
            "ok"
        } else {
            r.speaker_error.as_str()
        },
        r.config_file
    ));
    s.push_str(
        "\nPEER      ADDRESS                ASN         STATE    SINCE                 INFO\n",
    );
    for p in &r.peers {
        s.push_str(&format!(
            "{:<8}  {:<21}  {:<10}  {:<7}  {:<20}  {}\n",
            p.name, p.address, p.asn, p.state, p.since, p.info
        ));
    }
    s
}

async fn client(args: &Args) -> Result<AnnouncerClient<tonic::transport::Channel>, CliError> {
    let tls = args.client_tls();
    let ch = client::connect_channel(args.api(), tls.as_ref())
        .await
        .map_err(CliError::Connect)?;
    Ok(AnnouncerClient::new(ch))
}

/// `lbctl announce ...`.
pub(super) async fn announce(
    args: &Args,
    cmd: &AnnounceCommand,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let mut c = client(args).await?;
    match cmd {
        AnnounceCommand::List { json } => {
            let r = c
                .list_announcements(ListAnnouncementsRequest {})
                .await?
                .into_inner();
            emit(out, &if *json { list_json(&r) } else { list_table(&r) })
        }
    }
}

/// `lbctl node ...`.
pub(super) async fn node(
    args: &Args,
    cmd: &NodeCommand,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let mut c = client(args).await?;
    let list = match cmd {
        NodeCommand::Drain => {
            c.drain_node(DrainNodeRequest {})
                .await?
                .into_inner()
                .announcements
        }
        NodeCommand::Undrain => {
            c.undrain_node(UndrainNodeRequest {})
                .await?
                .into_inner()
                .announcements
        }
    };
    emit(out, &announcements_table(&list))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_proto::v1::BgpPeer;

    fn response() -> ListAnnouncementsResponse {
        ListAnnouncementsResponse {
            announcements: vec![
                Announcement {
                    prefix: "198.18.100.10/32".into(),
                    announced: true,
                    reason: "serving 198.18.100.10:80/tcp".into(),
                },
                Announcement {
                    prefix: "fd00:100::10/128".into(),
                    announced: false,
                    reason: "node drained".into(),
                },
            ],
            drained: true,
            peers: vec![BgpPeer {
                name: "lb_peer1".into(),
                address: "198.18.2.1".into(),
                asn: 65000,
                state: "up".into(),
                since: "10:00:01.000".into(),
                info: "Established".into(),
            }],
            speaker: "bird".into(),
            speaker_error: String::new(),
            config_file: "/etc/bird/lb-announce.conf".into(),
        }
    }

    #[test]
    fn json_shape() {
        let v: serde_json::Value = serde_json::from_str(&list_json(&response())).unwrap();
        assert_eq!(v["drained"], true);
        assert_eq!(v["speaker_error"], "");
        assert_eq!(v["announcements"][0]["state"], "announced");
        assert_eq!(v["announcements"][1]["state"], "withdrawn");
        assert_eq!(v["announcements"][1]["prefix"], "fd00:100::10/128");
        assert_eq!(v["peers"][0]["asn"], 65000);
        assert_eq!(v["peers"][0]["info"], "Established");
    }

    #[test]
    fn table() {
        let t = list_table(&response());
        assert!(t.contains("198.18.100.10/32  announced  serving"), "{t}");
        assert!(
            t.contains("fd00:100::10/128  withdrawn  node drained"),
            "{t}"
        );
        assert!(t.contains("node: DRAINED   speaker: bird (ok)"), "{t}");
        assert!(t.contains("lb_peer1  198.18.2.1"), "{t}");
        assert!(announcements_table(&[]).contains("(no VIPs)"));
    }
}
