//! The client API's `Watch` and `WatchPages` as remote clients get them:
//! each event goes out as the bytes the node encoded once for all its
//! watches, where the generated service would encode every event again for
//! every stream. `Watch` sends one event a message; `WatchPages` sends each
//! page of events the watch queued as one message, so a reader of many
//! events pays the per-message costs (a stream poll, a frame header, a
//! decode call) once a page. The routes take the methods' paths over from
//! the generated service.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prost::Message as _;
use prost::bytes::{BufMut, Bytes, BytesMut};
use tokio_stream::{Stream, StreamExt};
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::codegen::http;
use tonic::{Request, Response, Status};

use crate::auction::{AuctionBook, AuctionEvent, EventScope};

use super::pb;
use super::watched::QueueBatches;
use super::{Backend, MAX_CLIENT_MESSAGE, ServiceError, Watched, WatchedEvents};

/// The methods' paths, which the routes serve.
pub(super) const WATCH_PATH: &str = "/gavel.v1.Auction/Watch";
pub(super) const WATCH_PAGES_PATH: &str = "/gavel.v1.Auction/WatchPages";

/// How a route sends a watch's events.
#[derive(Clone, Copy, Debug)]
pub(super) enum Messages {
    /// One event a message (`Watch`, an `AuctionEvent` each).
    EventEach,
    /// One page of events a message (`WatchPages`, an `EventPage` each).
    PageEach,
}

/// The events of a watch, as the request asks for them.
pub(super) fn open_watch<B: Backend<AuctionBook>>(
    backend: &B,
    request: &pb::WatchRequest,
) -> Result<WatchedEvents<AuctionEvent>, ServiceError> {
    let ids = std::iter::once(request.auction_id.as_str()).chain(request.auction_ids.iter().map(String::as_str));
    backend.watch(EventScope::of(ids), request.after_revision)
}

/// An event as the wire carries it: the node's shared encoding, or one
/// made now for an event of this watch alone.
pub(super) fn encode(event: AuctionEvent) -> Bytes {
    pb::AuctionEvent::from(event).encode_to_vec().into()
}

fn wire(event: Watched<AuctionEvent>) -> Bytes {
    match event {
        Watched::Shared(shared) => shared.encoded(),
        Watched::Own(event) => encode(event),
    }
}

/// The key of `EventPage.events` on the wire: field 1, length-delimited.
const PAGE_EVENTS_KEY: u8 = (1 << 3) | 2;

/// A watch's events a page to a message: the events of each batch its
/// queue holds, as one `EventPage` made of their shared encodings; an
/// error (a stream's last word, which comes alone) as itself.
struct EncodedPages {
    batches: QueueBatches<Result<Watched<AuctionEvent>, ServiceError>>,
    /// An error that followed a page's events, sent after them.
    error: Option<Status>,
}

impl Stream for EncodedPages {
    type Item = Result<Bytes, Status>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(error) = self.error.take() {
                return Poll::Ready(Some(Err(error)));
            }
            let Some(batch) = std::task::ready!(Pin::new(&mut self.batches).poll_next(context)) else {
                return Poll::Ready(None);
            };
            let mut page = BytesMut::new();
            for item in batch {
                match item {
                    Ok(event) => {
                        let event = wire(event);
                        page.put_u8(PAGE_EVENTS_KEY);
                        prost::encoding::encode_varint(event.len() as u64, &mut page);
                        page.put(event);
                    }
                    Err(error) => {
                        // Nothing follows an error.
                        self.error = Some(Status::from(error));
                        break;
                    }
                }
            }
            if !page.is_empty() {
                return Poll::Ready(Some(Ok(page.freeze())));
            }
        }
    }
}

/// Writes events already encoded; reads the request as protobuf.
#[derive(Clone, Copy, Debug, Default)]
struct PreEncodedCodec;

#[derive(Debug)]
struct PreEncoded;

impl Encoder for PreEncoded {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, destination: &mut EncodeBuf<'_>) -> Result<(), Status> {
        destination.put(item);
        Ok(())
    }

    /// Hands the transport at most about 8 KiB at a time (tonic's default
    /// gathers 32 KiB): what a stream whose reader stopped reading holds
    /// at the transport, beside its watch's own queue.
    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(WIRE_BUFFER_BYTES, WIRE_BUFFER_BYTES)
    }
}

