//! Counting gRPC API calls by service, method and status code: a tower
//! layer on the tonic server, so every service (lb.v1, health, reflection)
//! is counted without touching its handlers.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use prometheus::{IntCounterVec, Opts};
use tonic::{Code, codegen::http};
use tower::{Layer, Service};

/// The labels of `lb_grpc_server_handled_total`.
pub(super) const LABELS: [&str; 3] = ["grpc_service", "grpc_method", "grpc_code"];

/// Wraps a gRPC server's routes in [`ApiCalls`].
#[derive(Clone, Debug)]
pub struct ApiCallsLayer {
    calls: IntCounterVec,
}

impl ApiCallsLayer {
    /// Counts into `calls` (labelled [`LABELS`]).
    pub(super) fn new(calls: IntCounterVec) -> Self {
        Self { calls }
    }
}

impl Default for ApiCallsLayer {
    /// Counts into a family no registry exposes (a server without metrics).
    fn default() -> Self {
        let calls = IntCounterVec::new(Opts::new("unexposed_total", "-"), &LABELS)
            .expect("a valid name and labels");
        Self { calls }
    }
}

impl<S> Layer<S> for ApiCallsLayer {
    type Service = ApiCalls<S>;

    fn layer(&self, inner: S) -> ApiCalls<S> {
        ApiCalls {
            inner,
            calls: self.calls.clone(),
        }
    }
}

/// A gRPC service that counts each call once its response starts.
#[derive(Clone, Debug)]
pub struct ApiCalls<S> {
    inner: S,
    calls: IntCounterVec,
}

/// The call's status: an error is answered as a headers-only response
/// carrying `grpc-status` (tonic does so for every error a handler
/// returns); a response without it started a message, and counts as OK.
/// A stream that fails later reports its error in trailers, which this
/// does not wait for.
fn code_of<B>(resp: &http::Response<B>) -> Code {
    resp.headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
        .unwrap_or(Code::Ok)
}

/// (service, method) from a gRPC path `/package.Service/Method`.
fn split_path(path: &str) -> (String, String) {
    match path.trim_start_matches('/').split_once('/') {
        Some((s, m)) if !s.is_empty() && !m.is_empty() && !m.contains('/') => {
            (s.to_string(), m.to_string())
        }
        _ => ("unknown".to_string(), "unknown".to_string()),
    }
}

/// The label values of one call. Paths the server does not serve
/// (answered UNIMPLEMENTED) are all `unknown`: a client must not be able to
/// create series at will.
fn labels(path: &str, code: Code) -> [String; 3] {
    let (service, method) = if code == Code::Unimplemented {
        ("unknown".to_string(), "unknown".to_string())
    } else {
        split_path(path)
    };
    [service, method, format!("{code:?}")]
}

impl<S, B, RB> Service<http::Request<B>> for ApiCalls<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        let calls = self.calls.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            calls
                .with_label_values(&labels(&path, code_of(&resp)))
                .inc();
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    fn count(calls: &IntCounterVec, s: &str, m: &str, code: &str) -> u64 {
        calls.with_label_values(&[s, m, code]).get()
    }

    #[tokio::test]
    async fn calls_are_counted_by_method_and_code() {
        let calls = IntCounterVec::new(Opts::new("calls_total", "-"), &LABELS).unwrap();
        // A stand-in for tonic's routes: the status a handler would answer.
        let routes = tower::service_fn(|req: http::Request<()>| async move {
            let status = match req.uri().path() {
                "/lb.v1.LoadBalancer/GetVip" => Some(5),
                "/lb.v1.LoadBalancer/ListVips" => None,
                _ => Some(12),
            };
            let mut resp = http::Response::new(());
            if let Some(s) = status {
                resp.headers_mut().insert("grpc-status", s.into());
            }
            Ok::<_, Infallible>(resp)
        });
        let mut svc = ApiCallsLayer::new(calls.clone()).layer(routes);
        for path in [
            "/lb.v1.LoadBalancer/GetVip",
            "/lb.v1.LoadBalancer/GetVip",
            "/lb.v1.LoadBalancer/ListVips",
            "/no.Such/Thing",
            "/another/x",
        ] {
            let req = http::Request::builder().uri(path).body(()).unwrap();
            svc.call(req).await.unwrap();
        }
        assert_eq!(count(&calls, "lb.v1.LoadBalancer", "GetVip", "NotFound"), 2);
        assert_eq!(count(&calls, "lb.v1.LoadBalancer", "ListVips", "Ok"), 1);
        assert_eq!(count(&calls, "lb.v1.LoadBalancer", "GetVip", "Ok"), 0);
        // Unserved paths share one series whatever the client sent.
        assert_eq!(count(&calls, "unknown", "unknown", "Unimplemented"), 2);
        assert_eq!(count(&calls, "no.Such", "Thing", "Unimplemented"), 0);
    }

    #[test]
    fn odd_paths_are_unknown() {
        for p in ["/", "", "/x", "/a/b/c", "//m"] {
            assert_eq!(split_path(p), ("unknown".into(), "unknown".into()), "{p}");
        }
        assert_eq!(
            split_path("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health".into(), "Check".into())
        );
    }
}
