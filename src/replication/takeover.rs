//! Who takes over when the leader is lost: a pure decision over the answers
//! of the peers that could be reached.
//!
//! The rule: the first live member of the leaderQueue takes over, unless a
//! live peer shows that member is stale. A member that missed an entry
//! every current member acked must have been removed before that entry, and
//! the peers that acked it applied the removal: so a candidate is stale
//! when a peer with a more advanced log no longer counts it as a member.
//!
//! After a full-cluster restart nobody remembers who was alive: a node whose
//! state came from its own disk, and that has followed no leader since,
//! leads only once every other member of its membership has answered with
//! a log. A member holds every committed entry; a node removed before the
//! others died does not, but thinks itself a member. Hearing from every
//! member it knows lets the staleness rule below catch it: the member that
//! took over from it, or applied its removal, answers with a more advanced
//! log that no longer counts it. A member whose disk is gone answers with
//! an empty log and is waited for too, until an operator removes it.
//!
//! Answers with an epoch far beyond any this node has seen (which no peer
//! could have been shown) are ignored. Only members are trusted to lead or
//! to be waited for; any other answer can only show this node stale, which
//! makes it wait: the safe direction.

use std::collections::HashSet;

use super::{LogPosition, NodeId, NodeStatus, Role, epoch_number, more_advanced};

/// What this node knows of itself when the leader is gone.
#[derive(Clone, Debug)]
pub struct SelfView<'a> {
    pub id: &'a str,
    /// The highest epoch this node has seen.
    pub epoch: u64,
    pub last: LogPosition,
    /// Leader first, then the leaderQueue.
    pub membership: &'a [NodeId],
    /// The cluster its state belongs to: answers from another are ignored.
    pub cluster_id: &'a str,
    /// Its state came from its disk and it has followed no leader since.
    pub recovered: bool,
    /// Members an operator released from the wait of a recovered node
    /// (`gavel member remove` while no leader exists).
    pub released: &'a [NodeId],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Succession {
    /// Bind the client port and lead, expecting these live backups back.
    TakeOver { live_backups: Vec<NodeId> },
    /// Someone else should take over (or already leads): try to join again.
    Wait { for_node: Option<NodeId> },
    /// A recovered node cannot tell yet whether it may lead: these members
    /// have not answered with a log.
    AwaitMembers { missing: Vec<NodeId> },
}

/// How far beyond this node's own epoch number a member's may be: each
/// failed takeover raises it by one, so a real gap is a handful.
pub const MAX_EPOCH_LEAD: u64 = 1 << 16;

/// Whether `answer` could come from a peer of this cluster: the same
/// cluster (or one without state), epochs it could have been shown, a log
/// no newer than the epochs it has seen, and itself a member in its own
/// eyes or ours (a removed node knows no more than its removal).
fn is_plausible(me: &SelfView<'_>, answer: &NodeStatus) -> bool {
    let limit = epoch_number(me.epoch.max(me.last.epoch)) + MAX_EPOCH_LEAD;
    let same_cluster = me.cluster_id.is_empty()
        || answer.cluster_id == me.cluster_id
        || (answer.cluster_id.is_empty() && answer.last.index == 0);
    let counts_itself = answer.membership.contains(&answer.node) || me.membership.contains(&answer.node);
    same_cluster && epoch_number(answer.epoch) <= limit && answer.last.epoch <= answer.epoch && counts_itself
}

/// Whether a takeover may rely on `answer` to lead or to take over: it comes
/// from a member, with a plausible epoch.
fn is_credible(me: &SelfView<'_>, answer: &NodeStatus) -> bool {
    me.membership.contains(&answer.node) && is_plausible(me, answer)
}

/// The highest epoch among this node's own and its credible peers': a new
/// leader's epoch goes above it.
pub fn highest_credible_epoch(me: &SelfView<'_>, answers: &[NodeStatus]) -> u64 {
    answers.iter().filter(|answer| is_credible(me, answer)).map(|answer| answer.epoch).fold(me.epoch, u64::max)
}

