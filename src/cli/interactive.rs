//! The bidding prompt of `gavel client` and `gavel demo`: reads a line,
//! answers it (with the one-line answers of [`gavel::tools::prompt`]), and
//! prints the events of an auction being watched in between.
//!
//! Standard input is read through tokio, so a line being waited for never
//! holds up the runtime: the background watch and the demo's cluster keep
//! running meanwhile.

use std::io::Write;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader, Stdin};

use gavel::client::Client;
use gavel::tools::prompt::{self, Input};

use super::args::Target;
use super::pager::{Page, for_each_item};

/// Standard input, read a line at a time without blocking the runtime.
pub fn stdin() -> BufReader<Stdin> {
    BufReader::new(tokio::io::stdin())
}

/// Runs the prompt until `quit` or end of input. `extra` handles the words
/// the prompt itself does not know (the demo's commands, which
/// `extra_help` names); it returns the line to print, or `None` for an
/// unknown word.
pub async fn bidding_prompt<F, Fut>(
    client: &mut Client,
    target: &Target,
    bidder: &str,
    input: &mut (impl AsyncBufRead + Unpin),
    extra_help: &str,
    mut extra: F,
) -> anyhow::Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let help = format!("{}{extra_help}", prompt::HELP);
    println!("bidding as {bidder}; {help}");
    let mut bidder = bidder.to_string();
    let mut auction_id = target.auction.clone();
    // The background watch of `watch`, while one runs.
    let mut watching: Option<tokio::task::JoinHandle<()>> = None;
    let mut line = String::new();
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        line.clear();
        if input.read_line(&mut line).await? == 0 {
            println!();
            return Ok(());
        }
        let answer = match prompt::parse_input(&line) {
            Ok(Input::Bid(amount)) => prompt::bid_line(client, &auction_id, &bidder, amount).await,
            Ok(Input::Result) => prompt::result_line(client, &auction_id).await,
            Ok(Input::Help) => help.clone(),
            Ok(Input::Quit) => return Ok(()),
            Ok(Input::Empty) => continue,
            Ok(Input::Other(words)) => {
                let (command, rest) = words.split_once(char::is_whitespace).unwrap_or((words.as_str(), ""));
                match command.to_ascii_lowercase().as_str() {
                    "list" => list_lines(client).await,
                    "history" => history_lines(client, &auction_id).await,
                    "create" => prompt::create_line(client, &bidder, rest).await,
                    "as" if !rest.trim().is_empty() => {
                        bidder = rest.trim().to_string();
                        format!("bidding and selling as {bidder}")
                    }
                    "use" if !rest.trim().is_empty() => {
                        auction_id = rest.trim().to_string();
                        format!("numbers now bid on auction {auction_id}")
                    }
                    "watch" => match watching.take() {
                        Some(task) => {
                            task.abort();
                            "stopped watching".to_string()
                        }
                        // From the auction as read now: every change after
                        // this command is printed, however long the watch
                        // takes to reach the leader.
                        None => match client.get_auction(&auction_id).await {
                            Ok(info) => {
                                watching = Some(watch_in_background(target, &info.auction_id, info.revision)?);
                                format!("watching auction {}", info.auction_id)
                            }
                            Err(error) => prompt::format_error(&error),
                        },
                    },
                    _ => match extra(words.clone()).await {
                        Some(answer) => answer,
                        None => format!("unknown command {words:?}: {help}"),
                    },
                }
            }
            Err(reason) => format!("EXCEPTION: {reason}"),
        };
        println!("{answer}");
    }
}

/// Prints the bids and the close of one auction after `after_revision` as
/// they commit, until aborted; it resumes across failovers by itself, and waits for a
/// cluster that is down (after the demo's `crash all`) as long as a client
/// may. If it stops, it says so.
fn watch_in_background(
    target: &Target,
    auction_id: &str,
    after_revision: u64,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let patient = Target { timeout: gavel::client::MAX_DEADLINE, ..target.clone() };
    let mut watcher = patient.client()?;
    let auction_id = auction_id.to_string();
    Ok(tokio::spawn(async move {
        let ended = watcher
            .watch(Some(&auction_id), after_revision, |event| {
                let line = prompt::format_event(event);
                if !line.is_empty() {
                    println!("\n{line}");
                }
                true
            })
            .await;
        match ended {
            Ok(()) => println!("\nthe watch of auction {auction_id} ended"),
            Err(error) => println!("\nthe watch of auction {auction_id} stopped: {error}; `watch` starts it again"),
        }
    }))
}

/// The lines of `list`: every auction, in creation order.
async fn list_lines(client: &mut Client) -> String {
    let mut lines = Vec::new();
    let listed = for_each_item(
        async |page_token: &str| client.list_auctions(false, 0, page_token).await.map(Page::from),
        |info| lines.push(prompt::format_auction(info)),
    )
    .await;
    match listed {
        Ok(()) => lines.join("\n"),
        Err(error) => prompt::format_error(&error),
    }
}

/// The lines of `history`: the auction's accepted bids, oldest first.
async fn history_lines(client: &mut Client, auction_id: &str) -> String {
    let mut lines = Vec::new();
    let listed = for_each_item(
        async |page_token: &str| client.history(auction_id, 0, page_token).await.map(Page::from),
        |bid| lines.push(format!("{} bid {} (revision {})", bid.bidder, bid.amount, bid.revision)),
    )
    .await;
    match listed {
        Ok(()) if lines.is_empty() => "no accepted bids yet".into(),
        Ok(()) => lines.join("\n"),
        Err(error) => prompt::format_error(&error),
    }
}
