//! Announcing the VIPs this node can serve to its routers over BGP, through
//! a real speaker (BIRD 2; docs/bgp.md says why and how).
//!
//! The daemon owns one BIRD include file ([`bird::render`]): static routes
//! for the VIP addresses it announces, BFD, and a BGP session per `[bgp]`
//! peer. On every change of what it can serve ([`plan`]) it rewrites that file
//! atomically and has BIRD reload it over the control socket, checking the
//! reply. Because the announced set lives in a file BIRD reads itself:
//!
//! * a daemon that exits (SIGTERM) or crashes leaves the routes announced,
//!   as the pinned data plane keeps forwarding; the next daemon takes over
//!   without a flap (it renders the same file, and an unchanged static
//!   protocol does not touch its routes on reload);
//! * a speaker that restarts announces the last file again by itself;
//! * a failure to reach or reload the speaker is logged, shown by `lbctl
//!   announce list` (`speaker_error`) and retried on every tick.

pub mod bird;
mod drain;
mod plan;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use lb_api::VipInfo;
use tokio::sync::Mutex;

pub use plan::{Announcement, plan};

use crate::{
    config::BgpConfig,
    dataplane::{Dataplane, attached_to},
    state::LbState,
};

/// How often the announcer compares what it announces with what the node
/// can serve (a VIP deleted, a last backend drained, XDP detached).
pub const TICK: Duration = Duration::from_millis(200);

/// A BGP session as the speaker reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// The speaker's name for the session (`lb_peer1`).
    pub name: String,
    /// The router's address.
    pub address: IpAddr,
    /// Its AS.
    pub asn: u32,
    /// `up`, `start`, `down`, or `unknown` when the speaker could not be asked.
    pub state: String,
    /// Since when (the speaker's clock and format).
    pub since: String,
    /// The BGP state (`Established`, `Active`, ...) and last error.
    pub info: String,
}

/// Everything `lbctl announce list` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceStatus {
    /// Every VIP address and the decision on it.
    pub announcements: Vec<Announcement>,
    /// Whether the node is drained.
    pub drained: bool,
    /// The sessions.
    pub peers: Vec<PeerStatus>,
    /// The last failure to hand the file to the speaker, if the last try
    /// failed (then the speaker still announces what it had before).
    pub speaker_error: Option<String>,
    /// The include file.
    pub config_file: PathBuf,
}

/// Told the outcome of every reconciliation (the metrics).
pub trait AnnounceObserver: Send + Sync {
    /// The decisions now, and whether the speaker took them.
    fn announcements(&self, plan: &[Announcement], speaker_ok: bool);
}

struct Inner {
    drained: bool,
    /// The text the speaker took last (the file is current when the
    /// rendering equals it).
    taken: Option<String>,
    plan: Vec<Announcement>,
    speaker_error: Option<String>,
}

/// Where the announcer learns whether XDP is attached.
#[derive(Clone, Debug)]
pub enum Attachment {
    /// The balancer pinned under this directory is attached to this interface.
    Pinned {
        /// `[dataplane] pin_path`.
        pin_path: PathBuf,
        /// `[dataplane] interface`.
        interface: String,
    },
    /// Tests: a fixed answer.
    Fixed(bool),
}

impl Attachment {
    fn attached(&self) -> bool {
        match self {
            Attachment::Pinned {
                pin_path,
                interface,
            } => attached_to(pin_path).is_some_and(|(i, _)| &i == interface),
            Attachment::Fixed(b) => *b,
        }
    }
}

/// Drives the speaker.
pub struct Announcer {
    cfg: BgpConfig,
    drain_file: PathBuf,
    attachment: Attachment,
    inner: Mutex<Inner>,
    observer: Option<Arc<dyn AnnounceObserver>>,
}

impl Announcer {
    /// An announcer for `cfg`; the node's drain flag is kept in `state_dir`.
    pub fn new(cfg: BgpConfig, state_dir: &Path, attachment: Attachment) -> Self {
        let drain_file = drain::path(state_dir);
        let drained = drain::load(&drain_file);
        if drained {
            tracing::info!(file = %drain_file.display(), "node is drained: announcing nothing");
        }
        Self {
            cfg,
            drain_file,
            attachment,
            observer: None,
            inner: Mutex::new(Inner {
                drained,
                taken: None,
                plan: Vec::new(),
                speaker_error: None,
            }),
        }
    }

