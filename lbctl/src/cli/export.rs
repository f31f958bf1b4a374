//! `lbctl export`: the live VIPs as `[[vip]]` tables (the format of the
//! daemon's configuration and of `lbctl apply`), or as the same structure in
//! JSON. Deterministic (VIPs and backends sorted), so an export kept in
//! version control changes only where the VIPs did, and export -> apply on
//! an empty daemon -> export gives the same bytes.

use std::io::Write;

use lb_api::vipfile::{VipConfig, to_toml};
use lb_proto::v1::load_balancer_client::LoadBalancerClient;
use serde::Serialize;
use tonic::transport::Channel;

use super::{
    CliError,
    args::{ExportArgs, ExportFormat},
    commands::emit,
};
use crate::apply::live_vips;

/// The JSON document: the TOML file's structure, `{"vip": [...]}`.
#[derive(Serialize)]
struct Document<'a> {
    vip: &'a [VipConfig],
}

/// `vips` as JSON, sorted like the TOML form.
pub fn to_json(vips: &[VipConfig]) -> String {
    let mut sorted = vips.to_vec();
    sorted.sort_by_key(|v| v.address);
    for v in &mut sorted {
        v.backends.sort_by_key(|b| b.address);
    }
    // Serialising plain strings, numbers and lists cannot fail.
    serde_json::to_string_pretty(&Document { vip: &sorted }).unwrap_or_default()
}

pub(super) async fn run(
    lb: &mut LoadBalancerClient<Channel>,
    args: &ExportArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let vips = live_vips(lb).await?;
    let text = match args.format {
        ExportFormat::Toml => to_toml(&vips),
        ExportFormat::Json => to_json(&vips),
    };
    emit(out, &text)
}
