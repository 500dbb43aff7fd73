//! What the bidding prompt understands and the one-line answers it prints,
//! shared by `gavel client`, `gavel bid`, `gavel result`, `gavel demo` and
//! the crash tour. The prompt's loop itself belongs to the command line.

use std::time::Duration;

use crate::auction::{AuctionEvent, AuctionInfo, AuctionView, BidOutcome, CreateOutcome, EventKind, Verdict, render};
use crate::client::{Client, ClientError};

/// What a line typed at the prompt asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Bid(u64),
    Result,
    Help,
    Quit,
    Empty,
    /// Anything else: another command of the caller's, or a typo.
    Other(String),
}

/// Reads one line of input. Numbers are checked here, so that `-5`,
/// `1.5` or a number too large for any bid never reach the service.
pub fn parse_input(line: &str) -> Result<Input, String> {
    let line = line.trim();
    match line.to_ascii_lowercase().as_str() {
        "" => return Ok(Input::Empty),
        "result" | "r" => return Ok(Input::Result),
        "help" | "h" | "?" => return Ok(Input::Help),
        "quit" | "exit" | "q" => return Ok(Input::Quit),
        _ => {}
    }
    parse_amount(line).map(Input::Bid).or_else(|error| {
        let looks_numeric = line.starts_with(['-', '+']) || line.chars().next().is_some_and(|c| c.is_ascii_digit());
        if looks_numeric { Err(error) } else { Ok(Input::Other(line.to_string())) }
    })
}

/// Parses a bid amount: a whole number that fits in 64 bits. Zero parses;
/// the service answers it with its own EXCEPTION.
pub fn parse_amount(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!("amount must be a whole number above 0, not {text}"));
    }
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("amount must be a whole number, not {text:?}"));
    }
    digits.parse::<u64>().map_err(|_| format!("amount {text} is too large (at most {})", u64::MAX))
}

pub const HELP: &str = "type a whole number to bid that amount, `result` to see the auction, `list` the \
    auctions, `use ID` to bid on another, `history` of its bids, `create DURATION TITLE` to sell (e.g. \
    `create 10m a blue vase`), `as NAME` to bid and sell as someone else, `watch` to be told of bids and \
    its close (again to stop), `help`, or `quit`";

/// `create DURATION TITLE`: sells as `seller`.
pub async fn create_line(client: &mut Client, seller: &str, arguments: &str) -> String {
    let Some((duration, title)) = arguments.trim().split_once(char::is_whitespace) else {
        return "EXCEPTION: create DURATION TITLE, e.g. create 10m a blue vase".into();
    };
    let duration = match humantime::parse_duration(duration) {
        Ok(duration) if !duration.is_zero() => duration,
        _ => return format!("EXCEPTION: {duration:?} is not a duration (10m, 2h)"),
    };
    let create = crate::auction::CreateAuction::lasting(seller, title.trim(), "", 1, duration);
    match client.create_auction(create).await {
        Ok(outcome) => format_create(title.trim(), &outcome),
        Err(error) => format_error(&error),
    }
}

/// The one line that answers a bid.
pub fn format_bid(bidder: &str, amount: u64, outcome: &BidOutcome) -> String {
    match outcome.verdict {
        Verdict::Success => {
            let mut line = format!("SUCCESS: bid {amount} by {bidder} is now the highest");
            if let Some(note) = &outcome.reason {
                line.push_str(&format!(" ({note})"));
            }
            line
        }
        Verdict::Fail => format!("FAIL: {}", render(&outcome.reason)),
        Verdict::Exception => format!("EXCEPTION: {}", render(&outcome.reason)),
    }
}

/// The one line that answers a read.
pub fn format_view(view: &AuctionView) -> String {
    let auction = &view.auction_id;
    if view.over {
        if view.highest_bidder.is_empty() {
            format!("RESULT: auction {auction} is over; nobody bid, so there is no winner")
        } else {
            format!(
                "RESULT: auction {auction} is over; the winner is {} with {}",
                view.highest_bidder, view.highest_amount
            )
        }
    } else {
        let left_ms = (view.ends_at_unix_ms - view.now_unix_ms).max(0) as u64;
        let left = humantime::format_duration(Duration::from_secs(left_ms.div_ceil(1000)));
        if view.highest_bidder.is_empty() {
            format!("RESULT: auction {auction} is running; no bids yet; {left} left")
        } else {
            format!(
                "RESULT: auction {auction} is running; highest bid {} by {}; {left} left",
                view.highest_amount, view.highest_bidder
            )
        }
    }
}

