//! `voucherctl`: run voucherd operations from a terminal or a script.
//! Exit codes: 0 every operation accepted, 3 some refused, 1 usage or connection error.

mod failure;
mod human;
mod output;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use failure::{bail, fail, Failure};
use human::human;
use output::{audit_export, ExportFormat};

use clap::{Parser, Subcommand};
use voucherd::bureau::import;
use voucherd::bureau::report::{self, Format};
use voucherd::domain::enums::{Category, Channel, ClassMode, InstitutionType, Kind};
use voucherd::domain::ids::{ClassCode, DistrictCode, InstitutionCode, OperatorId, VoucherId};
use voucherd::domain::op::{Answer, Op, Reply, Request, Role, SiteSpec, StatsView};
use voucherd::limits::{BATCH_OPS_MAX, EVENTS_PAGE_DEFAULT, EVENTS_WAIT_MS_MAX};
use voucherd::net::json::{parse_line, Line};
use voucherd::net::leader::LeaderClient;

#[derive(Parser)]
#[command(
    name = "voucherctl",
    version,
    about = "Run voucherd operations over QUIC"
)]
struct Cli {
    /// The daemon's address, HOST:PORT; its certificate must name HOST.
    /// Replicated mode: several, comma-separated; the leader is followed
    /// (a batch is sent again, same ids, after `not_leader` or a lost
    /// connection).
    #[arg(long, global = true, default_value = "127.0.0.1:7443")]
    server: String,
    /// Certificate folder (ca.pem and <role>.pem/.key).
    #[arg(long, global = true, default_value = "certs")]
    certs: PathBuf,
    /// Role to act as: gateway, bureau, auditor, district:<code>, platform, training.
    /// Default: the role API.md allows for the operation.
    #[arg(long = "as", global = true)]
    role: Option<Role>,
    /// Print answers as JSON lines (API.md form) instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Request id for a single operation (default: a fresh one).
    #[arg(long, global = true)]
    request_id: Option<String>,
    #[command(subcommand)]
    command: Command,
}

fn wire_enum<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(text.into())).map_err(|e| e.to_string())
}

/// voucherctl's subcommands: those handled apart (a file, a report, an
/// export) and, flattened in, those that send one operation.
#[derive(Subcommand)]
enum Command {
    /// Send JSON-lines operations from FILE (or stdin) in batches; print one JSON answer per line.
    Batch { file: Option<PathBuf> },
    /// Institutions: register, change admin, import the attachment 2 form.
    Institution {
        #[command(subcommand)]
        command: InstitutionCommand,
    },
    #[command(flatten)]
    Op(OpCommand),
    /// The bureau's progress report (attachment 1): districts against their
    /// targets, city goals, coverage, institutions' average scores.
    Report {
        /// text, csv (UTF-8 with BOM) or html (one self-contained page).
        #[arg(long, default_value = "text")]
        format: Format,
        /// Write the report to FILE instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Campaign year (default: the current campaign).
        #[arg(long)]
        year: Option<u16>,
    },
    /// The audit chain's head and the state digest.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The data return (数据回流): print events as JSON lines, from a cursor,
    /// of one institution or district or all (role training by default).
    /// Reads until caught up; with --follow, goes on waiting for new ones.
    Events(EventsArgs),
}

#[derive(clap::Args)]
struct EventsArgs {
    /// Only the events of this institution (7-digit code).
    #[arg(long, conflicts_with = "district")]
    institution: Option<InstitutionCode>,
    /// Only the events of this district.
    #[arg(long)]
    district: Option<DistrictCode>,
    /// The cursor to read after (an audit sequence number); a cursor file,
    /// when it exists, wins.
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// Events per request (1 to 1024).
    #[arg(long, default_value_t = EVENTS_PAGE_DEFAULT)]
    limit: u32,
    /// Keep waiting for new events (long polls of up to --wait-ms).
    #[arg(long)]
    follow: bool,
    /// How long one request waits for new events when following, ms.
    #[arg(long, default_value_t = EVENTS_WAIT_MS_MAX)]
    wait_ms: u32,
    /// Read the cursor from PATH at start (when it exists) and write the
    /// new cursor there after each batch printed, so a restart resumes.
    #[arg(long)]
    cursor_file: Option<PathBuf>,
}

