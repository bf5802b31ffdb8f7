//! 1-based positions, as VCF, GFF, samtools regions and error messages write them.
//!
//! Everything dnalm stores is 0-based half-open (offsets into a sequence); a [`Position`] is what
//! crosses an API when a coordinate is meant for people or for a 1-based format, so the two
//! cannot be mixed up silently.

use std::{fmt, num::NonZeroU64};

/// A 1-based position (never 0).
///
/// ```
/// use dnalm_seq::Position;
/// let p = Position::new(101).unwrap();
/// assert_eq!(p.offset(), 100);
/// assert_eq!(Position::at_offset(100), p);
/// assert_eq!(p.to_string(), "101");
/// assert!(Position::new(0).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(NonZeroU64);

impl Position {
    /// The position `n` (1-based); `None` for 0.
    pub fn new(n: u64) -> Option<Position> {
        NonZeroU64::new(n).map(Position)
    }

    /// The position of the base at 0-based `offset`.
    pub fn at_offset(offset: usize) -> Position {
        // offset + 1 >= 1: never zero.
        Position(NonZeroU64::MIN.saturating_add(offset as u64))
    }

    /// The 1-based number.
    pub fn get(self) -> u64 {
        self.0.get()
    }

    /// The 0-based offset of this position's base.
    pub fn offset(self) -> usize {
        (self.0.get() - 1) as usize
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Position {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.parse::<u64>()
            .ok()
            .and_then(Position::new)
            .ok_or_else(|| format!("'{s}' is not a positive integer"))
    }
}