/// The bytes a watch stream's encoder gathers before it hands them on.
const WIRE_BUFFER_BYTES: usize = 8 * 1024;

impl Codec for PreEncodedCodec {
    type Encode = Bytes;
    type Decode = pb::WatchRequest;
    type Encoder = PreEncoded;
    type Decoder = tonic_prost::ProstDecoder<pb::WatchRequest>;

    fn encoder(&mut self) -> PreEncoded {
        PreEncoded
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(BufferSettings::default())
    }
}

/// The route of `Watch` or `WatchPages` over a node's backend.
pub(super) struct WatchRoute<B> {
    backend: Arc<B>,
    messages: Messages,
}

impl<B> WatchRoute<B> {
    pub(super) fn new(backend: Arc<B>, messages: Messages) -> Self {
        WatchRoute { backend, messages }
    }
}

// Derived, it would ask `B: Clone`.
impl<B> Clone for WatchRoute<B> {
    fn clone(&self) -> Self {
        WatchRoute { backend: Arc::clone(&self.backend), messages: self.messages }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<B: Backend<AuctionBook>> tower::Service<http::Request<axum::body::Body>> for WatchRoute<B> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<axum::body::Body>) -> Self::Future {
        let method = WatchMethod { backend: Arc::clone(&self.backend), messages: self.messages };
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(PreEncodedCodec).apply_max_message_size_config(Some(MAX_CLIENT_MESSAGE), None);
            Ok(grpc.server_streaming(method, request).await)
        })
    }
}

struct WatchMethod<B> {
    backend: Arc<B>,
    messages: Messages,
}

type EncodedEvents = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

impl<B: Backend<AuctionBook>> tonic::server::ServerStreamingService<pb::WatchRequest> for WatchMethod<B> {
    type Response = Bytes;
    type ResponseStream = EncodedEvents;
    type Future = BoxFuture<Result<Response<EncodedEvents>, Status>>;

    fn call(&mut self, request: Request<pb::WatchRequest>) -> Self::Future {
        let (backend, messages) = (Arc::clone(&self.backend), self.messages);
        Box::pin(async move {
            let events = open_watch(&*backend, request.get_ref())?;
            let stream: EncodedEvents = match messages {
                Messages::EventEach => Box::pin(events.map(|event| event.map(wire).map_err(Status::from))),
                Messages::PageEach => Box::pin(EncodedPages { batches: events.into_batches(), error: None }),
            };
            Ok(Response::new(stream))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auction::EventKind;
    use crate::transport::bounded_queue;

    fn event(revision: u64) -> AuctionEvent {
        AuctionEvent { revision, auction_id: format!("a{revision}"), kind: EventKind::Progress }
    }

    /// A page is the `EventPage` of the batch's events, decoded as any
    /// client decodes it; an error after a page's events comes after it.
    #[tokio::test]
    async fn a_watch_s_batches_go_out_as_event_pages() {
        let (sender, receiver) = bounded_queue(16, 8192);
        let shared = Arc::new(crate::transport::SharedEvent::new(event(2), encode(event(2))));
        assert!(sender.send_batch(vec![Ok(Watched::Own(event(1))), Ok(Watched::Shared(shared))], 100).await);
        assert!(sender.send_batch(vec![Ok(Watched::Own(event(3)))], 100).await);
        sender.send_last(Err(ServiceError::WatchInterrupted("resume after revision 3".into())));
        drop(sender);
        let mut pages = EncodedPages { batches: receiver.into_batches(), error: None };
        let decode = |bytes: Bytes| pb::EventPage::decode(bytes).expect("an EventPage");
        let first = decode(pages.next().await.expect("a page").expect("events"));
        assert_eq!(first.events, vec![pb::AuctionEvent::from(event(1)), pb::AuctionEvent::from(event(2))]);
        let second = decode(pages.next().await.expect("a page").expect("events"));
        assert_eq!(second.events, vec![pb::AuctionEvent::from(event(3))]);
        let error = pages.next().await.expect("the last word").expect_err("an error");
        assert!(error.message().contains("resume after revision 3"), "{error:?}");
        assert!(pages.next().await.is_none());
    }
}