/// The one line for a request that got no answer.
pub fn format_error(error: &ClientError) -> String {
    if error.is_refusal() { format!("EXCEPTION: {error}") } else { format!("ERROR: {error}") }
}

/// Bids and returns the line to print.
pub async fn bid_line(client: &mut Client, auction_id: &str, bidder: &str, amount: u64) -> String {
    match client.bid(auction_id, bidder, amount).await {
        Ok(outcome) => format_bid(bidder, amount, &outcome),
        Err(error) => format_error(&error),
    }
}

/// Reads and returns the line to print.
pub async fn result_line(client: &mut Client, auction_id: &str) -> String {
    match client.result(auction_id).await {
        Ok((view, _leader)) => format_view(&view),
        Err(error) => format_error(&error),
    }
}

/// The line for a create.
pub fn format_create(title: &str, outcome: &CreateOutcome) -> String {
    match outcome.verdict {
        Verdict::Success => format!("CREATED: auction {} ({title})", outcome.auction_id),
        Verdict::Fail => format!("FAIL: {}", render(&outcome.reason)),
        Verdict::Exception => format!("EXCEPTION: {}", render(&outcome.reason)),
    }
}

/// One auction on one line, as `list` and `show` print it.
pub fn format_auction(info: &AuctionInfo) -> String {
    let seller = if info.seller.is_empty() { "the house".to_string() } else { info.seller.clone() };
    let state = if info.cancelled {
        "cancelled by its seller".to_string()
    } else if info.over {
        match info.highest_bidder.as_str() {
            "" => "over, no winner".to_string(),
            winner => format!("over, won by {winner} with {}", info.highest_amount),
        }
    } else {
        let left_ms = (info.ends_at_unix_ms - info.now_unix_ms).max(0) as u64;
        let left = humantime::format_duration(Duration::from_secs(left_ms.div_ceil(1000)));
        match info.highest_bidder.as_str() {
            "" => format!("running, no bids yet (minimum {}), {left} left", info.minimum_amount),
            bidder => format!("running, highest {} by {bidder}, {left} left", info.highest_amount),
        }
    };
    format!("{}  {:?} by {seller}: {state}", info.auction_id, info.title)
}

/// One event on one line, as `watch` prints it; empty for a progress
/// notification, which changes nothing.
pub fn format_event(event: &AuctionEvent) -> String {
    let at = format!("[{}] {}", event.revision, event.auction_id);
    match &event.kind {
        EventKind::Opened(info) => format!("{at} OPENED: {}", format_auction(info)),
        EventKind::BidAccepted(bid) => format!("{at} BID: {} now holds the highest bid, {}", bid.bidder, bid.amount),
        EventKind::Closed(info) => format!("{at} CLOSED: {}", format_auction(info)),
        EventKind::Progress => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_as_bids_and_bad_numbers_are_refused() {
        assert_eq!(parse_input("120"), Ok(Input::Bid(120)));
        assert_eq!(parse_input("  +7 "), Ok(Input::Bid(7)));
        assert_eq!(parse_input("0"), Ok(Input::Bid(0)));
        assert!(parse_input("-5").unwrap_err().contains("above 0"));
        assert!(parse_input("1.5").unwrap_err().contains("whole number"));
        assert!(parse_input("99999999999999999999").unwrap_err().contains("too large"));
    }

    #[test]
    fn words_are_commands_or_others() {
        assert_eq!(parse_input("RESULT"), Ok(Input::Result));
        assert_eq!(parse_input("quit"), Ok(Input::Quit));
        assert_eq!(parse_input(""), Ok(Input::Empty));
        assert_eq!(parse_input("crash"), Ok(Input::Other("crash".into())));
        assert_eq!(parse_input("bid ten"), Ok(Input::Other("bid ten".into())));
    }
}
