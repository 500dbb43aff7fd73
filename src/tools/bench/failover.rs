//! Failover trials: SIGKILL (or SIGTERM) the leader under load, time the
//! service's recovery as the clients see it, and restart the node as a
//! backup. And the rejoin trial: a backup restarted empty into a large
//! state, timed while the load goes on.

use std::time::{Duration, Instant};

use crate::tools::cluster::{LocalCluster, poll_until};

use super::load::Load;
use super::report::{FailoverReport, Summary, Trial};

/// Steady load before each kill.
const STEADY: Duration = Duration::from_millis(1000);
/// How long to wait for the first acknowledgement after a kill.
const RECOVERY_LIMIT: Duration = Duration::from_secs(10);
/// How long, after the first acknowledgement, the other clients have to resume.
const RESUME_LIMIT: Duration = Duration::from_secs(5);
const REJOIN_LIMIT: Duration = Duration::from_secs(15);

pub(crate) const DEFINITION: &str = "first ack: from kill(2) of the leader to the first SUCCESS answer to an \
    attempt sent after the killed process was reaped (so it was sequenced and committed by the new leader); \
    stall: the longest gap between two consecutive answers of one client spanning the kill";

/// How the leader is stopped in a trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// SIGKILL: a crash.
    Kill,
    /// SIGTERM: the graceful handover to the first of the leaderQueue.
    Graceful,
}

/// Runs `count` trials on a cluster under load.
pub(crate) async fn trials(
    cluster: &mut LocalCluster,
    load: &Load,
    count: usize,
    stop: Stop,
    verbose: bool,
) -> FailoverReport {
    let mut trials = Vec::with_capacity(count);
    for trial in 1..=count {
        tokio::time::sleep(STEADY).await;
        let Ok(leader) = cluster.wait_for_leader(RECOVERY_LIMIT).await else {
            eprintln!("bench: trial {trial}: no leader; stopping the trials");
            break;
        };
        let killed = cluster.node_address(leader);
        let signalled = load.kill_signalled();
        let kill_started = Instant::now();
        let stopped = match stop {
            Stop::Kill => cluster.kill(leader),
            Stop::Graceful => cluster.stop(leader, RECOVERY_LIMIT).await.map(|_| ()),
        };
        if let Err(error) = stopped {
            eprintln!("bench: trial {trial}: {error:#}; stopping the trials");
            break;
        }
        load.kill_done();
        let kill_to_reaped_ms = kill_started.elapsed().as_secs_f64() * 1e3;

        let first_ack = poll_until("the first ack", RECOVERY_LIMIT, Duration::from_millis(1), || async {
            load.first_ack_after_kill()
        })
        .await
        .ok();
        let new_leader = cluster.wait_for_leader(RECOVERY_LIMIT).await.ok().map(|i| cluster.node_address(i));
        // Every client that was running resumes before the stall is read.
        let resumed = || async { (load.clients_resumed(signalled) >= load.running_clients()).then_some(()) };
        let _ = poll_until("the clients to resume", RESUME_LIMIT, Duration::from_millis(5), resumed).await;
        let longest_stall_ms = load.longest_stall(signalled).map(|nanos| nanos as f64 / 1e6);

        let rejoin_started = Instant::now();
        let rejoin_ms = match cluster.restart(leader) {
            Ok(()) => cluster.wait_until_settled(leader, REJOIN_LIMIT).await.ok().map(|_| rejoin_started.elapsed()),
            Err(_) => None,
        }
        .map(|elapsed| elapsed.as_secs_f64() * 1e3);
        let result = Trial {
            trial,
            killed,
            new_leader,
            kill_to_reaped_ms,
            kill_to_first_ack_ms: first_ack.map(|at| (at.saturating_sub(signalled)) as f64 / 1e6),
            longest_stall_ms,
            rejoin_ms,
        };
        if verbose {
            eprintln!(
                "bench: trial {trial}: killed {} -> {}: first ack {} ms, longest stall {} ms",
                result.killed,
                result.new_leader.as_deref().unwrap_or("no leader"),
                result.kill_to_first_ack_ms.map_or("-".into(), |ms| format!("{ms:.1}")),
                result.longest_stall_ms.map_or("-".into(), |ms| format!("{ms:.1}")),
            );
        }
        trials.push(result);
    }
    let definition = match stop {
        Stop::Kill => DEFINITION.to_string(),
        Stop::Graceful => DEFINITION.replace("kill(2)", "SIGTERM").replace("killed process", "stopped process"),
    };
    FailoverReport {
        definition,
        kill_to_first_ack_ms: Summary::of(trials.iter().filter_map(|trial| trial.kill_to_first_ack_ms)),
        longest_stall_ms: Summary::of(trials.iter().filter_map(|trial| trial.longest_stall_ms)),
        trials,
    }
}

