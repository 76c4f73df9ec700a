//! Reading request bodies within a time limit and a memory budget shared by all connections.
//!
//! Every request body is read here, completely, before a handler sees it: a client that sends
//! its body slowly is answered `408 request_timeout` (and its connection closed) when the body
//! timeout passes, and the bytes held for bodies at once never exceed the budget: a request
//! reserves its `Content-Length` (or [`MAX_BODY`] if it has none) before its first byte is
//! read, and is answered `503 overloaded` when the budget cannot hold it.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use confidant_api::ErrorCode;
use hyper::body::Body as _;
use tokio::sync::Semaphore;

use super::{ApiError, MAX_BODY};
use crate::core::CoreError;

/// The time and memory request bodies may take.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    timeout: Duration,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
}

impl BodyLimits {
    /// Bodies must arrive within `timeout`; at most `budget` bytes of bodies are held at once
    /// (at least [`MAX_BODY`], so that one largest body always fits).
    pub fn new(timeout: Duration, budget: usize) -> BodyLimits {
        let budget = budget.clamp(MAX_BODY, Semaphore::MAX_PERMITS);
        BodyLimits {
            timeout,
            budget: Arc::new(Semaphore::new(budget)),
            budget_bytes: budget,
        }
    }

    /// The bytes of bodies held now.
    pub fn held(&self) -> usize {
        self.budget_bytes - self.budget.available_permits()
    }
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits::new(Duration::from_secs(10), 64 << 20)
    }
}

fn refuse(code: ErrorCode, message: String) -> Response {
    ApiError(CoreError::new(code, None, message)).into_response()
}

/// The middleware: reads the body within the limits and hands the handler a complete one.
pub(super) async fn buffer_body(
    State(limits): State<BodyLimits>,
    req: Request,
    next: Next,
) -> Response {
    let hint = req.body().size_hint();
    if hint.exact() == Some(0) {
        return next.run(req).await;
    }
    let declared = hint
        .exact()
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if let Some(n) = declared.filter(|&n| n > MAX_BODY) {
        return refuse(
            ErrorCode::PayloadTooLarge,
            format!("the body is {n} bytes; the API takes at most {MAX_BODY}"),
        );
    }
    let reserve = declared.unwrap_or(MAX_BODY);
    // `reserve` ≤ MAX_BODY (4 MiB) fits in u32.
    let Ok(_permit) = limits
        .budget
        .clone()
        .try_acquire_many_owned(u32::try_from(reserve).unwrap_or(u32::MAX))
    else {
        let mut resp = refuse(
            ErrorCode::Overloaded,
            format!(
                "the coordinator holds as many request bodies as its budget allows ({} bytes); retry shortly",
                limits.budget_bytes
            ),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        // The unread body is still on its way: this connection is done.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    };
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(limits.timeout, read_capped(body, reserve)).await {
        Err(_) => {
            let mut resp = refuse(
                ErrorCode::RequestTimeout,
                format!(
                    "the request body did not arrive within {} s",
                    limits.timeout.as_secs_f64()
                ),
            );
            // The rest of the body may still be on its way: this connection is done.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }
        Ok(Err(Read::TooLarge)) => {
            let mut resp = refuse(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the body is larger than {reserve} bytes (its Content-Length or the API's limit)"
                ),
            );
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }
        Ok(Err(Read::Failed(e))) => {
            return refuse(
                ErrorCode::Malformed,
                format!("reading the request body: {e}"),
            );
        }
        Ok(Ok(b)) => b,
    };
    // The permit is held until the handler has answered: it holds the bytes until then.
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

enum Read {
    TooLarge,
    Failed(axum::Error),
}

/// Reads `body` to its end, refusing more than `cap` bytes.
async fn read_capped(mut body: Body, cap: usize) -> Result<Bytes, Read> {
    let mut out = Vec::new();
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => return Ok(Bytes::from(out)),
            Some(Err(e)) => return Err(Read::Failed(e)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if out.len() + data.len() > cap {
                        return Err(Read::TooLarge);
                    }
                    if out.is_empty() {
                        out.reserve_exact(cap.min(data.len().max(8 * 1024)));
                    }
                    out.extend_from_slice(&data);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_fits_at_least_one_largest_body() {
        let l = BodyLimits::new(Duration::from_secs(1), 10);
        assert_eq!(l.budget_bytes, MAX_BODY);
        assert_eq!(l.held(), 0);
    }

    #[tokio::test]
    async fn reading_stops_at_the_cap() {
        let body = Body::from(vec![7u8; 100]);
        assert!(matches!(read_capped(body, 99).await, Err(Read::TooLarge)));
        let body = Body::from(vec![7u8; 100]);
        assert_eq!(read_capped(body, 100).await.ok().unwrap().len(), 100);
    }
}
