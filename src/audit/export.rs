//! The binary audit export an auditor replays offline: the magic
//! `VOUCHERD-AUDIT1\n`, then entries of u32 big-endian length and bytes. The
//! first entry is the campaigns (versioned bincode of their TOML texts), each
//! later one a sealed audit record. docs/storage-and-audit.md has the bytes.

use std::io::{Read, Write};

use crate::codec;
use crate::error::Error;
use crate::limits::RECORD_BYTES_MAX;

/// The first bytes of a binary audit export.
pub const EXPORT_MAGIC: &[u8; 16] = b"VOUCHERD-AUDIT1\n";

/// Writes the binary export: magic, then each entry as u32 big-endian length and bytes.
pub struct ExportWriter<W: Write> {
    out: W,
}

impl<W: Write> ExportWriter<W> {
    /// Starts an export; the campaigns (TOML texts) travel with it so that a
    /// replay applies the same rules.
    pub fn new(mut out: W, campaigns: &[String]) -> Result<ExportWriter<W>, Error> {
        out.write_all(EXPORT_MAGIC)?;
        let mut writer = ExportWriter { out };
        writer.write(&codec::encode(&campaigns.to_vec()))?;
        Ok(writer)
    }

    pub fn write(&mut self, entry: &[u8]) -> Result<(), Error> {
        let len =
            u32::try_from(entry.len()).map_err(|_| Error::Corrupt("entry over 4 GiB".into()))?;
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(entry)?;
        Ok(())
    }

    pub fn finish(mut self) -> Result<W, Error> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads entries back from a binary export.
pub struct ExportReader<R: Read> {
    input: R,
}

impl<R: Read> ExportReader<R> {
    /// Opens an export and reads its campaigns (TOML texts).
    pub fn new(mut input: R) -> Result<(ExportReader<R>, Vec<String>), Error> {
        let mut magic = [0u8; 16];
        input.read_exact(&mut magic).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                Error::InvalidInput("not a voucherd audit export: shorter than its magic".into())
            }
            _ => e.into(),
        })?;
        if &magic != EXPORT_MAGIC {
            return Err(Error::InvalidInput("not a voucherd audit export".into()));
        }
        let mut reader = ExportReader { input };
        let header = reader
            .next_entry()?
            .ok_or_else(|| Error::Corrupt("export ends before its campaigns".into()))?;
        let campaigns: Vec<String> = codec::decode(&header, "export campaigns")?;
        Ok((reader, campaigns))
    }

    /// The next entry, or `None` at the end. An export that ends inside an
    /// entry (its length prefix or its bytes) is truncated: `Corrupt`, never
    /// a clean end.
    pub fn next_entry(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let mut len = [0u8; 4];
        let mut filled = 0;
        while filled < len.len() {
            match self.input.read(&mut len[filled..]) {
                Ok(0) if filled == 0 => return Ok(None),
                Ok(0) => {
                    return Err(Error::Corrupt(format!(
                        "the export is truncated: it ends {filled} bytes into an entry's length"
                    )))
                }
                Ok(read) => filled += read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > RECORD_BYTES_MAX {
            return Err(Error::Corrupt(format!(
                "export entry of {len} bytes is over the limit"
            )));
        }
        let mut entry = vec![0u8; len];
        self.input
            .read_exact(&mut entry)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => Error::Corrupt(format!(
                    "the export is truncated: an entry of {len} bytes ends early"
                )),
                _ => e.into(),
            })?;
        Ok(Some(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cut export is corrupt wherever the cut falls, never a shorter chain.
    #[test]
    fn a_truncated_export_is_corrupt_wherever_it_is_cut() {
        let mut writer = ExportWriter::new(Vec::new(), &["year = 2021".into()]).unwrap();
        writer.write(b"first entry").unwrap();
        writer.write(b"second entry").unwrap();
        let whole = writer.finish().unwrap();
        let (mut reader, campaigns) = ExportReader::new(whole.as_slice()).unwrap();
        assert_eq!(campaigns, ["year = 2021"]);
        assert_eq!(reader.next_entry().unwrap().unwrap(), b"first entry");
        assert_eq!(reader.next_entry().unwrap().unwrap(), b"second entry");
        assert!(reader.next_entry().unwrap().is_none());
        let last_entry_start = whole.len() - b"second entry".len() - 4;
        for cut in last_entry_start + 1..whole.len() {
            let (mut reader, _) = ExportReader::new(&whole[..cut]).unwrap();
            reader.next_entry().unwrap();
            match reader.next_entry() {
                Err(Error::Corrupt(why)) => assert!(why.contains("truncated"), "{why}"),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }
}