/// How long a restarted backup may take to rejoin a large state.
const LARGE_REJOIN_LIMIT: Duration = Duration::from_secs(300);

/// Waits until the load has had `preload` bids answered.
async fn wait_for_preload(load: &Load, preload: u64) -> anyhow::Result<()> {
    poll_until("the preload", Duration::from_secs(3600), Duration::from_millis(50), || async {
        (load.answered() >= preload).then_some(())
    })
    .await?;
    Ok(())
}

/// Once `preload` bids are answered, kills the last node (a backup),
/// restarts it empty, and times its rejoin (a member again, at the leader's
/// position) while the load goes on. Returns a line for the report.
pub(crate) async fn rejoin_trial(
    cluster: &mut LocalCluster,
    load: &Load,
    preload: u64,
    verbose: bool,
) -> anyhow::Result<String> {
    wait_for_preload(load, preload).await?;
    let backup = cluster.len() - 1;
    if cluster.leader().await == Some(backup) {
        anyhow::bail!("the last node leads; the rejoin trial restarts a backup");
    }
    cluster.kill(backup)?;
    let answered_before = load.answered();
    let started = Instant::now();
    cluster.restart(backup)?;
    let leader = cluster.wait_for_leader(RECOVERY_LIMIT).await?;
    let (leader_address, rejoining) = (cluster.node_address(leader), cluster.node_address(backup));
    let network = cluster.network().clone();
    poll_until("the backup to rejoin", LARGE_REJOIN_LIMIT, Duration::from_millis(20), || {
        let (leader_address, rejoining, network) = (leader_address.clone(), rejoining.clone(), network.clone());
        async move {
            let leader = crate::client::node_status(&network, &leader_address, Duration::from_secs(1)).await.ok()?;
            let backup = crate::client::node_status(&network, &rejoining, Duration::from_secs(1)).await.ok()?;
            (leader.membership.contains(&rejoining) && backup.last.index + 1_000 >= leader.last.index).then_some(())
        }
    })
    .await?;
    let took = started.elapsed();
    let answered = load.answered() - answered_before;
    let line = format!(
        "rejoin after {preload} bids: {rejoining} restarted empty was a member within 1,000 entries of the \
         leader after {:.2} s; {answered} bids answered meanwhile ({:.0}/s)",
        took.as_secs_f64(),
        answered as f64 / took.as_secs_f64()
    );
    if verbose {
        eprintln!("bench: {line}");
    }
    Ok(line)
}

/// Once `preload` bids were answered: stops the load, SIGKILLs every node,
/// restarts them all, and times the recovery from disk until a leader
/// answers a read that shows every bid answered before the kill.
pub(crate) async fn recovery_trial(
    cluster: &mut LocalCluster,
    load: &Load,
    preload: u64,
    verbose: bool,
) -> anyhow::Result<String> {
    wait_for_preload(load, preload).await?;
    load.stop_now();
    let leader = cluster.wait_for_leader(RECOVERY_LIMIT).await?;
    let status =
        crate::client::node_status(cluster.network(), &cluster.node_address(leader), Duration::from_secs(1)).await?;
    let (view_before, _) = read_default(cluster).await?;
    cluster.kill_all()?;
    let started = Instant::now();
    for i in 0..cluster.len() {
        cluster.restart(i)?;
    }
    let leader = cluster.wait_for_leader(LARGE_REJOIN_LIMIT).await?;
    let leads_after = started.elapsed();
    let (view_after, _) = read_default(cluster).await?;
    let reads_after = started.elapsed();
    anyhow::ensure!(
        view_after.accepted_bids >= view_before.accepted_bids,
        "recovery lost bids: {} accepted before the kill, {} after",
        view_before.accepted_bids,
        view_after.accepted_bids
    );
    let line = format!(
        "recovery: every node SIGKILLed with {} entries in the log; restarted, {} led after {:.2} s and answered a \
         read with all {} accepted bids after {:.2} s",
        status.last.index,
        cluster.node_address(leader),
        leads_after.as_secs_f64(),
        view_after.accepted_bids,
        reads_after.as_secs_f64()
    );
    if verbose {
        eprintln!("bench: {line}");
    }
    Ok(line)
}

async fn read_default(cluster: &LocalCluster) -> anyhow::Result<(crate::auction::AuctionView, String)> {
    let config = crate::client::ClientConfig {
        servers: vec![cluster.client_address()],
        network: cluster.network().clone(),
        ..Default::default()
    };
    Ok(crate::client::Client::new(config)?.result("").await?)
}
