//! The crash tour: a scripted run under failures, told as one log in which
//! the clients' lines and the servers' logs are interleaved in time order.
//! `gavel demo --script crash-tour > log.txt` produces the repository's
//! `log.txt`; anyone can run it again and get the same story.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use crate::client::{Client, ClientConfig};
use crate::tools::cluster::{ClusterSpec, LocalCluster, poll_until};
use crate::tools::prompt;

#[derive(Clone, Debug)]
pub struct TourConfig {
    pub binary: PathBuf,
    pub base_port: u16,
    pub client_port: u16,
    /// How long the auction runs: long enough for the crashes, short
    /// enough to watch it end.
    pub auction_duration: Duration,
    pub log_dir: PathBuf,
    /// Keep the servers' logs in `log_dir` after the tour merged them.
    pub keep_logs: bool,
}

/// One line of the story.
struct Line {
    /// RFC 3339 with microseconds, as the servers' logs print it: sorts as text.
    at: String,
    who: String,
    text: String,
}

#[derive(Default)]
struct Story {
    lines: Vec<Line>,
}

impl Story {
    fn say(&mut self, who: &str, text: impl Into<String>) {
        let at = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
        self.lines.push(Line { at, who: who.to_string(), text: text.into() });
    }

    fn step(&mut self, text: &str) {
        self.say("tour", format!("--- {text} ---"));
    }
}

const SETTLE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(25);
/// The last line: what the servers log after it (their shutdown) is left out.
const END_OF_TOUR: &str = "end of the tour";

