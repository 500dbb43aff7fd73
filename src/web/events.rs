//! `GET /events`: committed auction events as server-sent events, built on
//! the client library's watch of the node beside it (in process: every
//! node serves watches from its own state), which resumes across a
//! failover by itself.
//! Each event's id is its revision, so a browser's `EventSource` resumes
//! after a dropped connection with `Last-Event-ID` and misses nothing.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio_stream::StreamExt;

use crate::auction::{AuctionEvent, EventScope, MAX_AUCTION_ID_LEN, MAX_WATCHED_AUCTIONS, Reason, Verdict};
use crate::client::{Client, ClientError};
use crate::transport::bounded_queue;

use super::Web;
use super::error::ApiError;
use super::json::{ErrorBody, EventJson};
use super::routes::read_auction;

/// Event streams one node serves at once; past it, 503.
pub const MAX_EVENT_STREAMS: usize = 2048;
/// Events queued for one reader, at most that many and of at most
/// [`MAX_QUEUED_BYTES`] (about). A reader that does not take them holds
/// its own watch back (the node's watch waits for it too): nothing more is
/// buffered for it.
const MAX_QUEUED_EVENTS: usize = 16;
const MAX_QUEUED_BYTES: usize = 8 * 1024;
/// A comment this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a browser waits before it reconnects.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    /// One auction's events, or several's (ids separated by commas);
    /// every auction's without it.
    auction: Option<String>,
    /// Events after this revision; 0 (the default) from now on.
    after: Option<u64>,
}

pub(super) async fn events(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))?;
    let after = match headers.get("last-event-id").map(|value| value.to_str().map(str::trim)) {
        Some(Ok(id)) if !id.is_empty() => id.parse::<u64>().map_err(|_| {
            ApiError::bad_request("invalid_last_event_id", "Last-Event-ID must be a revision: a whole number")
        })?,
        Some(Err(_)) => {
            return Err(ApiError::bad_request(
                "invalid_last_event_id",
                "Last-Event-ID must be a revision: a whole number",
            ));
        }
        _ => query.after.unwrap_or(0),
    };
    // One auction, several (their ids separated by commas), or every one.
    let auctions: Vec<&str> =
        query.auction.as_deref().unwrap_or_default().split(',').map(str::trim).filter(|id| !id.is_empty()).collect();
    if auctions.len() > MAX_WATCHED_AUCTIONS {
        return Err(ApiError::bad_request(
            "too_many_auctions",
            format!("a stream follows at most {MAX_WATCHED_AUCTIONS} auctions by id; leave `auction` out for all"),
        ));
    }
    for auction in &auctions {
        if auction.len() > MAX_AUCTION_ID_LEN {
            let reason = Reason::AuctionIdTooLong { max: MAX_AUCTION_ID_LEN };
            return Err(ApiError::refusal(Verdict::Exception, &reason));
        }
        read_auction(&mut *web.cluster.lease()?, auction).await?;
    }
    let scope = EventScope::of(auctions);
    let slot = Arc::clone(&web.streams).try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!("this node serves {MAX_EVENT_STREAMS} event streams already; try another node or later"),
        )
    })?;
    // A client of its own: a watch holds its connection for as long as it runs.
    // (Its configuration was checked when the node started, as the pool's.)
    let mut client =
        Client::new(web.cluster.config().clone()).map_err(|error| ApiError::unavailable(error.to_string()))?;
    let (sender, receiver) = bounded_queue(MAX_QUEUED_EVENTS, MAX_QUEUED_BYTES);
    sender.send_last(Event::default().retry(RECONNECT_AFTER));
    let reader_gone = sender.clone();
    let shutdown = web.shutdown.clone();
    web.tasks.spawn(async move {
        let watch = client.watch_scope_with(&scope, after, |event| {
            let sender = sender.clone();
            async move { sender.send(sse_event(&event), event.size()).await }
        });
        let ended = tokio::select! {
            ended = watch => ended,
            () = reader_gone.closed() => Ok(()),
            () = shutdown.cancelled() => Ok(()),
        };
        if let Err(error) = ended {
            reader_gone.send_last(error_event(&error));
        }
    });
    // The slot is held for as long as the response streams.
    let stream = receiver.map(move |event| {
        let _held = &slot;
        Ok::<_, Infallible>(event)
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response())
}

/// One auction event as a server-sent event: `opened` (the item), `bid`
/// (the accepted bid), `closed` (the final state and winner), or `progress`
/// (no change: where a watch from now on starts).
fn sse_event(event: &AuctionEvent) -> Event {
    let EventJson { event, id, data } = EventJson::from(event);
    // Serialising these plain structs cannot fail.
    Event::default()
        .id(id)
        .event(event)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().comment("an event could not be written"))
}

/// The last event of a watch that cannot go on: no leader answered, or
/// its revision was compacted (the reader reads afresh and watches after).
/// Its data is the error the same failure gets as an HTTP answer.
fn error_event(error: &ClientError) -> Event {
    let ApiError { code, message, .. } = ApiError::from(error.clone());
    let body = ErrorBody { error: code, message };
    Event::default().event("error").json_data(body).unwrap_or_else(|_| Event::default().comment("the watch ended"))
}
