//! The Prometheus endpoint: `GET /metrics` and `GET /healthz` over HTTP/1.1,
//! served with hyper (already in the dependency tree under the AWS SDK).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::prometheus::Exposition;

/// The content type of the text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Connections served at once; a scraper needs one or two, and the cap keeps
/// a flood of idle connections from using up memory or file descriptors.
const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoint could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "could not listen on {address} for the Prometheus endpoint (PROMETHEUS_LISTEN): {source}; \
     pick a free port, or an address of this machine"
)]
pub struct BindError {
    /// The address asked for.
    pub address: SocketAddr,
    /// The system's reason.
    pub source: std::io::Error,
}

/// Opens the listening socket. Done before the first poll, so that a port
/// already in use stops the program at once.
///
/// # Errors
///
/// [`BindError`] when the address cannot be bound.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(address).await.map_err(|source| BindError { address, source })
}

/// Serves `exposition` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, exposition: Arc<Exposition>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!("the Prometheus endpoint could not accept a connection: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many connections to the Prometheus endpoint; closing one");
            continue;
        };
        let exposition = exposition.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let response = respond(request.method(), request.uri().path(), &exposition);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(err) = connection.await {
                tracing::debug!(%peer, "Prometheus endpoint connection ended: {err}");
            }
            drop(permit);
        });
    }
}

/// The answer to a request for `path` with `method`.
pub fn respond(method: &Method, path: &str, exposition: &Exposition) -> Response<Full<Bytes>> {
    let known = matches!(path, "/metrics" | "/healthz");
    if !known {
        return text(StatusCode::NOT_FOUND, "not found; try /metrics or /healthz\n".into());
    }
    // HEAD is answered like GET; the server leaves the body out.
    if method != Method::GET && method != Method::HEAD {
        let mut response =
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed; use GET\n".into());
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if path == "/healthz" {
        // Healthy once a poll has ended, successful or not: a Drone outage
        // is not a reason to restart this process (it shows in
        // drone_queue_poll_success instead).
        return if exposition.has_polled() {
            text(StatusCode::OK, "ok\n".into())
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, "no poll has ended yet\n".into())
        };
    }
    let mut response = text(StatusCode::OK, exposition.render());
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
    response
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn routes_methods_and_health() {
        let exposition = Exposition::new();
        let status = |m: Method, p: &str, e: &Exposition| respond(&m, p, e).status();
        assert_eq!(status(Method::GET, "/", &exposition), StatusCode::NOT_FOUND);
        assert_eq!(status(Method::GET, "/metrics/x", &exposition), StatusCode::NOT_FOUND);
        assert_eq!(status(Method::POST, "/metrics", &exposition), StatusCode::METHOD_NOT_ALLOWED);
        let put = respond(&Method::PUT, "/healthz", &exposition);
        assert_eq!(put.headers()[ALLOW], "GET, HEAD");
        assert_eq!(status(Method::HEAD, "/healthz", &exposition), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(Method::GET, "/healthz", &exposition), StatusCode::SERVICE_UNAVAILABLE);
        let metrics = respond(&Method::GET, "/metrics", &exposition);
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(metrics.headers()[CONTENT_TYPE], METRICS_CONTENT_TYPE);

        exposition.record_poll(false, Duration::from_millis(5), SystemTime::now());
        assert_eq!(status(Method::GET, "/healthz", &exposition), StatusCode::OK);
    }
}
