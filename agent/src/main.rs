//! `agent`: parse the command line and run. Nothing else.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "agent", version = agent::VERSION, about = "Observability sidecar for AWS ECS")]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
