//! How the HTTP API answers what it cannot do: a status code and the JSON
//! error `{"error": code, "message": sentence}`. The codes of refusals are
//! the service's own ([`Reason::code`]); the status follows the verdict:
//!
//! | what | status |
//! |---|---|
//! | a malformed request (bad JSON, a fractional amount, a bad name, an end in the past) | 400 |
//! | an unknown auction, an unknown route | 404 |
//! | a valid bid that loses (too low, the auction is over, the seller's own) | 409 |
//! | a body over the size limit | 413 |
//! | an `Idempotency-Key` reused for another request | 422 |
//! | no leader answered in time, too many event streams | 503 |

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auction::{Reason, Verdict};
use crate::client::ClientError;

use super::json::{BodyProblem, ErrorBody};

/// An answer other than success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError { status, code: code.to_string(), message: message.into() }
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
    /// A refusal the client library reports as text only (not a write's
    /// outcome): the routes check what could make a read refused before
    /// they call, so what remains is the service's own problem.
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Unreachable { .. } => ApiError::unavailable(error.to_string()),
            ClientError::Rejected(message) => ApiError::new(StatusCode::BAD_GATEWAY, "refused", message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = self.status == StatusCode::SERVICE_UNAVAILABLE;
        let body = ErrorBody { error: self.code, message: self.message };
        let mut response = (self.status, axum::Json(body)).into_response();
        if retry {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
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
}
