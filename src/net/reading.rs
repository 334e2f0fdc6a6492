//! Reading one request frame off a stream of chunks (`read_frame`), each
//! piece paid to a byte budget (`Budget`) as it arrives. Generic over the
//! source (`Chunks`: a QUIC stream, or a test's source that hands out
//! arbitrary pieces) so it can be fuzzed with short and fragmented reads.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::limits::{FRAME_BYTES_MAX, REQUEST_READ_CHUNK_BYTES};

/// Where a frame's bytes come from: each call gives the next piece of at
/// most `max` bytes (possibly fewer, possibly none), or `None` at the end
/// of the stream.
pub trait Chunks {
    type Error;
    fn next_chunk(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Option<Bytes>, Self::Error>> + Send;
}

impl Chunks for quinn::RecvStream {
    type Error = quinn::ReadError;
    async fn next_chunk(&mut self, max: usize) -> Result<Option<Bytes>, quinn::ReadError> {
        Ok(self.read_chunk(max, true).await?.map(|chunk| chunk.bytes))
    }
}

/// Why a request frame was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadFailure<E> {
    /// The frame's length prefix did not come within the header deadline.
    NoHeader,
    /// The frame did not come within the read deadline.
    Slow,
    /// The frame declares more than `FRAME_BYTES_MAX` bytes.
    TooLong(usize),
    /// The stream failed (reset, connection lost).
    Stream(E),
}

/// The bytes one request frame (and then its answer) holds, paid to its
/// connection's budget and to the shared one as they arrive, and given
/// back to both when dropped. A stream's own bytes are the only ones it
/// pays for, so streams that announce big frames and send nothing cost
/// nothing, and one connection cannot take more than its budget of the
/// shared one.
pub struct Budget {
    connection: Arc<Semaphore>,
    shared: Arc<Semaphore>,
    /// Each budget's size: never pay more than that (an answer may be
    /// longer than a small test budget).
    connection_max: usize,
    shared_max: usize,
    connection_paid: usize,
    shared_paid: usize,
}

impl Budget {
    /// A budget paying to `connection` (of `connection_max` permits in all)
    /// first, then to `shared` (of `shared_max`).
    pub fn new(
        connection: Arc<Semaphore>,
        connection_max: usize,
        shared: Arc<Semaphore>,
        shared_max: usize,
    ) -> Budget {
        Budget {
            connection,
            shared,
            connection_max,
            shared_max,
            connection_paid: 0,
            shared_paid: 0,
        }
    }

    /// Bytes paid so far (to the larger of the two budgets).
    pub fn paid(&self) -> usize {
        self.connection_paid.max(self.shared_paid)
    }

    /// Waits until `bytes` more are paid to the connection's budget, then
    /// the shared one (always in that order), each up to its size.
    async fn pay(&mut self, bytes: usize) {
        let connection = bytes.min(self.connection_max - self.connection_paid);
        acquire(&self.connection, connection).await;
        self.connection_paid += connection;
        let shared = bytes.min(self.shared_max - self.shared_paid);
        acquire(&self.shared, shared).await;
        self.shared_paid += shared;
    }

    /// Pays up to `bytes` in all (an answer longer than its request).
    pub async fn pay_at_least(&mut self, bytes: usize) {
        self.pay(bytes.saturating_sub(self.paid())).await;
    }
}

async fn acquire(semaphore: &Semaphore, bytes: usize) {
    if bytes == 0 {
        return;
    }
    let count = u32::try_from(bytes).expect("a byte budget fits u32");
    semaphore
        .acquire_many(count)
        .await
        .expect("byte budgets are never closed")
        .forget();
}

impl Drop for Budget {
    fn drop(&mut self) {
        self.connection.add_permits(self.connection_paid);
        self.shared.add_permits(self.shared_paid);
    }
}

/// How long `read_frame` lets a frame take.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// For the length prefix, from the start.
    pub header: Duration,
    /// For the whole frame, from the start.
    pub frame: Duration,
}

/// Reads one request frame to the end of the stream, at most
/// `REQUEST_READ_CHUNK_BYTES` at a time and never more than the frame
/// declares (plus one byte, to notice a longer frame), paying `budget` for
/// each piece once it has arrived. A declared length over
/// `FRAME_BYTES_MAX` is refused before its body is read. The buffer never
/// holds room for more than the frame declares plus that one byte (room
/// beyond what is paid would be memory outside the budget). A frame cut
/// short by the end of its stream is returned as it is: decoding refuses it
/// (`invalid_request`, "frame says N bytes but carries M").
pub async fn read_frame<C: Chunks>(
    source: &mut C,
    budget: &mut Budget,
    deadlines: Deadlines,
) -> Result<Vec<u8>, ReadFailure<C::Error>> {
    let started = tokio::time::Instant::now();
    let header_deadline = started + deadlines.header.min(deadlines.frame);
    let frame_deadline = started + deadlines.frame;
    let mut bytes = Vec::new();
    loop {
        let expected = match bytes.get(..4) {
            None => 4,
            Some(prefix) => {
                let declared = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
                if declared > FRAME_BYTES_MAX {
                    return Err(ReadFailure::TooLong(declared));
                }
                4 + declared
            }
        };
        let want = expected
            .saturating_sub(bytes.len())
            .clamp(1, REQUEST_READ_CHUNK_BYTES);
        let (deadline, late) = if bytes.len() < 4 {
            (header_deadline, ReadFailure::NoHeader)
        } else {
            (frame_deadline, ReadFailure::Slow)
        };
        let read = match tokio::time::timeout_at(deadline, source.next_chunk(want)).await {
            Ok(read) => read,
            Err(_) => return Err(late),
        };
        match read {
            Ok(Some(chunk)) => {
                debug_assert!(chunk.len() <= want, "a source gives at most what is asked");
                budget.pay(chunk.len()).await;
                grow(&mut bytes, chunk.len(), expected + 1);
                bytes.extend_from_slice(&chunk);
                if bytes.len() > expected && bytes.len() > 4 {
                    // Longer than declared: stop reading; decoding refuses it.
                    return Ok(bytes);
                }
            }
            Ok(None) => return Ok(bytes),
            Err(error) => return Err(ReadFailure::Stream(error)),
        }
    }
}

/// Makes room for `more` bytes in `bytes`, doubling as a `Vec` does but
/// never past `most` (Vec's own doubling would hold up to twice what the
/// frame paid for).
fn grow(bytes: &mut Vec<u8>, more: usize, most: usize) {
    let needed = bytes.len() + more;
    if needed > bytes.capacity() {
        let room = (bytes.capacity() * 2).clamp(needed, most.max(needed));
        bytes.reserve_exact(room - bytes.len());
    }
}
