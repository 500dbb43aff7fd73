//! How the HTTP API answers what it cannot do: a status code and the JSON
//! error `{"error": code, "message": sentence}`. The codes of refusals are
//! the service's own ([`Reason::code`]); the status follows the verdict:
//!
//! | what | status |
//! |---|---|
//! | a malformed request (bad JSON, a fractional amount, a bad name, an end in the past; an argument the service refuses) | 400 |
//! | an unknown auction, an unknown route | 404 |
//! | a watch after a compacted revision | 410 |
//! | a valid bid that loses (too low, the auction is over, the seller's own) | 409 |
//! | a body over the size limit | 413 |
//! | an `Authorization` header that is not a bearer token | 401 |
//! | a name bound to another secret | 403 |
//! | an `Idempotency-Key` reused for another request | 422 |
//! | the name the write acts for is past its rate (with `Retry-After`) | 429 |
//! | the service refused otherwise (FAILED_PRECONDITION, an unreadable answer) | 502 |
//! | no leader answered in time, the leader or this node is overloaded, too many event streams | 503 |

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auction::{Reason, Verdict};
use crate::client::{ClientError, InvalidCode};

use super::json::{BodyProblem, ErrorBody};

/// An answer other than success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// When to try again, for `Retry-After`: a rate limit's wait; 1 s for
    /// any 503 without one.
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError { status, code: code.to_string(), message: message.into(), retry_after: None }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unknown_auction(auction_id: &str) -> Self {
        ApiError::refusal(Verdict::Exception, &Reason::UnknownAuction { auction_id: auction_id.to_string() })
    }

    /// A write the service refused, with the status its verdict and reason
    /// call for.
    pub fn refusal(verdict: Verdict, reason: &Reason) -> Self {
        let status = match (verdict, reason) {
            (_, Reason::UnknownAuction { .. }) => StatusCode::NOT_FOUND,
            // Another's name, without its token.
            (_, Reason::NameOwned { .. }) => StatusCode::FORBIDDEN,
            (
                _,
                Reason::RequestIdReused { .. }
                | Reason::RequestKindDiffers { .. }
                | Reason::RequestTooOld { .. }
                | Reason::SessionUnknown,
            ) => StatusCode::UNPROCESSABLE_ENTITY,
            (Verdict::Fail, _) => StatusCode::CONFLICT,
            (Verdict::Exception | Verdict::Success, _) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, reason.code(), reason.to_string())
    }

    /// The cluster did not answer in time: the outcome of a write is
    /// unknown, and retrying it with the same `Idempotency-Key` is safe.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl From<BodyProblem> for ApiError {
    fn from(problem: BodyProblem) -> Self {
        ApiError::bad_request(problem.code(), problem.to_string())
    }
}

