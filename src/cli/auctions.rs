//! The one-shot client commands: `bid`, `result`, `create`, `cancel`,
//! `list`, `show`, `history` and `watch`. Each prints its answer on stdout,
//! a line or (`--json`) a line of JSON per item, and says by its exit code
//! what came of it (see [`super::exit`]).

use std::process::ExitCode;

use gavel::auction::{CreateAuction, Verdict, render};
use gavel::tools::prompt;
use gavel::web::json::EventJson;

use super::args::Target;
use super::exit;
use super::pager::{Page, for_each_item};
use super::render::{AuctionJson, CreateJson, HistoryBidJson, json_line};

/// `gavel bid`: an amount that is not one is refused before it is sent.
pub async fn bid(amount: &str, bidder: &str, target: &Target) -> anyhow::Result<ExitCode> {
    let amount = match prompt::parse_amount(amount) {
        Ok(amount) => amount,
        Err(reason) => {
            println!("EXCEPTION: {reason}");
            return Ok(exit::refused());
        }
    };
    let mut client = target.client()?;
    match client.bid(&target.auction, bidder, amount).await {
        Ok(outcome) => {
            println!("{}", prompt::format_bid(bidder, amount, &outcome));
            Ok(exit::of_verdict(outcome.verdict))
        }
        Err(error) => Ok(exit::of_error(&error)),
    }
}

/// `gavel result`.
pub async fn result(target: &Target) -> anyhow::Result<ExitCode> {
    let mut client = target.client()?;
    match client.result(&target.auction).await {
        Ok((view, _leader)) => {
            println!("{}", prompt::format_view(&view));
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => Ok(exit::of_error(&error)),
    }
}

/// `gavel create`: `title` names the auction in the line printed.
pub async fn create(create: CreateAuction, title: &str, json: bool, target: &Target) -> anyhow::Result<ExitCode> {
    let mut client = target.client()?;
    match client.create_auction(create).await {
        Ok(outcome) => {
            match json {
                true => println!("{}", json_line(&CreateJson::from(&outcome))),
                false => println!("{}", prompt::format_create(title, &outcome)),
            }
            Ok(exit::of_verdict(outcome.verdict))
        }
        Err(error) => Ok(exit::of_error(&error)),
    }
}

/// `gavel cancel`.
pub async fn cancel(id: &str, seller: &str, target: &Target) -> anyhow::Result<ExitCode> {
    let mut client = target.client()?;
    match client.cancel_auction(id, seller).await {
        Ok(outcome) => {
            let line = match outcome.verdict {
                Verdict::Success => format!("CANCELLED: auction {id}"),
                Verdict::Fail => format!("FAIL: {}", render(&outcome.reason)),
                Verdict::Exception => format!("EXCEPTION: {}", render(&outcome.reason)),
            };
            println!("{line}");
            Ok(exit::of_verdict(outcome.verdict))
        }
        Err(error) => Ok(exit::of_error(&error)),
    }
}

/// `gavel list`: every page of the catalogue, printed as it arrives.
pub async fn list(open: bool, json: bool, target: &Target) -> anyhow::Result<ExitCode> {
    let mut client = target.client()?;
    let listed = for_each_item(
        async |page_token: &str| client.list_auctions(open, 0, page_token).await.map(Page::from),
        |info| {
            if json {
                println!("{}", json_line(&AuctionJson::from(info)));
            } else {
                println!("{}", prompt::format_auction(info));
            }
        },
    )
    .await;
    Ok(answered(listed))
}

/// `gavel history`: every page of an auction's accepted bids.
pub async fn history(id: &str, json: bool, target: &Target) -> anyhow::Result<ExitCode> {
    let mut client = target.client()?;
    let listed = for_each_item(
        async |page_token: &str| client.history(id, 0, page_token).await.map(Page::from),
        |bid| {
            if json {
                println!("{}", json_line(&HistoryBidJson::from(bid)));
            } else {
                println!("{} bid {} (revision {})", bid.bidder, bid.amount, bid.revision);
            }
        },
    )
    .await;
    Ok(answered(listed))
}

/// `gavel show`.
pub async fn show(id: &str, json: bool, target: &Target) -> anyhow::Result<ExitCode> {
    let mut client = target.client()?;
    match client.get_auction(id).await {
        Ok(info) if json => println!("{}", json_line(&AuctionJson::from(&info))),
        Ok(info) => println!("{}", prompt::format_auction(&info)),
        Err(error) => return Ok(exit::of_error(&error)),
    }
    Ok(ExitCode::SUCCESS)
}

/// `gavel watch`: events as they commit, until the service is gone.
pub async fn watch(ids: &[String], after: u64, json: bool, target: &Target) -> anyhow::Result<ExitCode> {
    let mut client = target.client()?;
    let scope = gavel::auction::EventScope::of(ids.iter().map(String::as_str));
    let printed = client
        .watch_scope_with(&scope, after, |event| {
            let line = if json { json_line(&EventJson::from(&event)) } else { prompt::format_event(&event) };
            if !line.is_empty() {
                println!("{line}");
            }
            std::future::ready(true)
        })
        .await;
    Ok(answered(printed))
}

/// Success, or the error's line and its code.
fn answered(outcome: Result<(), gavel::client::ClientError>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => exit::of_error(&error),
    }
}
