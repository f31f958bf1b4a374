//! Each `lbctl` command as calls on the `lb.v1` API and what it prints.

use std::io::{self, Write};

use lb_api::{
    BackendSpec, VipFlags,
    convert::{backend_request, flags_out, vip_out},
};
use lb_proto::v1::{
    AddBackendRequest, CaptureRequest, CreateVipRequest, DeleteVipRequest, GetGatewayRequest,
    GetStatsRequest, GetStatusRequest, ListBackendsRequest, ListVipsRequest, RemoveBackendRequest,
    RouteRequest, SetBackendWeightRequest, SetGatewayRequest, WatchStatsRequest,
    load_balancer_client::LoadBalancerClient,
};
use tonic::transport::Channel;

use super::{
    CliError,
    args::{
        Args, BackendCommand, CaptureArgs, Command, GatewayCommand, RouteArgs, StatsArgs,
        VipCommand,
    },
    explain, generate, output,
};
use crate::client;

/// Writes one output unit and flushes it, so `--watch` output reaches a
/// pipe as it happens.
pub(super) fn emit(out: &mut (dyn Write + Send), text: &str) -> Result<(), CliError> {
    let write = |out: &mut (dyn Write + Send)| -> io::Result<()> {
        out.write_all(text.as_bytes())?;
        if !text.ends_with('\n') {
            out.write_all(b"\n")?;
        }
        out.flush()
    };
    write(out).map_err(CliError::Output)
}

/// Connects as the global options say and runs the command.
pub(super) async fn run(args: &Args, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    // Generated from the command line's definition alone: no daemon needed.
    match &args.command {
        Command::Completions { shell } => return generate::completions(*shell, out),
        Command::Man { dir } => return generate::man_pages(dir, out),
        _ => {}
    }
    // The other service on the same socket.
    match &args.command {
        Command::Announce(cmd) => return super::announce::announce(args, cmd, out).await,
        Command::Node(cmd) => return super::announce::node(args, cmd, out).await,
        _ => {}
    }
    let tls = args.client_tls();
    let mut lb = client::connect(args.api(), tls.as_ref())
        .await
        .map_err(CliError::Connect)?;
    match &args.command {
        Command::Vip(cmd) => vip(&mut lb, cmd, out).await,
        Command::Backend(cmd) => backend(&mut lb, cmd, out).await,
        Command::Stats(s) => match s.watch {
            Some(secs) => watch_stats(&mut lb, s, secs, out).await,
            None => stats(&mut lb, s, out).await,
        },
        Command::Status { json } => {
            let s = lb.get_status(GetStatusRequest {}).await?.into_inner();
            let text = if *json {
                output::status_json(&s)
            } else {
                output::status_table(&s)
            };
            emit(out, &text)
        }
        Command::Route(r) => route(&mut lb, r, out).await,
        Command::Capture(c) => capture(&mut lb, c, out).await,
        Command::Health(cmd) => super::health::run(&mut lb, cmd, out).await,
        Command::Gateway(GatewayCommand::Get { json }) => {
            let mac = lb.get_gateway(GetGatewayRequest {}).await?.into_inner().mac;
            let text = if *json {
                output::gateway_json(&mac)
            } else {
                mac
            };
            emit(out, &text)
        }
        Command::Export(e) => super::export::run(&mut lb, e, out).await,
        // Several nodes, each reported on its own: `execute` runs it.
        Command::Apply(_) => unreachable!("lbctl apply is run by cli::apply"),
        Command::Gateway(GatewayCommand::Set { mac }) => {
            lb.set_gateway(SetGatewayRequest {
                mac: mac.to_string(),
            })
            .await?;
            Ok(())
        }
        Command::Completions { .. }
        | Command::Man { .. }
        | Command::Announce(_)
        | Command::Node(_) => {
            unreachable!("answered before connecting")
        }
    }
}

async fn vip(
    lb: &mut LoadBalancerClient<Channel>,
    cmd: &VipCommand,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    match cmd {
        VipCommand::Add {
            vip,
            no_sport,
            no_conntrack,
        } => {
            let flags = VipFlags {
                no_sport: *no_sport,
                no_conntrack: *no_conntrack,
            };
            lb.create_vip(CreateVipRequest {
                vip: Some(vip_out(vip)),
                flags: flags_out(&flags),
                backends: Vec::new(),
                health_check: None,
            })
            .await?;
            Ok(())
        }
        VipCommand::Del { vip } => {
            lb.delete_vip(DeleteVipRequest {
                vip: Some(vip_out(vip)),
            })
            .await?;
            Ok(())
        }
        VipCommand::List { json } => {
            let vips = lb.list_vips(ListVipsRequest {}).await?.into_inner().vips;
            let text = if *json {
                output::vip_list_json(&vips)
            } else {
                output::vip_list_table(&vips)
            };
            emit(out, &text)
        }
    }
}

async fn backend(
    lb: &mut LoadBalancerClient<Channel>,
    cmd: &BackendCommand,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    match cmd {
        BackendCommand::Add {
            vip,
            address,
            weight,
        } => {
            lb.add_backend(AddBackendRequest {
                vip: Some(vip_out(vip)),
                backend: Some(backend_request(&BackendSpec::weighted(*address, *weight))),
            })
            .await?;
            Ok(())
        }
        BackendCommand::Del { vip, address } => {
            lb.remove_backend(RemoveBackendRequest {
                vip: Some(vip_out(vip)),
                address: address.to_string(),
            })
            .await?;
            Ok(())
        }
        BackendCommand::Weight {
            vip,
            address,
            weight,
        } => {
            lb.set_backend_weight(SetBackendWeightRequest {
                vip: Some(vip_out(vip)),
                address: address.to_string(),
                weight: *weight,
            })
            .await?;
            Ok(())
        }
        BackendCommand::List { vip, json } => {
            let backends = lb
                .list_backends(ListBackendsRequest {
                    vip: Some(vip_out(vip)),
                })
                .await?
                .into_inner()
                .backends;
            let text = if *json {
                output::backend_list_json(&backends)
            } else {
                output::backend_list_table(&backends)
            };
            emit(out, &text)
        }
    }
}

