//! Command line (clap).
