//! Whether API keys changed since a moment: the `key_epoch` counter that triggers on
//! `api_key` bump, whoever changes a key (the `keys` command, another process, an
//! operator's SQL). While it stays put, what a server learned about a key still holds.
//!
//! - SQLite file: read in place (`sqlite_reader`, connections of its own), at most
//!   once per `SQLITE_FRESH_FOR`: the read is a read transaction of its own (file
//!   locks on the WAL index), and per request it cost a tenth of a small query's
//!   server time. A change is therefore seen within that time of its commit.
//! - PostgreSQL: any read is a round trip, so it is not read per request: each bump
//!   is announced at commit (`NOTIFY tracegraph_key_epoch`), and the live relay's
//!   listener then reads the counter and passes it here. While that listener is not
//!   connected the counter is unknown, and callers ask the database itself.
//! - In-memory SQLite (which no second connection sees): unknown.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{DbBackend, DbErr, Statement};

use super::StatementCounter;
use super::sqlite_reader::SqliteReader;

/// Past this, a locked database answers "cannot tell" rather than stall a request.
const SQLITE_BUSY_WAIT: Duration = Duration::from_millis(20);

/// The channel the database announces bumps on. The payload (the new value) is not
/// used: anyone may NOTIFY a channel, so the listener reads the counter itself.
pub const CHANNEL: &str = "tracegraph_key_epoch";

/// A SQLite counter read this recently is taken as still current.
pub const SQLITE_FRESH_FOR: Duration = Duration::from_millis(10);

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
    Sqlite(Arc<SqliteCounter>),
    Heard,
}

#[derive(Debug)]
struct SqliteCounter {
    reader: SqliteReader,
    /// The clock `read_at` counts from.
    started: Instant,
    /// When the last successful read began, in nanoseconds since `started`; 0: never.
    read_at: AtomicU64,
}

impl KeyEpoch {
    /// Reads the counter in the SQLite file at `path`, which must be migrated.
    pub fn sqlite(path: &Path) -> Result<Self, DbErr> {
        // Its reads are counted as checks, not as statements.
        let reader = SqliteReader::open(
            path,
            SQLITE_BUSY_WAIT,
            SQLITE_CONNECTIONS,
            0,
            StatementCounter::default(),
        )?;
        // Fails here, at start, if the table is missing.
        read_counter(&reader)?;
        Ok(Self {
            source: Source::Sqlite(Arc::new(SqliteCounter {
                reader,
                started: Instant::now(),
                read_at: AtomicU64::new(0),
            })),
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
        match &self.source {
            Source::Unknown => None,
            Source::Sqlite(counter) => self.fresh(counter),
            Source::Heard => Some(self.last.load(Ordering::Acquire)).filter(|&e| e != UNKNOWN),
        }
    }

    /// The counter as this server knows it now, 0 if it cannot: for `/metrics`. It is
    /// the value requests use, so once it shows a change, the next request sees it.
    pub fn known(&self) -> u64 {
        self.current().unwrap_or(UNKNOWN)
    }

    /// The last value read if that read began within `SQLITE_FRESH_FOR`, else a new read.
    fn fresh(&self, counter: &SqliteCounter) -> Option<u64> {
        // Never 0 once read, so 0 stays "never read".
        let now = counter.started.elapsed().as_nanos() as u64 + 1;
        let read_at = counter.read_at.load(Ordering::Acquire);
        if read_at != 0 && now.saturating_sub(read_at) < SQLITE_FRESH_FOR.as_nanos() as u64 {
            return Some(self.last.load(Ordering::Acquire));
        }
        self.checks.fetch_add(1, Ordering::Relaxed);
        let epoch = read_counter(&counter.reader).ok()?;
        // The counter only grows; a slower read that began earlier must not go back.
        let epoch = self.last.fetch_max(epoch, Ordering::AcqRel).max(epoch);
        counter.read_at.fetch_max(now, Ordering::AcqRel);
        Some(epoch)
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