/// The epoch a successor's own must go above: the highest it knows of,
/// raised by one epoch number for each member ahead of it in the
/// leaderQueue (the lost leader left out).
///
/// A member ahead of it was given its chance first, and may have taken
/// over and crashed before anyone saw its epoch. Had both drawn the next
/// number, the two leaderships would share it, and the nonces, not what
/// was committed, would rank them: a takeover entry that only its crashed
/// writer holds, restarted from its disk, could outrank a leadership that
/// committed bids, refuse to rejoin it, and lead without them. Counting
/// the members ahead gives every candidate of one succession a number of
/// its own, and a later candidate, which leads only when those ahead did
/// not, a higher one.
pub fn successor_epoch_floor(me: &SelfView<'_>, lost_leader: Option<&str>, highest: u64) -> u64 {
    let ahead = me
        .membership
        .iter()
        .filter(|member| Some(member.as_str()) != lost_leader)
        .take_while(|member| member.as_str() != me.id)
        .count() as u64;
    let number = epoch_number(highest).saturating_add(ahead).min(super::MAX_EPOCH_NUMBER - 2);
    (number << 32) | (highest & u64::from(u32::MAX))
}

/// Decides whether this node should take over.
///
/// `answers` are the statuses of the peers that answered a probe;
/// `passed_over` the candidates that were given their chance and did not
/// take over in time.
pub fn choose_successor(
    me: &SelfView<'_>,
    lost_leader: Option<&str>,
    answers: &[NodeStatus],
    passed_over: &HashSet<NodeId>,
) -> Succession {
    if me.last.index == 0 {
        // A fresh node bootstraps only where no cluster is: a node that has
        // state may be about to take over, and must not lose it to a fresh
        // cluster that grabs the client port first.
        return match answers.iter().find(|answer| answer.epoch > 0 || answer.last.index > 0) {
            Some(member) => Succession::Wait { for_node: Some(member.node.clone()) },
            None => Succession::TakeOver { live_backups: Vec::new() },
        };
    }
    let plausible: Vec<&NodeStatus> = answers.iter().filter(|answer| is_plausible(me, answer)).collect();
    let answers: Vec<&NodeStatus> = answers.iter().filter(|answer| is_credible(me, answer)).collect();
    if let Some(leader) = answers.iter().find(|answer| answer.role == Role::Leader) {
        return Succession::Wait { for_node: Some(leader.node.clone()) };
    }
    if me.recovered {
        let missing: Vec<NodeId> = me
            .membership
            .iter()
            .filter(|member| member.as_str() != me.id && !me.released.contains(member))
            .filter(|member| !answers.iter().any(|answer| &answer.node == *member && answer.last.index > 0))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Succession::AwaitMembers { missing };
        }
    }
    let is_stale = |candidate: &str, candidate_last: LogPosition| {
        plausible.iter().any(|peer| {
            more_advanced(peer.last, candidate_last) && !peer.membership.iter().any(|member| member == candidate)
        })
    };
    if is_stale(me.id, me.last) {
        return Succession::Wait { for_node: None };
    }
    let live_backups: Vec<NodeId> = me
        .membership
        .iter()
        .filter(|member| member.as_str() != me.id && Some(member.as_str()) != lost_leader)
        // One an operator removed for good comes back, if at all, as a new node.
        .filter(|member| !me.released.contains(member))
        .filter(|member| answers.iter().any(|answer| &answer.node == *member))
        .cloned()
        .collect();
    for member in me.membership {
        if Some(member.as_str()) == lost_leader || passed_over.contains(member) {
            continue;
        }
        if member == me.id {
            return Succession::TakeOver { live_backups };
        }
        // A member that answers with an empty log restarted: it cannot
        // take over, so it is not waited for.
        if let Some(answer) = answers.iter().find(|answer| &answer.node == member)
            && answer.last.index > 0
            && !is_stale(&answer.node, answer.last)
        {
            return Succession::Wait { for_node: Some(member.clone()) };
        }
    }
    Succession::Wait { for_node: None }
}
