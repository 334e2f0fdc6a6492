//! The metrics port (loopback HTTP): `/metrics` in Prometheus' text format,
//! and `/report`, the bureau's progress report as a page that refreshes itself
//! (read-only, no personal data: the same figures as `voucherctl report`),
//! so the bureau's dispatch desk can watch enrollment day without a terminal.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::debug;

use crate::bureau::report;
use crate::domain::op::Role;
use crate::domain::time::{Clock, SystemClock};
use crate::ledger::Ledger;
use crate::limits::{HTTP_CONNECTIONS_MAX, HTTP_CONNECTION_TIMEOUT_MS, REPORT_PAGE_REFRESH_S};

/// What the port serves from.
struct Pages {
    metrics: PrometheusHandle,
    ledger: Arc<Ledger>,
    /// The last rendered report and when: `stats` walks every figure under
    /// the audit tail's lock, so the page is built at most once a second
    /// however many browsers ask.
    report: Mutex<Option<(Instant, Bytes)>>,
}

/// How long a rendered report page is served again.
const REPORT_CACHE: Duration = Duration::from_secs(1);

/// Serves the metrics port until the task is dropped. At most
/// `HTTP_CONNECTIONS_MAX` connections at once (more wait in the listen
/// queue); each is closed after `HTTP_CONNECTION_TIMEOUT_MS`.
pub async fn serve(listener: TcpListener, metrics: PrometheusHandle, ledger: Arc<Ledger>) {
    let pages = Arc::new(Pages {
        metrics,
        ledger,
        report: Mutex::new(None),
    });
    let slots = Arc::new(Semaphore::new(HTTP_CONNECTIONS_MAX));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                debug!(%error, "metrics port: accept failed");
                continue;
            }
        };
        let pages = Arc::clone(&pages);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let pages = Arc::clone(&pages);
                async move { Ok::<_, Infallible>(answer(&pages, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            let timeout = Duration::from_millis(HTTP_CONNECTION_TIMEOUT_MS);
            if tokio::time::timeout(timeout, connection).await.is_err() {
                debug!(%remote, "metrics port: connection timed out");
            }
            drop(slot);
        });
    }
}

async fn answer(pages: &Arc<Pages>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, kind: &str, body: Bytes| {
        Response::builder()
            .status(status)
            .header("content-type", kind)
            .header("cache-control", "no-store")
            .body(Full::new(body))
            .expect("static headers are valid")
    };
    if request.method() != hyper::Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"read-only: GET /metrics or /report\n"),
        );
    }
    match request.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            Bytes::from(pages.metrics.render()),
        ),
        "/" | "/report" => {
            let pages = Arc::clone(pages);
            match tokio::task::spawn_blocking(move || report_page(&pages)).await {
                Ok(Some(page)) => reply(StatusCode::OK, "text/html; charset=utf-8", page),
                _ => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    Bytes::from_static(b"the figures cannot be read right now\n"),
                ),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"GET /metrics or /report\n"),
        ),
    }
}

/// The report page, at most `REPORT_CACHE` old: the HTML report of the
/// current campaign, refreshing itself, headed by the time and audit
/// sequence its figures were read at.
fn report_page(pages: &Pages) -> Option<Bytes> {
    let mut cached = pages.report.lock();
    if let Some((at, page)) = cached.as_ref() {
        if at.elapsed() < REPORT_CACHE {
            return Some(page.clone());
        }
    }
    let (seq, _, _) = pages.ledger.head();
    let stats = pages.ledger.stats(Role::Bureau, None, None).ok()?;
    let offset_s = pages
        .ledger
        .campaigns()
        .year(stats.year)
        .map_or(8 * 3600, |campaign| campaign.utc_offset_s);
    let as_of = format!(
        "<p class=\"sub\" id=\"as-of\">Live: figures as of <time id=\"as-of-time\">{}</time>, \
         audit record <span id=\"as-of-seq\">{seq}</span>; this page refreshes every \
         {REPORT_PAGE_REFRESH_S} s.</p>\n",
        SystemClock.now().local_rfc3339(offset_s)
    );
    let page = report::html(&stats)
        .replacen(
            "<meta charset=\"utf-8\">",
            &format!(
                "<meta charset=\"utf-8\">\n<meta http-equiv=\"refresh\" content=\"{REPORT_PAGE_REFRESH_S}\">"
            ),
            1,
        )
        .replacen("<body>\n", &format!("<body>\n{as_of}"), 1);
    let page = Bytes::from(page);
    *cached = Some((Instant::now(), page.clone()));
    Some(page)
}
