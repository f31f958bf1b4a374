//! The announcer against a stand-in for BIRD's control socket that speaks
//! its reply protocol (the real BIRD is exercised by the lab test,
//! lb-privileged-tests/tests/bgp.rs): what is written, when BIRD is asked
//! to reload, and how a refusing or absent speaker shows up.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
};

use lb_api::{BackendInfo, VipInfo};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::UnixListener,
};

use super::*;

/// A fake BIRD: counts `configure` calls; refuses them while `refuse`.
struct FakeBird {
    socket: PathBuf,
    configures: Arc<AtomicU32>,
    refuse: Arc<AtomicBool>,
}

impl FakeBird {
    fn start(dir: &Path) -> Self {
        let socket = dir.join("bird.ctl");
        let listener = UnixListener::bind(&socket).unwrap();
        let configures = Arc::new(AtomicU32::new(0));
        let refuse = Arc::new(AtomicBool::new(false));
        let (c, r) = (configures.clone(), refuse.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (c, r) = (c.clone(), r.clone());
                tokio::spawn(async move {
                    let (rd, mut wr) = stream.into_split();
                    wr.write_all(b"0001 BIRD 2.0.12 ready.\n").await.unwrap();
                    let mut lines = BufReader::new(rd).lines();
                    while let Ok(Some(cmd)) = lines.next_line().await {
                        let reply: &[u8] = match cmd.as_str() {
                            "configure" if r.load(Ordering::SeqCst) => {
                                b"0002-Reading configuration from /etc/bird.conf\n8002 /run/lb.conf, line 3: syntax error\n"
                            }
                            "configure" => {
                                c.fetch_add(1, Ordering::SeqCst);
                                b"0002-Reading configuration from /etc/bird.conf\n0003 Reconfigured\n"
                            }
                            "show protocols" => {
                                b"2002-Name       Proto      Table      State  Since         Info\n\
                                  1002-lb_peer1   BGP        ---        up     10:00:01.000  Established   \n\
                                  0000 \n"
                            }
                            _ => b"9001 syntax error\n",
                        };
                        wr.write_all(reply).await.unwrap();
                    }
                });
            }
        });
        Self {
            socket,
            configures,
            refuse,
        }
    }
}

fn cfg(dir: &Path, socket: &Path) -> BgpConfig {
    let text = format!(
        "[dataplane]\ninterface = \"eth0\"\ngateway_mac = \"02:00:00:00:00:01\"\n\
         [bgp]\nlocal_asn = 65001\ncontrol_socket = \"{}\"\nconfig_file = \"{}\"\n\
         [[bgp.peer]]\naddress = \"198.18.2.1\"\nasn = 65000\n",
        socket.display(),
        dir.join("lb-announce.conf").display()
    );
    text.parse::<crate::config::Config>().unwrap().bgp.unwrap()
}

fn vip(spec: &str, weight: u32) -> VipInfo {
    VipInfo {
        spec: spec.parse().unwrap(),
        flags: Default::default(),
        index: 0,
        backends: vec![BackendInfo {
            address: "198.19.0.11".parse().unwrap(),
            weight,
            slot: 1,
            health: Default::default(),
        }],
        health: None,
        fail_open: false,
    }
}

#[tokio::test]
async fn announces_what_can_be_served_and_reloads_only_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let bird = FakeBird::start(dir.path());
    let c = cfg(dir.path(), &bird.socket);
    let file = c.config_file.clone();
    let a = Announcer::new(c.clone(), dir.path(), Attachment::Fixed(true));
    let vips = [
        vip("198.18.100.10:80/tcp", 100),
        vip("198.18.100.11:80/tcp", 0),
    ];

    a.reconcile(&vips).await.unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("route 198.18.100.10/32 blackhole;"), "{text}");
    assert!(
        !text.contains("198.18.100.11"),
        "all-drained VIP announced:\n{text}"
    );
    assert_eq!(bird.configures.load(Ordering::SeqCst), 1);
    // Nothing changed: no reload (a reload of the same file would not flap
    // either, but there is no reason to ask).
    a.reconcile(&vips).await.unwrap();
    assert_eq!(bird.configures.load(Ordering::SeqCst), 1);

    let s = a.status().await;
    assert_eq!(s.peers[0].state, "up");
    assert_eq!(s.peers[0].info, "Established");
    assert_eq!(s.speaker_error, None);
    assert!(s.announcements[0].announced && !s.announcements[1].announced);

    // Drained: withdrawn, persisted, and a new daemon starts drained.
    a.set_drained(true, &vips).await.unwrap();
    assert!(!std::fs::read_to_string(&file).unwrap().contains("route "));
    assert_eq!(bird.configures.load(Ordering::SeqCst), 2);
    let b = Announcer::new(c.clone(), dir.path(), Attachment::Fixed(true));
    b.reconcile(&vips).await.unwrap();
    assert!(b.status().await.drained);
    assert!(!std::fs::read_to_string(&file).unwrap().contains("route "));
    b.set_drained(false, &vips).await.unwrap();
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("route 198.18.100.10/32")
    );

    // XDP not attached: nothing is announced.
    let d = Announcer::new(c, dir.path(), Attachment::Fixed(false));
    d.reconcile(&vips).await.unwrap();
    assert!(!std::fs::read_to_string(&file).unwrap().contains("route "));
    assert!(
        d.status().await.announcements[0]
            .reason
            .contains("not attached")
    );
}

/// One report: (prefix, announced) each, and whether the speaker took it.
type Report = (Vec<(String, bool)>, bool);

/// Records what the metrics would be told.
#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<Report>>);

impl AnnounceObserver for Seen {
    fn announcements(&self, plan: &[Announcement], speaker_ok: bool) {
        let p = plan.iter().map(|a| (a.prefix(), a.announced)).collect();
        self.0.lock().unwrap().push((p, speaker_ok));
    }
}

#[tokio::test]
async fn a_refusing_or_absent_speaker_is_reported_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let bird = FakeBird::start(dir.path());
    let seen = Arc::new(Seen::default());
    let a = Announcer::new(
        cfg(dir.path(), &bird.socket),
        dir.path(),
        Attachment::Fixed(true),
    )
    .with_observer(seen.clone());
    let vips = [vip("198.18.100.10:80/tcp", 100)];

    bird.refuse.store(true, Ordering::SeqCst);
    let e = a.reconcile(&vips).await.unwrap_err();
    assert!(e.contains("8002") && e.contains("line 3"), "{e}");
    assert!(a.status().await.speaker_error.unwrap().contains("8002"));
    // Retried on the next tick, even though the file is already written.
    bird.refuse.store(false, Ordering::SeqCst);
    a.reconcile(&vips).await.unwrap();
    assert_eq!(bird.configures.load(Ordering::SeqCst), 1);
    assert_eq!(a.status().await.speaker_error, None);
    let p = vec![("198.18.100.10/32".to_owned(), true)];
    assert_eq!(*seen.0.lock().unwrap(), [(p.clone(), false), (p, true)]);

    // No speaker at all.
    let gone = dir.path().join("nobody.ctl");
    let b = Announcer::new(cfg(dir.path(), &gone), dir.path(), Attachment::Fixed(true));
    let e = b.reconcile(&vips).await.unwrap_err();
    assert!(e.contains("nobody.ctl"), "{e}");
    let s = b.status().await;
    assert_eq!(s.peers[0].state, "unknown");
    assert!(s.speaker_error.is_some());
}
