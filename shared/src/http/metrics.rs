//! Request metrics at the HTTP edge: every request runs under its own
//! [`Tally`] (the pipeline's hooks reach it), whose record is written when
//! the response body ends or is dropped, so a stream counts its whole
//! length; and `GET /metrics`, the local server's Prometheus text, for the
//! `admin` scope.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body::{Frame, SizeHint};

use super::{RequestLog, caller, logged};
use crate::AppState;
use crate::auth::SCOPE_ADMIN;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::{self, Metrics, Tally};

/// What the metering layer needs: the process's metrics and the function's name.
pub type Meter = (Arc<Metrics>, &'static str);

/// Runs the request under a tally and meters its response body.
pub async fn metered(State((m, function)): State<Meter>, req: Request, next: Next) -> Response {
    let Some(tally) = m.begin(function, metrics::door_of(req.uri().path())) else {
        return next.run(req).await;
    };
    let resp = metrics::scope(Some(tally.clone()), next.run(req)).await;
    let status = resp.status().as_u16();
    let code = resp.extensions().get::<ErrorCode>().map(|c| c.0);
    let (parts, body) = resp.into_parts();
    let body = Metered {
        body,
        tally: Some(tally),
        status,
        code,
    };
    Response::from_parts(parts, Body::new(body))
}

/// A response body that is polled under its request's tally and finishes
/// it at its end (or when dropped: the client left).
struct Metered {
    body: Body,
    tally: Option<Arc<Tally>>,
    status: u16,
    code: Option<&'static str>,
}

impl Metered {
    fn end(&mut self) {
        if let Some(t) = self.tally.take() {
            t.finish(self.status, self.code);
        }
    }
}

impl http_body::Body for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = match this.tally.clone() {
            Some(t) => metrics::sync_scope(t, || Pin::new(&mut this.body).poll_frame(cx)),
            None => Pin::new(&mut this.body).poll_frame(cx),
        };
        match &polled {
            Poll::Ready(None | Some(Err(_))) => this.end(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.end(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.end();
    }
}

/// `GET /metrics`: the Prometheus text exposition, for the `admin` scope.
pub async fn scrape(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let mut log = RequestLog::default();
    let result = async {
        caller(&state, &headers, SCOPE_ADMIN, &mut log).await?;
        let text = state.metrics.exposition().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "metrics_not_exposed",
                "this server keeps no Prometheus metrics (CTXGATE_METRICS is not 'prometheus')",
            )
        })?;
        let mut resp = text.into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        Ok(resp)
    }
    .await;
    logged(result, log)
}
