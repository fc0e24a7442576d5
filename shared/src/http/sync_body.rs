//! A response body that is `Sync`, for lambda_http's concurrent buffered runtime.
//!
//! `lambda_http::run_concurrent` hands responses between worker tasks and asks
//! for `Sync`; axum's body is only `Send`. The body is only ever polled through
//! `&mut`, so a `Mutex` reached with `get_mut` makes it `Sync` without locking.

use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::response::Response;
use http_body::Frame;

/// An axum body made `Sync`; polled exactly as the body it wraps.
pub struct SyncBody(Mutex<Body>);

impl SyncBody {
    /// Wraps a response's body.
    pub fn response(resp: Response) -> http::Response<SyncBody> {
        resp.map(|b| SyncBody(Mutex::new(b)))
    }

    fn inner(&mut self) -> &mut Body {
        self.0.get_mut().unwrap_or_else(PoisonError::into_inner)
    }
}

impl HttpBody for SyncBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(self.get_mut().inner()).poll_frame(cx)
    }
}
