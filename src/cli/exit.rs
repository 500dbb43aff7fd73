//! The one rule of the client commands' exit codes, whatever the command:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done: the service did what was asked, or answered the read |
//! | 1 | refused: the service said no (FAIL, EXCEPTION, not found, a bad argument, a rate limit), or the command refused its input before sending it; nothing changed |
//! | 2 | a usage error: an unknown flag, a missing argument (the parser's own) |
//! | 3 | unreachable: no server answered in time; a write's outcome is unknown (retrying it with the same request is safe) |

use std::process::ExitCode;

use gavel::auction::Verdict;
use gavel::client::ClientError;
use gavel::tools::prompt;

/// What `--help` says of the exit codes.
pub const HELP: &str = "Exit codes of the client commands: 0 done; 1 refused (by the service, \
or its input before it was sent: nothing changed); 2 a usage error; 3 unreachable (no server \
answered: a write's outcome is unknown, and retrying it is safe).";

pub const REFUSED: u8 = 1;
pub const UNREACHABLE: u8 = 3;

pub fn refused() -> ExitCode {
    ExitCode::from(REFUSED)
}

pub fn unreachable() -> ExitCode {
    ExitCode::from(UNREACHABLE)
}

/// 0 for a SUCCESS, 1 for a FAIL or an EXCEPTION.
pub fn of_verdict(verdict: Verdict) -> ExitCode {
    match verdict {
        Verdict::Success => ExitCode::SUCCESS,
        Verdict::Fail | Verdict::Exception => refused(),
    }
}

/// Prints the error's one line; its code by whether the service refused.
pub fn of_error(error: &ClientError) -> ExitCode {
    println!("{}", prompt::format_error(error));
    if error.is_refusal() { refused() } else { unreachable() }
}