/// Runs the tour and returns the merged log.
pub async fn run(config: TourConfig) -> anyhow::Result<String> {
    let _ = std::fs::remove_dir_all(&config.log_dir);
    let mut spec = ClusterSpec::new(&config.binary, 3, config.base_port, config.client_port);
    spec.server_args = vec!["--duration".into(), humantime::format_duration(config.auction_duration).to_string()];
    spec.log_dir = Some(config.log_dir.clone());
    let mut story = Story::default();

    story.step("step 1: three servers start on sequential ports");
    let mut cluster = LocalCluster::start(spec).await.context("starting the cluster")?;
    let leader = cluster.wait_for_leader(SETTLE).await?;
    story.say("tour", leader_queue_line(&cluster, leader, 3).await?);

    story.step("step 2: two clients bid");
    let servers = vec![cluster.client_address()];
    let mut alice = Client::new(ClientConfig { servers: servers.clone(), ..ClientConfig::default() })?;
    let mut bob = Client::new(ClientConfig { servers, ..ClientConfig::default() })?;
    bid(&mut story, &mut alice, "alice", 100).await;
    bid(&mut story, &mut bob, "bob", 150).await;
    bid(&mut story, &mut alice, "alice", 120).await;
    bid(&mut story, &mut alice, "alice", 200).await;

    story.step("step 3: a backup is killed");
    let backup = 2;
    let backup_address = cluster.node_address(backup);
    story.say("tour", format!("=== CRASH backup {backup_address} (SIGKILL) ==="));
    cluster.kill(backup)?;
    let leader_address = cluster.node_address(leader);
    poll_until("the removal", SETTLE, POLL, || async {
        let status =
            crate::client::node_status(cluster.network(), &leader_address, Duration::from_secs(1)).await.ok()?;
        (!status.membership.contains(&backup_address)).then_some(())
    })
    .await
    .context("the leader did not remove the killed backup")?;
    story.say("tour", leader_queue_line(&cluster, leader, 2).await?);
    bid(&mut story, &mut bob, "bob", 250).await;

    story.step("step 4: the leader is killed while a bid is in flight");
    // Freezing the leader first holds the bid in flight; then it dies.
    cluster.freeze(leader)?;
    story.say("alice", "> bid 300 (the leader is frozen: the call is in flight)");
    let in_flight = tokio::spawn(async move {
        let line = prompt::bid_line(&mut alice, "", "alice", 300).await;
        (alice, line)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    story.say("tour", format!("=== CRASH leader {leader_address} (SIGKILL) ==="));
    cluster.kill(leader)?;
    let killed_at = Instant::now();
    let new_leader = cluster.wait_for_leader(SETTLE).await?;
    story.say(
        "tour",
        format!(
            "{} serves the client port {} ms after the crash",
            cluster.node_address(new_leader),
            killed_at.elapsed().as_millis()
        ),
    );
    let (mut alice, line) = in_flight.await.context("the in-flight bid")?;
    story.say("alice", format!("< {line} (the call completed without retyping)"));
    result(&mut story, &mut bob, "bob").await;

    story.step("step 5: the killed nodes restart and rejoin as backups");
    for node in [leader, backup] {
        cluster.restart(node)?;
        story.say("tour", format!("restarted {} (empty state)", cluster.node_address(node)));
        cluster.wait_until_settled(node, SETTLE).await?;
    }
    story.say("tour", leader_queue_line(&cluster, new_leader, 3).await?);

    story.step("step 6: the auction ends; late bids fail; the new leader names the winner");
    let over_deadline = config.auction_duration + SETTLE;
    // Closed in the replicated state, not only past its deadline: the leader
    // appends the close on its first tick after the deadline, and logs it.
    // Reading the result could see the deadline pass before that tick.
    let leader_log = cluster.log_file(new_leader).context("the tour keeps the servers' logs")?;
    poll_until("the end of the auction", over_deadline, POLL, || {
        let leader_log = leader_log.clone();
        async move { std::fs::read_to_string(leader_log).ok().filter(|log| log.contains("auction over")).map(|_| ()) }
    })
    .await
    .context("the auction did not end")?;
    bid(&mut story, &mut alice, "alice", 500).await;
    result(&mut story, &mut bob, "bob").await;
    story.step(END_OF_TOUR);
    drop(cluster);

    let log = merge(story, &config.log_dir);
    if !config.keep_logs {
        let _ = std::fs::remove_dir_all(&config.log_dir);
    }
    log
}

async fn bid(story: &mut Story, client: &mut Client, bidder: &str, amount: u64) {
    story.say(bidder, format!("> bid {amount}"));
    let line = prompt::bid_line(client, "", bidder, amount).await;
    story.say(bidder, format!("< {line}"));
}

async fn result(story: &mut Story, client: &mut Client, who: &str) {
    story.say(who, "> result");
    match client.result("").await {
        Ok((view, leader)) => story.say(who, format!("< {} (answered by {leader})", prompt::format_view(&view))),
        Err(error) => story.say(who, format!("< {}", prompt::format_error(&error))),
    }
}

/// The leader's view of the cluster, once it counts `members` members (itself
/// included), so that the line shows the step it follows.
async fn leader_queue_line(cluster: &LocalCluster, leader: usize, members: usize) -> anyhow::Result<String> {
    let address = cluster.node_address(leader);
    let what = format!("{address} to count {members} members");
    let status = poll_until(&what, SETTLE, POLL, || async {
        let status = crate::client::node_status(cluster.network(), &address, Duration::from_secs(1)).await.ok()?;
        (status.membership.len() == members).then_some(status)
    })
    .await?;
    Ok(format!(
        "leader {} (epoch {}); leaderQueue: [{}]",
        status.node,
        crate::replication::epoch_number(status.epoch),
        status.membership.iter().skip(1).cloned().collect::<Vec<_>>().join(", ")
    ))
}

/// Interleaves the story with the servers' logs, in time order, and labels
/// each server line with the node's port and its role at that moment.
fn merge(story: Story, log_dir: &std::path::Path) -> anyhow::Result<String> {
    let mut lines = story.lines;
    let mut files: Vec<PathBuf> = std::fs::read_dir(log_dir)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    files.sort();
    for file in files {
        let port = file
            .file_stem()
            .and_then(|stem| stem.to_str())
            .and_then(|stem| stem.strip_prefix("node-"))
            .unwrap_or("?")
            .to_string();
        let mut role = "starting";
        for raw in std::fs::read_to_string(&file)?.lines() {
            let Some((at, text)) = parse_server_line(raw) else { continue };
            role = role_after(role, &text);
            lines.push(Line { at, who: format!("{port} {role}"), text });
        }
    }
    // A stable sort keeps each source's own order for equal timestamps.
    lines.sort_by(|a, b| a.at.cmp(&b.at));
    if let Some(end) = lines.iter().position(|line| line.text.contains(END_OF_TOUR)) {
        lines.truncate(end + 1);
    }
    let width = lines.iter().map(|line| line.who.len()).max().unwrap_or(0);
    let mut out = String::new();
    for line in lines {
        // The date is the same on every line: the time of day is enough.
        let time = line.at.get(11..26).unwrap_or(&line.at);
        out.push_str(&format!("{time}  {:<width$}  {}\n", line.who, line.text));
    }
    Ok(out)
}

/// Splits a server log line (`TIME LEVEL target: message fields`) into its
/// time and the rest, without the target.
fn parse_server_line(raw: &str) -> Option<(String, String)> {
    let mut parts = raw.splitn(4, ' ').filter(|part| !part.is_empty());
    let at = parts.next()?.to_string();
    if !at.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let rest: Vec<&str> = raw[at.len()..].split_whitespace().collect();
    let (level, body) = rest.split_first()?;
    let body = match body.first() {
        Some(target) if target.ends_with(':') => &body[1..],
        _ => body,
    };
    let level = if *level == "INFO" { String::new() } else { format!("{level} ") };
    Some((at, format!("{level}{}", body.join(" "))))
}

/// The role a node has after logging `text`.
fn role_after<'a>(role: &'a str, text: &str) -> &'a str {
    if text.starts_with("node starting") {
        "starting"
    } else if text.contains("became leader") {
        "leader"
    } else if text.contains("joined as backup") {
        "backup"
    } else if text.contains("leader lost") {
        "joining"
    } else {
        role
    }
}
