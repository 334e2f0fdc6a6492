//! `voucherctl audit export` over the wire: the chain checked record by
//! record as it arrives, written as JSON lines or as the binary export.

use crate::failure::{bail, ensure, fail, Failure};

use voucherd::domain::op::{Reply, Request};

/// The two forms of `voucherctl audit export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per record (`audit::entry_json`).
    Jsonl,
    /// The binary export `voucherd replay` reads (from record 1 only).
    Binary,
}

/// Streams the audit chain from `from` up to the head as it was when the
/// export started, page by page with `audit_read`, checking every entry's
/// hash, sequence number and link on the way. Returns the records written.
pub async fn audit_export(
    client: &voucherd::net::leader::LeaderClient,
    from: u64,
    format: ExportFormat,
    out: impl std::io::Write,
) -> Result<u64, Failure> {
    use voucherd::audit::{ChainVerifier, ExportWriter, GENESIS_HASH};
    use voucherd::domain::op::Op;
    ensure!(from >= 1, "audit sequence numbers start at 1");
    ensure!(
        format == ExportFormat::Jsonl || from == 1,
        "the binary export starts at record 1: a replay needs the whole chain"
    );
    let mut next = from;
    let mut end = None;
    let mut verifier: Option<ChainVerifier> = None;
    let mut jsonl = None;
    let mut binary = None;
    let mut out = Some(out);
    let mut written = 0;
    loop {
        let request = Request {
            id: format!("audit-export-{}-{next}", std::process::id()),
            op: Op::AuditRead {
                from: next,
                limit: None,
            },
        };
        let answer = client.execute(&[request]).await?.remove(0);
        let page = match answer.outcome {
            Ok(Reply::AuditRecords(page)) => page,
            Ok(other) => bail!("unexpected answer to audit_read: {other:?}"),
            Err(refusal) => bail!(
                "audit_read refused: {} ({})",
                refusal.reason,
                refusal.message
            ),
        };
        let end = *end.get_or_insert(page.head_seq);
        if let Some(out) = out.take() {
            match format {
                ExportFormat::Jsonl => jsonl = Some(out),
                ExportFormat::Binary => binary = Some(ExportWriter::new(out, &page.campaigns)?),
            }
        }
        if next > end {
            break;
        }
        ensure!(
            !page.entries.is_empty(),
            "the daemon answered no record {next} although its head is {end}"
        );
        for entry in &page.entries {
            if next > end {
                break;
            }
            let verifier = verifier.get_or_insert_with(|| ChainVerifier {
                next_seq: from,
                prev_hash: if from == 1 {
                    GENESIS_HASH
                } else {
                    voucherd::audit::open(entry)
                        .map(|(record, _)| record.prev_hash)
                        .unwrap_or(GENESIS_HASH)
                },
            });
            verifier
                .check(entry)
                .map_err(|why| fail!("audit chain broken at {why}"))?;
            if let Some(out) = jsonl.as_mut() {
                let line = voucherd::audit::entry_json(entry).map_err(Failure::from)?;
                writeln!(out, "{line}")?;
            }
            if let Some(writer) = binary.as_mut() {
                writer.write(entry)?;
            }
            next += 1;
            written += 1;
        }
    }
    if let Some(mut out) = jsonl {
        out.flush()?;
    }
    if let Some(writer) = binary {
        writer.finish()?;
    }
    Ok(written)
}
