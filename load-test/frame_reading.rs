//! The frame reader (`voucherd::net::reading::read_frame`) on a stream that
//! hands its bytes out in arbitrary pieces: what the `frame_reading` fuzz
//! target and its seeded run in the suite check (`check_frame_reading`).

use std::cell::RefCell;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::Semaphore;
use voucherd::error::Reason;
use voucherd::limits::{FRAME_BYTES_MAX, FRAME_HEADER_TIMEOUT_MS, REQUEST_READ_TIMEOUT_MS};
use voucherd::net::reading::{read_frame, Budget, Bytes, Chunks, Deadlines, ReadFailure};
use voucherd::net::wire;

/// How a test stream ends once its bytes are out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The sender finished the stream.
    Finished,
    /// The stream was reset.
    Reset,
    /// The sender stalls: nothing more, ever.
    Stalls,
}

/// A piece of the schedule: what one read gives.
#[derive(Clone, Copy, Debug)]
enum Piece {
    /// Up to this many bytes (at most what is asked).
    Bytes(usize),
    /// An empty piece.
    Empty,
    /// Not ready yet (woken at once).
    Pending,
}

/// The test stream the fuzz input describes.
#[derive(Debug)]
pub struct Stream {
    pub bytes: Vec<u8>,
    pub ending: Ending,
    schedule: Vec<Piece>,
}

impl Stream {
    /// From fuzz bytes: the first is the ending, the second how many pieces
    /// of schedule follow (at most 31; none: every read gives all it asks),
    /// two bytes each, little-endian, cycled (0: an empty piece, 65,535:
    /// pending, else that many bytes at most); the rest is the stream.
    pub fn from_fuzz(data: &[u8]) -> Stream {
        let ending = match data.first().copied().unwrap_or(0) % 3 {
            0 => Ending::Finished,
            1 => Ending::Reset,
            _ => Ending::Stalls,
        };
        let rest = data.get(1..).unwrap_or(&[]);
        let pieces = (rest.first().copied().unwrap_or(0) as usize % 32)
            .min(rest.len().saturating_sub(1) / 2);
        let schedule = rest
            .get(1..1 + 2 * pieces)
            .unwrap_or(&[])
            .chunks_exact(2)
            .map(|pair| match u16::from_le_bytes([pair[0], pair[1]]) {
                0 => Piece::Empty,
                u16::MAX => Piece::Pending,
                n => Piece::Bytes(n.into()),
            })
            .collect();
        let bytes = rest.get(1 + 2 * pieces..).unwrap_or(&[]).to_vec();
        Stream {
            bytes,
            ending,
            schedule,
        }
    }

    /// The fuzz bytes `from_fuzz` reads back as this stream.
    pub fn to_fuzz(&self) -> Vec<u8> {
        let ending = match self.ending {
            Ending::Finished => 0,
            Ending::Reset => 1,
            Ending::Stalls => 2,
        };
        let mut data = vec![ending, self.schedule.len() as u8];
        for piece in &self.schedule {
            let code = match *piece {
                Piece::Empty => 0,
                Piece::Pending => u16::MAX,
                Piece::Bytes(n) => n as u16,
            };
            data.extend_from_slice(&code.to_le_bytes());
        }
        data.extend_from_slice(&self.bytes);
        data
    }

    /// The same bytes and ending, every read giving all it asks.
    fn one_shot(&self) -> Stream {
        Stream {
            bytes: self.bytes.clone(),
            ending: self.ending,
            schedule: Vec::new(),
        }
    }
}

/// A `Chunks` source over a `Stream`. Never two empty or pending pieces in
/// a row (a real stream makes progress or ends), so a read always ends.
struct Source<'a> {
    stream: &'a Stream,
    at: usize,
    turn: usize,
    idle_last: bool,
}

/// The stream was reset (`Ending::Reset`).
#[derive(Debug, PartialEq, Eq)]
pub struct WasReset;

