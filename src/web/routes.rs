//! The REST routes over auctions and bids: each reads or writes through the
//! client library, so any node answers any request.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::auction::{self, AcceptedBid, AuctionInfo, MAX_AUCTION_ID_LEN, MAX_PAGE, Party, Reason, Verdict};
use crate::client::{Client, ClientError};

use super::Web;
use super::error::ApiError;
use super::json::{AuctionStatus, BidJson, BidRequest, CreateRequest, Item, PlacedBid};
use super::metrics::BidCount;
use super::pool::{bearer_secret, session_key};

/// The most bids `GET /auctions/{id}/history` returns: the oldest first (a
/// larger answer is better paged over gRPC). `GET /auctions` is paged.
pub const MAX_LISTED: usize = 10_000;
/// The largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// A request body of at most [`MAX_BODY`] bytes; anything else is an
/// error in the API's JSON shape rather than axum's plain text.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(Body(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body must be at most {MAX_BODY} bytes"),
            )),
            Err(rejection) => Err(ApiError::bad_request("unreadable_body", rejection.body_text())),
        }
    }
}

/// The auction id of a path, checked as the service checks it.
fn auction_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(auction_id) = path.map_err(|rejection| ApiError::bad_request("invalid_path", rejection.body_text()))?;
    if auction_id.len() > MAX_AUCTION_ID_LEN {
        let reason = Reason::AuctionIdTooLong { max: MAX_AUCTION_ID_LEN };
        return Err(ApiError::refusal(Verdict::Exception, &reason));
    }
    Ok(auction_id)
}

/// Reads one auction: a NOT_FOUND is the auction asked for.
pub(super) async fn read_auction(client: &mut Client, auction_id: &str) -> Result<AuctionInfo, ApiError> {
    client.get_auction(auction_id).await.map_err(|error| match error {
        ClientError::NotFound { .. } => ApiError::unknown_auction(auction_id),
        other => ApiError::from(other),
    })
}

/// Up to `limit` bids of an auction from the `from`-th accepted one (a
/// history page token is how many bids earlier pages held).
pub(super) async fn bids_from(
    client: &mut Client,
    auction_id: &str,
    from: usize,
    limit: usize,
) -> Result<Vec<AcceptedBid>, ApiError> {
    let token = if from == 0 { String::new() } else { from.to_string() };
    match client.history(auction_id, limit as u32, &token).await {
        Ok(page) => Ok(page.bids),
        Err(ClientError::NotFound { .. }) => Err(ApiError::unknown_auction(auction_id)),
        Err(error) => Err(error.into()),
    }
}

/// The answer to a refused write, in its own words; a refusal that came
/// back without them is the service's fault, not the request's.
fn refused(verdict: Verdict, reason: Option<&Reason>) -> ApiError {
    match reason {
        Some(reason) => ApiError::refusal(verdict, reason),
        None => {
            ApiError::new(StatusCode::BAD_GATEWAY, "refused_without_reason", "the service refused without saying why")
        }
    }
}

/// `GET /auctions`: every auction the cluster holds, in creation order.
pub(super) async fn list_auctions(
    State(web): State<Arc<Web>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))?;
    let limit = query.limit.unwrap_or(MAX_PAGE as u32);
    if limit == 0 || limit as usize > MAX_PAGE {
        return Err(ApiError::bad_request("invalid_query", format!("limit must be from 1 to {MAX_PAGE}")));
    }
    let page_token = query.page_token.unwrap_or_default();
    let page = web.cluster.lease()?.list_auctions(false, limit, &page_token).await?;
    let items: Vec<Item> = page.auctions.iter().map(Item::from).collect();
    let mut response = Json(items).into_response();
    // The next page, as a link (RFC 8288): the body stays the array of items.
    if !page.next_page_token.is_empty() {
        let next = form_urlencoded::Serializer::new(String::new())
            .append_pair("limit", &limit.to_string())
            .append_pair("page_token", &page.next_page_token)
            .finish();
        if let Ok(link) = HeaderValue::from_str(&format!("</auctions?{next}>; rel=\"next\"")) {
            response.headers_mut().insert(header::LINK, link);
        }
    }
    Ok(response)
}

/// `GET /auctions`' paging: at most `limit` items (1 to [`MAX_PAGE`], that
/// by default), after the page the token ends.
#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    limit: Option<u32>,
    page_token: Option<String>,
}

