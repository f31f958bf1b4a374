//! `lb.v1.Announcer` (`proto/lb/v1/announce.proto`): what this node
//! announces over BGP and why, and the node drain, over the announcer.

use lb_proto::v1::{self as pb, announcer_server::Announcer as AnnouncerApi};
use tonic::{Request, Response, Status};

use super::LbService;
use crate::{
    announce::{Announcement, Announcer},
    dataplane::Dataplane,
};

type Reply<T> = Result<Response<T>, Status>;

/// The service: the API's state (for the VIPs) and the announcer.
pub struct AnnounceService<D: Dataplane + 'static>(pub LbService<D>);

fn out(a: &Announcement) -> pb::Announcement {
    pb::Announcement {
        prefix: a.prefix(),
        announced: a.announced,
        reason: a.reason.clone(),
    }
}

impl<D: Dataplane + 'static> AnnounceService<D> {
    fn announcer(&self) -> Result<std::sync::Arc<Announcer>, Status> {
        self.0.announcer().ok_or_else(|| {
            Status::failed_precondition(
                "this daemon has no [bgp] section in its configuration: it announces nothing",
            )
        })
    }

    async fn set_drained(&self, drained: bool) -> Result<Vec<pb::Announcement>, Status> {
        let a = self.announcer()?;
        let vips = self.0.state().lock().await.list_vips();
        let done = a.set_drained(drained, &vips).await;
        let what = if drained { "drained" } else { "undrained" };
        done.map_err(|e| {
            Status::unavailable(format!(
                "node {what} (recorded), but the speaker did not take the change: {e}; \
                 retried every 200 ms"
            ))
        })?;
        Ok(a.status().await.announcements.iter().map(out).collect())
    }
}

#[tonic::async_trait]
impl<D: Dataplane + 'static> AnnouncerApi for AnnounceService<D> {
    async fn list_announcements(
        &self,
        _: Request<pb::ListAnnouncementsRequest>,
    ) -> Reply<pb::ListAnnouncementsResponse> {
        let s = self.announcer()?.status().await;
        Ok(Response::new(pb::ListAnnouncementsResponse {
            announcements: s.announcements.iter().map(out).collect(),
            drained: s.drained,
            peers: s
                .peers
                .iter()
                .map(|p| pb::BgpPeer {
                    name: p.name.clone(),
                    address: p.address.to_string(),
                    asn: p.asn,
                    state: p.state.clone(),
                    since: p.since.clone(),
                    info: p.info.clone(),
                })
                .collect(),
            speaker: "bird".into(),
            speaker_error: s.speaker_error.unwrap_or_default(),
            config_file: s.config_file.display().to_string(),
        }))
    }

    async fn drain_node(&self, _: Request<pb::DrainNodeRequest>) -> Reply<pb::DrainNodeResponse> {
        let announcements = self.set_drained(true).await?;
        Ok(Response::new(pb::DrainNodeResponse { announcements }))
    }

    async fn undrain_node(
        &self,
        _: Request<pb::UndrainNodeRequest>,
    ) -> Reply<pb::UndrainNodeResponse> {
        let announcements = self.set_drained(false).await?;
        Ok(Response::new(pb::UndrainNodeResponse { announcements }))
    }
}
