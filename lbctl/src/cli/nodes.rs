//! Several nodes at once: `lbctl --api A --api B ... COMMAND`.
//!
//! Every LB node of an ECMP group must hold the same VIPs, backends and
//! weights (with the same `hash_seed` and ring size), or a flow that ECMP
//! moves from one node to another lands on another backend. So a change is
//! made on every node, and `lbctl` does it in one command: the command runs
//! on each node in turn, in `--api` order, and each node is reported on its
//! own. A node that fails does not stop the others (a half-applied change is
//! what the report is for: fix that node and run the command again; every
//! mutating command is refused harmlessly where it is already done, e.g.
//! `ALREADY_EXISTS`). `lbctl apply` has its own plan-per-node report
//! (`super::apply`).
//!
//! Text: `node URI: ok` followed by that node's output, or `node URI:
//! failed: CODE: message`, then `nodes: N: K ok, F failed`. With `--json`,
//! one line: `{"nodes":[{"api":"URI","ok":true,"output":VALUE}|{"api":"URI",
//! "ok":false,"error":"CODE: message"}…]}` where VALUE is what the command
//! prints for one node; `status` adds `"rings_agree":B`.
//!
//! `status` also compares the nodes' ring fingerprints, VIP by VIP: equal
//! fingerprints mean both nodes send every flow of that VIP to the same
//! backend. The exit status is 0 when every node succeeded (and, for
//! `status`, they agree), else that of the first node that failed, or 1
//! when the rings differ.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
};

use lb_proto::v1::{GetStatusRequest, GetStatusResponse};
use serde::Serialize;

use super::{
    CliError, EXIT_REJECTED,
    args::{Args, BackendCommand, Command, ExportFormat, GatewayCommand, VipCommand},
    commands, output,
};
use crate::client;

/// What one node did.
struct NodeResult {
    api: String,
    outcome: Result<String, CliError>,
}

/// Whether the command prints JSON (each node's output is then embedded).
fn json_output(c: &Command) -> bool {
    match c {
        Command::Vip(VipCommand::List { json })
        | Command::Backend(BackendCommand::List { json, .. })
        | Command::Status { json }
        | Command::Gateway(GatewayCommand::Get { json }) => *json,
        Command::Stats(s) => s.json,
        Command::Route(r) => r.json,
        Command::Export(e) => e.format == ExportFormat::Json,
        _ => false,
    }
}