/// `POST /auctions`: 201 and the created item.
pub(super) async fn create_auction(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let key = session_key(&headers)?;
    let secret = bearer_secret(&headers)?;
    let request = CreateRequest::parse(&body)?;
    let mut create = request.to_create();
    // The service's own checks, here too: what would fail them must not
    // reach it as an oversized message (its limit is 16 KiB, the body's 64).
    auction::normalize_in_place(&mut create.seller, Party::Seller)
        .and_then(|()| auction::validate_create_fields(&create))
        .map_err(|reason| ApiError::refusal(Verdict::Exception, &reason))?;
    let mut client = web.cluster.lease()?;
    if let Some(key) = &key {
        client.use_key(key);
    }
    if let Some(secret) = secret {
        client.use_secret(secret);
    }
    let outcome = client.create_auction(create).await?;
    if outcome.verdict != Verdict::Success {
        return Err(refused(outcome.verdict, outcome.reason.as_ref()));
    }
    let info = read_auction(&mut client, &outcome.auction_id).await?;
    let location = HeaderValue::from_str(&format!("/auctions/{}", info.auction_id)).ok();
    let mut response = (StatusCode::CREATED, Json(Item::from(&info))).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /auctions/{id}`.
pub(super) async fn get_auction(
    State(web): State<Arc<Web>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Item>, ApiError> {
    let auction_id = auction_id(path)?;
    let mut client = web.cluster.lease()?;
    Ok(Json(Item::from(&read_auction(&mut client, &auction_id).await?)))
}

/// `POST /auctions/{id}/bids`: 201 and the accepted bid, or the refusal.
pub(super) async fn place_bid(
    State(web): State<Arc<Web>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let auction_id = auction_id(path)?;
    let key = session_key(&headers)?;
    let secret = bearer_secret(&headers)?;
    let mut request = BidRequest::parse(&body).inspect_err(|_| web.metrics.count_bid(BidCount::Invalid))?;
    auction::normalize_in_place(&mut request.participant_id, Party::Bidder)
        .and_then(|()| auction::validate_bid(&auction_id, &request.participant_id, request.bid_price, ""))
        .map_err(|reason| {
            web.metrics.count_bid(BidCount::Invalid);
            ApiError::refusal(Verdict::Exception, &reason)
        })?;
    let mut client = web.cluster.lease()?;
    if let Some(key) = &key {
        client.use_key(key);
    }
    if let Some(secret) = secret {
        client.use_secret(secret);
    }
    let outcome = match client.bid(&auction_id, &request.participant_id, request.bid_price).await {
        Ok(outcome) => outcome,
        Err(error) => {
            web.metrics.count_bid(BidCount::Unanswered);
            return Err(error.into());
        }
    };
    if outcome.verdict != Verdict::Success {
        web.metrics.count_bid(if outcome.verdict == Verdict::Fail { BidCount::Refused } else { BidCount::Invalid });
        return Err(refused(outcome.verdict, outcome.reason.as_ref()));
    }
    web.metrics.count_bid(BidCount::Accepted);
    let message = match &outcome.reason {
        Some(reason) => reason.to_string(),
        None => format!("{} now holds the highest bid", outcome.highest_bidder),
    };
    // An accepted bid is the highest as it is applied: the outcome names
    // it, and where it stands in the log.
    let bid = match outcome.placed {
        Some(placed) => {
            let accepted = AcceptedBid {
                bidder: outcome.highest_bidder,
                amount: outcome.highest_amount,
                at_unix_ms: placed.at_unix_ms,
                revision: placed.revision,
            };
            BidJson::of(&auction_id, &accepted)
        }
        // The retry of a bid accepted before outcomes carried their place
        // (remembered by a snapshot of format 0): it has none to show.
        None => BidJson {
            id: String::new(),
            participant_id: outcome.highest_bidder,
            auction_item_id: auction_id.clone(),
            bid_price: outcome.highest_amount,
            timestamp: super::json::rfc3339(0),
        },
    };
    Ok((StatusCode::CREATED, Json(PlacedBid { bid, message })).into_response())
}

/// `GET /auctions/{id}/status`: the item, its highest bid, whether it
/// still runs and for how long (by the leader's clock).
pub(super) async fn auction_status(
    State(web): State<Arc<Web>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AuctionStatus>, ApiError> {
    let auction_id = auction_id(path)?;
    let mut client = web.cluster.lease()?;
    let info = read_auction(&mut client, &auction_id).await?;
    // The history only grows: its bid at the count this read saw is the
    // highest bid as of this read.
    let highest = match usize::try_from(info.accepted_bids).unwrap_or(usize::MAX) {
        0 => None,
        count => {
            bids_from(&mut client, &auction_id, count - 1, 1).await?.first().map(|bid| BidJson::of(&auction_id, bid))
        }
    };
    Ok(Json(AuctionStatus::of(&info, highest)))
}

/// `GET /auctions/{id}/history`: the accepted bids, oldest first.
pub(super) async fn auction_history(
    State(web): State<Arc<Web>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<BidJson>>, ApiError> {
    let auction_id = auction_id(path)?;
    let mut client = web.cluster.lease()?;
    let mut bids = Vec::new();
    loop {
        let page = bids_from(&mut client, &auction_id, bids.len(), MAX_PAGE).await?;
        let full = page.len() == MAX_PAGE;
        bids.extend(page.iter().map(|bid| BidJson::of(&auction_id, bid)));
        if !full || bids.len() >= MAX_LISTED {
            break;
        }
    }
    bids.truncate(MAX_LISTED);
    Ok(Json(bids))
}

/// `GET /openapi.json`: the API described for tools and generated clients.
pub(super) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], super::OPENAPI)
}

/// Any path the API does not have.
pub(super) async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

/// A path the API has, with a method it does not.
pub(super) async fn no_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not answer {method}", uri.path()),
    )
}
