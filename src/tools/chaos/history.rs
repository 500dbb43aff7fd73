//! The record of one chaos run: every client operation against a single auction, when it
//! was invoked, when (if ever) it was answered, and what the answer was.
//!
//! The chaos runner writes it as JSON lines (one [`Operation`] per line, so a run that dies
//! half way still leaves a readable prefix); the checker in `super::checker` reads it back
//! to decide whether the servers behaved like one correct auction while they were being
//! crashed and restarted.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::auction::{AuctionView, BidOutcome, Verdict};

/// What a client asked the auction to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OperationKind {
    /// Place a bid of `amount` on behalf of `bidder`.
    Bid { bidder: String, amount: u64 },
    /// Read the auction's result: the highest bid so far and how many bids were accepted.
    Result,
}

/// The server's verdict on a bid, as the client received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BidVerdict {
    /// The bid was accepted and is now the highest.
    Success,
    /// The bid was not higher than the current highest and was rejected.
    Fail,
    /// The server refused the bid as invalid (never expected during a chaos run).
    Exception,
}

/// What the client learned about an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outcome {
    /// Bid answered: SUCCESS / FAIL / EXCEPTION, with the highest bid after the bid as the
    /// server reported it.
    Bid { verdict: BidVerdict, highest_amount: u64, highest_bidder: String },
    /// Result answered.
    Result { highest_amount: u64, highest_bidder: String, accepted_bids: u64 },
    /// No answer before the client gave up: the operation may have taken effect at any point
    /// after its invocation, or not at all.
    Unknown,
}

/// One client operation, from invocation to answer (or to the client giving up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Unique within the history, assigned in invocation order.
    pub id: u64,
    /// Which concurrent client issued it; each client runs one operation at a time.
    pub client: u32,
    /// What was asked.
    pub kind: OperationKind,
    /// Microseconds since the run started, taken just before the request was sent.
    pub invoked_us: u64,
    /// Microseconds since the run started, taken just after the answer arrived; `None` when
    /// the outcome is [`Outcome::Unknown`], because then the effect is not bounded in time.
    pub completed_us: Option<u64>,
    /// What the client learned.
    pub outcome: Outcome,
}

/// Everything the clients did against one auction during a chaos run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub operations: Vec<Operation>,
}

/// How many operations ended each way, for a one-line report of a run. The field names
/// are the outcome names the report prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistorySummary {
    /// Bids answered SUCCESS.
    pub success: usize,
    /// Bids answered FAIL.
    pub fail: usize,
    /// Bids answered EXCEPTION (each one is a violation in a chaos run).
    pub exception: usize,
    /// Result reads that were answered.
    pub result: usize,
    /// Operations of either kind that got no answer.
    pub unknown: usize,
}

impl From<BidOutcome> for Outcome {
    fn from(outcome: BidOutcome) -> Self {
        Outcome::Bid {
            verdict: match outcome.verdict {
                Verdict::Success => BidVerdict::Success,
                Verdict::Fail => BidVerdict::Fail,
                Verdict::Exception => BidVerdict::Exception,
            },
            highest_amount: outcome.highest_amount,
            highest_bidder: outcome.highest_bidder,
        }
    }
}

impl From<AuctionView> for Outcome {
    fn from(view: AuctionView) -> Self {
        Outcome::Result {
            highest_amount: view.highest_amount,
            highest_bidder: view.highest_bidder,
            accepted_bids: view.accepted_bids,
        }
    }
}

impl HistorySummary {
    /// All operations counted.
    pub fn total(&self) -> usize {
        self.success + self.fail + self.exception + self.result + self.unknown
    }
}

impl fmt::Display for HistorySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} operations: {} bids SUCCESS, {} bids FAIL, {} bids EXCEPTION, {} results read, {} unknown",
            self.total(),
            self.success,
            self.fail,
            self.exception,
            self.result,
            self.unknown
        )
    }
}

impl Operation {
    /// One JSON line (without the newline), so the runner can append operations as they
    /// finish and a crash of the runner loses at most the line being written.
    pub fn to_json_line(&self) -> String {
        // An Operation holds only strings, integers and unit-like enums, which serde_json
        // always serializes; failure here would be a bug in serde_json, not bad data.
        serde_json::to_string(self).expect("an Operation always serializes to JSON")
    }

    /// When the operation's answer arrived, or `None` if it never did (whatever
    /// `completed_us` says, an Unknown outcome bounds nothing).
    pub fn answered_at(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Unknown => None,
            _ => self.completed_us,
        }
    }
}

impl History {
    /// The whole history as JSON lines, one operation per line, each ending in a newline.
    pub fn to_json_lines(&self) -> String {
        let mut text = String::new();
        for operation in &self.operations {
            text.push_str(&operation.to_json_line());
            text.push('\n');
        }
        text
    }

