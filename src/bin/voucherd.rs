//! `voucherd`: the daemon (`serve`) and the offline tools (`audit`, `replay`, `certs`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "voucherd", version, about = "Redemption ledger for Chongqing's vocational training vouchers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check, export or inspect the audit chain of a data folder.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Rebuild the state from an audit export and print its digest.
    Replay {
        /// A binary export written by `voucherd audit export`.
        #[arg(long)]
        log: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every record's hash, sequence and link; report the first broken one.
    Verify {
        #[arg(long, default_value = "voucherd-data")]
        data: PathBuf,
    },
    /// Write the chain as a binary export (the form `replay` reads).
    Export {
        #[arg(long, default_value = "voucherd-data")]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("voucherd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Audit { command: AuditCommand::Verify { data } } => match voucherd::tools::verify(&data)? {
            Ok(verified) => {
                println!(
                    "audit chain verified: {} records, head {}",
                    verified.records,
                    hex::encode(verified.head_hash)
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(broken) => {
                println!("audit chain broken at {broken}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Audit { command: AuditCommand::Export { data, out } } => {
            let records = voucherd::tools::export(&data, &out)?;
            println!("exported {records} audit records to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { log } => {
            let file = std::io::BufReader::new(std::fs::File::open(&log)?);
            match voucherd::tools::replay(file)? {
                Ok(replayed) => {
                    println!("replayed {} records", replayed.records);
                    println!("state_digest {}", replayed.state_digest);
                    Ok(ExitCode::SUCCESS)
                }
                Err(why) => {
                    println!("replay failed at {why}");
                    Ok(ExitCode::from(2))
                }
            }
        }
    }
}