impl Chunks for Source<'_> {
    type Error = WasReset;
    fn next_chunk(
        &mut self,
        max: usize,
    ) -> impl std::future::Future<Output = Result<Option<Bytes>, WasReset>> + Send {
        let piece = if self.stream.schedule.is_empty() || self.idle_last {
            Piece::Bytes(max)
        } else {
            let piece = self.stream.schedule[self.turn % self.stream.schedule.len()];
            self.turn += 1;
            piece
        };
        self.idle_last = !matches!(piece, Piece::Bytes(_));
        // How many bytes this read gives (a pending piece, when woken, all
        // it asks).
        let (n, pending) = match piece {
            Piece::Empty => (0, false),
            Piece::Bytes(n) => (n.min(max), false),
            Piece::Pending => (max, true),
        };
        let left = self.stream.bytes.len() - self.at;
        let mut answer = if left == 0 {
            match self.stream.ending {
                Ending::Finished => Some(Ok(None)),
                Ending::Reset => Some(Err(WasReset)),
                Ending::Stalls => None,
            }
        } else {
            let n = n.min(left);
            let piece = Bytes::copy_from_slice(&self.stream.bytes[self.at..self.at + n]);
            self.at += n;
            Some(Ok(Some(piece)))
        };
        let mut polled = false;
        std::future::poll_fn(move |context| {
            if pending && !polled {
                polled = true;
                context.waker().wake_by_ref();
                return Poll::Pending;
            }
            match answer.take() {
                Some(answer) => Poll::Ready(answer),
                // A stall: never ready, never woken.
                None => Poll::Pending,
            }
        })
    }
}

/// What `read_frame` must give for `stream`, worked out from the bytes alone.
pub fn expected(stream: &Stream) -> Result<Vec<u8>, ReadFailure<WasReset>> {
    let bytes = &stream.bytes;
    let end = |bytes: &[u8]| match stream.ending {
        Ending::Finished => Ok(bytes.to_vec()),
        Ending::Reset => Err(ReadFailure::Stream(WasReset)),
        Ending::Stalls if bytes.len() < 4 => Err(ReadFailure::NoHeader),
        Ending::Stalls => Err(ReadFailure::Slow),
    };
    let Some(prefix) = bytes.get(..4) else {
        return end(bytes);
    };
    let declared = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
    if declared > FRAME_BYTES_MAX {
        return Err(ReadFailure::TooLong(declared));
    }
    if bytes.len() > 4 + declared {
        // One byte past the frame is enough to know it is too long.
        return Ok(bytes[..4 + declared + 1].to_vec());
    }
    end(bytes)
}

thread_local! {
    /// A runtime on paused time: a stall reaches the deadlines at once.
    static RUNTIME: RefCell<tokio::runtime::Runtime> = RefCell::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime"),
    );
}

/// Reads `stream` with the daemon's default deadlines and a budget larger
/// than a frame; the result and the bytes paid.
fn read(stream: &Stream) -> (Result<Vec<u8>, ReadFailure<WasReset>>, usize) {
    RUNTIME.with(|runtime| {
        runtime.borrow().block_on(async {
            let budget_bytes = 2 * FRAME_BYTES_MAX;
            let mut budget = Budget::new(
                Arc::new(Semaphore::new(budget_bytes)),
                budget_bytes,
                Arc::new(Semaphore::new(budget_bytes)),
                budget_bytes,
            );
            let mut source = Source {
                stream,
                at: 0,
                turn: 0,
                idle_last: false,
            };
            let deadlines = Deadlines {
                header: Duration::from_millis(FRAME_HEADER_TIMEOUT_MS),
                frame: Duration::from_millis(REQUEST_READ_TIMEOUT_MS),
            };
            let read = read_frame(&mut source, &mut budget, deadlines).await;
            (read, budget.paid())
        })
    })
}

