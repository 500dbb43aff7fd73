//! The client API's `Watch` as remote clients get it: each event goes out
//! as the bytes the node encoded once for all its watches, where the
//! generated service would encode every event again for every stream. The
//! route takes the method's path over from the generated service, which
//! still serves watches in process (the HTTP API beside a node).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prost::Message as _;
use prost::bytes::{BufMut, Bytes};
use tokio_stream::{Stream, StreamExt};
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::codegen::http;
use tonic::{Request, Response, Status};

use crate::auction::{AuctionBook, AuctionEvent, EventScope};

use super::pb;
use super::{Backend, MAX_CLIENT_MESSAGE, ServiceError, Watched, WatchedEvents};

/// The method's path, which the route serves.
pub(super) const WATCH_PATH: &str = "/gavel.v1.Auction/Watch";

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

/// The route of `Watch` over a node's backend.
pub(super) struct WatchRoute<B> {
    backend: Arc<B>,
}

impl<B> WatchRoute<B> {
    pub(super) fn new(backend: Arc<B>) -> Self {
        WatchRoute { backend }
    }
}

// Derived, it would ask `B: Clone`.
impl<B> Clone for WatchRoute<B> {
    fn clone(&self) -> Self {
        WatchRoute { backend: Arc::clone(&self.backend) }
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
        let method = WatchMethod { backend: Arc::clone(&self.backend) };
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(PreEncodedCodec).apply_max_message_size_config(Some(MAX_CLIENT_MESSAGE), None);
            Ok(grpc.server_streaming(method, request).await)
        })
    }
}

struct WatchMethod<B> {
    backend: Arc<B>,
}

type EncodedEvents = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

impl<B: Backend<AuctionBook>> tonic::server::ServerStreamingService<pb::WatchRequest> for WatchMethod<B> {
    type Response = Bytes;
    type ResponseStream = EncodedEvents;
    type Future = BoxFuture<Result<Response<EncodedEvents>, Status>>;

    fn call(&mut self, request: Request<pb::WatchRequest>) -> Self::Future {
        let backend = Arc::clone(&self.backend);
        Box::pin(async move {
            let events = open_watch(&*backend, request.get_ref())?;
            let stream: EncodedEvents = Box::pin(events.map(|event| event.map(wire).map_err(Status::from)));
            Ok(Response::new(stream))
        })
    }
}
