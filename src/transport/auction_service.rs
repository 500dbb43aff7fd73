//! The auction's client API: the gRPC service that turns requests into
//! auction commands, reads and watches of the node ([`Backend`]).

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::{Stream, StreamExt};
use tonic::service::Routes;
use tonic::{Request, Response, Status};

use crate::auction::{
    Applied, AuctionBook, AuctionEvent, Bid, CancelAuction, Command, CreateAuction, CreateOutcome, NameDigest, Query,
    QueryAnswer, QueryError, ReadError,
};
use crate::replication::NodeId;

use super::client::InProcessCall;
use super::pb::{self, auction_server::Auction, auction_server::AuctionServer};
use super::peer_role;
use super::watch_route::{Messages, WATCH_PAGES_PATH, WATCH_PATH, WatchRoute, encode, open_watch};
use super::{Backend, ClientApi, MAX_CLIENT_MESSAGE, ServiceError, SharedEvent, convert, is_http_session};
use crate::security::Role;

pub(super) struct AuctionService<B> {
    backend: Arc<B>,
}

/// The events of a watch, as the service streams them.
pub(super) type AuctionEventStream = Pin<Box<dyn Stream<Item = Result<pb::AuctionEvent, Status>> + Send>>;
pub(super) type EventPageStream = Pin<Box<dyn Stream<Item = Result<pb::EventPage, Status>> + Send>>;

impl<B: Backend<AuctionBook>> AuctionService<B> {
    pub(super) fn new(backend: Arc<B>) -> Self {
        AuctionService { backend }
    }

    /// Proposes a command and takes its kind of output from what it came to.
    async fn propose<T>(&self, command: Command, output: fn(Applied) -> Option<T>) -> Result<T, Status> {
        let proposed = self.backend.propose(command).await?;
        output(proposed.output).ok_or_else(|| Status::internal("a command answered with another's output"))
    }

    /// Checks a write's credentials before it becomes a command, where
    /// names are authenticated (see [`Backend::authenticates_names`]):
    /// a session of the HTTP API (see [`is_http_session`]) is the HTTP
    /// API's alone (in process, or with its node's certificate); and what
    /// proves the right to `name` is the digest of `secret`, or, without
    /// one, the caller's client certificate for that very name.
    fn authorize_write<T>(
        &self,
        request: &Request<T>,
        client_id: &str,
        name: &str,
        secret: &[u8],
    ) -> Result<Option<NameDigest>, Status> {
        let authenticated = self.backend.authenticates_names();
        if !authenticated {
            return convert::name_digest(secret, false).map_err(Status::invalid_argument);
        }
        let role = peer_role(request);
        if is_http_session(client_id) {
            let in_process = request.extensions().get::<InProcessCall>().is_some();
            if !in_process && !matches!(role, Some(Role::Node(_))) {
                return Err(Status::invalid_argument(format!(
                    "client id {client_id:?} is a session of the HTTP API: choose another (any id without its \
                     prefixes)"
                )));
            }
        }
        match role {
            Some(Role::Client(certified)) if secret.is_empty() && certified == name => {
                Ok(Some(convert::certificate_digest(name)))
            }
            _ => convert::name_digest(secret, true).map_err(Status::invalid_argument),
        }
    }

    /// Asks a read; a refused one is the client's error.
    async fn read(&self, query: Query) -> Result<(QueryAnswer, NodeId), Status> {
        let (answer, node) = self.backend.read(query).await?;
        let answer = answer.map_err(|error| match error {
            QueryError::Read(ReadError::UnknownAuction(auction_id)) => ServiceError::UnknownAuction(auction_id),
            error @ QueryError::BadPageToken(_) => ServiceError::InvalidArgument(error.to_string()),
        })?;
        Ok((answer, node))
    }
}

impl ClientApi for AuctionBook {
    fn client_routes<B: Backend<Self>>(backend: Arc<B>) -> Routes {
        let watch = WatchRoute::new(Arc::clone(&backend), Messages::EventEach);
        let watch_pages = WatchRoute::new(Arc::clone(&backend), Messages::PageEach);
        let service = AuctionServer::new(AuctionService { backend }).max_decoding_message_size(MAX_CLIENT_MESSAGE);
        // `Watch` and `WatchPages` stream the node's shared encodings; their
        // own paths win over the service's.
        Routes::from(
            Routes::new(service)
                .into_axum_router()
                .route_service(WATCH_PATH, watch)
                .route_service(WATCH_PAGES_PATH, watch_pages),
        )
    }

    fn share_event(event: AuctionEvent) -> SharedEvent<AuctionEvent> {
        let encoded = encode(event.clone());
        SharedEvent::new(event, encoded)
    }
}

#[tonic::async_trait]
impl<B: Backend<AuctionBook>> Auction for AuctionService<B> {
    type WatchStream = AuctionEventStream;
    type WatchPagesStream = EventPageStream;

