//! The server's front: accepting connections with a header-read timeout,
//! security headers on every answer, a per-client cap on concurrent API
//! requests, and graceful shutdown (SIGTERM or Ctrl-C: stop accepting, let
//! requests in flight finish).

use crate::error::ApiError;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// How the server treats its clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A connection that has not sent a request's headers within this is closed.
    pub header_timeout: Duration,
    /// Concurrent API requests per client address (0: no cap).
    pub per_client: usize,
    /// How long requests in flight may take to finish after SIGTERM.
    pub grace: Duration,
    /// Open connections at most; more wait in the listen backlog.
    pub connections: usize,
    /// Every request's bound (408 beyond); background jobs are not bound by it.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            per_client: 8,
            grace: Duration::from_secs(30),
            connections: 1024,
            request_timeout: Duration::from_secs(120),
        }
    }
}

/// Content-Security-Policy of every answer: scripts and everything else only
/// from this origin (no inline script), no framing, no plugins.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";

/// Security headers on every answer.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// Per-client semaphores of the API.
#[derive(Clone)]
pub struct ClientCap {
    cap: usize,
    clients: Arc<Mutex<HashMap<IpAddr, Arc<Semaphore>>>>,
}

impl ClientCap {
    pub fn new(cap: usize) -> Self {
        ClientCap {
            cap,
            clients: Arc::default(),
        }
    }

    fn semaphore(&self, ip: IpAddr) -> Arc<Semaphore> {
        let mut m = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 4096 {
            // Forget idle clients.
            m.retain(|_, s| s.available_permits() < self.cap);
        }
        m.entry(ip)
            .or_insert_with(|| Arc::new(Semaphore::new(self.cap)))
            .clone()
    }
}

/// At most `cap` API requests of one client address at a time; more are
/// answered 429 with Retry-After.
pub async fn per_client(State(cap): State<ClientCap>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (Some(ip), true) = (ip, cap.cap > 0 && req.uri().path().starts_with("/api/")) else {
        return next.run(req).await;
    };
    let Ok(_permit) = cap.semaphore(ip).try_acquire_owned() else {
        let mut res = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many requests at once from your address (at most {}); retry in a second",
                cap.cap
            ),
        )
        .into_response();
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return res;
    };
    next.run(req).await
}

/// Whether a connection has begun a request yet.
struct Activity {
    since: std::time::Instant,
    served: std::sync::atomic::AtomicBool,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            since: std::time::Instant::now(),
            served: Default::default(),
        }
    }
}

impl Activity {
    fn begin(&self) {
        self.served
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    fn served(&self) -> bool {
        self.served.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

/// Serve `app` on `listener` until `shutdown` resolves, then wait (up to
/// `limits.grace`) for the connections' requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(limits.connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer, slot) = tokio::select! {
            r = async {
                let slot = open.clone().acquire_owned().await.expect("never closed");
                (listener.accept().await, slot)
            } => match r {
                (Ok((stream, peer)), slot) => (stream, peer, slot),
                (Err(e), _) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let watch = Arc::new(Activity::default());
        let w = watch.clone();
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                w.begin();
                let app = app.clone();
                app.oneshot(req.map(axum::body::Body::new))
            });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            let _slot = slot;
            tokio::pin!(conn);
            // hyper's header-read timeout runs from a request's first byte
            // (and between kept-alive requests); a connection that sends
            // nothing at all is closed here after the same time.
            loop {
                tokio::select! {
                    _ = &mut conn => break,
                    _ = tokio::time::sleep(Duration::from_millis(250)), if !watch.served() => {
                        if watch.since.elapsed() > limits.header_timeout {
                            break;
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing requests in flight");
    if tokio::time::timeout(limits.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after {:?}; exiting", limits.grace);
    }
    Ok(())
}