/// Checks the frame reader on the stream the fuzz bytes describe
/// (`Stream::from_fuzz`): it never panics; its result is the one worked
/// out from the bytes alone (`expected`) and the one of a read that gets
/// all it asks at once; the buffer it returns holds no room past the
/// declared frame and one byte (never over `FRAME_BYTES_MAX` + 5) and every
/// byte in it was paid to the budget; a frame cut short by the end of its
/// stream is refused `invalid_request` by decoding, as bincode and as JSON.
pub fn check_frame_reading(data: &[u8]) {
    check_stream(&Stream::from_fuzz(data));
}

/// `check_frame_reading` on a stream.
pub fn check_stream(stream: &Stream) {
    let (fragmented, paid) = read(stream);
    let (one_shot, _) = read(&stream.one_shot());
    assert_eq!(fragmented, one_shot, "fragmented and one-shot reads differ");
    assert_eq!(fragmented, expected(stream), "not the expected result");
    let Ok(bytes) = fragmented else {
        return;
    };
    assert_eq!(paid, bytes.len(), "every byte read is paid, no more");
    let frame_len = bytes
        .get(..4)
        .map(|prefix| 4 + u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize);
    // Room for the frame and one byte more (for a missing header: the
    // header and one byte).
    let room_max = frame_len.unwrap_or(4) + 1;
    assert!(
        bytes.capacity() <= room_max && bytes.capacity() <= FRAME_BYTES_MAX + 5,
        "the buffer holds room for {} bytes, over the frame's {room_max}",
        bytes.capacity()
    );
    if Some(bytes.len()) != frame_len {
        // Cut short, or longer than declared: refused as a whole frame.
        for refused in [
            wire::decode_requests(&bytes).map(|_| ()),
            wire::unframe_json(&bytes).map(|_| ()),
        ] {
            let refusal = refused.expect_err("a frame of the wrong length is refused");
            assert_eq!(
                refusal.reason,
                Reason::InvalidRequest,
                "{}",
                refusal.message
            );
        }
    }
}

/// A stream for the seeded run: a request frame (whole, cut, one byte
/// long, or with a header over the limit), or random bytes, handed out by a
/// random schedule, and a random ending.
pub fn seeded_stream(rng: &mut impl rand::Rng) -> Stream {
    use voucherd::domain::op::{Op, Request};
    let requests: Vec<Request> = (0..rng.gen_range(1..=2_500))
        .map(|i| Request {
            id: format!("r-{i}"),
            op: Op::AuditRead {
                from: rng.gen(),
                limit: None,
            },
        })
        .collect();
    let frame = wire::encode_requests(&requests).expect("a valid batch");
    let mut bytes = match rng.gen_range(0..5) {
        0 => frame.clone(),
        1 => frame[..rng.gen_range(0..frame.len())].to_vec(),
        2 => {
            let mut longer = frame.clone();
            longer.extend((0..rng.gen_range(1..64)).map(|_| rng.gen::<u8>()));
            longer
        }
        3 => {
            let mut over = frame.clone();
            let declared = rng.gen_range(FRAME_BYTES_MAX as u32 + 1..=u32::MAX);
            over[..4].copy_from_slice(&declared.to_be_bytes());
            over
        }
        _ => (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect(),
    };
    if bytes.len() > 4 && rng.gen_bool(0.1) {
        bytes.truncate(rng.gen_range(0..4));
    }
    let schedule = (0..rng.gen_range(0..8))
        .map(|_| match rng.gen_range(0..6) {
            0 => Piece::Empty,
            1 => Piece::Pending,
            2 => Piece::Bytes(rng.gen_range(1..8)),
            _ => Piece::Bytes(rng.gen_range(1..u16::MAX.into())),
        })
        .collect();
    let ending = [Ending::Finished, Ending::Reset, Ending::Stalls][rng.gen_range(0..3)];
    Stream {
        bytes,
        ending,
        schedule,
    }
}