    /// Remote clients get `WatchPages` from its route (`watch_route`), in
    /// pages of the node's shared encodings; this serves it, an event a
    /// page, to a caller of the service itself.
    async fn watch_pages(&self, request: Request<pb::WatchRequest>) -> Result<Response<EventPageStream>, Status> {
        let events = self.watch(request).await?.into_inner();
        let pages = events.map(|event| event.map(|event| pb::EventPage { events: vec![event] }));
        Ok(Response::new(Box::pin(pages)))
    }

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let events = open_watch(&*self.backend, request.get_ref())?;
        let stream = events.map(|event| match event {
            Ok(event) => Ok(pb::AuctionEvent::from(event.into_event())),
            Err(error) => Err(Status::from(error)),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn bid(&self, request: Request<pb::BidRequest>) -> Result<Response<pb::BidReply>, Status> {
        let asked = request.get_ref();
        let name_digest = self.authorize_write(&request, &asked.client_id, &asked.bidder, &asked.secret)?;
        let request = request.into_inner();
        let bid = Bid { name_digest, ..convert::bid_from_request(request) };
        let outcome = self.propose(Command::Bid(bid), Applied::into_bid).await?;
        Ok(Response::new(outcome.into()))
    }

    async fn result(&self, request: Request<pb::ResultRequest>) -> Result<Response<pb::ResultReply>, Status> {
        let query = Query::View { auction_id: request.into_inner().auction_id };
        match self.read(query).await? {
            (QueryAnswer::View(view), leader) => Ok(Response::new(convert::result_reply(view, leader))),
            _ => Err(Status::internal("a result answered with something else")),
        }
    }

    async fn status(&self, _request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusReply>, Status> {
        Ok(Response::new(convert::status_reply(self.backend.status())))
    }

    async fn create_auction(
        &self,
        request: Request<pb::CreateAuctionRequest>,
    ) -> Result<Response<pb::CreateAuctionReply>, Status> {
        let asked = request.get_ref();
        let name_digest = self.authorize_write(&request, &asked.client_id, &asked.seller, &asked.secret)?;
        let request = request.into_inner();
        let outcome = match convert::create_from_request(request) {
            Ok(create) => {
                let create = CreateAuction { name_digest, ..create };
                self.propose(Command::Create(create), Applied::into_created).await?
            }
            Err(reason) => CreateOutcome::exception(reason),
        };
        Ok(Response::new(outcome.into()))
    }

    async fn cancel_auction(
        &self,
        request: Request<pb::CancelAuctionRequest>,
    ) -> Result<Response<pb::CancelAuctionReply>, Status> {
        let asked = request.get_ref();
        let name_digest = self.authorize_write(&request, &asked.client_id, &asked.seller, &asked.secret)?;
        let request = request.into_inner();
        let cancel = CancelAuction {
            name_digest,
            auction_id: request.auction_id,
            seller: request.seller,
            client_id: request.client_id,
            request_id: request.request_id,
            at_unix_ms: 0,
            retain_ms: 0,
        };
        Ok(Response::new(self.propose(Command::Cancel(cancel), Applied::into_cancelled).await?.into()))
    }

    async fn list_auctions(
        &self,
        request: Request<pb::ListAuctionsRequest>,
    ) -> Result<Response<pb::ListAuctionsReply>, Status> {
        let request = request.into_inner();
        let query = Query::List { open_only: request.open_only, limit: request.limit, page_token: request.page_token };
        match self.read(query).await?.0 {
            QueryAnswer::Page(page) => Ok(Response::new(pb::ListAuctionsReply {
                auctions: page.auctions.into_iter().map(pb::AuctionInfo::from).collect(),
                next_page_token: page.next_page_token,
            })),
            _ => Err(Status::internal("a list answered with something else")),
        }
    }

    async fn history(&self, request: Request<pb::HistoryRequest>) -> Result<Response<pb::HistoryReply>, Status> {
        let request = request.into_inner();
        let query =
            Query::History { auction_id: request.auction_id, limit: request.limit, page_token: request.page_token };
        match self.read(query).await?.0 {
            QueryAnswer::History(page) => Ok(Response::new(pb::HistoryReply {
                auction_id: page.auction_id,
                bids: page.bids.into_iter().map(pb::AcceptedBid::from).collect(),
                next_page_token: page.next_page_token,
            })),
            _ => Err(Status::internal("a history answered with something else")),
        }
    }

    async fn get_auction(&self, request: Request<pb::GetAuctionRequest>) -> Result<Response<pb::AuctionInfo>, Status> {
        let query = Query::Get { auction_id: request.into_inner().auction_id };
        match self.read(query).await?.0 {
            QueryAnswer::Auction(info) => Ok(Response::new(info.into())),
            _ => Err(Status::internal("a get answered with something else")),
        }
    }
}