impl From<ClientError> for ApiError {
    /// A request the client library could not get answered, by its kind.
    /// (A write's refusal is its outcome, not an error: [`ApiError::refusal`].)
    fn from(error: ClientError) -> Self {
        let message = error.to_string();
        match error {
            ClientError::Unreachable { .. } => ApiError::unavailable(message),
            ClientError::Overloaded { .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message),
            ClientError::RateLimited { retry_after, .. } => {
                let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
                error.retry_after = Some(retry_after);
                error
            }
            ClientError::NotFound { what: Some(auction_id), .. } => ApiError::unknown_auction(&auction_id),
            ClientError::NotFound { what: None, .. } => ApiError::not_found(message),
            ClientError::Invalid { code: InvalidCode::InvalidArgument, .. } => {
                ApiError::bad_request("invalid_argument", message)
            }
            ClientError::Invalid { code: InvalidCode::OutOfRange, .. } => {
                ApiError::bad_request("out_of_range", message)
            }
            ClientError::Compacted { .. } => ApiError::new(StatusCode::GONE, "compacted", message),
            // FAILED_PRECONDITION, or an answer the client could not read:
            // the service's own problem, not the request's.
            ClientError::Refused { .. } => ApiError::new(StatusCode::BAD_GATEWAY, "refused", message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Retry-After counts whole seconds: a wait under one is one.
        let retry_after = match self.retry_after {
            Some(wait) => Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)),
            None => (self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(1),
        };
        let body = ErrorBody { error: self.code, message: self.message };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_and_reasons_choose_the_status() {
        let status = |verdict, reason| ApiError::refusal(verdict, &reason).status;
        assert_eq!(status(Verdict::Fail, Reason::AuctionOver), StatusCode::CONFLICT);
        assert_eq!(status(Verdict::Fail, Reason::BelowMinimum { amount: 1, minimum: 5 }), StatusCode::CONFLICT);
        assert_eq!(status(Verdict::Exception, Reason::AmountZero), StatusCode::BAD_REQUEST);
        assert_eq!(status(Verdict::Exception, Reason::EndNotInFuture), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(Verdict::Exception, Reason::UnknownAuction { auction_id: "x".into() }),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(Verdict::Exception, Reason::RequestIdReused { request_id: 1 }),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let error = ApiError::refusal(Verdict::Fail, &Reason::AuctionOver);
        assert_eq!((error.code.as_str(), error.message.as_str()), ("auction_over", "the auction is over"));
    }
    #[test]
    fn each_kind_of_client_error_has_its_status_and_code() {
        use std::time::Duration;
        let waited = Duration::from_secs(10);
        let answer = |error: ClientError| {
            let api = ApiError::from(error);
            (api.status, api.code, api.message)
        };
        let said = |status, code: &str, message: &str| (status, code.to_string(), message.to_string());
        assert_eq!(
            answer(ClientError::Unreachable { waited, last_error: "down".into() }),
            said(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "no server answered in 10s: down")
        );
        assert_eq!(
            answer(ClientError::Overloaded { waited, message: "busy".into() }),
            said(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "busy (for 10s)")
        );
        assert_eq!(
            answer(ClientError::NotFound { what: Some("a3".into()), message: "unknown auction \"a3\"".into() }),
            said(StatusCode::NOT_FOUND, "unknown_auction", "unknown auction \"a3\"")
        );
        assert_eq!(
            answer(ClientError::NotFound { what: None, message: "gone".into() }),
            said(StatusCode::NOT_FOUND, "not_found", "gone")
        );
        assert_eq!(
            answer(ClientError::Invalid { code: InvalidCode::InvalidArgument, message: "bad page token".into() }),
            said(StatusCode::BAD_REQUEST, "invalid_argument", "bad page token")
        );
        assert_eq!(
            answer(ClientError::Invalid { code: InvalidCode::OutOfRange, message: "too large".into() }),
            said(StatusCode::BAD_REQUEST, "out_of_range", "too large")
        );
        assert_eq!(
            answer(ClientError::Compacted { asked: 1, compacted: 5, message: "revision 1 is compacted".into() }),
            said(StatusCode::GONE, "compacted", "revision 1 is compacted")
        );
        assert_eq!(
            answer(ClientError::Refused { message: "no".into() }),
            said(StatusCode::BAD_GATEWAY, "refused", "no")
        );
    }

    #[test]
    fn a_busy_or_silent_cluster_is_retried_after_a_second() {
        for error in [
            ClientError::Unreachable { waited: std::time::Duration::ZERO, last_error: "down".into() },
            ClientError::Overloaded { waited: std::time::Duration::ZERO, message: "busy".into() },
        ] {
            let response = ApiError::from(error).into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers().get(header::RETRY_AFTER).map(HeaderValue::as_bytes), Some(&b"1"[..]));
        }
    }

    /// A rate limit's wait, in whole seconds rounded up.
    #[test]
    fn a_rate_limited_write_is_a_429_saying_when_to_retry() {
        let wait = std::time::Duration::from_millis(1_500);
        let response =
            ApiError::from(ClientError::RateLimited { retry_after: wait, message: "slow down".into() }).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers().get(header::RETRY_AFTER).map(HeaderValue::as_bytes), Some(&b"2"[..]));
    }
}
