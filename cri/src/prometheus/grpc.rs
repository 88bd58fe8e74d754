//! A tower layer on the CRI server that counts and times every call by
//! service, method and status code.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::{CallLabels, DaemonMetrics, HandledLabels};

/// Wraps the CRI services with call metrics.
#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer(pub Arc<DaemonMetrics>);

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// The service [`GrpcMetricsLayer`] makes.
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: Arc<DaemonMetrics>,
}

/// `(service, method)` of a gRPC path `/package.Service/Method`.
fn split_path(path: &str) -> (String, String) {
    let p = path.trim_start_matches('/');
    match p.split_once('/') {
        Some((s, m)) => (s.to_string(), m.to_string()),
        None => (p.to_string(), String::new()),
    }
}

/// A gRPC status code as Go's codes.Code.String() spells it.
fn code_name(code: i32) -> String {
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK".to_string(),
        c => format!("{c:?}"),
    }
}

impl<S, B, R> tower::Service<hyper::http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<hyper::http::Request<B>, Response = hyper::http::Response<R>> + Send,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: hyper::http::Request<B>) -> Self::Future {
        let (service, method) = split_path(req.uri().path());
        let started = Instant::now();
        let fut = self.inner.call(req);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let r = fut.await;
            // An error status comes in the headers (trailers-only); a
            // success's status follows the body, and is OK.
            let code = match &r {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(0),
                Err(_) => tonic::Code::Internal as i32,
            };
            let call = CallLabels {
                grpc_service: service,
                grpc_method: method,
            };
            metrics
                .handling
                .get_or_create(&call)
                .observe(started.elapsed().as_secs_f64());
            metrics
                .handled
                .get_or_create(&HandledLabels {
                    grpc_service: call.grpc_service,
                    grpc_method: call.grpc_method,
                    grpc_code: code_name(code),
                })
                .inc();
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_codes_are_named_as_go_grpc_prometheus_does() {
        assert_eq!(
            split_path("/runtime.v1.RuntimeService/RunPodSandbox"),
            ("runtime.v1.RuntimeService".into(), "RunPodSandbox".into())
        );
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(5), "NotFound");
        assert_eq!(code_name(12), "Unimplemented");
    }
}