/// Runs the command on every node of `args.api` and reports per node.
pub(super) async fn run(
    args: &Args,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> u8 {
    let status_json = matches!(args.command, Command::Status { json: true });
    let mut results = Vec::with_capacity(args.api.len());
    let mut statuses: Vec<(String, GetStatusResponse)> = Vec::new();
    for api in &args.api {
        let one = Args {
            api: vec![api.clone()],
            ..args.clone()
        };
        let outcome = if let Command::Status { json } = args.command {
            // Kept structured: the fingerprints are compared below.
            match status(&one).await {
                Ok(s) => {
                    let text = if json {
                        output::status_json(&s)
                    } else {
                        output::status_table(&s)
                    };
                    statuses.push((api.clone(), s));
                    Ok(text)
                }
                Err(e) => Err(e),
            }
        } else {
            let mut buf = Vec::new();
            commands::run(&one, &mut buf)
                .await
                .map(|()| String::from_utf8_lossy(&buf).into_owned())
        };
        results.push(NodeResult {
            api: api.clone(),
            outcome,
        });
    }
    let rings = matches!(args.command, Command::Status { .. }).then(|| compare_rings(&statuses));
    let text = if json_output(&args.command) {
        json_report(
            &results,
            rings.as_ref().map(|r| r.agree).filter(|_| status_json),
        )
    } else {
        text_report(&results, rings.as_ref())
    };
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();

    let failed: Vec<&NodeResult> = results.iter().filter(|r| r.outcome.is_err()).collect();
    if let Some(first) = failed.first() {
        let _ = writeln!(
            err,
            "lbctl: {} of {} nodes failed (first: {})",
            failed.len(),
            results.len(),
            first.api
        );
        return first
            .outcome
            .as_ref()
            .err()
            .map_or(EXIT_REJECTED, CliError::exit_code);
    }
    if rings.is_some_and(|r| !r.agree) {
        let _ = writeln!(err, "lbctl: the nodes' rings differ (see the report)");
        return EXIT_REJECTED;
    }
    0
}

async fn status(args: &Args) -> Result<GetStatusResponse, CliError> {
    let tls = args.client_tls();
    let mut lb = client::connect(args.api(), tls.as_ref())
        .await
        .map_err(CliError::Connect)?;
    Ok(lb.get_status(GetStatusRequest {}).await?.into_inner())
}

/// The nodes' fingerprints side by side.
struct Rings {
    agree: bool,
    /// VIP -> (node -> fingerprint); a node without the VIP is absent.
    by_vip: BTreeMap<String, BTreeMap<String, String>>,
    nodes: Vec<String>,
}

fn compare_rings(statuses: &[(String, GetStatusResponse)]) -> Rings {
    let mut by_vip: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (api, s) in statuses {
        for r in &s.rings {
            by_vip
                .entry(output::vip_text(r.vip.as_ref()))
                .or_default()
                .insert(api.clone(), r.fingerprint.clone());
        }
    }
    let agree = by_vip.values().all(|per_node| {
        per_node.len() == statuses.len() && per_node.values().collect::<BTreeSet<_>>().len() == 1
    });
    Rings {
        agree,
        by_vip,
        nodes: statuses.iter().map(|(a, _)| a.clone()).collect(),
    }
}

fn text_report(results: &[NodeResult], rings: Option<&Rings>) -> String {
    let mut s = String::new();
    for r in results {
        match &r.outcome {
            Ok(text) => {
                s.push_str(&format!("node {}: ok\n", r.api));
                s.push_str(text);
                if !text.is_empty() && !text.ends_with('\n') {
                    s.push('\n');
                }
            }
            Err(e) => s.push_str(&format!("node {}: failed: {}\n", r.api, e.line())),
        }
    }
    let ok = results.iter().filter(|r| r.outcome.is_ok()).count();
    s.push_str(&format!(
        "nodes: {}: {ok} ok, {} failed\n",
        results.len(),
        results.len() - ok
    ));
    if let Some(rings) = rings {
        if rings.agree {
            s.push_str(&format!(
                "rings: the {} nodes that answered agree on every VIP ({} VIPs)\n",
                rings.nodes.len(),
                rings.by_vip.len()
            ));
        } else {
            s.push_str("rings: the nodes DIFFER\n");
            for (vip, per_node) in &rings.by_vip {
                let values: BTreeSet<&String> = per_node.values().collect();
                if per_node.len() == rings.nodes.len() && values.len() == 1 {
                    continue;
                }
                let cells: Vec<String> = rings
                    .nodes
                    .iter()
                    .map(|n| {
                        format!(
                            "{n} {}",
                            per_node.get(n).map_or("(no such VIP)", String::as_str)
                        )
                    })
                    .collect();
                s.push_str(&format!("  {vip}: {}\n", cells.join(", ")));
            }
        }
    }
    s
}

#[derive(Serialize)]
struct NodeJson<'a> {
    api: &'a str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct ReportJson<'a> {
    nodes: Vec<NodeJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rings_agree: Option<bool>,
}

fn json_report(results: &[NodeResult], rings_agree: Option<bool>) -> String {
    let nodes = results
        .iter()
        .map(|r| match &r.outcome {
            Ok(text) => NodeJson {
                api: &r.api,
                ok: true,
                // Our own JSON, one value; kept as text if it ever is not.
                output: Some(
                    serde_json::from_str(text.trim())
                        .unwrap_or_else(|_| serde_json::Value::String(text.clone())),
                ),
                error: None,
            },
            Err(e) => NodeJson {
                api: &r.api,
                ok: false,
                output: None,
                error: Some(e.line()),
            },
        })
        .collect();
    let mut s = serde_json::to_string(&ReportJson { nodes, rings_agree })
        .expect("lbctl output always serializes");
    s.push('\n');
    s
}
