//! How many spans the reads of whole traces (span trees, a trace's spans or root spans)
//! may return for one request. The bound of one trace (`--max-tree-spans`) alone lets a
//! page of 500 traces read 500 trees of that size; this bounds their sum.
//!
//! Each read stops one row past what is left, so the memory a request spends on trees is
//! bounded however many rows the database has, and a read that would go past the budget
//! is seen to.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::error::{AppError, AppResult};

#[derive(Debug)]
pub struct SpanBudget {
    max: i64,
    /// What the request may still read; `None` where loaders outlive requests (shared
    /// by subscriptions), and each read is bounded on its own.
    left: Option<AtomicI64>,
}

impl SpanBudget {
    pub fn per_request(max: i64) -> Self {
        Self {
            max,
            left: Some(AtomicI64::new(max)),
        }
    }

    pub fn per_read(max: i64) -> Self {
        Self { max, left: None }
    }

    /// The rows the next read asks for: one past what is left.
    pub fn rows_to_read(&self) -> usize {
        let left = self.left.as_ref().map_or(self.max, |left| left.load(Ordering::Relaxed));
        usize::try_from(left).unwrap_or(0).saturating_add(1)
    }

    /// Counts `read` spans; refused past the budget. Reads running at once each asked for
    /// what was left before either counted: together they may read past it (each by a
    /// budget at most), and whichever counts past it is refused.
    pub fn spend(&self, read: usize) -> AppResult<()> {
        let read = i64::try_from(read).unwrap_or(i64::MAX);
        let left = match &self.left {
            Some(left) => left.fetch_sub(read, Ordering::Relaxed).saturating_sub(read),
            None => self.max.saturating_sub(read),
        };
        match left < 0 {
            true => Err(AppError::RequestSpansExceeded {
                max: self.max.unsigned_abs(),
            }),
            false => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SpanBudget;

    #[test]
    fn a_request_reads_its_budget_and_not_one_span_more() {
        let budget = SpanBudget::per_request(10);
        assert_eq!(budget.rows_to_read(), 11);
        budget.spend(6).unwrap();
        assert_eq!(budget.rows_to_read(), 5);
        budget.spend(4).unwrap();
        assert_eq!(budget.rows_to_read(), 1, "a read of empty trees may still run");
        budget.spend(0).unwrap();
        assert!(budget.spend(1).is_err());
        assert_eq!(
            budget.rows_to_read(),
            1,
            "spent past its budget, a read still asks for a row"
        );
        assert!(budget.spend(1).is_err(), "and stays refused");
    }

    #[test]
    fn reads_of_shared_loaders_are_bounded_one_by_one() {
        let budget = SpanBudget::per_read(10);
        for _ in 0..3 {
            budget.spend(10).unwrap();
            assert_eq!(budget.rows_to_read(), 11);
        }
        assert!(budget.spend(11).is_err());
        assert!(budget.spend(usize::MAX).is_err());
    }
}
