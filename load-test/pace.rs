//! Open-loop pacing: one thread releases each worker's frame at its due
//! time, to within the OS timer's slack (tens of µs). Tokio's timer wheel
//! ticks in whole milliseconds and woke frames 1 ms late at the median (2 ms
//! at p99), which the latency, counted from the due time, charged to the
//! daemon.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tokio::sync::oneshot;

/// Frames waiting for their due time at most (one per connection is the
/// normal case; the bound keeps a runaway caller from growing the heap).
const WAITING_MAX: usize = 65_536;

/// A frame waiting for its due time; the heap orders by `due`, then `order`.
struct Waiting {
    due: Instant,
    order: u64,
    release: oneshot::Sender<()>,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.order).cmp(&(other.due, other.order))
    }
}

/// The pacing thread's handle; the thread ends when the pacer is dropped.
pub struct Pacer {
    sender: Sender<(Instant, oneshot::Sender<()>)>,
}

impl Pacer {
    pub fn start() -> std::io::Result<Pacer> {
        let (sender, receiver) = crossbeam_channel::bounded(WAITING_MAX);
        std::thread::Builder::new()
            .name("pacer".into())
            .spawn(move || run(&receiver))?;
        Ok(Pacer { sender })
    }

    /// Returns at `due` (at once if it has passed).
    pub async fn until(&self, due: Instant) {
        if due <= Instant::now() {
            return;
        }
        let (release, released) = oneshot::channel();
        // A full queue (`WAITING_MAX`) or a pacer gone: the frame goes now,
        // rather than blocking the async worker that sends it.
        if self.sender.try_send((due, release)).is_ok() {
            let _ = released.await;
        }
    }
}

fn run(receiver: &Receiver<(Instant, oneshot::Sender<()>)>) {
    let mut waiting: BinaryHeap<Reverse<Waiting>> = BinaryHeap::new();
    let mut order = 0u64;
    loop {
        let next = match waiting.peek() {
            None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(Reverse(first)) => {
                receiver.recv_timeout(first.due.saturating_duration_since(Instant::now()))
            }
        };
        match next {
            Ok((due, release)) => {
                order += 1;
                waiting.push(Reverse(Waiting {
                    due,
                    order,
                    release,
                }));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        while waiting
            .peek()
            .is_some_and(|Reverse(first)| first.due <= now)
        {
            let Reverse(first) = waiting.pop().expect("peeked");
            let _ = first.release.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn releases_every_frame_and_none_before_its_due_time() {
        let pacer = std::sync::Arc::new(Pacer::start().unwrap());
        let start = Instant::now();
        let mut tasks = Vec::new();
        for after_ms in [30u64, 10, 20, 10] {
            let pacer = pacer.clone();
            let due = start + Duration::from_millis(after_ms);
            tasks.push(tokio::spawn(async move {
                pacer.until(due).await;
                Instant::now() >= due
            }));
        }
        for task in tasks {
            let on_time = tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("released")
                .unwrap();
            assert!(on_time, "a frame was released before its due time");
        }
    }

    #[tokio::test]
    async fn a_past_due_time_returns_at_once() {
        let pacer = Pacer::start().unwrap();
        let past = Instant::now() - Duration::from_millis(5);
        tokio::time::timeout(Duration::from_secs(5), pacer.until(past))
            .await
            .expect("no wait for a past due time");
    }
}
