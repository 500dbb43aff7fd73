//! `GET /events`: committed auction events as server-sent events, built on
//! the client library's watch of the node beside it (in process: every
//! node serves watches from its own state), which resumes across a
//! failover by itself.
//! Each event's id is its revision, so a browser's `EventSource` resumes
//! after a dropped connection with `Last-Event-ID` and misses nothing.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::IntervalStream;

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
    sender.send_last(retry_frame(RECONNECT_AFTER));
    let reader_gone = sender.clone();
    let shutdown = web.shutdown.clone();
    web.tasks.spawn(async move {
        // Each event's frame is written once for every stream of this node
        // that carries it (the watch shares the node's own events).
        let watch = client.watch_shared_with(&scope, after, |event| {
            let sender = sender.clone();
            async move {
                let frame = event.framed(sse_frame);
                let bytes = frame.len();
                sender.send(frame, bytes).await
            }
        });
        let ended = tokio::select! {
            ended = watch => ended,
            () = reader_gone.closed() => Ok(()),
            () = shutdown.cancelled() => Ok(()),
        };
        if let Err(error) = ended {
            reader_gone.send_last(error_frame(&error));
        }
    });
    // A comment every KEEP_ALIVE, beside the frames, until they end; the
    // slot is held for as long as the response streams.
    let start = tokio::time::Instant::now() + KEEP_ALIVE;
    let keep_alive = IntervalStream::new(tokio::time::interval_at(start, KEEP_ALIVE))
        .map(|_| Some(Bytes::from_static(KEEP_ALIVE_FRAME)));
    let frames = receiver.map(Some).chain(tokio_stream::once(None)).merge(keep_alive).map_while(|frame| frame);
    let body = Body::from_stream(frames.map(move |frame| {
        let _held = &slot;
        Ok::<_, Infallible>(frame)
    }));
    Ok(([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], body).into_response())
}

/// One auction event as the stream writes it, a server-sent event whose id
/// is its revision: `opened` (the item), `bid` (the accepted bid), `closed`
/// (the final state and winner), or `progress` (no change: where a watch
/// from now on starts). Its data is compact JSON, which holds no line
/// break, so one `data` line.
fn sse_frame(event: &AuctionEvent) -> Bytes {
    let EventJson { event, id, data } = EventJson::from(event);
    frame(Some(&id), event, &data)
}

fn frame(id: Option<&str>, event: &str, data: &impl serde::Serialize) -> Bytes {
    // Serialising these plain structs cannot fail.
    let data = serde_json::to_string(data).unwrap_or_else(|_| "null".into());
    let id = id.map(|id| format!("id: {id}\n")).unwrap_or_default();
    Bytes::from(format!("{id}event: {event}\ndata: {data}\n\n"))
}

/// The stream's first frame: how long a browser waits before it reconnects.
fn retry_frame(after: Duration) -> Bytes {
    Bytes::from(format!("retry: {}\n\n", after.as_millis()))
}

/// A comment, which keeps proxies from closing an idle stream.
const KEEP_ALIVE_FRAME: &[u8] = b":\n\n";

/// The last event of a watch that cannot go on: no leader answered, or
/// its revision was compacted (the reader reads afresh and watches after).
/// Its data is the error the same failure gets as an HTTP answer.
fn error_frame(error: &ClientError) -> Bytes {
    let ApiError { code, message, .. } = ApiError::from(error.clone());
    frame(None, "error", &ErrorBody { error: code, message })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::auction::{AcceptedBid, EventKind};
    use crate::transport::{ClientApi, Watched};

    fn bid() -> AuctionEvent {
        let bid = AcceptedBid { bidder: "bob".into(), amount: 130, at_unix_ms: 1_700_000_002_000, revision: 43 };
        AuctionEvent { revision: 43, auction_id: "a1".into(), kind: EventKind::BidAccepted(bid) }
    }

    #[test]
    fn an_event_is_one_frame_whose_id_is_its_revision_and_whose_data_is_one_line_of_the_rest_apis_json() {
        assert_eq!(
            sse_frame(&bid()),
            "id: 43\nevent: bid\ndata: {\"id\":\"43\",\"participant_id\":\"bob\",\"auction_item_id\":\"a1\",\
             \"bid_price\":130,\"timestamp\":\"2023-11-14T22:13:22Z\"}\n\n"
        );
        assert_eq!(retry_frame(RECONNECT_AFTER), "retry: 500\n\n");
    }

    #[test]
    fn a_shared_event_is_framed_once_for_every_stream_that_carries_it() {
        let shared = Arc::new(crate::auction::AuctionBook::share_event(bid()));
        let framings = AtomicUsize::new(0);
        let frame = |event: &AuctionEvent| {
            framings.fetch_add(1, Ordering::Relaxed);
            sse_frame(event)
        };
        let streams: Vec<Bytes> = (0..3).map(|_| Watched::Shared(Arc::clone(&shared)).framed(frame)).collect();
        assert_eq!(framings.load(Ordering::Relaxed), 1, "framed once");
        assert!(streams.iter().all(|bytes| bytes.as_ptr() == streams[0].as_ptr()), "the same bytes");
        // An event of one stream alone is framed for it.
        assert_eq!(Watched::Own(bid()).framed(frame), streams[0]);
        assert_eq!(framings.load(Ordering::Relaxed), 2);
    }
}