    /// Parses JSON lines written by [`History::to_json_lines`] (or appended one by one with
    /// [`Operation::to_json_line`]). Blank lines are skipped; any other line that is not an
    /// operation is an error naming that line, because a silently skipped operation could
    /// hide a violation.
    pub fn from_json_lines(text: &str) -> Result<History, String> {
        let mut operations = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            match serde_json::from_str::<Operation>(trimmed) {
                Ok(operation) => operations.push(operation),
                Err(error) => {
                    return Err(format!("history line {}: {error}: {}", index + 1, excerpt(trimmed)));
                }
            }
        }
        Ok(History { operations })
    }

    /// Counts operations by outcome.
    pub fn summary(&self) -> HistorySummary {
        let mut summary = HistorySummary::default();
        for operation in &self.operations {
            match &operation.outcome {
                Outcome::Bid { verdict, .. } => match verdict {
                    BidVerdict::Success => summary.success += 1,
                    BidVerdict::Fail => summary.fail += 1,
                    BidVerdict::Exception => summary.exception += 1,
                },
                Outcome::Result { .. } => summary.result += 1,
                Outcome::Unknown => summary.unknown += 1,
            }
        }
        summary
    }

    /// Checks the shape the checker relies on: ids are unique, every outcome matches its
    /// operation's kind, and every answered operation has a completion time no earlier than
    /// its invocation. The first problem found is returned as a readable message.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen_ids = HashSet::with_capacity(self.operations.len());
        for operation in &self.operations {
            let id = operation.id;
            if !seen_ids.insert(id) {
                return Err(format!("operation id {id} appears more than once"));
            }
            let kinds_match = matches!(
                (&operation.kind, &operation.outcome),
                (OperationKind::Bid { .. }, Outcome::Bid { .. } | Outcome::Unknown)
                    | (OperationKind::Result, Outcome::Result { .. } | Outcome::Unknown)
            );
            if !kinds_match {
                return Err(format!(
                    "operation {id} is a {} but its outcome is a {}",
                    kind_name(&operation.kind),
                    outcome_name(&operation.outcome)
                ));
            }
            if !matches!(operation.outcome, Outcome::Unknown) {
                match operation.completed_us {
                    None => {
                        return Err(format!("operation {id} was answered but has no completion time"));
                    }
                    Some(completed) if completed < operation.invoked_us => {
                        return Err(format!(
                            "operation {id} completed at {completed}us, before it was invoked at {}us",
                            operation.invoked_us
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
}

fn kind_name(kind: &OperationKind) -> &'static str {
    match kind {
        OperationKind::Bid { .. } => "bid",
        OperationKind::Result => "result read",
    }
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Bid { .. } => "bid answer",
        Outcome::Result { .. } => "result answer",
        Outcome::Unknown => "unknown",
    }
}

/// The start of a bad line, short enough for an error message.
fn excerpt(line: &str) -> String {
    const LIMIT: usize = 80;
    match line.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> History {
        History {
            operations: vec![
                Operation {
                    id: 0,
                    client: 0,
                    kind: OperationKind::Bid { bidder: "alice".into(), amount: 100 },
                    invoked_us: 10,
                    completed_us: Some(20),
                    outcome: Outcome::Bid {
                        verdict: BidVerdict::Success,
                        highest_amount: 100,
                        highest_bidder: "alice".into(),
                    },
                },
                Operation {
                    id: 1,
                    client: 1,
                    kind: OperationKind::Result,
                    invoked_us: 15,
                    completed_us: Some(30),
                    outcome: Outcome::Result { highest_amount: 100, highest_bidder: "alice".into(), accepted_bids: 1 },
                },
                Operation {
                    id: 2,
                    client: 2,
                    kind: OperationKind::Bid { bidder: "bob".into(), amount: 50 },
                    invoked_us: 16,
                    completed_us: None,
                    outcome: Outcome::Unknown,
                },
            ],
        }
    }

    #[test]
    fn json_lines_round_trip() {
        let history = sample();
        let text = history.to_json_lines();
        assert_eq!(text.lines().count(), 3);
        assert_eq!(History::from_json_lines(&text), Ok(history));
    }

    #[test]
    fn json_lines_skip_blank_lines() {
        let history = sample();
        let text = format!("\n{}\n\n", history.to_json_lines());
        assert_eq!(History::from_json_lines(&text), Ok(history));
    }

    #[test]
    fn bad_json_line_is_named() {
        let mut text = sample().to_json_lines();
        text.push_str("{\"id\": 3, \"client\": 0}\n");
        let error = History::from_json_lines(&text).expect_err("line 4 is incomplete");
        assert!(error.starts_with("history line 4:"), "{error}");
    }

    #[test]
    fn summary_counts_outcomes() {
        let summary = sample().summary();
        assert_eq!(summary, HistorySummary { success: 1, fail: 0, exception: 0, result: 1, unknown: 1 });
        assert_eq!(summary.total(), 3);
    }

    #[test]
    fn validate_rejects_answered_operation_without_completion() {
        let mut history = sample();
        history.operations[1].completed_us = None;
        let error = history.validate().expect_err("op 1 has no completion");
        assert!(error.contains("operation 1"), "{error}");
        assert!(sample().validate().is_ok());
    }
}
