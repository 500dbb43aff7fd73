//! A dishonest peer, for the bench's and the chaos runs' hostile clients:
//! it speaks the replication protocol but lies. It says Hello under any
//! name, acks what it likes (out of turn, or indexes it was never sent),
//! and reads the leader's stream only if told to. Nothing in a node uses it.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::transport::pb::replication as rpb;
use crate::transport::pb::replication::replication_client::ReplicationClient;
use crate::transport::{CallError, MAX_REPLICATION_MESSAGE, Network, TransportSettings, connector, endpoint};

/// An open replication stream under a borrowed or invented name.
pub struct RogueStream {
    acks: mpsc::Sender<rpb::FromBackup>,
    inbound: Streaming<rpb::FromLeader>,
}

impl RogueStream {
    /// Opens `Replicate` on `leader` (a node port) and says Hello as `name`
    /// with an empty log.
    pub async fn open(network: &Network, leader: &str, name: &str, timeout: Duration) -> Result<Self, CallError> {
        let settings = TransportSettings { connect_timeout: timeout, ..TransportSettings::default() };
        let channel = tokio::time::timeout(
            timeout,
            endpoint(network, leader, &settings)?.connect_with_connector(connector(network.clone())),
        )
        .await
        .map_err(|_| CallError::Unavailable { message: "connect timed out".into(), leader_hint: None })?
        .map_err(|error| CallError::Unavailable { message: error.to_string(), leader_hint: None })?;
        let mut client = ReplicationClient::new(channel).max_decoding_message_size(MAX_REPLICATION_MESSAGE);
        let (acks, outbound) = mpsc::channel(16);
        // An incarnation of its own: a member's never leaves the peers.
        let incarnation = rand::random::<u64>() | 1;
        let hello = rpb::Hello { node: name.to_string(), incarnation, ..rpb::Hello::default() };
        let _ = acks.send(rpb::FromBackup { message: Some(rpb::from_backup::Message::Hello(hello)) }).await;
        let response = tokio::time::timeout(timeout, client.replicate(ReceiverStream::new(outbound)))
            .await
            .map_err(|_| CallError::Unavailable { message: "no answer to hello".into(), leader_hint: None })??;
        Ok(RogueStream { acks, inbound: response.into_inner() })
    }

    /// Acks `index`, whatever was sent. False once the stream is gone.
    pub async fn ack(&self, index: u64) -> bool {
        let ack = rpb::FromBackup { message: Some(rpb::from_backup::Message::Ack(rpb::Ack { index })) };
        self.acks.send(ack).await.is_ok()
    }

    /// Reads the next message and says how far it reaches (the highest
    /// index it carries, or a snapshot's); `None` once the stream ended.
    pub async fn read(&mut self) -> Option<u64> {
        use rpb::from_leader::Message as M;
        match self.inbound.message().await {
            Ok(Some(message)) => Some(match message.message {
                Some(M::Entries(entries)) => entries.entries.last().map_or(0, |entry| entry.index),
                Some(M::Snapshot(chunk)) => chunk.last_index,
                Some(M::Heartbeat(_)) | None => 0,
            }),
            Ok(None) | Err(_) => None,
        }
    }
}
