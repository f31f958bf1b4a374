//! The HTTP listener: `GET /metrics` answers the exposition, read from the
//! maps under the state lock (the same lock API calls take, so a scrape
//! never sees a VIP half changed); anything else is 404 or 405.

use std::{convert::Infallible, future::Future, sync::Arc};

use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Bytes, header};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, sync::Mutex};

use super::Metrics;
use crate::{dataplane::Dataplane, state::LbState};

/// The exposition's media type: the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

async fn handle<D: Dataplane, B>(
    req: Request<B>,
    state: Arc<Mutex<LbState<D>>>,
    metrics: Arc<Metrics>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.uri().path() != "/metrics" {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: the metrics are at /metrics\n".into(),
        ));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET\n".into(),
        ));
    }
    let encoded = {
        let st = state.lock().await;
        metrics.encode(&st)
    };
    Ok(match encoded {
        Ok(text) => reply(StatusCode::OK, CONTENT_TYPE, text),
        Err(e) => {
            tracing::warn!(cause = %e, "metrics scrape failed");
            reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n"))
        }
    })
}

/// Serves `/metrics` on `listener` until `shutdown` resolves.
pub async fn serve<D: Dataplane + 'static>(
    listener: TcpListener,
    state: Arc<Mutex<LbState<D>>>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving.
                    tracing::warn!(cause = %e, "metrics listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (state, metrics) = (state.clone(), metrics.clone());
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req| handle(req, state.clone(), metrics.clone()));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(%peer, cause = %e, "metrics connection ended with an error");
            }
        });
    }
}
