//! The Capture RPC: validates the request into a kernel filter, starts the
//! capture through the state, and streams the frames the ring yields until
//! the count is reached or the client goes away; then the capture stops
//! (the flag is cleared: the program is back to one array read a packet).

use std::{net::IpAddr, sync::Arc};

use lb_api::convert;
use lb_common::{CAPTURE_F_SENT, CAPTURE_F_VIP, CAPTURE_SNAP_MAX, CaptureFilter};
use lb_proto::v1 as pb;
use tokio::{io::unix::AsyncFd, sync::Mutex};
use tonic::Status;

use super::status::{invalid, to_status};
use crate::{
    capture::{Frame, Pairer, Record, VerdictFilter},
    dataplane::{CaptureRing, Dataplane, DataplaneError},
    state::LbState,
};

/// What a request asks for, checked.
pub struct Request {
    filter: CaptureFilter,
    verdicts: VerdictFilter,
    count: u64,
}

/// Checks a request: every malformed field is INVALID_ARGUMENT, an unknown
/// VIP NOT_FOUND, before anything starts.
pub fn check<D: Dataplane>(r: &pb::CaptureRequest, st: &LbState<D>) -> Result<Request, Status> {
    if r.snaplen > CAPTURE_SNAP_MAX {
        return Err(invalid(format!(
            "snaplen: {} out of range 0..={CAPTURE_SNAP_MAX}",
            r.snaplen
        )));
    }
    let backend = if r.backend.is_empty() {
        None
    } else {
        Some(
            r.backend
                .parse::<IpAddr>()
                .map_err(|_| invalid(format!("backend: {:?} is not an IP address", r.backend)))?,
        )
    };
    let mut filter = CaptureFilter {
        snaplen: if r.snaplen == 0 {
            CAPTURE_SNAP_MAX
        } else {
            r.snaplen
        },
        ..CaptureFilter::default()
    };
    if let Some(v) = r.vip.as_ref() {
        let spec = convert::vip(Some(v))?;
        st.get_vip(&spec).map_err(to_status)?;
        let key = spec.key();
        filter.flags |= CAPTURE_F_VIP;
        filter.vip_addr = key.addr;
        filter.vip_port = key.port;
        filter.vip_proto = key.proto;
        filter.vip_family = key.family;
    }
    if r.sent {
        filter.flags |= CAPTURE_F_SENT;
    }
    Ok(Request {
        filter,
        verdicts: VerdictFilter {
            drops_only: r.drops_only,
            backend,
        },
        count: r.count,
    })
}

fn start_err(e: DataplaneError) -> Status {
    match e {
        DataplaneError::CaptureBusy => Status::resource_exhausted(e.to_string()),
        DataplaneError::CaptureUnsupported => Status::failed_precondition(e.to_string()),
        e => Status::internal(e.to_string()),
    }
}

/// Starts the capture; the returned ring must go back through [`run`].
pub fn start<D: Dataplane>(st: &mut LbState<D>, req: &Request) -> Result<CaptureRing, Status> {
    st.start_capture(&req.filter).map_err(start_err)
}

/// Nanoseconds to add to a monotonic time stamp for Unix time.
fn mono_to_unix() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let mono = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    unix.saturating_sub(mono)
}

fn message(f: Frame, offset: u64) -> pb::CaptureResponse {
    pb::CaptureResponse {
        unix_time_ns: f.ts_ns + offset,
        sent: f.sent,
        orig_len: f.orig_len,
        data: f.data,
        verdict: f.verdict.as_str().into(),
        sent_to: f.sent_to.map(|a| a.to_string()).unwrap_or_default(),
    }
}

/// Reads the ring and sends matching frames until `req.count` frames (each
/// received frame counts; its sent copy rides along) or the client leaves;
/// then stops the capture.
pub async fn run<D: Dataplane + 'static>(
    state: Arc<Mutex<LbState<D>>>,
    ring: CaptureRing,
    req: Request,
    tx: tokio::sync::mpsc::Sender<Result<pb::CaptureResponse, Status>>,
) {
    let offset = mono_to_unix();
    // SAFETY: the fd belongs to the ring, which the AsyncFd owns until
    // `into_inner` deregisters it: it stays open while registered.
    let mut fd = match unsafe { AsyncFd::register(ring) } {
        Ok(fd) => fd,
        Err(e) => {
            let (ring, e) = e.into_parts();
            stop(&state, ring).await;
            let _ = tx
                .send(Err(Status::internal(format!("capture ring: {e}"))))
                .await;
            return;
        }
    };
    let mut pairer = Pairer::default();
    let mut sent = 0u64;
    'outer: loop {
        let mut guard = tokio::select! {
            g = fd.readable_mut() => match g {
                Ok(g) => g,
                Err(e) => {
                    let _ = tx.send(Err(Status::internal(format!("capture ring: {e}")))).await;
                    break;
                }
            },
            _ = tx.closed() => break,
        };
        let mut records = Vec::new();
        while let Some(item) = guard.get_inner_mut().next() {
            if let Some(r) = Record::parse(&item) {
                records.push(r);
            }
        }
        guard.clear_ready();
        drop(guard);
        for r in records {
            for f in pairer.push(r) {
                if !req.verdicts.accepts(&f) {
                    continue;
                }
                let received = !f.sent;
                if tx.send(Ok(message(f, offset))).await.is_err() {
                    break 'outer;
                }
                // A received frame counts; a frame's sent copy follows it
                // in the same record, so the count never cuts a pair.
                if received {
                    sent += 1;
                }
            }
            if req.count != 0 && sent >= req.count {
                break 'outer;
            }
        }
    }
    stop(&state, fd.into_inner()).await;
    tracing::info!(frames = sent, "capture ended");
}

async fn stop<D: Dataplane>(state: &Mutex<LbState<D>>, ring: CaptureRing) {
    if let Err(e) = state.lock().await.stop_capture(ring) {
        tracing::warn!(cause = %e, "stopping the capture");
    }
}