/// The subcommands that each send one operation (`OpCommand::op`).
#[derive(Subcommand)]
enum OpCommand {
    /// Operators an institution's admin authorises to scan.
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Issue a voucher (bureau).
    Issue {
        #[arg(long, value_parser = id_number_arg)]
        id_number: String,
        #[arg(long, value_parser = wire_enum::<Category>)]
        category: Category,
        #[arg(long, value_parser = wire_enum::<Kind>)]
        kind: Kind,
        #[arg(long)]
        face_value_fen: u64,
        #[arg(long, value_parser = wire_enum::<Channel>, default_value = "cq_hrss_app")]
        channel: Channel,
        #[arg(long)]
        district: DistrictCode,
        #[arg(long)]
        year: Option<u16>,
    },
    /// Claim a voucher from the e-card (gateway).
    Claim {
        #[arg(long)]
        voucher: VoucherId,
        #[arg(long, value_parser = id_number_arg)]
        id_number: String,
    },
    /// Scan a voucher at enrollment (gateway).
    Redeem {
        #[arg(long)]
        voucher: VoucherId,
        #[arg(long)]
        institution: InstitutionCode,
        #[arg(long)]
        operator: OperatorId,
        #[arg(long)]
        class: String,
    },
    /// Check in at a training site (gateway), or with --online for an
    /// online class (the online platform).
    Checkin {
        #[arg(long)]
        voucher: VoucherId,
        #[arg(long, required_unless_present = "online", conflicts_with = "online")]
        lat: Option<f64>,
        #[arg(long, required_unless_present = "online", conflicts_with = "online")]
        lon: Option<f64>,
        /// Attendance of an online class, without a position (role platform).
        #[arg(long)]
        online: bool,
    },
    /// Classes (开班) an institution opens.
    Class {
        #[command(subcommand)]
        command: ClassCommand,
    },
    /// Report training completed (gateway).
    Complete {
        #[arg(long)]
        voucher: VoucherId,
        #[arg(long)]
        institution: InstitutionCode,
        /// The institution's authorised operator who reports it.
        #[arg(long)]
        operator: OperatorId,
    },
    /// Rate the training, 1 to 5 (gateway).
    Evaluate {
        #[arg(long)]
        voucher: VoucherId,
        #[arg(long, value_parser = id_number_arg)]
        id_number: String,
        #[arg(long)]
        score: u8,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Record the audited subsidy (district agency: --as district:<code>).
    Settle {
        #[arg(long)]
        voucher: VoucherId,
        #[arg(long)]
        amount_fen: u64,
    },
    /// Cancel an enrollment before completion (gateway).
    Release {
        #[arg(long)]
        voucher: VoucherId,
        #[arg(long)]
        institution: InstitutionCode,
        /// The institution's authorised operator who reports it.
        #[arg(long)]
        operator: OperatorId,
    },
    /// Expire a finished campaign's unfinished vouchers (bureau).
    Expire {
        #[arg(long)]
        year: u16,
    },
    /// Show a voucher.
    Voucher {
        #[command(subcommand)]
        command: VoucherCommand,
    },
    /// District and city figures (bureau, auditor, or a district for its own).
    Stats {
        #[arg(long)]
        district: Option<DistrictCode>,
        #[arg(long)]
        year: Option<u16>,
    },
}

/// `institution`: the form import, handled apart, and the two operations.
#[derive(Subcommand)]
enum InstitutionCommand {
    #[command(flatten)]
    Op(InstitutionOpCommand),
    /// Register every valid row of an attachment 2 form (UTF-8 CSV with the
    /// form's Chinese headers); print one line per row. Re-running changes nothing.
    Import { file: PathBuf },
}

/// The subcommands of `institution` that each send one operation.
#[derive(Subcommand)]
enum InstitutionOpCommand {
    Register {
        #[arg(long)]
        code: InstitutionCode,
        #[arg(long)]
        name: String,
        #[arg(long)]
        district: DistrictCode,
        #[arg(long)]
        address: String,
        #[arg(long)]
        phone: String,
        #[arg(long = "type", value_parser = wire_enum::<InstitutionType>)]
        kind: InstitutionType,
        #[arg(long)]
        admin_name: String,
        #[arg(long, value_parser = id_number_arg)]
        admin_id_number: String,
        /// A training site, LAT,LON[,RADIUS_M]; repeat for several.
        #[arg(long = "site", value_parser = SiteSpec::parse, required = true)]
        sites: Vec<SiteSpec>,
    },
    Admin {
        #[arg(long)]
        institution: InstitutionCode,
        #[arg(long)]
        admin_name: String,
        #[arg(long, value_parser = id_number_arg)]
        admin_id_number: String,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    Authorise {
        #[arg(long)]
        institution: InstitutionCode,
        #[arg(long, value_parser = id_number_arg)]
        admin_id_number: String,
        #[arg(long)]
        operator: OperatorId,
    },
    Revoke {
        #[arg(long)]
        institution: InstitutionCode,
        #[arg(long, value_parser = id_number_arg)]
        admin_id_number: String,
        #[arg(long)]
        operator: OperatorId,
    },
}

#[derive(Subcommand)]
enum VoucherCommand {
    Show {
        voucher: VoucherId,
    },
    /// A person's vouchers, in voucher id order (gateway: `list_vouchers`).
    List {
        #[arg(long, value_parser = id_number_arg)]
        id_number: String,
        #[arg(long)]
        year: Option<u16>,
    },
}

/// `audit`: the export, handled apart, and the head operation.
#[derive(Subcommand)]
enum AuditCommand {
    #[command(flatten)]
    Op(AuditOpCommand),
    /// Stream the audit chain to a file while the daemon serves (auditor).
    Export {
        #[arg(long)]
        out: PathBuf,
        /// First sequence number (the binary form starts at 1).
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// jsonl: one JSON object per record; binary: the form `voucherd replay` reads.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
    },
}

/// The subcommands of `audit` that each send one operation.
#[derive(Subcommand)]
enum AuditOpCommand {
    Head,
}

impl OpCommand {
    /// The one operation this subcommand sends.
    fn op(self) -> Op {
        match self {
            OpCommand::Operator { command } => command.op(),
            OpCommand::Issue {
                id_number,
                category,
                kind,
                face_value_fen,
                channel,
                district,
                year,
            } => Op::Issue {
                id_number,
                category,
                kind,
                face_value_fen,
                channel,
                district,
                year,
            },
            OpCommand::Claim { voucher, id_number } => Op::Claim { voucher, id_number },
            OpCommand::Redeem {
                voucher,
                institution,
                operator,
                class,
            } => Op::Redeem {
                voucher,
                institution,
                operator,
                class,
            },
            OpCommand::Checkin {
                voucher,
                lat,
                lon,
                online,
            } => match (lat, lon) {
                (Some(lat), Some(lon)) if !online => Op::Checkin { voucher, lat, lon },
                _ => Op::CheckinOnline { voucher, online },
            },
            OpCommand::Class { command } => command.op(),
            OpCommand::Complete {
                voucher,
                institution,
                operator,
            } => Op::Complete {
                voucher,
                institution,
                operator,
            },
            OpCommand::Evaluate {
                voucher,
                id_number,
                score,
                comment,
            } => Op::Evaluate {
                voucher,
                id_number,
                score,
                comment,
            },
            OpCommand::Settle {
                voucher,
                amount_fen,
            } => Op::Settle {
                voucher,
                amount_fen,
            },
            OpCommand::Release {
                voucher,
                institution,
                operator,
            } => Op::Release {
                voucher,
                institution,
                operator,
            },
            OpCommand::Expire { year } => Op::Expire { year },
            OpCommand::Voucher {
                command: VoucherCommand::Show { voucher },
            } => Op::GetVoucher { voucher },
            OpCommand::Voucher {
                command: VoucherCommand::List { id_number, year },
            } => Op::ListVouchers { id_number, year },
            OpCommand::Stats { district, year } => Op::Stats { district, year },
        }
    }
}

impl InstitutionOpCommand {
    /// The one operation this subcommand sends.
    fn op(self) -> Op {
        match self {
            InstitutionOpCommand::Register {
                code,
                name,
                district,
                address,
                phone,
                kind,
                admin_name,
                admin_id_number,
                sites,
            } => Op::RegisterInstitution {
                code,
                name,
                district,
                address,
                phone,
                kind,
                admin_name,
                admin_id_number,
                sites,
            },
            InstitutionOpCommand::Admin {
                institution,
                admin_name,
                admin_id_number,
            } => Op::SetInstitutionAdmin {
                institution,
                admin_name,
                admin_id_number,
            },
        }
    }
}

impl OperatorCommand {
    /// The one operation this subcommand sends.
    fn op(self) -> Op {
        match self {
            OperatorCommand::Authorise {
                institution,
                admin_id_number,
                operator,
            } => Op::AuthoriseOperator {
                institution,
                admin_id_number,
                operator,
            },
            OperatorCommand::Revoke {
                institution,
                admin_id_number,
                operator,
            } => Op::RevokeOperator {
                institution,
                admin_id_number,
                operator,
            },
        }
    }
}

impl AuditOpCommand {
    /// The one operation this subcommand sends.
    fn op(self) -> Op {
        match self {
            AuditOpCommand::Head => Op::AuditHead,
        }
    }
}

/// `class open`: an institution's operator opens a class (gateway).
#[derive(Subcommand)]
enum ClassCommand {
    Open {
        #[arg(long)]
        institution: InstitutionCode,
        #[arg(long)]
        operator: OperatorId,
        /// The class code, unique within the institution (1 to 32 characters).
        #[arg(long)]
        class: ClassCode,
        #[arg(long, value_parser = wire_enum::<Kind>)]
        kind: Kind,
        /// YYYY-MM-DD.
        #[arg(long)]
        first_day: String,
        /// YYYY-MM-DD, not before the first day.
        #[arg(long)]
        last_day: String,
        #[arg(long, value_parser = wire_enum::<ClassMode>, default_value = "onsite")]
        mode: ClassMode,
        /// A training site, LAT,LON[,RADIUS_M]; repeat for several
        /// (onsite; default the institution's sites).
        #[arg(long = "site", value_parser = SiteSpec::parse)]
        sites: Vec<SiteSpec>,
    },
}

impl ClassCommand {
    /// The one operation this subcommand sends.
    fn op(self) -> Op {
        match self {
            ClassCommand::Open {
                institution,
                operator,
                class,
                kind,
                first_day,
                last_day,
                mode,
                sites,
            } => Op::OpenClass {
                institution,
                operator,
                class,
                kind,
                first_day,
                last_day,
                mode,
                sites: (!sites.is_empty()).then_some(sites),
            },
        }
    }
}

/// The role API.md allows for an operation, when the caller does not say.
fn default_role(op: &Op) -> Option<Role> {
    [Role::Gateway, Role::Bureau, Role::Auditor, Role::Platform]
        .into_iter()
        .find(|&role| op.allows(role))
}

fn fresh_request_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("ctl-{}-{nanos}", std::process::id())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let usage_error = error.use_stderr();
            let _ = error.print();
            return if usage_error {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("voucherctl: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("voucherctl: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn print_answer(answer: &Answer, json: bool) {
    if json {
        println!("{}", answer.to_json());
        return;
    }
    match &answer.outcome {
        Ok(reply) => println!("{}", human(reply)),
        Err(refusal) => println!("refused: {} ({})", refusal.reason, refusal.message),
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let daemon = Daemon {
        server: &cli.server,
        certs: &cli.certs,
    };
    // The subcommands handled apart return here; every other one sends one operation.
    let op = match cli.command {
        Command::Batch { file } => {
            return batch(file.as_deref(), cli.role.unwrap_or(Role::Gateway), daemon).await;
        }
        Command::Report { format, out, year } => {
            let role = cli.role.unwrap_or(Role::Bureau);
            return write_report(format, out.as_deref(), year, role, cli.json, daemon).await;
        }
        Command::Institution {
            command: InstitutionCommand::Import { file },
        } => {
            return import_form(&file, cli.role.unwrap_or(Role::Bureau), cli.json, daemon).await;
        }
        Command::Audit {
            command: AuditCommand::Export { out, from, format },
        } => {
            let role = cli.role.unwrap_or(Role::Auditor);
            return export(&out, from, format, role, daemon).await;
        }
        Command::Events(args) => {
            return events(args, cli.role.unwrap_or(Role::Training), cli.json, daemon).await;
        }
        Command::Institution {
            command: InstitutionCommand::Op(command),
        } => command.op(),
        Command::Audit {
            command: AuditCommand::Op(command),
        } => command.op(),
        Command::Op(command) => command.op(),
    };
    let Some(role) = cli.role.or_else(|| default_role(&op)) else {
        bail!(
            "say which district agency runs {} with --as district:<code>",
            op.name()
        );
    };
    let id = cli.request_id.unwrap_or_else(fresh_request_id);
    let client = daemon.connect(role).await?;
    let answer = client.execute(&[Request { id, op }]).await?.remove(0);
    client.close().await;
    print_answer(&answer, cli.json);
    Ok(if answer.outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// An ID number argument: the number itself, or `-` to read it from stdin,
/// or `@FILE` to read it from a file (first line), so that it need not sit
/// in the shell's history or the process list.
fn id_number_arg(value: &str) -> Result<String, String> {
    let text = if value == "-" {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("reading the ID number from stdin: {e}"))?;
        line
    } else if let Some(path) = value.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading the ID number from {path}: {e}"))?;
        text.lines().next().unwrap_or_default().to_owned()
    } else {
        return Ok(value.to_owned());
    };
    Ok(text.trim().to_owned())
}

/// The daemon `--server` and `--certs` name; each subcommand picks its role.
#[derive(Clone, Copy)]
struct Daemon<'a> {
    server: &'a str,
    certs: &'a Path,
}

impl Daemon<'_> {
    async fn connect(self, role: Role) -> Result<LeaderClient, voucherd::error::Error> {
        let servers: Vec<String> = self
            .server
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        LeaderClient::connect(&servers, self.certs, role).await
    }
}

/// `voucherctl batch [FILE]`: exit 0 when every operation is accepted, 3
/// when some is refused (a line that is not a valid request is answered
/// `invalid_request` in place, without being sent).
async fn batch(file: Option<&Path>, role: Role, daemon: Daemon<'_>) -> Result<ExitCode, Failure> {
    let input: Box<dyn BufRead> = match file {
        Some(path) => Box::new(std::io::BufReader::new(std::fs::File::open(path)?)),
        None => Box::new(std::io::stdin().lock()),
    };
    let mut lines = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        lines.push(parse_line(index + 1, &line));
    }
    let requests: Vec<Request> = lines
        .iter()
        .filter_map(|line| match line {
            Line::Request(request) => Some(request.clone()),
            Line::Answered(_) => None,
        })
        .collect();
    let mut answers = Vec::with_capacity(requests.len());
    if !requests.is_empty() {
        let client = daemon.connect(role).await?;
        for chunk in requests.chunks(BATCH_OPS_MAX) {
            answers.extend(client.execute(chunk).await?);
        }
        client.close().await;
    }
    let mut answers = answers.into_iter();
    let mut refused = false;
    let mut out = std::io::stdout().lock();
    for line in lines {
        let answer = match line {
            Line::Request(_) => answers.next().expect("one answer per request"),
            Line::Answered(answer) => answer,
        };
        refused |= answer.outcome.is_err();
        writeln!(out, "{}", answer.to_json())?;
    }
    Ok(if refused {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// `voucherctl events`: print pages of events as JSON lines (stdout, flushed
/// after each page), then save the cursor (`--cursor-file`, written to a
/// temporary file and renamed, so it is never half written). Without
/// `--follow` it stops at the first empty page; exit 3 when refused.
async fn events(
    args: EventsArgs,
    role: Role,
    json: bool,
    daemon: Daemon<'_>,
) -> Result<ExitCode, Failure> {
    let mut after = args.after;
    if let Some(path) = &args.cursor_file {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                after = text
                    .trim()
                    .parse()
                    .map_err(|_| fail!("{}: not a cursor: {:?}", path.display(), text.trim()))?
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => bail!("read {}: {error}", path.display()),
        }
    }
    let client = daemon.connect(role).await?;
    let mut page = 0u64;
    loop {
        page += 1;
        let request = Request {
            id: format!("{}-{page}", fresh_request_id()),
            op: Op::Events {
                after,
                limit: Some(args.limit),
                institution: args.institution,
                district: args.district,
                wait_ms: args.follow.then_some(args.wait_ms),
            },
        };
        let answer = client.execute(&[request]).await?.remove(0);
        let (events, next) = match answer.outcome {
            Ok(Reply::Events { events, next }) => (events, next),
            Ok(other) => bail!("events answered {other:?}"),
            Err(_) => {
                print_answer(&answer, json);
                client.close().await;
                return Ok(ExitCode::from(3));
            }
        };
        let mut out = std::io::stdout().lock();
        for event in &events {
            writeln!(
                out,
                "{}",
                serde_json::to_string(event).expect("events serialise")
            )?;
        }
        out.flush()?;
        drop(out);
        after = next;
        if let Some(path) = &args.cursor_file {
            let temporary = path.with_extension("tmp");
            std::fs::write(&temporary, format!("{after}\n"))
                .and_then(|()| std::fs::rename(&temporary, path))
                .map_err(|e| fail!("write {}: {e}", path.display()))?;
        }
        if events.is_empty() && !args.follow {
            break;
        }
    }
    client.close().await;
    Ok(ExitCode::SUCCESS)
}

/// `voucherctl audit export`: stream the audit chain to `out`.
async fn export(
    out: &Path,
    from: u64,
    format: ExportFormat,
    role: Role,
    daemon: Daemon<'_>,
) -> Result<ExitCode, Failure> {
    let client = daemon.connect(role).await?;
    let file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let records = audit_export(&client, from, format, file).await?;
    client.close().await;
    eprintln!("exported {records} audit records to {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// `voucherctl report`: the progress report to `out` (or stdout); exit 3
/// when the stats it needs are refused.
async fn write_report(
    format: Format,
    out: Option<&Path>,
    year: Option<u16>,
    role: Role,
    json: bool,
    daemon: Daemon<'_>,
) -> Result<ExitCode, Failure> {
    let client = daemon.connect(role).await?;
    let stats = stats(&client, year).await;
    client.close().await;
    let stats = match stats? {
        Ok(stats) => stats,
        Err(answer) => {
            print_answer(&answer, json);
            return Ok(ExitCode::from(3));
        }
    };
    let rendered = report::render(&stats, format);
    match out {
        Some(path) => {
            std::fs::write(path, rendered).map_err(|e| fail!("write {}: {e}", path.display()))?
        }
        None => std::io::stdout().lock().write_all(rendered.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The `stats` answer for `year` (whole city for the bureau), or the refusal.
async fn stats(
    client: &LeaderClient,
    year: Option<u16>,
) -> Result<Result<StatsView, Answer>, Failure> {
    let request = Request {
        id: fresh_request_id(),
        op: Op::Stats {
            district: None,
            year,
        },
    };
    let answer = client.execute(&[request]).await?.remove(0);
    Ok(match answer.outcome {
        Ok(Reply::Stats(stats)) => Ok(*stats),
        Ok(other) => bail!("stats answered {other:?}"),
        Err(_) => Err(answer),
    })
}

/// `voucherctl institution import FILE`: exit 0 when every row is registered
/// or already present, 3 when some row is refused, 1 when the file is unusable.
async fn import_form(
    file: &Path,
    role: Role,
    json: bool,
    daemon: Daemon<'_>,
) -> Result<ExitCode, Failure> {
    let bytes = std::fs::read(file).map_err(|e| fail!("read {}: {e}", file.display()))?;
    let client = daemon.connect(role).await?;
    let result = async {
        let stats = match stats(&client, None).await? {
            Ok(stats) => stats,
            Err(answer) => {
                let refusal = answer.outcome.expect_err("a refusal");
                bail!(
                    "cannot read the campaign's districts: {} ({})",
                    refusal.reason,
                    refusal.message
                )
            }
        };
        let (districts, existing) = import::known(&stats);
        let rows =
            import::read_form(&bytes, &districts).map_err(|e| fail!("{}: {e}", file.display()))?;
        let requests = import::requests(&rows);
        let mut answers = Vec::with_capacity(requests.len());
        for chunk in requests.chunks(BATCH_OPS_MAX) {
            answers.extend(client.execute(chunk).await?);
        }
        Ok(import::outcomes(&rows, answers, &existing))
    }
    .await;
    client.close().await;
    let outcomes = result?;
    let mut out = std::io::stdout().lock();
    for outcome in &outcomes {
        if json {
            writeln!(out, "{}", outcome.to_json())?;
        } else {
            writeln!(out, "{}", outcome.text())?;
        }
    }
    let summary = import::summary(&outcomes);
    if json {
        eprintln!("{summary}");
    } else {
        writeln!(out, "{summary}")?;
    }
    Ok(if outcomes.iter().any(import::RowOutcome::is_refused) {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}
