//! The terminal: whether a person is there, questions to them, and a spinner.
//! Prompts and progress go to stderr, so stdout stays clean for output.

use crate::error::{Error, Kind, Result};
use dialoguer::{Confirm, Input};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// A person can answer: both stdin and stderr are terminals.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

fn prompt_error(e: dialoguer::Error) -> Error {
    Error::new(
        Kind::Interrupted,
        format!("no answer from the terminal: {e}"),
    )
    .next("nothing more was changed; run the command again to continue")
}

/// Yes or no, confirmed with Enter (a stray key press never changes a
/// database); the default is no.
pub fn confirm(question: &str) -> Result<bool> {
    Confirm::new()
        .with_prompt(question)
        .default(false)
        .wait_for_newline(true)
        .interact()
        .map_err(prompt_error)
}

/// For a protected environment "y" is too easy: the person types its name.
pub fn confirm_by_name(question: &str, name: &str) -> Result<bool> {
    let typed: String = Input::new()
        .with_prompt(format!(
            "{question}\nType the environment name ({name}) to go on, anything else stops"
        ))
        .allow_empty(true)
        .interact_text()
        .map_err(prompt_error)?;
    Ok(typed.trim() == name)
}

/// A spinner with elapsed time on stderr; when stderr is not a terminal it
/// is hidden and has no ticker thread (which would cost a tick per step).
pub fn spinner(message: String) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
