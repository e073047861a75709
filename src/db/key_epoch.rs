//! Whether API keys changed since a moment: the `key_epoch` counter that triggers on
//! `api_key` bump, whoever changes a key (the `keys` command, another process, an
//! operator's SQL). While it stays put, what a server learned about a key still holds.
//!
//! - SQLite file: read in place (`sqlite_reader`, connections of its own): a one-row
//!   read of a few microseconds, with no hand-off to a pool's thread.
//! - PostgreSQL: any read is a round trip, so it is not read per request: each bump
//!   is announced at commit (`NOTIFY tracegraph_key_epoch`), and the live relay's
//!   listener then reads the counter and passes it here. While that listener is not
//!   connected the counter is unknown, and callers ask the database itself.
//! - In-memory SQLite (which no second connection sees): unknown.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::{DbBackend, DbErr, Statement};

use super::StatementCounter;
use super::sqlite_reader::SqliteReader;

/// Past this, a locked database answers "cannot tell" rather than stall a request.
const SQLITE_BUSY_WAIT: Duration = Duration::from_millis(20);

/// The channel the database announces bumps on. The payload (the new value) is not
/// used: anyone may NOTIFY a channel, so the listener reads the counter itself.
pub const CHANNEL: &str = "tracegraph_key_epoch";

/// Connections kept for reading the counter: one per thread that may read it at once.
const SQLITE_CONNECTIONS: usize = 8;
/// The counter, read alike on both engines.
pub const READ: &str = "SELECT epoch FROM key_epoch WHERE id = 1";

/// The counter starts at 1, so 0 never names a state of the keys.
const UNKNOWN: u64 = 0;

#[derive(Clone, Debug, Default)]
pub struct KeyEpoch {
    source: Source,
    /// The value heard last (PostgreSQL), `UNKNOWN` before any or while not listening.
    last: Arc<AtomicU64>,
    /// In-process reads of a SQLite counter, for `/metrics`: statements too, though
    /// not sent through a pool.
    checks: Arc<AtomicU64>,
}

#[derive(Clone, Debug, Default)]
enum Source {
    #[default]
    Unknown,
    Sqlite(Arc<SqliteReader>),
    Heard,
}

impl KeyEpoch {
    /// Reads the counter in the SQLite file at `path`, which must be migrated.
    pub fn sqlite(path: &Path) -> Result<Self, DbErr> {
        // Its reads are counted as checks, not as statements.
        let reader = SqliteReader::open(path, SQLITE_BUSY_WAIT, SQLITE_CONNECTIONS, StatementCounter::default())?;
        // Fails here, at start, if the table is missing.
        read_counter(&reader)?;
        Ok(Self {
            source: Source::Sqlite(Arc::new(reader)),
            ..Self::default()
        })
    }

    /// A counter told by `hear`; unknown until then.
    pub fn heard() -> Self {
        Self {
            source: Source::Heard,
            ..Self::default()
        }
    }

    /// The current epoch, or `None` when it cannot be known cheaply.
    pub fn current(&self) -> Option<u64> {
        if matches!(self.source, Source::Sqlite(_)) {
            self.checks.fetch_add(1, Ordering::Relaxed);
        }
        self.observe()
    }

    /// The counter as this server knows it now, 0 if it cannot: for `/metrics`, where
    /// a read is not a request's check.
    pub fn known(&self) -> u64 {
        self.observe().unwrap_or(UNKNOWN)
    }

    fn observe(&self) -> Option<u64> {
        match &self.source {
            Source::Unknown => None,
            Source::Sqlite(reader) => read_counter(reader).ok(),
            Source::Heard => Some(self.last.load(Ordering::Acquire)).filter(|&e| e != UNKNOWN),
        }
    }

    /// The database was asked for the counter and said `epoch`. Reads made while another
    /// is still being passed on may arrive out of order: keep the highest.
    pub fn hear(&self, epoch: u64) {
        self.last.fetch_max(epoch, Ordering::AcqRel);
    }

    /// Announcements may be missed from now on: forget the counter until heard again.
    pub fn deafen(&self) {
        self.last.store(UNKNOWN, Ordering::Release);
    }

    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }
}

fn read_counter(reader: &SqliteReader) -> Result<u64, DbErr> {
    Ok(reader.integer(&Statement::from_string(DbBackend::Sqlite, READ))? as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heard_counter_is_unknown_until_heard_and_after_deafening() {
        let epoch = KeyEpoch::heard();
        assert_eq!(epoch.current(), None);
        epoch.hear(5);
        epoch.hear(4);
        assert_eq!(epoch.current(), Some(5), "a late, older value does not go back");
        epoch.deafen();
        assert_eq!(epoch.current(), None);
        epoch.hear(6);
        assert_eq!(epoch.current(), Some(6));
    }
}
