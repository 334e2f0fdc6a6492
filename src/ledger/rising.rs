//! A list of non-decreasing numbers in about 2 bytes each: the low 16 bits
//! of every number, and the places where the bits above them change. The
//! events index keeps its sequence numbers and position lists in it
//! (docs/decisions.md D117).

/// Non-decreasing `u64`s, appended at the end. A list whose numbers span
/// `n` has at most `n / 65,536 + 1` places where the high bits change, so
/// those cost almost nothing beside the 2 bytes of each number.
#[derive(Clone, Debug, Default)]
pub(super) struct Rising {
    lows: Vec<u16>,
    /// (index of the first number with these high bits, the number >> 16),
    /// in index order; the first starts at index 0.
    highs: Vec<(u32, u64)>,
}

impl Rising {
    pub(super) fn len(&self) -> usize {
        self.lows.len()
    }

    pub(super) fn reserve(&mut self, additional: usize) {
        self.lows.reserve(additional);
    }

    /// The last number, without a search: its high bits are the last place's.
    pub(super) fn last(&self) -> Option<u64> {
        let (&low, &(_, high)) = (self.lows.last()?, self.highs.last()?);
        Some(high << 16 | u64::from(low))
    }

    /// Appends `value`, which is at least the last one.
    pub(super) fn push(&mut self, value: u64) {
        if let Some(last) = self.last() {
            assert!(value >= last, "a rising list takes {value} after {last}");
        }
        let index = u32::try_from(self.lows.len()).expect("at most 2^32 numbers in a rising list");
        let high = value >> 16;
        if self.highs.last().map(|&(_, h)| h) != Some(high) {
            self.highs.push((index, high));
        }
        self.lows.push(value as u16);
    }

    /// The number at `index` (< `len()`).
    pub(super) fn get(&self, index: usize) -> u64 {
        let segment = self
            .highs
            .partition_point(|&(first, _)| first as usize <= index);
        self.highs[segment - 1].1 << 16 | u64::from(self.lows[index])
    }

    /// How many numbers are at most `value`: the index of the first above it.
    pub(super) fn count_at_most(&self, value: u64) -> usize {
        let high = value >> 16;
        let segment = self.highs.partition_point(|&(_, h)| h <= high);
        let Some(&(first, h)) = segment.checked_sub(1).map(|s| &self.highs[s]) else {
            return 0;
        };
        let end = self
            .highs
            .get(segment)
            .map_or(self.lows.len(), |&(next, _)| next as usize);
        if h < high {
            return end;
        }
        let first = first as usize;
        let low = value & 0xFFFF;
        first + self.lows[first..end].partition_point(|&l| u64::from(l) <= low)
    }

    /// The index of the first number for which `is_before` is false; every
    /// number before it must make `is_before` true (as `slice::partition_point`).
    pub(super) fn partition_point(&self, is_before: impl Fn(u64) -> bool) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let middle = low + (high - low) / 2;
            if is_before(self.get(middle)) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }

    /// The numbers from `index` on, in order.
    pub(super) fn iter_from(&self, index: usize) -> impl Iterator<Item = u64> + '_ {
        let mut segment = self
            .highs
            .partition_point(|&(first, _)| first as usize <= index);
        (index..self.lows.len()).map(move |at| {
            while self
                .highs
                .get(segment)
                .is_some_and(|&(first, _)| first as usize <= at)
            {
                segment += 1;
            }
            self.highs[segment - 1].1 << 16 | u64::from(self.lows[at])
        })
    }

    /// The heap bytes held (what unit tests and the decisions count).
    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        self.lows.capacity() * std::mem::size_of::<u16>()
            + self.highs.capacity() * std::mem::size_of::<(u32, u64)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Numbers with steps of every size (0, small, across 16 and 32 bits).
    fn numbers(seed: u64, count: usize) -> Vec<u64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut value: u64 = rng.gen_range(0..1 << 20);
        (0..count)
            .map(|_| {
                value += match rng.gen_range(0..10) {
                    0 => 0,
                    1 => rng.gen_range(1 << 16..1 << 18),
                    2 => rng.gen_range(1 << 30..1 << 34),
                    _ => rng.gen_range(1..200),
                };
                value
            })
            .collect()
    }

    /// Every read answers what a plain list of the numbers answers.
    #[test]
    fn it_answers_as_the_plain_list_does() {
        for seed in 0..20 {
            let plain = numbers(seed, 2_000);
            let mut rising = Rising::default();
            for &n in &plain {
                rising.push(n);
            }
            assert_eq!(rising.len(), plain.len(), "seed {seed}");
            assert_eq!(rising.last(), plain.last().copied(), "seed {seed}");
            for (index, &n) in plain.iter().enumerate() {
                assert_eq!(rising.get(index), n, "seed {seed} index {index}");
            }
            for start in [0, 1, 17, 999, 1_999, 2_000] {
                let read: Vec<u64> = rising.iter_from(start).collect();
                assert_eq!(read, plain[start..], "seed {seed} from {start}");
            }
            let probes = plain
                .iter()
                .flat_map(|&n| [n.saturating_sub(1), n, n + 1, n | 0xFFFF, n & !0xFFFF])
                .chain([0, u64::MAX]);
            for value in probes {
                let expected = plain.partition_point(|&n| n <= value);
                assert_eq!(
                    rising.count_at_most(value),
                    expected,
                    "seed {seed} value {value}"
                );
                assert_eq!(
                    rising.partition_point(|n| n <= value),
                    expected,
                    "seed {seed} value {value}"
                );
            }
        }
    }

    #[test]
    fn an_empty_list_counts_nothing() {
        let rising = Rising::default();
        assert_eq!(rising.count_at_most(u64::MAX), 0);
        assert_eq!(rising.last(), None);
        assert_eq!(rising.iter_from(0).count(), 0);
    }

    #[test]
    #[should_panic(expected = "a rising list takes 4 after 5")]
    fn a_number_below_the_last_is_refused() {
        let mut rising = Rising::default();
        rising.push(5);
        rising.push(4);
    }

    /// Positions in chain order, as the events index lists them: 2 bytes
    /// a number, whatever their span.
    #[test]
    fn a_list_of_positions_costs_about_two_bytes_a_number() {
        let mut rising = Rising::default();
        rising.reserve(1_000_000);
        for position in (0..41_000_000u64).step_by(41) {
            rising.push(position);
        }
        assert_eq!(rising.len(), 1_000_000);
        assert!(
            rising.heap_bytes() <= 2_000_000 + 16 * 1_024,
            "{} bytes",
            rising.heap_bytes()
        );
    }
}