async fn stats(
    lb: &mut LoadBalancerClient<Channel>,
    s: &StatsArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let stats = lb
        .get_stats(GetStatsRequest {
            vip: s.vip.as_ref().map(vip_out),
        })
        .await?
        .into_inner()
        .stats
        .ok_or_else(|| CliError::BadResponse("GetStats answered without stats".into()))?;
    let text = if s.json {
        output::stats_json(&stats, false)
    } else {
        output::stats_table(&stats, false)
    };
    emit(out, &text)
}

async fn watch_stats(
    lb: &mut LoadBalancerClient<Channel>,
    s: &StatsArgs,
    secs: u32,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let mut stream = lb
        .watch_stats(WatchStatsRequest {
            interval_seconds: secs,
            vip: s.vip.as_ref().map(vip_out),
        })
        .await?
        .into_inner();
    // Ctrl-C is how a watch normally ends: stop quietly with success. If the
    // handler cannot be installed the default (terminate) still applies, so
    // just never complete.
    let interrupted = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(interrupted);
    let mut first = true;
    loop {
        let msg = tokio::select! {
            () = &mut interrupted => return Ok(()),
            msg = stream.message() => msg?,
        };
        // The daemon ended the stream (shutting down cleanly): done.
        let Some(msg) = msg else {
            return Ok(());
        };
        let stats = msg.stats.ok_or_else(|| {
            CliError::BadResponse("WatchStats sent a message without stats".into())
        })?;
        if s.json {
            emit(out, &output::stats_json(&stats, true))?;
        } else {
            if !first {
                emit(out, "")?;
            }
            emit(out, &output::stats_table(&stats, true))?;
        }
        first = false;
    }
}

async fn capture(
    lb: &mut LoadBalancerClient<Channel>,
    c: &CaptureArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    // The file first: a path that cannot be written starts no capture.
    let to_stdout = c.write.as_os_str() == "-";
    let mut file: Box<dyn Write + Send> = if to_stdout {
        Box::new(io::stdout())
    } else {
        Box::new(io::BufWriter::new(
            std::fs::File::create(&c.write).map_err(CliError::Output)?,
        ))
    };
    let mut stream = lb
        .capture(CaptureRequest {
            vip: c.vip.as_ref().map(vip_out),
            backend: c.backend.map(|b| b.to_string()).unwrap_or_default(),
            count: c.count,
            snaplen: c.snaplen,
            drops_only: c.drops_only,
            sent: c.sent,
        })
        .await?
        .into_inner();
    file.write_all(&crate::pcapng::header(c.snaplen))
        .map_err(CliError::Output)?;
    // Ctrl-C is how an open-ended capture ends: the file stays whole.
    let interrupted = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(interrupted);
    let mut frames = 0u64;
    loop {
        let msg = tokio::select! {
            () = &mut interrupted => None,
            msg = stream.message() => msg?,
        };
        let Some(m) = msg else { break };
        let mut comment = format!(
            "lb: {} verdict={}",
            if m.sent { "sent" } else { "received" },
            m.verdict
        );
        if !m.sent_to.is_empty() {
            comment.push_str(&format!(" backend={}", m.sent_to));
        }
        file.write_all(&crate::pcapng::packet(
            m.unix_time_ns,
            m.orig_len,
            &m.data,
            &comment,
        ))
        .and_then(|()| file.flush())
        .map_err(CliError::Output)?;
        frames += 1;
    }
    file.flush().map_err(CliError::Output)?;
    if !to_stdout {
        emit(
            out,
            &format!("{frames} frames written to {}", c.write.display()),
        )?;
    }
    Ok(())
}

async fn route(
    lb: &mut LoadBalancerClient<Channel>,
    r: &RouteArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let dport = r.dport.unwrap_or(0);
    let resp = lb
        .route(RouteRequest {
            vip: Some(vip_out(&r.vip)),
            client_address: r.client.ip().to_string(),
            client_port: u32::from(r.client.port()),
            destination_port: u32::from(dport),
            explain: r.explain,
            syn: r.syn,
        })
        .await?
        .into_inner();
    if r.explain {
        let e = resp
            .explanation
            .as_ref()
            .ok_or_else(|| CliError::BadResponse("Route answered without an explanation".into()))?;
        let q = explain::Query {
            vip: &r.vip,
            client: r.client,
            destination_port: if r.vip.port == 0 { dport } else { r.vip.port },
            syn: r.syn,
        };
        let text = if r.json {
            explain::json(&q, e)
        } else {
            explain::text(&q, e)
        };
        return emit(out, &text);
    }
    let backend = resp
        .backend
        .as_ref()
        .ok_or_else(|| CliError::BadResponse("Route answered without a backend".into()))?;
    let view = output::RouteView {
        vip: &r.vip,
        client: r.client,
        destination_port: if r.vip.port == 0 { dport } else { r.vip.port },
        backend,
        response: &resp,
    };
    let text = if r.json {
        output::route_json(&view)
    } else {
        output::route_table(&view)
    };
    emit(out, &text)
}
