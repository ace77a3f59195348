//! Argument parsing; see `args`.

pub mod args;