    /// Reports every reconciliation to `observer` (the metrics).
    pub fn with_observer(mut self, observer: Arc<dyn AnnounceObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Makes the speaker announce exactly what `vips` allow now. Returns
    /// the speaker's failure, if it did not take the change (retried on the
    /// next call).
    pub async fn reconcile(&self, vips: &[VipInfo]) -> Result<(), String> {
        let attached = self.attachment.attached();
        let mut inner = self.inner.lock().await;
        let new = plan(vips, attached, inner.drained);
        let announced: Vec<IpAddr> = new
            .iter()
            .filter(|a| a.announced)
            .map(|a| a.address)
            .collect();
        let note = format!(
            "{} of {} VIP addresses announced{}",
            announced.len(),
            new.len(),
            if inner.drained { " (node drained)" } else { "" }
        );
        let text = bird::render(&self.cfg, &announced, &note);
        if inner.taken.as_deref() == Some(text.as_str()) {
            inner.plan = new;
            return Ok(());
        }
        let result = self.hand_over(&text).await;
        if let Some(o) = &self.observer {
            o.announcements(&new, result.is_ok());
        }
        match result {
            Ok(verdict) => {
                for a in &new {
                    let before = inner.plan.iter().find(|b| b.address == a.address);
                    if before.map(|b| b.announced) != Some(a.announced) {
                        tracing::info!(
                            prefix = %a.prefix(),
                            announced = a.announced,
                            reason = %a.reason,
                            "announcement changed"
                        );
                    }
                }
                for b in inner.plan.iter().filter(|b| b.announced) {
                    if !new.iter().any(|a| a.address == b.address) {
                        tracing::info!(prefix = %b.prefix(), "announcement removed (VIP address gone)");
                    }
                }
                if inner.speaker_error.take().is_some() {
                    tracing::info!(speaker = %verdict, "speaker reachable again");
                }
                inner.taken = Some(text);
                inner.plan = new;
                Ok(())
            }
            Err(e) => {
                if inner.speaker_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(cause = %e, file = %self.cfg.config_file.display(),
                        "the speaker did not take the announcements; retrying");
                }
                inner.speaker_error = Some(e.clone());
                inner.taken = None;
                inner.plan = new;
                Err(e)
            }
        }
    }

    /// Writes the file (atomically: BIRD never reads half of it) and has
    /// BIRD reload it.
    async fn hand_over(&self, text: &str) -> Result<String, String> {
        write_atomically(&self.cfg.config_file, text)
            .map_err(|e| format!("writing {}: {e}", self.cfg.config_file.display()))?;
        bird::configure(&self.cfg.control_socket)
            .await
            .map_err(|e| e.to_string())
    }

    /// Drains (`true`) or undrains the node: persisted first, so a restart
    /// keeps it, then handed to the speaker.
    pub async fn set_drained(&self, drained: bool, vips: &[VipInfo]) -> Result<(), String> {
        drain::store(&self.drain_file, drained)
            .map_err(|e| format!("recording the drain in {}: {e}", self.drain_file.display()))?;
        self.inner.lock().await.drained = drained;
        tracing::info!(drained, "node drain changed");
        self.reconcile(vips).await
    }

    /// What is announced and why, with the sessions as the speaker sees
    /// them now.
    pub async fn status(&self) -> AnnounceStatus {
        let (announcements, drained, mut speaker_error) = {
            let i = self.inner.lock().await;
            (i.plan.clone(), i.drained, i.speaker_error.clone())
        };
        let rows = match bird::protocols(&self.cfg.control_socket).await {
            Ok(rows) => rows,
            Err(e) => {
                speaker_error.get_or_insert_with(|| e.to_string());
                Vec::new()
            }
        };
        let peers = self
            .cfg
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let name = bird::peer_protocol(i);
                let row = rows.iter().find(|r| r.name == name);
                PeerStatus {
                    address: p.address,
                    asn: p.asn,
                    state: row.map_or("unknown".into(), |r| r.state.clone()),
                    since: row.map_or(String::new(), |r| r.since.clone()),
                    info: row.map_or(String::new(), |r| r.info.clone()),
                    name,
                }
            })
            .collect();
        AnnounceStatus {
            announcements,
            drained,
            peers,
            speaker_error,
            config_file: self.cfg.config_file.clone(),
        }
    }

    /// Reconciles every [`TICK`] until the task is dropped.
    pub async fn run<D: Dataplane + 'static>(self: Arc<Self>, state: Arc<Mutex<LbState<D>>>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let vips = state.lock().await.list_vips();
            // Failures are logged and kept for `announce list`.
            let _ = self.reconcile(&vips).await;
        }
    }
}

/// Writes `text` to `path` through a temporary file in the same directory
/// and a rename, so a reader sees the old or the new file, never a part.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map_or("lb".into(), |n| n.to_string_lossy())
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// `lb-daemon teardown`: withdraw everything (an empty announcement set)
/// before the data plane is removed, so routers stop sending traffic first.
pub async fn withdraw_all(cfg: &BgpConfig) -> Result<String, String> {
    let text = bird::render(cfg, &[], "0 announced (lb-daemon teardown)");
    write_atomically(&cfg.config_file, &text)
        .map_err(|e| format!("writing {}: {e}", cfg.config_file.display()))?;
    bird::configure(&cfg.control_socket)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
