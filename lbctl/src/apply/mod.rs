//! `lbctl apply`: make a node's VIPs match a file of `[[vip]]` tables.
//!
//! The file is parsed and checked first (`lb_api::vipfile`, the daemon's own
//! parser): a file with any error applies nothing. Then, per node, the live
//! VIPs are read ([`plan::Plan`] is the difference) and each VIP's change is
//! one API call, atomic on the daemon:
//!
//! * a VIP in the file only: `CreateVip` with its flags and backends;
//! * a VIP on both sides that differs: `ReplaceBackends` with the file's
//!   whole backend set, and its flags when they differ, so readers and the
//!   data plane see the old VIP or the new one, never a mix (backends kept
//!   keep their slots, so their established flows are undisturbed);
//! * a live VIP the file lacks: `DeleteVip` with `--prune`, else left alone
//!   and listed;
//! * a health check that differs: `SetHealthCheck` after the backends'
//!   call (a new VIP with a check: `CreateVip` without backends, the check,
//!   then `ReplaceBackends`, so its backends start in the check's `initial`
//!   state). A health change is its own call: backends and check are
//!   independent, so no reader can see an inconsistent mix.
//!
//! The steps of one node run in the plan's order and stop at the first
//! refused call: what was applied before it stays (each step is whole), and
//! the rest is not attempted, since later steps may depend on it.

pub mod plan;

use lb_api::{
    BackendSpec,
    convert::{self, backend_request, flags_out, vip_out},
    vipfile::{BackendConfig, VipConfig},
};
use lb_proto::v1::{
    CreateVipRequest, DeleteVipRequest, HealthCheck as PbCheck, HealthCheckKind, ListVipsRequest,
    ReplaceBackendsRequest, SetHealthCheckRequest, VipFlagSet,
    load_balancer_client::LoadBalancerClient,
};
use tonic::{Status, transport::Channel};

use plan::{Plan, Step};

/// A node's live VIPs, as a file would write them.
pub async fn live_vips(lb: &mut LoadBalancerClient<Channel>) -> Result<Vec<VipConfig>, Status> {
    let vips = lb.list_vips(ListVipsRequest {}).await?.into_inner().vips;
    vips.iter()
        .map(|v| {
            convert::vip_info(v)
                .map(|info| VipConfig::from(&info))
                .map_err(|e| Status::internal(format!("ListVips answered a malformed VIP: {e}")))
        })
        .collect()
}

fn requests(backends: &[BackendConfig]) -> Vec<lb_proto::v1::Backend> {
    backends
        .iter()
        .map(|b| backend_request(&BackendSpec::weighted(b.address, b.weight)))
        .collect()
}

/// Runs one step: one call.
pub async fn run_step(lb: &mut LoadBalancerClient<Channel>, step: &Step) -> Result<(), Status> {
    match step {
        Step::Delete(v) => {
            lb.delete_vip(DeleteVipRequest {
                vip: Some(vip_out(&v.address)),
            })
            .await?;
        }
        Step::Create(v) => {
            // One call: the VIP, its backends and its check together (a
            // refusal creates nothing). A daemon older than the
            // `health_check` field would drop the check: the convergence
            // check after the plan reports that.
            lb.create_vip(CreateVipRequest {
                vip: Some(vip_out(&v.address)),
                flags: flags_out(&v.flags),
                backends: requests(&v.backends),
                health_check: plan::check_of(v).map(|c| convert::health_check_out(&c)),
            })
            .await?;
        }
        Step::Change(c) => {
            if c.members_change() {
                lb.replace_backends(ReplaceBackendsRequest {
                    vip: Some(vip_out(&c.vip)),
                    backends: requests(&c.backends),
                    flags: c.flags.map(|(_, new)| VipFlagSet {
                        flags: flags_out(&new),
                    }),
                })
                .await?;
            }
            if let Some((_, new)) = &c.health {
                set_health(lb, &c.vip, new.as_ref()).await?;
            }
        }
    }
    Ok(())
}

/// SetHealthCheck (`None`: remove the check).
async fn set_health(
    lb: &mut LoadBalancerClient<Channel>,
    vip: &lb_api::VipSpec,
    check: Option<&lb_api::HealthCheck>,
) -> Result<(), Status> {
    let check = match check {
        Some(c) => convert::health_check_out(c),
        None => PbCheck {
            kind: HealthCheckKind::None.into(),
            ..Default::default()
        },
    };
    lb.set_health_check(SetHealthCheckRequest {
        vip: Some(vip_out(vip)),
        check: Some(check),
    })
    .await?;
    Ok(())
}

/// A step the daemon refused, and how many steps were applied before it.
#[derive(Debug)]
pub struct StepFailed {
    /// Steps applied before the failure.
    pub applied: usize,
    /// The step that failed.
    pub step: Step,
    /// The daemon's answer.
    pub status: Status,
}

/// Runs every step of `plan` in order, stopping at the first failure.
pub async fn run_plan(lb: &mut LoadBalancerClient<Channel>, plan: &Plan) -> Result<(), StepFailed> {
    for (i, step) in plan.steps.iter().enumerate() {
        run_step(lb, step).await.map_err(|status| StepFailed {
            applied: i,
            step: step.clone(),
            status,
        })?;
    }
    Ok(())
}
